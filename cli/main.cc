// orrery: plan, simulate and run hybrid-parallel training of large
// transformer models. `orrery --help` lists the subcommands.
#include <iostream>
#include <string>
#include <vector>

#include "cli/command.h"

namespace {

void PrintHelp(std::ostream& out) {
  out << "Usage: orrery <command> [options]\n\n"
         "Orrery finds, simulates and runs hybrid-parallel training plans (data, tensor,\n"
         "pipeline, sharded-data, sequence, context and expert parallelism, recomputation)\n"
         "for large transformer models on GPU clusters, real or hypothetical.\n\n"
         "Commands:\n";
  for (const orrery::cli::Command& c : orrery::cli::Commands()) {
    std::string name(c.name);
    name.resize(12, ' ');
    out << "  " << name << c.summary;
    if (c.run == nullptr) out << "  [not built yet]";
    out << "\n";
  }
  out << "\n'orrery <command> --help' describes a command and its options.\n";
}

}  // namespace

int main(int argc, char** argv) {
  using orrery::cli::CommandIo;
  CommandIo io{std::cout, std::cerr};
  if (argc < 2) {
    PrintHelp(std::cerr);
    return orrery::cli::kExitBadInput;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintHelp(std::cout);
    return orrery::cli::kExitOk;
  }
  if (name == "--version") {
    std::cout << "orrery 0.1.0\n";
    return orrery::cli::kExitOk;
  }
  for (const orrery::cli::Command& c : orrery::cli::Commands()) {
    if (c.name != name) continue;
    if (c.run == nullptr) {
      std::cerr << "orrery " << name << ": not built yet (" << c.not_built_note << ")\n";
      return orrery::cli::kExitBadInput;
    }
    std::vector<std::string> args(argv + 2, argv + argc);
    return c.run(args, io);
  }
  std::cerr << "orrery: unknown command '" << name << "'. 'orrery --help' lists the commands.\n";
  return orrery::cli::kExitBadInput;
}
