#include "sim/sharing_solver.h"

#include <algorithm>
#include <cstdint>

#include "core/check.h"

namespace orrery::sim {

void SharingProblem::Clear() {
  capacity_.clear();
  variable_begin_.clear();
  uses_.clear();
  weights_.clear();
  bound_.clear();
  last_user_.clear();
}

uint32_t SharingProblem::AddConstraint(int64_t capacity_bytes_per_s) {
  ORRERY_CHECK(capacity_bytes_per_s >= 0) << "negative capacity " << capacity_bytes_per_s;
  capacity_.push_back(capacity_bytes_per_s);
  last_user_.push_back(0);
  return static_cast<uint32_t>(capacity_.size() - 1);
}

uint32_t SharingProblem::AddVariable(int64_t bound_bytes_per_s) {
  ORRERY_CHECK(bound_bytes_per_s >= 0) << "negative bound " << bound_bytes_per_s;
  bound_.push_back(bound_bytes_per_s);
  variable_begin_.push_back(static_cast<uint32_t>(uses_.size()));
  return static_cast<uint32_t>(variable_begin_.size() - 1);
}

void SharingProblem::AddUse(uint32_t constraint, uint32_t weight) {
  ORRERY_CHECK(weight >= 1) << "weight " << weight;
  ORRERY_CHECK(!variable_begin_.empty()) << "a use before any variable";
  ORRERY_CHECK(constraint < capacity_.size())
      << "constraint " << constraint << " of " << capacity_.size();
  const uint32_t user = static_cast<uint32_t>(variable_begin_.size());  // 1 + the variable
  ORRERY_CHECK(last_user_[constraint] != user)
      << "variable uses constraint " << constraint << " twice";
  last_user_[constraint] = user;
  uses_.push_back(constraint);
  weights_.push_back(weight);
}

std::span<const uint32_t> SharingProblem::WeightsOf(uint32_t v) const {
  const size_t begin = variable_begin_[v];
  const size_t end = v + 1 < variable_begin_.size() ? variable_begin_[v + 1] : uses_.size();
  return std::span<const uint32_t>(weights_.data() + begin, end - begin);
}

std::span<const uint32_t> SharingProblem::UsesOf(uint32_t v) const {
  const size_t begin = variable_begin_[v];
  const size_t end = v + 1 < variable_begin_.size() ? variable_begin_[v + 1] : uses_.size();
  return std::span<const uint32_t>(uses_.data() + begin, end - begin);
}

namespace {

// Few variables (a training iteration's components: a handful of coflows
// on a few dozen links they share) take at most one step each; finding
// each step's link by a scan of the links still loaded costs less than
// keeping a heap whose entries mostly go stale. Both orders are the same
// total order (exact R/W, then constraint index, bounds after links), so
// both fire the same steps and give the same rates.
constexpr uint32_t kMaxScannedVariables = 32;

void CheckShape(const SharingProblem& problem, std::span<int64_t> rates) {
  ORRERY_CHECK_EQ(rates.size(), problem.num_variables());
  for (uint32_t v = 0; v < problem.num_variables(); ++v) {
    ORRERY_CHECK(!problem.UsesOf(v).empty()) << "variable " << v << " crosses no constraint";
  }
}

}  // namespace

void MaxMinSolver::Solve(const SharingProblem& problem, std::span<int64_t> rates) {
  CheckShape(problem, rates);
  const uint32_t nc = static_cast<uint32_t>(problem.num_constraints());
  const uint32_t nv = static_cast<uint32_t>(problem.num_variables());

  remaining_.assign(nc, 0);
  unfrozen_.assign(nc, 0);
  for (uint32_t c = 0; c < nc; ++c) remaining_[c] = problem.capacity_bytes_per_s(c);
  // Variables of each constraint, in variable order (CSR).
  constraint_begin_.assign(nc + 1, 0);
  for (uint32_t v = 0; v < nv; ++v) {
    const std::span<const uint32_t> uses = problem.UsesOf(v);
    const std::span<const uint32_t> weights = problem.WeightsOf(v);
    for (size_t i = 0; i < uses.size(); ++i) {
      ++constraint_begin_[uses[i] + 1];
      unfrozen_[uses[i]] += weights[i];
    }
  }
  for (uint32_t c = 0; c < nc; ++c) constraint_begin_[c + 1] += constraint_begin_[c];
  constraint_variables_.resize(constraint_begin_[nc]);
  // Fill from the back of each range, variables in reverse: each range ends
  // up in variable order, and constraint_begin_ back at each range's start.
  for (uint32_t c = 0; c < nc; ++c) constraint_begin_[c] = constraint_begin_[c + 1];
  for (uint32_t v = nv; v-- > 0;) {
    for (uint32_t c : problem.UsesOf(v)) constraint_variables_[--constraint_begin_[c]] = v;
  }
  frozen_.assign(nv, 0);
  if (nv <= kMaxScannedVariables) {
    // Each step found by a scan (see kMaxScannedVariables). heap_ holds, in
    // firing order, the bounds (R: the bound, W: 1, constraint: the
    // variable), then the links with unfrozen variables (constraint: the
    // link), in any order.
    heap_.clear();
    for (uint32_t v = 0; v < nv; ++v) {
      const int64_t bound = problem.bound_bytes_per_s(v);
      if (bound != SharingProblem::kUnbounded) heap_.push_back(Level{bound, 1, v});
    }
    std::sort(heap_.begin(), heap_.end(), [](const Level& a, const Level& b) {
      return a.remaining != b.remaining ? a.remaining < b.remaining : a.constraint < b.constraint;
    });
    const size_t num_bounds = heap_.size();
    size_t next_bound = 0;
    for (uint32_t c = 0; c < nc; ++c) {
      if (unfrozen_[c] > 0) heap_.push_back(Level{0, 0, c});
    }

    const auto freeze = [&](uint32_t v, int64_t rate) {
      frozen_[v] = 1;
      rates[v] = rate;
      const std::span<const uint32_t> uses = problem.UsesOf(v);
      const std::span<const uint32_t> weights = problem.WeightsOf(v);
      for (size_t i = 0; i < uses.size(); ++i) {
        remaining_[uses[i]] -= static_cast<int64_t>(weights[i]) * rate;
        unfrozen_[uses[i]] -= weights[i];
      }
    };
    while (true) {
      // The loaded link of least R/W, ties to the lower index; links whose
      // variables are all frozen leave the list.
      uint32_t best = nc;
      for (size_t i = num_bounds; i < heap_.size();) {
        const uint32_t c = heap_[i].constraint;
        if (unfrozen_[c] == 0) {
          heap_[i] = heap_.back();
          heap_.pop_back();
          continue;
        }
        ++i;
        if (best == nc) {
          best = c;
          continue;
        }
        const __int128 lhs = static_cast<__int128>(remaining_[c]) * unfrozen_[best];
        const __int128 rhs = static_cast<__int128>(remaining_[best]) * unfrozen_[c];
        if (lhs < rhs || (lhs == rhs && c < best)) best = c;
      }
      while (next_bound < num_bounds && frozen_[heap_[next_bound].constraint]) ++next_bound;
      if (next_bound < num_bounds) {
        const Level& bound = heap_[next_bound];
        // A bound fires first only below the link's level: at an equal level
        // the link does.
        if (best == nc ||
            static_cast<__int128>(bound.remaining) * unfrozen_[best] < remaining_[best]) {
          ++next_bound;
          freeze(bound.constraint, bound.remaining);
          continue;
        }
      }
      if (best == nc) break;
      const int64_t share = remaining_[best] / static_cast<int64_t>(unfrozen_[best]);
      for (uint32_t i = constraint_begin_[best]; i < constraint_begin_[best + 1]; ++i) {
        const uint32_t v = constraint_variables_[i];
        if (!frozen_[v]) freeze(v, share);
      }
      ORRERY_CHECK_EQ(unfrozen_[best], 0u);
    }
    return;
  }

  // Min-heap on R/W (exact), ties by constraint index (bounds, numbered
  // from nc, after every link): std heap functions keep the max at the
  // front, so `later` orders "fires later" first.
  const auto later = [](const Level& a, const Level& b) {
    const __int128 lhs = static_cast<__int128>(a.remaining) * b.unfrozen;
    const __int128 rhs = static_cast<__int128>(b.remaining) * a.unfrozen;
    if (lhs != rhs) return lhs > rhs;
    return a.constraint > b.constraint;
  };
  heap_.clear();
  for (uint32_t c = 0; c < nc; ++c) {
    if (unfrozen_[c] > 0) heap_.push_back(Level{remaining_[c], unfrozen_[c], c});
  }
  for (uint32_t v = 0; v < nv; ++v) {
    const int64_t bound = problem.bound_bytes_per_s(v);
    if (bound != SharingProblem::kUnbounded) heap_.push_back(Level{bound, 1, nc + v});
  }
  std::make_heap(heap_.begin(), heap_.end(), later);

  // Freezes variable v at `rate`, taking its consumption off every link it
  // crosses except `firing` (whose entry is being consumed).
  const auto freeze = [&](uint32_t v, int64_t rate, uint32_t firing) {
    frozen_[v] = 1;
    rates[v] = rate;
    const std::span<const uint32_t> uses = problem.UsesOf(v);
    const std::span<const uint32_t> weights = problem.WeightsOf(v);
    for (size_t i = 0; i < uses.size(); ++i) {
      const uint32_t k = uses[i];
      remaining_[k] -= static_cast<int64_t>(weights[i]) * rate;
      unfrozen_[k] -= weights[i];
      if (k != firing && unfrozen_[k] > 0) {
        heap_.push_back(Level{remaining_[k], unfrozen_[k], k});
        std::push_heap(heap_.begin(), heap_.end(), later);
      }
    }
  };

  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    const Level level = heap_.back();
    heap_.pop_back();
    const uint32_t c = level.constraint;
    if (c >= nc) {  // the bound of variable c - nc
      if (!frozen_[c - nc]) freeze(c - nc, level.remaining, nc);
      continue;
    }
    if (unfrozen_[c] == 0 || level.remaining != remaining_[c] || level.unfrozen != unfrozen_[c]) {
      continue;  // stale: the link changed since this entry was pushed
    }
    const int64_t share = static_cast<int64_t>(remaining_[c] / static_cast<int64_t>(unfrozen_[c]));
    for (uint32_t i = constraint_begin_[c]; i < constraint_begin_[c + 1]; ++i) {
      const uint32_t v = constraint_variables_[i];
      if (!frozen_[v]) freeze(v, share, c);
    }
    ORRERY_CHECK_EQ(unfrozen_[c], 0u);
  }
}

void BottleneckShareSolver::Solve(const SharingProblem& problem, std::span<int64_t> rates) {
  CheckShape(problem, rates);
  const uint32_t nc = static_cast<uint32_t>(problem.num_constraints());
  const uint32_t nv = static_cast<uint32_t>(problem.num_variables());
  crossing_.assign(nc, 0);
  for (uint32_t v = 0; v < nv; ++v) {
    const std::span<const uint32_t> uses = problem.UsesOf(v);
    const std::span<const uint32_t> weights = problem.WeightsOf(v);
    for (size_t i = 0; i < uses.size(); ++i) crossing_[uses[i]] += weights[i];
  }
  for (uint32_t v = 0; v < nv; ++v) {
    int64_t rate = problem.bound_bytes_per_s(v);
    for (uint32_t c : problem.UsesOf(v)) {
      rate = std::min(rate, problem.capacity_bytes_per_s(c) / static_cast<int64_t>(crossing_[c]));
    }
    rates[v] = rate;
  }
}

}  // namespace orrery::sim
