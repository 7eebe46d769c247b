#include "sim/sharing_solver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace orrery::sim {
namespace {

constexpr int64_t kGBps = 1'000'000'000;  // bytes per second

SharingProblem Build(const std::vector<int64_t>& capacities,
                     const std::vector<std::vector<uint32_t>>& routes) {
  SharingProblem problem;
  for (int64_t c : capacities) problem.AddConstraint(c);
  for (const auto& route : routes) {
    problem.AddVariable();
    for (uint32_t c : route) problem.AddUse(c);
  }
  return problem;
}

std::vector<int64_t> SolveWith(SharingSolver& solver, const SharingProblem& problem) {
  std::vector<int64_t> rates(problem.num_variables(), -1);
  solver.Solve(problem, rates);
  return rates;
}

TEST(MaxMinSolver, TwoEqualFlowsShareALinkEqually) {
  MaxMinSolver solver;
  EXPECT_EQ(SolveWith(solver, Build({100 * kGBps}, {{0}, {0}})),
            (std::vector<int64_t>{50 * kGBps, 50 * kGBps}));
}

TEST(MaxMinSolver, AFlowAloneGetsTheSlowestLinkOfItsRoute) {
  MaxMinSolver solver;
  EXPECT_EQ(SolveWith(solver, Build({100 * kGBps, 25 * kGBps, 400 * kGBps}, {{0, 1, 2}})),
            (std::vector<int64_t>{25 * kGBps}));
}

// The classic three-link example (after Bertsekas & Gallager §6.5.2):
//   links L0 = 10 GB/s, L1 = 8 GB/s, L2 = 12 GB/s
//   f0: L0 L1 L2   f1: L0 L2   f2: L1   f3: L1   f4: L2
// Fair shares R/n: L0 10/2 = 5, L1 8/3 ≈ 2.67, L2 12/3 = 4. L1 is the first
// bottleneck: f0, f2, f3 get 8/3. Then L0 has 22/3 for f1 alone and L2 has
// 28/3 for f1 and f4: L2 is next, f1 = f4 = 14/3 ≈ 4.67. L0 keeps
// 10 - 8/3 - 14/3 = 8/3 unused (f1 is bottlenecked on L2).
// In integer B/s: ⌊8e9/3⌋ = 2666666666, then ⌊(12e9 - 2666666666)/2⌋ =
// 4666666667, and L2 carries exactly 2666666666 + 2·4666666667 = 12e9.
TEST(MaxMinSolver, SolvesTheClassicThreeLinkExampleByProgressiveFilling) {
  MaxMinSolver solver;
  const auto rates = SolveWith(
      solver, Build({10 * kGBps, 8 * kGBps, 12 * kGBps}, {{0, 1, 2}, {0, 2}, {1}, {1}, {2}}));
  EXPECT_EQ(rates, (std::vector<int64_t>{2666666666, 4666666667, 2666666666, 2666666666,
                                         4666666667}));
}

TEST(BottleneckShareSolver, GivesTheShareOfTheMostCrowdedLinkWithoutRedistribution) {
  // Same example: f1 = min(10/2, 12/3) = 4 GB/s, less than max-min's 14/3.
  BottleneckShareSolver solver;
  const auto rates = SolveWith(
      solver, Build({10 * kGBps, 8 * kGBps, 12 * kGBps}, {{0, 1, 2}, {0, 2}, {1}, {1}, {2}}));
  EXPECT_EQ(rates, (std::vector<int64_t>{2666666666, 4 * kGBps, 2666666666, 2666666666,
                                         4 * kGBps}));
}

// Random problems: the result is feasible, max-min fair (every flow has a
// saturated bottleneck on which its rate is the largest) and independent of
// the order the flows are listed in.
TEST(MaxMinSolver, RandomProblemsAreFeasibleFairAndOrderIndependent) {
  std::mt19937 random(7);
  MaxMinSolver solver;
  for (int trial = 0; trial < 200; ++trial) {
    const uint32_t links = 1 + random() % 12;
    const uint32_t flows = 1 + random() % 40;
    std::vector<int64_t> capacity(links);
    for (auto& c : capacity) c = static_cast<int64_t>(1 + random() % 400) * kGBps / 8;
    std::vector<std::vector<uint32_t>> routes(flows);
    for (auto& route : routes) {
      std::vector<uint32_t> all(links);
      for (uint32_t l = 0; l < links; ++l) all[l] = l;
      std::shuffle(all.begin(), all.end(), random);
      route.assign(all.begin(), all.begin() + 1 + random() % std::min<uint32_t>(links, 4));
    }
    const auto rates = SolveWith(solver, Build(capacity, routes));

    std::vector<int64_t> load(links, 0), top(links, 0);
    std::vector<int64_t> crossing(links, 0);
    for (uint32_t f = 0; f < flows; ++f) {
      for (uint32_t l : routes[f]) {
        load[l] += rates[f];
        top[l] = std::max(top[l], rates[f]);
        ++crossing[l];
      }
    }
    for (uint32_t l = 0; l < links; ++l) ASSERT_LE(load[l], capacity[l]) << "trial " << trial;
    for (uint32_t f = 0; f < flows; ++f) {
      bool bottlenecked = false;
      for (uint32_t l : routes[f]) {
        // Saturated up to the rounding of each level (< one B/s per flow).
        if (capacity[l] - load[l] < crossing[l] && rates[f] == top[l]) bottlenecked = true;
      }
      ASSERT_TRUE(bottlenecked) << "trial " << trial << " flow " << f << " has no bottleneck";
    }

    std::vector<uint32_t> order(flows);
    for (uint32_t f = 0; f < flows; ++f) order[f] = f;
    std::shuffle(order.begin(), order.end(), random);
    std::vector<std::vector<uint32_t>> shuffled(flows);
    for (uint32_t i = 0; i < flows; ++i) shuffled[i] = routes[order[i]];
    const auto shuffled_rates = SolveWith(solver, Build(capacity, shuffled));
    for (uint32_t i = 0; i < flows; ++i) {
      ASSERT_EQ(shuffled_rates[i], rates[order[i]]) << "trial " << trial;
    }
  }
}

TEST(SharingProblemDeathTest, AVariableCannotUseAConstraintTwice) {
  SharingProblem problem;
  problem.AddConstraint(kGBps);
  problem.AddVariable();
  problem.AddUse(0);
  EXPECT_DEATH(problem.AddUse(0), "twice");
}

}  // namespace
}  // namespace orrery::sim
