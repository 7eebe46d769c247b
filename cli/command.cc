#include "cli/command.h"

#include <iostream>

#include <boost/program_options/parsers.hpp>

#include "core/progress.h"

namespace orrery::cli {

namespace po = boost::program_options;

std::optional<int> ParseOptions(std::string_view command, std::string_view usage,
                                std::string_view description, std::string_view examples,
                                po::options_description& options,
                                const std::vector<std::string>& args, po::variables_map& vm,
                                CommandIo& io, const po::positional_options_description* positional) {
  options.add_options()
      ("quiet,q", po::bool_switch(), "no progress line or informational messages on stderr")
      ("help,h", po::bool_switch(), "show this help");
  try {
    po::command_line_parser parser(args);
    parser.options(options);
    if (positional != nullptr) {
      parser.positional(*positional);
    } else {
      parser.positional(po::positional_options_description());
    }
    po::store(parser.run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    io.err << "orrery " << command << ": error: " << e.what() << "\n"
           << "Try 'orrery " << command << " --help'.\n";
    return kExitBadInput;
  }
  if (vm["help"].as<bool>()) {
    io.out << "Usage: " << usage << "\n\n" << description << "\n\n" << options;
    if (!examples.empty()) io.out << "\nExamples:\n" << examples;
    return kExitOk;
  }
  if (vm["quiet"].as<bool>()) SetQuiet(true);
  return std::nullopt;
}

void AddFormatOption(po::options_description& options) {
  options.add_options()("format", po::value<std::string>()->default_value("text"),
                        "report as 'text' (for people) or 'json' (for programs)");
}

Result<OutputFormat> GetFormat(const po::variables_map& vm) {
  const std::string& f = vm["format"].as<std::string>();
  if (f == "text") return OutputFormat::kText;
  if (f == "json") return OutputFormat::kJson;
  return InvalidArgumentError("--format: expected 'text' or 'json', got '" + f + "'");
}

int ReportError(std::string_view command, const Status& status, CommandIo& io) {
  io.err << "orrery " << command << ": error: " << status.message() << "\n";
  return kExitBadInput;
}

}  // namespace orrery::cli
