// cli/launcher.h: the launcher's command line (mpirun's Open MPI flags by
// the rule: --oversubscribe past the cores, --allow-run-as-root as root;
// srun under Slurm), and real launches of the orrery binary and of a
// program that outlives its timeout.
#include "cli/launcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "tests/cli/cli_runner.h"
#include "topology/presets.h"

namespace orrery::testing {
namespace {

using cli::LaunchCommand;
using cli::LaunchOptions;
using cli::LaunchOrrery;
using cli::LaunchResult;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Sets an environment variable for the scope of a test and restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

int Cores() { return topology::ClusterPreset("cpu-local").value().PrimaryNodeType().devices_per_node; }

// The tail after the launcher's own flags: -np N, the extra arguments, the
// program and its arguments.
std::vector<std::string> AfterFlags(const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "-np") return {argv.begin() + static_cast<long>(i), argv.end()};
  }
  return {};
}

TEST(LaunchCommand, MpirunRunsTheProgramOnNRanksAfterTheExtraArguments) {
  LaunchOptions options;
  options.ranks = 1;
  options.launcher = "mpirun";
  options.launcher_args = {"--bind-to", "none"};
  const std::vector<std::string> argv =
      LaunchCommand(options, "/opt/orrery", {"models", "--format", "json"}).value();
  ASSERT_FALSE(argv.empty());
  EXPECT_EQ(argv.front(), "mpirun");
  EXPECT_THAT(AfterFlags(argv), ElementsAre("-np", "1", "--bind-to", "none", "/opt/orrery",
                                            "models", "--format", "json"));
  // One rank never oversubscribes a machine.
  EXPECT_THAT(argv, Not(Contains("--oversubscribe")));
  // This machine's mpirun is Open MPI's (the tests' mpirun lines rely on it):
  // as root it needs --allow-run-as-root.
  if (::geteuid() == 0) {
    EXPECT_THAT(argv, Contains("--allow-run-as-root"));
  } else {
    EXPECT_THAT(argv, Not(Contains("--allow-run-as-root")));
  }
}

TEST(LaunchCommand, MpirunOversubscribesOnlyPastTheCores) {
  LaunchOptions options;
  options.launcher = "mpirun";
  options.ranks = Cores();
  EXPECT_THAT(LaunchCommand(options, "orrery", {}).value(), Not(Contains("--oversubscribe")));
  options.ranks = Cores() + 1;
  const std::vector<std::string> argv = LaunchCommand(options, "orrery", {}).value();
  EXPECT_THAT(argv, Contains("--oversubscribe"));
  EXPECT_THAT(AfterFlags(argv), ElementsAre("-np", std::to_string(Cores() + 1), "orrery"));
}

TEST(LaunchCommand, SrunTakesTheTaskCount) {
  LaunchOptions options;
  options.launcher = "srun";
  options.ranks = 3;
  EXPECT_THAT(LaunchCommand(options, "/opt/orrery", {"execute"}).value(),
              ElementsAre("srun", "--ntasks", "3", "/opt/orrery", "execute"));
}

TEST(LaunchCommand, AutoPicksSrunOnlyInsideASlurmJobWithSrunInstalled) {
  LaunchOptions options;
  options.ranks = 2;
  {
    ScopedEnv no_job("SLURM_JOB_ID", nullptr);
    EXPECT_EQ(LaunchCommand(options, "orrery", {}).value().front(), "mpirun");
  }
  const std::string dir = MakeTempDir("launcher_fake_srun");
  const std::string srun = dir + "/srun";
  std::ofstream(srun) << "#!/bin/sh\nexit 0\n";
  std::filesystem::permissions(srun, std::filesystem::perms::owner_all);
  ScopedEnv job("SLURM_JOB_ID", "12345");
  {
    ScopedEnv path("PATH", "/nonexistent");  // no srun: mpirun still
    EXPECT_EQ(LaunchCommand(options, "orrery", {}).value().front(), "mpirun");
  }
  const std::string old_path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  ScopedEnv path("PATH", (dir + ":" + old_path).c_str());
  EXPECT_EQ(LaunchCommand(options, "orrery", {}).value().front(), "srun");
  std::filesystem::remove_all(dir);
}

