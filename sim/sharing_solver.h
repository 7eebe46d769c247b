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
// Max-min fairness (MaxMinSolver)
//
// Let C_l be the capacity of link l, F_l the flows crossing it, r_f the rate
// of flow f. A feasible allocation has  Σ_{f∈F_l} r_f ≤ C_l  for every l. It
// is max-min fair if no r_f can grow without shrinking some r_g ≤ r_f;
// equivalently every flow f has a *bottleneck* link l ∋ f that is saturated
// (Σ_{F_l} r = C_l) and on which r_f = max_{g∈F_l} r_g (Bertsekas & Gallager,
// Data Networks, 2nd ed., §6.5.2). It exists and is unique.
//
// Progressive filling computes it: raise all unfrozen rates together; when a
// link saturates, freeze its flows. Equivalently, with R_l the capacity left
// on l and n_l its unfrozen flows, repeat
//     l* = argmin_l  R_l / n_l            (over links with n_l > 0)
//     s  = ⌊R_l* / n_l*⌋
//     for each unfrozen f ∈ F_l*:  r_f = s;  for each link k ∋ f:
//                                   R_k -= s;  n_k -= 1
// until every flow is frozen. Invariants, each step:
//   (1) R_k ≥ 0 (capacity is never exceeded): s ≤ R_l*/n_l* ≤ R_k/n_k.
//   (2) The fair levels chosen are non-decreasing: removing j flows at level
//       s ≤ R_k/n_k leaves (R_k − j·s)/(n_k − j) ≥ R_k/n_k.
//   (3) Every link keeps an entry in a min-heap keyed by the exact rational
//       R_l/n_l (compared as R_a·n_b < R_b·n_a in 128-bit integers), ties
//       broken by the lower constraint index, so the order — and the
//       result — is deterministic. Entries made stale by an update are
//       recognised by their (R, n) and skipped.
// Rounding: each level is rounded down to an integer byte per second, so a
// bottleneck link may be left with fewer than n_l bytes per second unused
// (a thousand flows on a 50 GB/s link: under 1000 B/s, 2·10⁻⁸ of it).
// Later levels absorb that slack: on a link of 12 GB/s
// carrying one flow at 8/3 GB/s and two at the next level, the two get
// ⌊(12e9 − 2666666666)/2⌋ = 4666666667 B/s and the link sums to exactly 12e9.
// Cost: O(U log U) for U (flow, link) incidences.
//
// ---------------------------------------------------------------------------
// Bottleneck share (BottleneckShareSolver)
//
//     r_f = min_{l∋f} ⌊C_l / |F_l|⌋
// the share of the most crowded link, without redistributing what other
// flows leave unused: a lower bound of max-min used by analytical models. It
// exists here to compare against and to prove the interface pluggable.
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
  // Starts a new variable and returns its index; AddUse then lists the
  // constraints it crosses.
  uint32_t AddVariable();
  // Adds `constraint` to the variable added last. REQUIRES: a variable was
  // added; the constraint exists and is not already used by that variable.
  void AddUse(uint32_t constraint);

  size_t num_constraints() const { return capacity_.size(); }
  size_t num_variables() const { return variable_begin_.size(); }
  int64_t capacity_bytes_per_s(uint32_t constraint) const { return capacity_[constraint]; }
  // The constraints variable `v` crosses.
  std::span<const uint32_t> UsesOf(uint32_t v) const;

 private:
  std::vector<int64_t> capacity_;
  std::vector<uint32_t> variable_begin_;  // start of each variable's uses
  std::vector<uint32_t> uses_;
};

class SharingSolver {
 public:
  virtual ~SharingSolver() = default;
  // Writes the rate of every variable of `problem` into
  // rates_bytes_per_s[v]. REQUIRES: rates_bytes_per_s.size() ==
  // problem.num_variables(); every variable uses at least one constraint.
  virtual void Solve(const SharingProblem& problem, std::span<int64_t> rates_bytes_per_s) = 0;
};

// Max-min fair sharing by progressive filling (see the header comment).
class MaxMinSolver final : public SharingSolver {
 public:
  void Solve(const SharingProblem& problem, std::span<int64_t> rates_bytes_per_s) override;

 private:
  struct Level {
    int64_t remaining;   // R_l when pushed
    uint32_t unfrozen;   // n_l when pushed
    uint32_t constraint;
  };
  std::vector<int64_t> remaining_;
  std::vector<uint32_t> unfrozen_;
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
  std::vector<uint32_t> crossing_;
};

}  // namespace orrery::sim

#endif  // ORRERY_SIM_SHARING_SOLVER_H_
