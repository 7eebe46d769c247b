// Entry points of the built subcommands (cli/command.h's CommandFn).
#ifndef ORRERY_CLI_SUBCOMMANDS_H_
#define ORRERY_CLI_SUBCOMMANDS_H_

#include <string>
#include <vector>

#include "cli/command.h"

namespace orrery::cli {

int RunQuickstart(const std::vector<std::string>& args, CommandIo& io);
int RunModels(const std::vector<std::string>& args, CommandIo& io);
int RunClusters(const std::vector<std::string>& args, CommandIo& io);
int RunCollective(const std::vector<std::string>& args, CommandIo& io);
int RunDiscover(const std::vector<std::string>& args, CommandIo& io);
int RunPlan(const std::vector<std::string>& args, CommandIo& io);
int RunSimulate(const std::vector<std::string>& args, CommandIo& io);
int RunSearch(const std::vector<std::string>& args, CommandIo& io);
int RunExport(const std::vector<std::string>& args, CommandIo& io);
int RunExecute(const std::vector<std::string>& args, CommandIo& io);
int RunProfile(const std::vector<std::string>& args, CommandIo& io);
int RunCalibrate(const std::vector<std::string>& args, CommandIo& io);
int RunValidate(const std::vector<std::string>& args, CommandIo& io);
int RunTune(const std::vector<std::string>& args, CommandIo& io);
int RunCapacity(const std::vector<std::string>& args, CommandIo& io);

}  // namespace orrery::cli

#endif  // ORRERY_CLI_SUBCOMMANDS_H_