TEST(LaunchCommand, RejectsAnUnknownLauncherAndNoRanks) {
  LaunchOptions options;
  options.launcher = "torchrun";
  Result<std::vector<std::string>> unknown = LaunchCommand(options, "orrery", {});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.status().message(),
            "launcher: expected auto, mpirun or srun, got 'torchrun'");
  options.launcher = "mpirun";
  options.ranks = 0;
  Result<std::vector<std::string>> none = LaunchCommand(options, "orrery", {});
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("ranks: expected an integer >= 1, got 0"));
}

TEST(LaunchOrrery, CapturesTheOutputOfOneRank) {
  LaunchOptions options;
  options.ranks = 1;
  options.launcher = "mpirun";
  options.program = OrreryBinary();
  options.timeout_s = 60;
  Result<LaunchResult> run = LaunchOrrery(options, {"models"});
  ASSERT_TRUE(run.ok()) << run.status().message();
  EXPECT_EQ(run->stdout_text, RunOrrery("models").out);
  EXPECT_EQ(run->argv.back(), "models");
}

TEST(LaunchOrrery, CapturesTheOutputOfEveryRank) {
  LaunchOptions options;
  options.ranks = 2;
  options.launcher = "mpirun";
  options.program = OrreryBinary();
  options.timeout_s = 60;
  Result<LaunchResult> run = LaunchOrrery(options, {"models"});
  ASSERT_TRUE(run.ok()) << run.status().message();
  // `models` knows nothing of MPI: each rank prints the whole table.
  const std::string one = RunOrrery("models").out;
  EXPECT_EQ(run->stdout_text.size(), 2 * one.size());
  size_t count = 0;
  for (size_t at = run->stdout_text.find("\ngpt-tiny "); at != std::string::npos;
       at = run->stdout_text.find("\ngpt-tiny ", at + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 2u);
}

TEST(LaunchOrrery, AFailedCommandNamesItsCommandLineAndStatus) {
  LaunchOptions options;
  options.launcher = "mpirun";
  options.program = OrreryBinary();
  Result<LaunchResult> run = LaunchOrrery(options, {"models", "--no-such-flag"});
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().code(), StatusCode::kInternal);
  EXPECT_THAT(run.status().message(), HasSubstr(OrreryBinary() + " models --no-such-flag"));
  EXPECT_THAT(run.status().message(), HasSubstr("exited with status"));
}

TEST(LaunchOrrery, KillsTheJobPastItsTimeout) {
  LaunchOptions options;
  options.launcher = "mpirun";
  options.program = "/bin/sleep";
  options.timeout_s = 0.5;
  const auto start = std::chrono::steady_clock::now();
  Result<LaunchResult> run = LaunchOrrery(options, {"30"});
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().code(), StatusCode::kInternal);
  EXPECT_THAT(run.status().message(), HasSubstr("timeout"));
  EXPECT_LT(elapsed, 10.0);
}

TEST(LaunchOrrery, IsUnavailableWithoutTheLauncher) {
  LaunchOptions options;
  options.launcher = "mpirun";
  options.program = OrreryBinary();
  ScopedEnv path("PATH", "/nonexistent");
  Result<LaunchResult> run = LaunchOrrery(options, {"models"});
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(run.status().message(), HasSubstr("mpirun is not on PATH"));
}

TEST(SelfExecutable, IsThisTestBinary) {
  Result<std::string> self = cli::SelfExecutable();
  ASSERT_TRUE(self.ok()) << self.status().message();
  EXPECT_TRUE(std::filesystem::exists(*self));
  EXPECT_THAT(*self, HasSubstr("cli_test"));
}

}  // namespace
}  // namespace orrery::testing
