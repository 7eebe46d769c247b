// Bandwidth-sharing solvers: given links (constraints) with capacities and
// flows (variables) that each cross a set of links, assign every flow a rate.
//
// This is SimGrid's "LMM" system in miniature (simgrid/simgrid,
// src/kernel/lmm): the flow model builds a SharingProblem for the flows
// whose sharing may have changed and asks a SharingSolver for their rates.
// The solver is an interface so that other sharing rules (weighted, bounded,
// the bottleneck approximation below) can be compared on one simulator.
//
// All quantities are integers in bytes per second (the unit is in every
// name), so a solve is exact and identical on every machine; the flow model
// converts to and from Bandwidth at its API.
//
// ---------------------------------------------------------------------------
// Weighted, bounded max-min fairness (MaxMinSolver)
//
// Let C_l be the capacity of link l, r_v the rate of variable v, w_vl >= 1
// the weight of v on l (v at rate r consumes w_vl·r of l: SimGrid's
// parallel-task model, src/kernel/resource/models/ptask_L07.cpp, where one
// action consumes given amounts of several resources; a ring collective
// whose edges cross a link twice has weight 2 there) and b_v its bound (a
// cap on r_v alone; none by default). A feasible allocation has
//     Σ_{v∋l} w_vl·r_v ≤ C_l  for every l,   r_v ≤ b_v  for every v.
// It is max-min fair if no r_v can grow without shrinking some r_u ≤ r_v;
// equivalently every v is either at its bound or has a *bottleneck* link
// l ∋ v that is saturated and on which r_v = max_{u∋l} r_u (Bertsekas &
// Gallager, Data Networks, 2nd ed., §6.5.2, where a bound is a link of its
// own crossed by v alone). It exists and is unique. With all weights 1 and
// no bounds it is the classic max-min fair allocation.
//
// Progressive filling computes it: raise all unfrozen rates together (one
// level t); link l then carries W_l·t more, W_l = Σ w_vl over its unfrozen
// variables, and saturates at t = R_l / W_l with R_l its capacity left; a
// bound b_v is reached at t = b_v. Repeat
//     l* = argmin_l  R_l / W_l            (over links with W_l > 0)
//     if the least unfrozen bound b_v ≤ R_l*/W_l*:   freeze v at b_v
//     else  s = ⌊R_l* / W_l*⌋;  freeze every unfrozen v ∋ l* at s
//     freezing v at s:  for each link k ∋ v:  R_k -= w_vk·s;  W_k -= w_vk
// until every variable is frozen. A bound is one more entry of the heap
// below, a one-variable link of capacity b_v and weight 1, ordered after
// the real links at an equal level. Invariants, each step:
//   (1) R_k ≥ 0 (capacity is never exceeded): s ≤ R_l*/W_l* ≤ R_k/W_k, and
//       the variables frozen weigh at most W_k on k.
//   (2) The levels chosen are non-decreasing: removing weight j at level
//       s ≤ R_k/W_k leaves (R_k − j·s)/(W_k − j) ≥ R_k/W_k.
//   (3) Every link keeps an entry in a min-heap keyed by the exact rational
//       R_l/W_l (compared as R_a·W_b < R_b·W_a in 128-bit integers), ties
//       broken by the lower constraint index (bounds after every link, by
//       variable index), so the order — and the result — is deterministic.
//       Entries made stale by an update are recognised by their (R, W), or
//       for a bound by its variable being frozen, and skipped.
// Rounding: each level is rounded down to an integer byte per second, so a
// bottleneck link may be left with fewer than W_l bytes per second unused
// (a thousand flows on a 50 GB/s link: under 1000 B/s, 2·10⁻⁸ of it).
// Later levels absorb that slack: on a link of 12 GB/s
// carrying one flow at 8/3 GB/s and two at the next level, the two get
// ⌊(12e9 − 2666666666)/2⌋ = 4666666667 B/s and the link sums to exactly 12e9.
// A variable of weight 2 and one of weight 1 on a link of 12 GB/s both get
// 12/3 = 4 GB/s (the link carries 2·4 + 4 = 12); bounding the second at
// 1 GB/s leaves the first (12 − 1)/2 = 5.5 GB/s.
// Cost: O((U + B) log(U + B)) for U (variable, link) incidences and B bounds.
//
// ---------------------------------------------------------------------------
// Bottleneck share (BottleneckShareSolver)
//
//     r_v = min(b_v, min_{l∋v} ⌊C_l / W_l⌋),   W_l = Σ_{u∋l} w_ul
// the share of the most crowded link, without redistributing what other
// variables leave unused: a lower bound of max-min used by analytical
// models. It exists here to compare against and to prove the interface
// pluggable.
//
// Both solvers give a variable alone in its problem
// min(b_v, min_{l∋v} ⌊C_l / w_vl⌋); the flow model relies on that to time a
// flow alone on its links without building a problem (see SharingSolver).
//
// Thread-safety: a solver keeps scratch space; use one per thread.
#ifndef ORRERY_SIM_SHARING_SOLVER_H_
#define ORRERY_SIM_SHARING_SOLVER_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace orrery::sim {

