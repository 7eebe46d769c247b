#include "sim/sharing_solver.h"

#include <algorithm>
#include <cstdint>

#include "core/check.h"

namespace orrery::sim {

void SharingProblem::Clear() {
  capacity_.clear();
  variable_begin_.clear();
  uses_.clear();
}

uint32_t SharingProblem::AddConstraint(int64_t capacity_bytes_per_s) {
  ORRERY_CHECK(capacity_bytes_per_s >= 0) << "negative capacity " << capacity_bytes_per_s;
  capacity_.push_back(capacity_bytes_per_s);
  return static_cast<uint32_t>(capacity_.size() - 1);
}

uint32_t SharingProblem::AddVariable() {
  variable_begin_.push_back(static_cast<uint32_t>(uses_.size()));
  return static_cast<uint32_t>(variable_begin_.size() - 1);
}

void SharingProblem::AddUse(uint32_t constraint) {
  ORRERY_CHECK(!variable_begin_.empty()) << "a use before any variable";
  ORRERY_CHECK(constraint < capacity_.size())
      << "constraint " << constraint << " of " << capacity_.size();
  for (size_t i = variable_begin_.back(); i < uses_.size(); ++i) {
    ORRERY_CHECK(uses_[i] != constraint) << "variable uses constraint " << constraint << " twice";
  }
  uses_.push_back(constraint);
}

std::span<const uint32_t> SharingProblem::UsesOf(uint32_t v) const {
  const size_t begin = variable_begin_[v];
  const size_t end = v + 1 < variable_begin_.size() ? variable_begin_[v + 1] : uses_.size();
  return std::span<const uint32_t>(uses_.data() + begin, end - begin);
}

namespace {

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
  for (uint32_t v = 0; v < nv; ++v) {
    for (uint32_t c : problem.UsesOf(v)) ++unfrozen_[c];
  }
  // Variables of each constraint, in variable order (CSR).
  constraint_begin_.assign(nc + 1, 0);
  for (uint32_t c = 0; c < nc; ++c) constraint_begin_[c + 1] = constraint_begin_[c] + unfrozen_[c];
  constraint_variables_.resize(constraint_begin_[nc]);
  for (uint32_t v = 0; v < nv; ++v) {
    for (uint32_t c : problem.UsesOf(v)) {
      // unfrozen_ doubles as the fill cursor, counting down; restored below.
      constraint_variables_[constraint_begin_[c] + --unfrozen_[c]] = v;
    }
  }
  for (uint32_t c = 0; c < nc; ++c) unfrozen_[c] = constraint_begin_[c + 1] - constraint_begin_[c];
  frozen_.assign(nv, 0);

  // Min-heap on R/n (exact), ties by constraint index: std heap functions
  // keep the max at the front, so `later` orders "fires later" first.
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
  std::make_heap(heap_.begin(), heap_.end(), later);

  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    const Level level = heap_.back();
    heap_.pop_back();
    const uint32_t c = level.constraint;
    if (unfrozen_[c] == 0 || level.remaining != remaining_[c] || level.unfrozen != unfrozen_[c]) {
      continue;  // stale: the link changed since this entry was pushed
    }
    const int64_t share = remaining_[c] / unfrozen_[c];
    for (uint32_t i = constraint_begin_[c]; i < constraint_begin_[c + 1]; ++i) {
      const uint32_t v = constraint_variables_[i];
      if (frozen_[v]) continue;
      frozen_[v] = 1;
      rates[v] = share;
      for (uint32_t k : problem.UsesOf(v)) {
        remaining_[k] -= share;
        --unfrozen_[k];
        if (k != c && unfrozen_[k] > 0) {
          heap_.push_back(Level{remaining_[k], unfrozen_[k], k});
          std::push_heap(heap_.begin(), heap_.end(), later);
        }
      }
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
    for (uint32_t c : problem.UsesOf(v)) ++crossing_[c];
  }
  for (uint32_t v = 0; v < nv; ++v) {
    int64_t rate = INT64_MAX;
    for (uint32_t c : problem.UsesOf(v)) {
      rate = std::min(rate, problem.capacity_bytes_per_s(c) / crossing_[c]);
    }
    rates[v] = rate;
  }
}

}  // namespace orrery::sim
