#include "tests/cli/cli_runner.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace orrery::testing {

namespace {
std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

std::string OrreryBinary() { return ORRERY_BINARY; }

CliRun RunOrrery(const std::string& args) { return RunShell(OrreryBinary() + " " + args); }

CliRun RunShell(const std::string& command) {
  const std::string dir = MakeTempDir("orrery_cli_run");
  const std::string out = dir + "/out", err = dir + "/err";
  const std::string cmd = command + " </dev/null >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  CliRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = Slurp(out);
  run.err = Slurp(err);
  std::filesystem::remove_all(dir);
  return run;
}

std::string Fixture(const std::string& relative_path) {
  return std::string(ORRERY_FIXTURES_DIR) + "/" + relative_path;
}

std::string MakeTempDir(const std::string& name) {
  static int counter = 0;
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    (name + "." + std::to_string(::getpid()) + "." +
                                     std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace orrery::testing