// Constraints (links) and variables (flows) in compressed form. Reusing one
// SharingProblem (Clear, then Add*) allocates nothing once it has grown.
class SharingProblem {
 public:
  void Clear();
  // Adds a constraint and returns its index. REQUIRES: capacity >= 0.
  uint32_t AddConstraint(int64_t capacity_bytes_per_s);
  // A variable with no bound of its own.
  static constexpr int64_t kUnbounded = INT64_MAX;
  // Starts a new variable and returns its index; AddUse then lists the
  // constraints it crosses. Its rate never exceeds `bound_bytes_per_s`
  // (a per-flow cap: a NIC queue pair, an NCCL channel's throughput).
  // REQUIRES: bound_bytes_per_s >= 0.
  uint32_t AddVariable(int64_t bound_bytes_per_s = kUnbounded);
  // Adds `constraint` to the variable added last with integer `weight`: a
  // variable at rate r consumes weight·r of the constraint (SimGrid's
  // parallel-task model, ptask_L07: one action, several resources, an
  // amount on each). A collective's ring crossing one link twice has weight
  // 2 there. REQUIRES: a variable was added; the constraint exists and is
  // not already used by that variable; weight >= 1.
  void AddUse(uint32_t constraint, uint32_t weight = 1);

  size_t num_constraints() const { return capacity_.size(); }
  size_t num_variables() const { return variable_begin_.size(); }
  int64_t capacity_bytes_per_s(uint32_t constraint) const { return capacity_[constraint]; }
  // The constraints variable `v` crosses.
  std::span<const uint32_t> UsesOf(uint32_t v) const;
  // Their weights, parallel to UsesOf(v).
  std::span<const uint32_t> WeightsOf(uint32_t v) const;
  int64_t bound_bytes_per_s(uint32_t v) const { return bound_[v]; }

 private:
  std::vector<int64_t> capacity_;
  std::vector<uint32_t> variable_begin_;  // start of each variable's uses
  std::vector<uint32_t> uses_;
  std::vector<uint32_t> weights_;  // parallel to uses_
  std::vector<int64_t> bound_;     // by variable
  // By constraint: 1 + the last variable that used it (0: none), so that
  // AddUse finds a repeated use in O(1) however many links a variable has.
  std::vector<uint32_t> last_user_;
};

class SharingSolver {
 public:
  virtual ~SharingSolver() = default;
  // Writes the rate of every variable of `problem` into
  // rates_bytes_per_s[v]. REQUIRES: rates_bytes_per_s.size() ==
  // problem.num_variables(); every variable uses at least one constraint.
  // A variable alone in a problem (no other variable on its constraints)
  // must get min(bound, min_l ⌊C_l / w_l⌋): FlowModel gives a flow alone on
  // its links that rate without calling the solver.
  virtual void Solve(const SharingProblem& problem, std::span<int64_t> rates_bytes_per_s) = 0;
};

// Weighted, bounded max-min fair sharing by progressive filling (see the
// header comment).
class MaxMinSolver final : public SharingSolver {
 public:
  void Solve(const SharingProblem& problem, std::span<int64_t> rates_bytes_per_s) override;

 private:
  struct Level {
    int64_t remaining;   // R_l when pushed; a bound: b_v
    uint64_t unfrozen;   // W_l when pushed; a bound: 1
    uint32_t constraint; // a link, or num_constraints + v for the bound of v
  };
  std::vector<int64_t> remaining_;
  std::vector<uint64_t> unfrozen_;  // W_l: Σ weights of unfrozen variables
  std::vector<uint32_t> constraint_begin_;  // CSR: variables of each constraint
  std::vector<uint32_t> constraint_variables_;
  std::vector<uint8_t> frozen_;
  std::vector<Level> heap_;
};

// Each flow gets the equal share of its most crowded link (see above).
class BottleneckShareSolver final : public SharingSolver {
 public:
  void Solve(const SharingProblem& problem, std::span<int64_t> rates_bytes_per_s) override;

 private:
  std::vector<uint64_t> crossing_;  // W_l
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_SHARING_SOLVER_H_
