#include "tests/exec/mpi_checks.h"

#include <cmath>
#include <cstdio>
#include <memory>
#include <utility>

namespace orrery::exec {

int RunMpiChecks(int argc, char** argv, const char* program,
                 const std::map<std::string, MpiCheck>& checks) {
  if (argc < 2 || argc > 3 || checks.count(argv[1]) == 0) {
    std::fprintf(stderr, "usage: %s <check> [cpu|cuda]; checks:", program);
    for (const auto& [name, check] : checks) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  Result<BackendKind> kind = ParseBackendKind(argc == 3 ? argv[2] : "cpu");
  if (!kind.ok()) {
    std::fprintf(stderr, "%s\n", kind.status().ToString().c_str());
    return 2;
  }
  Result<std::unique_ptr<MpiWorld>> world = MpiWorld::Join();
  if (!world.ok()) {
    std::fprintf(stderr, "MpiWorld::Join: %s\n", world.status().ToString().c_str());
    return 1;
  }
  const char* name = argv[1];
  Findings findings;
  Status ran = checks.at(name)(**world, *kind, findings);
  if (!ran.ok()) {
    std::fprintf(stderr, "%s\n", ran.message().c_str());
    return 1;
  }
  for (const std::string& failure : findings.failures()) {
    std::fprintf(stderr, "%s: rank %d: FAILED: %s\n", name, (*world)->rank(), failure.c_str());
  }
  Status mine = findings.failures().empty()
                    ? Status()
                    : InternalError(std::to_string(findings.failures().size()) +
                                    " expectation(s) failed, the first: " +
                                    findings.failures().front());
  Status all = (*world)->AgreeOnStatus(mine);
  if ((*world)->rank() == 0) {
    std::fprintf(stderr, "%s: %s\n", name, all.ok() ? "PASSED" : all.ToString().c_str());
  }
  return all.ok() ? 0 : 1;
}

std::map<std::string, MpiCheck> BindModel(const workload::ModelSpec& model,
                                          const std::map<std::string, ModelCheck>& checks) {
  std::map<std::string, MpiCheck> bound;
  for (const auto& [name, check] : checks) {
    bound.emplace(name, [&model, check = check](MpiWorld& world, BackendKind backend,
                                                 Findings& findings) {
      ExecuteOptions options;
      options.backend = backend;
      check(world, model, options, findings);
      return Status();
    });
  }
  return bound;
}

void ExpectSameSteps(const std::vector<double>& losses, const std::vector<double>& grad_norms,
                     const std::vector<double>& reference_losses,
                     const std::vector<double>& reference_grad_norms, const std::string& what,
                     Findings& findings) {
  for (size_t k = 0; k < losses.size() && k < reference_losses.size(); ++k) {
    const double loss = reference_losses[k];
    const double norm = reference_grad_norms[k];
    findings.Expect(std::fabs(losses[k] - loss) <= 1e-5 * std::fabs(loss),
                    what + ": step " + std::to_string(k) + ": loss " + std::to_string(losses[k]) +
                        ", the reference's " + std::to_string(loss));
    findings.Expect(std::fabs(grad_norms[k] - norm) <= 1e-4 * norm,
                    what + ": step " + std::to_string(k) + ": gradient norm " +
                        std::to_string(grad_norms[k]) + ", the reference's " +
                        std::to_string(norm));
  }
}

std::string Bracketed(const std::vector<int64_t>& values) {
  std::string s;
  for (size_t i = 0; i < values.size(); ++i) {
    s += (i == 0 ? "" : ", ") + std::to_string(values[i]);
  }
  return "[" + s + "]";
}

}  // namespace orrery::exec
