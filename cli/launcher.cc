#include "cli/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "topology/presets.h"

extern char** environ;

namespace orrery::cli {

namespace {

using Clock = std::chrono::steady_clock;

// After a timeout: SIGTERM to the process group (mpirun forwards it to its
// ranks), then SIGKILL if it has not gone after this grace period.
constexpr std::chrono::seconds kKillGrace{3};

// The path execvp would run for `name`: `name` itself when it has a '/',
// otherwise the first executable match on PATH.
std::optional<std::string> FindOnPath(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::string dirs = path;
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

// Whether the mpirun on PATH is Open MPI's (its real name is orterun,
// prterun or mpirun.openmpi, or ompi_info sits beside it): only Open MPI
// takes --oversubscribe and --allow-run-as-root.
bool IsOpenMpi() {
  const std::optional<std::string> mpirun = FindOnPath("mpirun");
  if (!mpirun) return false;
  std::error_code error;
  const std::filesystem::path real = std::filesystem::canonical(*mpirun, error);
  if (!error) {
    const std::string name = real.filename().string();
    if (name.find("openmpi") != std::string::npos || name == "orterun" || name == "prterun") {
      return true;
    }
  }
  const std::filesystem::path dir = std::filesystem::path(*mpirun).parent_path();
  return ::access((dir / "ompi_info").c_str(), X_OK) == 0;
}

// The machine's physical cores (Open MPI's default slots), as hwloc counts
// them for the cpu-local preset; the hardware threads if hwloc fails.
int HardwareCores() {
  Result<topology::ClusterSpec> local = topology::ClusterPreset("cpu-local");
  if (local.ok()) return local->PrimaryNodeType().devices_per_node;
  const unsigned threads = std::thread::hardware_concurrency();
  return threads > 0 ? static_cast<int>(threads) : 1;
}

std::string CommandLine(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& arg : argv) {
    if (!line.empty()) line += ' ';
    if (arg.find_first_of(" \t'\"") != std::string::npos || arg.empty()) {
      line += '\'' + arg + '\'';
    } else {
      line += arg;
    }
  }
  return line;
}

std::string ErrnoText(int error) { return std::strerror(error); }

// Waits for `pid` until `deadline` (none: forever). True when it exited.
bool WaitUntil(pid_t pid, std::optional<Clock::time_point> deadline, int& status) {
  while (true) {
    const pid_t done = ::waitpid(pid, &status, deadline ? WNOHANG : 0);
    if (done == pid) return true;
    if (done < 0 && errno != EINTR) return true;  // no such child: nothing to wait for
    if (deadline && Clock::now() >= *deadline) return false;
    if (deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Runs `argv` in a process group of its own with stdin from /dev/null,
// stdout into a pipe read here, stderr shared; kills the group past
// `timeout_s`.
Result<LaunchResult> Run(const std::vector<std::string>& argv, std::optional<double> timeout_s) {
  LaunchResult result;
  result.argv = argv;
  const std::string line = CommandLine(argv);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return InternalError("launching " + line + ": pipe: " + ErrnoText(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);  // a group of its own, led by the child
  std::vector<char*> c_argv;
  for (const std::string& arg : argv) c_argv.push_back(const_cast<char*>(arg.c_str()));
  c_argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned =
      ::posix_spawnp(&pid, c_argv[0], &actions, &attributes, c_argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(pipe_fds[1]);
  if (spawned != 0) {
    ::close(pipe_fds[0]);
    if (spawned == ENOENT) return UnavailableError(argv[0] + " is not on PATH (running " + line + ")");
    return InternalError("launching " + line + ": " + ErrnoText(spawned));
  }

  std::optional<Clock::time_point> deadline;
  if (timeout_s) {
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(*timeout_s));
  }
  bool timed_out = false;
  char buffer[65536];
  while (true) {
    int wait_ms = -1;
    if (deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline -
                                                                              Clock::now());
      if (left.count() <= 0) {
        timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 1000));
    }
    pollfd fd{pipe_fds[0], POLLIN, 0};
    const int ready = ::poll(&fd, 1, wait_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (ready == 0) continue;
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // end of output
    result.stdout_text.append(buffer, static_cast<size_t>(n));
  }
  ::close(pipe_fds[0]);

  int status = 0;
  if (!timed_out && !WaitUntil(pid, deadline, status)) timed_out = true;
  if (timed_out) {
    ::kill(-pid, SIGTERM);
    if (!WaitUntil(pid, Clock::now() + kKillGrace, status)) {
      ::kill(-pid, SIGKILL);
      WaitUntil(pid, std::nullopt, status);
    }
    return InternalError(line + ": killed after the " + std::to_string(*timeout_s) +
                         " s timeout");
  }
  if (WIFSIGNALED(status)) {
    return InternalError(line + ": killed by signal " + std::to_string(WTERMSIG(status)) +
                         " (" + strsignal(WTERMSIG(status)) + ")");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    return InternalError(line + ": exited with status " + std::to_string(WEXITSTATUS(status)));
  }
  return result;
}

}  // namespace

Result<std::string> SelfExecutable() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return UnavailableError("cannot read /proc/self/exe: " + error.message());
  return self.string();
}

Result<std::vector<std::string>> LaunchCommand(const LaunchOptions& options,
                                               const std::string& program,
                                               const std::vector<std::string>& args) {
  if (options.ranks < 1) {
    return InvalidArgumentError("ranks: expected an integer >= 1, got " +
                                std::to_string(options.ranks));
  }
  std::string launcher = options.launcher;
  if (launcher == "auto") {
    const char* job = std::getenv("SLURM_JOB_ID");
    launcher = job != nullptr && *job != '\0' && FindOnPath("srun") ? "srun" : "mpirun";
  }
  std::vector<std::string> argv;
  const std::string ranks = std::to_string(options.ranks);
  if (launcher == "mpirun") {
    argv.push_back("mpirun");
    if (IsOpenMpi()) {
      if (options.ranks > HardwareCores()) argv.push_back("--oversubscribe");
      if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
    }
    argv.insert(argv.end(), {"-np", ranks});
  } else if (launcher == "srun") {
    argv.insert(argv.end(), {"srun", "--ntasks", ranks});
  } else {
    return InvalidArgumentError("launcher: expected auto, mpirun or srun, got '" + launcher +
                                "'");
  }
  argv.insert(argv.end(), options.launcher_args.begin(), options.launcher_args.end());
  argv.push_back(program);
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

Result<LaunchResult> LaunchOrrery(const LaunchOptions& options,
                                  const std::vector<std::string>& args) {
  std::string program = options.program;
  if (program.empty()) {
    ORRERY_ASSIGN_OR_RETURN(program, SelfExecutable());
  }
  ORRERY_ASSIGN_OR_RETURN(std::vector<std::string> argv, LaunchCommand(options, program, args));
  if (!FindOnPath(argv.front())) {
    return UnavailableError(argv.front() + " is not on PATH: install an MPI (Open MPI's " +
                            "mpirun) or run under Slurm to launch " + CommandLine(argv));
  }
  if (options.timeout_s && !(*options.timeout_s > 0)) {
    return InvalidArgumentError("timeout: expected a positive number of seconds, got " +
                                std::to_string(*options.timeout_s));
  }
  return Run(argv, options.timeout_s);
}

}  // namespace orrery::cli
