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

// A variable of weight 2 and one of weight 1 on a 12 GB/s link rise
// together until 2r + r = 12: both get 4 GB/s and the link carries 12.
TEST(MaxMinSolver, AWeightedVariableConsumesItsWeightTimesItsRate) {
  SharingProblem problem;
  problem.AddConstraint(12 * kGBps);
  problem.AddVariable();
  problem.AddUse(0, 2);
  problem.AddVariable();
  problem.AddUse(0, 1);
  MaxMinSolver solver;
  const auto rates = SolveWith(solver, problem);
  EXPECT_EQ(rates, (std::vector<int64_t>{4 * kGBps, 4 * kGBps}));
  EXPECT_EQ(2 * rates[0] + rates[1], 12 * kGBps);
}

// Weights on two links: f0 crosses L0 (10 GB/s) with weight 3 and L1
// (12 GB/s) with weight 1; f1 crosses L1 with weight 2. Levels: L0 10/3,
// L1 12/3 = 4. L0 first: f0 = ⌊10e9/3⌋ = 3333333333. L1 then has
// 12e9 - 3333333333 = 8666666667 for f1's weight 2: f1 = 4333333333
// (one B/s of L1 left by rounding down).
TEST(MaxMinSolver, WeightsOnSeveralLinksFollowProgressiveFilling) {
  SharingProblem problem;
  problem.AddConstraint(10 * kGBps);
  problem.AddConstraint(12 * kGBps);
  problem.AddVariable();
  problem.AddUse(0, 3);
  problem.AddUse(1, 1);
  problem.AddVariable();
  problem.AddUse(1, 2);
  MaxMinSolver solver;
  EXPECT_EQ(SolveWith(solver, problem), (std::vector<int64_t>{3333333333, 4333333333}));
}

