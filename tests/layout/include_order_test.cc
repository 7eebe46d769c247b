// Keeps the module order of DESIGN.md: a module includes only itself and
// the modules below it,
//   core → topology → workload → traces → costmodel → sim → search → exec → cli
// and exec/ includes none of costmodel, sim and search (measurements reach
// the cost model as trace files).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

// Modules each module may include, itself included.
const std::map<std::string, std::set<std::string>>& AllowedIncludes() {
  static const std::map<std::string, std::set<std::string>> kAllowed = {
      {"core", {"core"}},
      {"topology", {"core", "topology"}},
      {"workload", {"core", "topology", "workload"}},
      {"traces", {"core", "topology", "workload", "traces"}},
      {"costmodel", {"core", "topology", "workload", "traces", "costmodel"}},
      {"sim", {"core", "topology", "workload", "traces", "costmodel", "sim"}},
      {"search", {"core", "topology", "workload", "traces", "costmodel", "sim", "search"}},
      {"exec", {"core", "topology", "workload", "traces", "exec"}},
      {"cli",
       {"core", "topology", "workload", "traces", "costmodel", "sim", "search", "exec", "cli"}},
  };
  return kAllowed;
}

// Every include of a module header that goes against the order, as
// "file:line: includes module/x.h".
std::vector<std::string> FindViolations(const fs::path& root) {
  static const std::regex kInclude(R"(^\s*#\s*include\s*"([a-z_]+)/[^"]+")");
  std::vector<std::string> violations;
  for (const auto& [module, allowed] : AllowedIncludes()) {
    const fs::path dir = root / module;
    if (!fs::exists(dir)) continue;
    std::vector<fs::path> files;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      const std::string ext = entry.path().extension().string();
      if (ext == ".h" || ext == ".cc" || ext == ".cu" || ext == ".cuh") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      std::ifstream in(file);
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        std::smatch m;
        if (!std::regex_search(line, m, kInclude)) continue;
        const std::string target = m[1];
        if (AllowedIncludes().count(target) == 0) continue;  // not a module
        if (allowed.count(target) == 0) {
          violations.push_back(fs::relative(file, root).string() + ":" + std::to_string(n) +
                               ": " + module + "/ includes " + target + "/");
        }
      }
    }
  }
  return violations;
}

TEST(IncludeOrder, EveryModuleIncludesOnlyModulesBelowIt) {
  const std::vector<std::string> violations = FindViolations(ORRERY_SOURCE_DIR);
  std::string all;
  for (const std::string& v : violations) all += v + "\n";
  EXPECT_TRUE(violations.empty()) << "includes against DESIGN.md's module order:\n" << all;
}

TEST(IncludeOrder, CatchesAnUpwardInclude) {
  const fs::path root = fs::temp_directory_path() / "orrery_include_order_test";
  fs::remove_all(root);
  fs::create_directories(root / "topology");
  fs::create_directories(root / "exec");
  std::ofstream(root / "topology" / "bad.h") << "#include \"core/units.h\"\n#include \"sim/engine.h\"\n";
  std::ofstream(root / "exec" / "bad.cc") << "#include \"search/plan_space.h\"\n";
  const std::vector<std::string> violations = FindViolations(root);
  fs::remove_all(root);
  ASSERT_EQ(violations.size(), 2u);
  // Modules are visited in name order.
  EXPECT_EQ(violations[0], "exec/bad.cc:1: exec/ includes search/");
  EXPECT_EQ(violations[1], "topology/bad.h:2: topology/ includes sim/");
}

}  // namespace
