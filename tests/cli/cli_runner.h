// Runs the `orrery` binary (ORRERY_BINARY) as a person would, for the CLI
// tests: arguments in, exit code, stdout and stderr out.
#ifndef ORRERY_TESTS_CLI_CLI_RUNNER_H_
#define ORRERY_TESTS_CLI_CLI_RUNNER_H_

#include <string>

namespace orrery::testing {

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `orrery <args>` through the shell (quote arguments as needed) with
// stdin from /dev/null.
CliRun RunOrrery(const std::string& args);

// Runs a shell command line (e.g. "mpirun -np 2 " + OrreryBinary() + " ...")
// with stdin from /dev/null.
CliRun RunShell(const std::string& command);

// The path of the orrery binary under test.
std::string OrreryBinary();

// The path of a fixture under ../shared/fixtures.
std::string Fixture(const std::string& relative_path);

// A fresh empty directory under the system temp directory, for outputs.
std::string MakeTempDir(const std::string& name);

}  // namespace orrery::testing

#endif  // ORRERY_TESTS_CLI_CLI_RUNNER_H_