// The same weighted pair with the weight-1 variable bounded at 1 GB/s: it
// freezes at its bound below the fair level 4, and the weight-2 variable
// takes the rest, (12 - 1) / 2 = 5.5 GB/s; the link still carries 12.
TEST(MaxMinSolver, ABoundBelowTheFairShareFreesCapacityForTheOthers) {
  SharingProblem problem;
  problem.AddConstraint(12 * kGBps);
  problem.AddVariable();
  problem.AddUse(0, 2);
  problem.AddVariable(1 * kGBps);
  problem.AddUse(0, 1);
  MaxMinSolver solver;
  EXPECT_EQ(SolveWith(solver, problem), (std::vector<int64_t>{5'500'000'000, 1 * kGBps}));
}

// A bound above the fair share changes nothing; a bound on a variable
// alone caps it below its link; a bound equal to the fair level gives the
// same result either way.
TEST(MaxMinSolver, ABoundAboveTheShareIsInertAndABoundAloneCaps) {
  MaxMinSolver solver;
  SharingProblem problem;
  problem.AddConstraint(100 * kGBps);
  problem.AddVariable(80 * kGBps);
  problem.AddUse(0);
  problem.AddVariable();
  problem.AddUse(0);
  EXPECT_EQ(SolveWith(solver, problem), (std::vector<int64_t>{50 * kGBps, 50 * kGBps}));

  problem.Clear();
  problem.AddConstraint(100 * kGBps);
  problem.AddVariable(30 * kGBps);
  problem.AddUse(0);
  EXPECT_EQ(SolveWith(solver, problem), (std::vector<int64_t>{30 * kGBps}));

  problem.Clear();
  problem.AddConstraint(100 * kGBps);
  problem.AddVariable(50 * kGBps);
  problem.AddUse(0);
  problem.AddVariable(50 * kGBps);
  problem.AddUse(0);
  EXPECT_EQ(SolveWith(solver, problem), (std::vector<int64_t>{50 * kGBps, 50 * kGBps}));
}

// Bounds on the classic example: f1 bounded at 1 GB/s, below every fair
// level, freezes first; L1 (8/3) is next: f0 = f2 = f3 = 2666666666; f4
// takes what L2 has left, 12e9 - 1e9 - 2666666666 = 8333333334 B/s
// (25/3 GB/s), where max-min without the bound gave it 14/3.
TEST(MaxMinSolver, BoundsOnTheClassicExample) {
  SharingProblem problem;
  problem.AddConstraint(10 * kGBps);
  problem.AddConstraint(8 * kGBps);
  problem.AddConstraint(12 * kGBps);
  const std::vector<std::vector<uint32_t>> routes = {{0, 1, 2}, {0, 2}, {1}, {1}, {2}};
  for (size_t v = 0; v < routes.size(); ++v) {
    problem.AddVariable(v == 1 ? kGBps : SharingProblem::kUnbounded);
    for (uint32_t c : routes[v]) problem.AddUse(c);
  }
  MaxMinSolver solver;
  EXPECT_EQ(SolveWith(solver, problem),
            (std::vector<int64_t>{2666666666, kGBps, 2666666666, 2666666666, 8333333334}));
}

// Random weighted, bounded problems: feasible (weighted loads within
// capacity, rates within bounds), fair (every variable is at its bound or
// has a saturated bottleneck where it is the largest), order independent.
TEST(MaxMinSolver, RandomWeightedBoundedProblemsAreFeasibleFairAndOrderIndependent) {
  std::mt19937 random(17);
  MaxMinSolver solver;
  for (int trial = 0; trial < 200; ++trial) {
    const uint32_t links = 1 + random() % 10;
    const uint32_t flows = 1 + random() % 30;
    std::vector<int64_t> capacity(links);
    for (auto& c : capacity) c = static_cast<int64_t>(1 + random() % 400) * kGBps / 8;
    std::vector<std::vector<uint32_t>> routes(flows);
    std::vector<std::vector<uint32_t>> weights(flows);
    std::vector<int64_t> bounds(flows);
    for (uint32_t f = 0; f < flows; ++f) {
      std::vector<uint32_t> all(links);
      for (uint32_t l = 0; l < links; ++l) all[l] = l;
      std::shuffle(all.begin(), all.end(), random);
      routes[f].assign(all.begin(), all.begin() + 1 + random() % std::min<uint32_t>(links, 4));
      for (size_t i = 0; i < routes[f].size(); ++i) weights[f].push_back(1 + random() % 4);
      bounds[f] = random() % 3 == 0 ? static_cast<int64_t>(random() % 20) * kGBps / 4
                                    : SharingProblem::kUnbounded;
    }
    const auto build = [&](const std::vector<uint32_t>& order) {
      SharingProblem problem;
      for (int64_t c : capacity) problem.AddConstraint(c);
      for (uint32_t f : order) {
        problem.AddVariable(bounds[f]);
        for (size_t i = 0; i < routes[f].size(); ++i) problem.AddUse(routes[f][i], weights[f][i]);
      }
      return problem;
    };
    std::vector<uint32_t> order(flows);
    for (uint32_t f = 0; f < flows; ++f) order[f] = f;
    const auto rates = SolveWith(solver, build(order));

    std::vector<int64_t> load(links, 0), top(links, 0), weight(links, 0);
    for (uint32_t f = 0; f < flows; ++f) {
      ASSERT_LE(rates[f], bounds[f]) << "trial " << trial;
      for (size_t i = 0; i < routes[f].size(); ++i) {
        load[routes[f][i]] += weights[f][i] * rates[f];
        weight[routes[f][i]] += weights[f][i];
        top[routes[f][i]] = std::max(top[routes[f][i]], rates[f]);
      }
    }
    for (uint32_t l = 0; l < links; ++l) ASSERT_LE(load[l], capacity[l]) << "trial " << trial;
    for (uint32_t f = 0; f < flows; ++f) {
      bool bottlenecked = rates[f] == bounds[f];
      for (uint32_t l : routes[f]) {
        // Saturated up to the rounding of each level (< one B/s per weight).
        if (capacity[l] - load[l] < weight[l] && rates[f] == top[l]) bottlenecked = true;
      }
      ASSERT_TRUE(bottlenecked) << "trial " << trial << " flow " << f << " has no bottleneck";
    }

    std::shuffle(order.begin(), order.end(), random);
    const auto shuffled_rates = SolveWith(solver, build(order));
    for (uint32_t i = 0; i < flows; ++i) {
      ASSERT_EQ(shuffled_rates[i], rates[order[i]]) << "trial " << trial;
    }
  }
}

TEST(BottleneckShareSolver, CountsWeightsAndBounds) {
  // Weight 2 and weight 1 on 12 GB/s: W = 3, each gets ⌊12/3⌋ = 4; with
  // the second bounded at 1 GB/s it gets 1 and the first still 4 (no
  // redistribution).
  SharingProblem problem;
  problem.AddConstraint(12 * kGBps);
  problem.AddVariable();
  problem.AddUse(0, 2);
  problem.AddVariable(kGBps);
  problem.AddUse(0, 1);
  BottleneckShareSolver solver;
  EXPECT_EQ(SolveWith(solver, problem), (std::vector<int64_t>{4 * kGBps, kGBps}));
}

// Both solvers give a variable alone min(bound, min_l ⌊C_l / w_l⌋), which
// the flow model's fast path for a lone flow relies on.
TEST(SharingSolver, AVariableAloneGetsItsBoundOrItsTightestLinkOverItsWeight) {
  MaxMinSolver max_min;
  BottleneckShareSolver bottleneck;
  for (const int64_t bound : {SharingProblem::kUnbounded, 3 * kGBps, 2 * kGBps}) {
    SharingProblem problem;
    problem.AddConstraint(10 * kGBps);
    problem.AddConstraint(7 * kGBps);
    problem.AddVariable(bound);
    problem.AddUse(0, 4);  // 2.5 GB/s
    problem.AddUse(1, 3);  // 2333333333 B/s
    const std::vector<int64_t> expected = {std::min<int64_t>(bound, 2333333333)};
    EXPECT_EQ(SolveWith(max_min, problem), expected);
    EXPECT_EQ(SolveWith(bottleneck, problem), expected);
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
