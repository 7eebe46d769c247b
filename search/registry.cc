// The registry of search algorithms (search/search.h): a name → factory map
// filled by ORRERY_REGISTER_SEARCH_ALGORITHM from static initialisers.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "search/search.h"

namespace orrery::search {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, AlgorithmFactory, std::less<>> factories;
};

// Function-local, so registration from other translation units' static
// initialisers never sees it unconstructed.
Registry& GetRegistry() {
  static Registry registry;
  return registry;
}

}  // namespace

bool RegisterSearchAlgorithm(std::string name, AlgorithmFactory factory) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.factories.emplace(std::move(name), std::move(factory)).second;
}

std::vector<std::string> SearchAlgorithmNames() {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [name, factory] : r.factories) names.push_back(name);
  return names;
}

Result<std::unique_ptr<SearchAlgorithm>> MakeSearchAlgorithm(std::string_view name) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  const auto it = r.factories.find(name);
  if (it == r.factories.end()) {
    std::string known;
    for (const auto& [n, factory] : r.factories) {
      if (!known.empty()) known += ", ";
      known += n;
    }
    return NotFoundError("search algorithm '" + std::string(name) +
                         "' is not known; expected one of: " + known);
  }
  return it->second();
}

}  // namespace orrery::search
