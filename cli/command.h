// The `orrery` program's subcommands and what they share: option parsing
// with --help, the --format switch, and turning a Status into one message
// and exit code 2.
//
// A subcommand is a function from its arguments to an exit code. It writes
// its report to `io.out` only once the whole report is ready, and its files
// through WriteFileAtomically, so bad input never leaves partial output.
//
// Exit codes: 0 success; 1 the job ran and its answer is "no" (no feasible
// plan, a failed check); 2 bad input, or a subcommand not built yet.
#ifndef ORRERY_CLI_COMMAND_H_
#define ORRERY_CLI_COMMAND_H_

#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/positional_options.hpp>
#include <boost/program_options/variables_map.hpp>

#include "core/status.h"

namespace orrery::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitNo = 1;
inline constexpr int kExitBadInput = 2;

struct CommandIo {
  std::ostream& out;
  std::ostream& err;
};

using CommandFn = int (*)(const std::vector<std::string>& args, CommandIo& io);

struct Command {
  std::string_view name;
  std::string_view summary;  // one line for `orrery --help`
  CommandFn run;             // nullptr while not built yet
  std::string_view not_built_note;  // what will provide it, when run is nullptr
};

// Every subcommand, in the order `orrery --help` lists them.
const std::vector<Command>& Commands();

enum class OutputFormat { kText, kJson };

// Parses `args` against `options` (plus --help, which is added here, and the
// global --quiet). Returns an exit code when the command should stop now:
// kExitOk after printing help, kExitBadInput after printing a usage error.
// `usage` is the synopsis line, `description` the paragraph(s) after it and
// `examples` real command lines shown at the end of --help.
std::optional<int> ParseOptions(std::string_view command, std::string_view usage,
                                std::string_view description, std::string_view examples,
                                boost::program_options::options_description& options,
                                const std::vector<std::string>& args,
                                boost::program_options::variables_map& vm, CommandIo& io,
                                const boost::program_options::positional_options_description*
                                    positional = nullptr);

// Adds --format text|json to `options`.
void AddFormatOption(boost::program_options::options_description& options);
// The --format value of a parsed command line.
Result<OutputFormat> GetFormat(const boost::program_options::variables_map& vm);

// Prints "orrery <command>: error: <message>" and returns kExitBadInput.
int ReportError(std::string_view command, const Status& status, CommandIo& io);

}  // namespace orrery::cli

#endif  // ORRERY_CLI_COMMAND_H_
