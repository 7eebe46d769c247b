#include "costmodel/collective_calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include <Eigen/Dense>

namespace orrery::costmodel {
namespace {

struct Point {
  double size;     // bytes
  double time_us;  // measured
};

struct LineFit {
  double alpha_us = 0;
  double us_per_byte = 0;  // 0: latency only
  double max_rel = 0;
};

double RelError(const LineFit& f, const Point& p) {
  return std::abs((f.alpha_us + f.us_per_byte * p.size) / p.time_us - 1.0);
}

// Weighted least squares of time = α + b·size over points [i, j), weights
// 1/time; α and b kept non-negative.
LineFit FitLine(const std::vector<Point>& pts, size_t i, size_t j) {
  const Eigen::Index m = static_cast<Eigen::Index>(j - i);
  Eigen::MatrixXd a(m, 2);
  Eigen::VectorXd y(m);
  for (Eigen::Index k = 0; k < m; ++k) {
    const Point& p = pts[i + static_cast<size_t>(k)];
    a(k, 0) = 1.0 / p.time_us;
    a(k, 1) = p.size / p.time_us;
    y(k) = 1.0;
  }
  LineFit f;
  // Scale the size column so the system is well conditioned.
  double scale = std::max(1.0, a.col(1).cwiseAbs().maxCoeff());
  a.col(1) /= scale;
  Eigen::Vector2d x = a.colPivHouseholderQr().solve(y);
  f.alpha_us = x(0);
  f.us_per_byte = x(1) / scale;
  if (f.us_per_byte <= 0) {  // flat: latency only
    f.us_per_byte = 0;
    f.alpha_us = a.col(0).dot(y) / a.col(0).squaredNorm();
  } else if (f.alpha_us < 0) {  // through the origin
    f.alpha_us = 0;
    f.us_per_byte = a.col(1).dot(y) / a.col(1).squaredNorm() / scale;
  }
  for (size_t k = i; k < j; ++k) f.max_rel = std::max(f.max_rel, RelError(f, pts[k]));
  return f;
}

// Cuts points into exactly k contiguous ranges of >= 2 points minimising the
// largest relative error; returns the range ends.
std::vector<size_t> Segment(const std::vector<Point>& pts, int k, double* worst) {
  const size_t n = pts.size();
  const double inf = std::numeric_limits<double>::infinity();
  // cost[i][j]: max relative error fitting [i, j).
  std::vector<std::vector<double>> cost(n + 1, std::vector<double>(n + 1, inf));
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 2; j <= n; ++j) cost[i][j] = FitLine(pts, i, j).max_rel;
  }
  // best[c][j]: least worst error of the first j points in c ranges.
  std::vector<std::vector<double>> best(k + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<size_t>> from(k + 1, std::vector<size_t>(n + 1, 0));
  best[0][0] = 0;
  for (int c = 1; c <= k; ++c) {
    for (size_t j = 2; j <= n; ++j) {
      for (size_t i = 0; i + 2 <= j; ++i) {
        double v = std::max(best[c - 1][i], cost[i][j]);
        if (v < best[c][j]) {
          best[c][j] = v;
          from[c][j] = i;
        }
      }
    }
  }
  *worst = best[k][n];
  std::vector<size_t> ends;
  if (!std::isfinite(*worst)) return ends;
  size_t j = n;
  for (int c = k; c >= 1; --c) {
    ends.push_back(j);
    j = from[c][j];
  }
  std::reverse(ends.begin(), ends.end());
  return ends;
}

// Fits time(size) points of `op` measured on `group`: the regimes by
// dynamic programming, each labelled with the nominal model's choice.
Result<FittedCollective> FitPoints(std::vector<Point> pts, CollectiveOp op, const RankGroup& group,
                                   const std::string& source, const CollectiveModel& nominal,
                                   const CollectiveFitOptions& options) {
  std::stable_sort(pts.begin(), pts.end(),
                   [](const Point& a, const Point& b) { return a.size < b.size; });

  const int max_k =
      std::max(1, std::min(options.max_regimes, static_cast<int>(pts.size()) / 2));
  std::vector<size_t> ends;
  double best_worst = std::numeric_limits<double>::infinity();
  for (int k = 1; k <= max_k; ++k) {
    double worst = 0;
    std::vector<size_t> e = Segment(pts, k, &worst);
    if (e.empty()) continue;
    if (worst < best_worst - 1e-12) {
      best_worst = worst;
      ends = e;
    }
    if (worst <= options.target_max_relative_error) break;
  }

  FittedCollective fit;
  fit.op = op;
  fit.ranks = group.Size();
  fit.nodes = group.nodes;
  fit.source = source;
  const double factor = traces::BusBandwidthFactor(fit.op, fit.ranks);
  std::vector<std::pair<size_t, size_t>> ranges;
  size_t begin = 0;
  for (size_t end : ends) {
    ranges.emplace_back(begin, end);
    LineFit line = FitLine(pts, begin, end);
    FittedRegime r;
    r.min_size = Bytes(static_cast<int64_t>(pts[begin].size));
    r.max_size = Bytes(static_cast<int64_t>(pts[end - 1].size));
    r.latency = Micros(line.alpha_us);
    r.busbw = line.us_per_byte > 0 ? GBps(1e-3 / line.us_per_byte * factor) : Bandwidth::Zero();
    r.points = static_cast<int>(end - begin);
    r.max_relative_error = line.max_rel;
    Bytes middle(static_cast<int64_t>(std::sqrt(pts[begin].size * pts[end - 1].size)));
    Result<std::vector<CollectiveEstimate>> cands =
        nominal.NominalCandidates(fit.op, middle, group);
    if (cands.ok() && !cands->empty()) {
      r.algorithm = cands->front().algorithm;
      r.protocol = cands->front().protocol;
    }
    fit.regimes.push_back(r);
    begin = end;
  }
  // A latency-only regime (flat times) takes the bandwidth of the fastest
  // regime, and its latency is refitted (same weights) with that bandwidth
  // term subtracted: at nccl-tests' smallest sizes the term is negligible,
  // but a flat stretch at MiB sizes (Galvatron's all-to-all at 1-4 MiB)
  // would otherwise be overestimated by it.
  Bandwidth fastest = Bandwidth::Zero();
  for (const FittedRegime& r : fit.regimes) fastest = std::max(fastest, r.busbw);
  if (fastest <= Bandwidth::Zero()) {
    return InvalidArgumentError(source + ": times do not grow with size; no bandwidth to fit");
  }
  const double us_per_byte = 1e-3 / (fastest.ToGBps() / factor);
  for (size_t i = 0; i < fit.regimes.size(); ++i) {
    FittedRegime& r = fit.regimes[i];
    if (r.busbw > Bandwidth::Zero()) continue;
    r.busbw = fastest;
    double num = 0, den = 0;
    for (size_t k = ranges[i].first; k < ranges[i].second; ++k) {
      const Point& p = pts[k];
      num += (1.0 - us_per_byte * p.size / p.time_us) / p.time_us;
      den += 1.0 / (p.time_us * p.time_us);
    }
    LineFit line{std::max(0.0, num / den), us_per_byte, 0};
    for (size_t k = ranges[i].first; k < ranges[i].second; ++k) {
      line.max_rel = std::max(line.max_rel, RelError(line, pts[k]));
    }
    r.latency = Micros(line.alpha_us);
    r.max_relative_error = line.max_rel;
  }
  return fit;
}

// The cluster shape a Galvatron table was profiled on: its file name's, else
// one node of `cluster`'s primary node type.
traces::GalvatronClusterShape ShapeOf(const std::optional<traces::GalvatronClusterShape>& shape,
                                      const CollectiveModel& nominal) {
  if (shape) return *shape;
  return {1, nominal.cluster().node_types.front().devices_per_node};
}

// The devices of Galvatron's first group of `n` ranks on N×G devices
// (HardwareProfiler.generate_allreduce_groups / generate_p2p_groups,
// galvatron/core/profiler/hardware_profiler.py): consecutive ranks 0..n-1,
// or strided ranks 0, W/n, 2W/n, ... of the W = N·G. A consecutive group
// spans ceil(n/G) nodes; a strided one min(N, n) nodes, its ranks every
// W/n-th device of each node. InvalidArgument when n does not divide W or
// the ranks are not spread evenly over the nodes.
Result<RankGroup> PlaceGroup(const std::string& where, int n, bool consecutive,
                             const traces::GalvatronClusterShape& shape) {
  const int w = shape.nodes * shape.gpus_per_node;
  if (n < 2 || n > w || w % n != 0) {
    return InvalidArgumentError(where + ": a group of " + std::to_string(n) +
                                " ranks does not divide the profiled " +
                                std::to_string(shape.nodes) + " x " +
                                std::to_string(shape.gpus_per_node) + " devices");
  }
  const int stride = consecutive ? 1 : w / n;
  std::map<int, int> per_node;
  for (int k = 0; k < n; ++k) ++per_node[k * stride / shape.gpus_per_node];
  RankGroup g;
  g.nodes = static_cast<int>(per_node.size());
  g.ranks_per_node = n / g.nodes;
  for (const auto& [node, count] : per_node) {
    if (count != g.ranks_per_node) {
      return InvalidArgumentError(where + ": the " + std::to_string(n) +
                                  " ranks are not spread evenly over " +
                                  std::to_string(g.nodes) + " nodes");
    }
  }
  g.placement = consecutive || g.ranks_per_node == 1 ? RankGroup::Placement::kConsecutive
                                                     : RankGroup::Placement::kStrided;
  return g;
}

// Galvatron's bandwidth sweep: nccl-tests from --start_mb 16 to --end_mb 512
// (galvatron/core/arguments.py defaults); the files do not record it.
constexpr Bytes kSweepMin = MiB(16);
constexpr Bytes kSweepMax = MiB(512);

// One regime from a measured bus bandwidth: the latency is the nominal
// model's time of the op at zero bytes on `group` (what NCCL's choice for
// the smallest sizes pays; Galvatron measures bandwidth only), the label its
// choice at the geometric middle of the sweep.
Result<FittedCollective> BandwidthFit(CollectiveOp op, const RankGroup& group, Bandwidth busbw,
                                      const std::string& where, const CollectiveModel& nominal) {
  Result<std::vector<CollectiveEstimate>> at_zero =
      nominal.NominalCandidates(op, Bytes(0), group);
  if (!at_zero.ok()) {
    return InvalidArgumentError(where + ": does not fit cluster '" + nominal.cluster().name +
                                "': " + at_zero.status().message());
  }
  Bytes middle(static_cast<int64_t>(
      std::sqrt(static_cast<double>(kSweepMin.count()) * static_cast<double>(kSweepMax.count()))));
  ORRERY_ASSIGN_OR_RETURN(std::vector<CollectiveEstimate> at_middle,
                          nominal.NominalCandidates(op, middle, group));
  if (at_zero->empty() || at_middle.empty()) {
    return InvalidArgumentError(where + ": the nominal model has no candidate for this group");
  }
  FittedCollective fit;
  fit.op = op;
  fit.ranks = group.Size();
  fit.nodes = group.nodes;
  fit.source = where;
  FittedRegime r;
  r.min_size = kSweepMin;
  r.max_size = kSweepMax;
  r.latency = at_zero->front().time;
  r.busbw = busbw;
  r.algorithm = at_middle.front().algorithm;
  r.protocol = at_middle.front().protocol;
  r.points = 1;
  r.max_relative_error = 0;
  fit.regimes.push_back(r);
  return fit;
}

// Keeps, per (op, level), the fit of the largest group (the first of equal
// size), and adds them intra-node first.
void AddLargestPerLevel(std::vector<FittedCollective> fits, CollectiveCalibration& calibration) {
  std::vector<FittedCollective> kept;
  for (FittedCollective& f : fits) {
    bool placed = false;
    for (FittedCollective& k : kept) {
      if (k.op == f.op && (k.nodes > 1) == (f.nodes > 1)) {
        if (f.ranks > k.ranks) k = std::move(f);
        placed = true;
        break;
      }
    }
    if (!placed) kept.push_back(std::move(f));
  }
  std::stable_sort(kept.begin(), kept.end(), [](const FittedCollective& a,
                                                const FittedCollective& b) {
    return (a.nodes > 1) < (b.nodes > 1);
  });
  for (FittedCollective& f : kept) calibration.Add(std::move(f));
}

}  // namespace

Result<FittedCollective> FitCollective(const traces::NcclTestsTable& table,
                                       const std::string& source, const CollectiveModel& nominal,
                                       const CollectiveFitOptions& options) {
  if (!table.collective) {
    return InvalidArgumentError(source + ": the log does not say which collective it measures");
  }
  const int ranks = table.RankCount();
  const int nodes = table.NodeCount();
  if (ranks < 2) {
    return InvalidArgumentError(source + ": expected '# Rank' lines for at least 2 ranks, got " +
                                std::to_string(ranks));
  }
  if (ranks % nodes != 0) {
    return InvalidArgumentError(source + ": " + std::to_string(ranks) +
                                " ranks are not spread evenly over " + std::to_string(nodes) +
                                " hosts");
  }
  if (table.rows.size() < 2) {
    return InvalidArgumentError(source + ": expected at least 2 table rows to fit");
  }
  std::vector<Point> pts;
  for (const traces::NcclTestsRow& r : table.rows) {
    Duration t = std::min(r.out_of_place.time, r.in_place.time);
    if (t <= Duration::Zero() || r.size <= Bytes(0)) {
      return InvalidArgumentError(source + ":" + std::to_string(r.line) +
                                  ": expected a positive size and time to fit");
    }
    pts.push_back({static_cast<double>(r.size.count()), t.ToMicros()});
  }
  RankGroup group{nodes, ranks / nodes, RankGroup::Placement::kConsecutive};
  return FitPoints(std::move(pts), *table.collective, group, source, nominal, options);
}

Status CalibrateFromLog(const traces::NcclTestsLog& log, const CollectiveModel& nominal,
                        CollectiveCalibration& calibration,
                        const CollectiveFitOptions& options) {
  for (size_t i = 0; i < log.tables.size(); ++i) {
    std::string source = log.source;
    if (log.tables.size() > 1) source += " (table " + std::to_string(i + 1) + ")";
    ORRERY_ASSIGN_OR_RETURN(FittedCollective fit,
                            FitCollective(log.tables[i], source, nominal, options));
    calibration.Add(std::move(fit));
  }
  return Status::Ok();
}

Status CalibrateFromGalvatron(const traces::GalvatronAllReduceBandwidth& table,
                              const CollectiveModel& nominal, CollectiveCalibration& calibration) {
  const traces::GalvatronClusterShape shape = ShapeOf(table.shape, nominal);
  std::vector<FittedCollective> fits;
  for (const traces::GalvatronAllReduceBandwidth::Entry& e : table.entries) {
    const std::string where = table.source + " (allreduce_size_" + std::to_string(e.ranks) +
                              "_consec_" + (e.consecutive ? "1" : "0") + ")";
    ORRERY_ASSIGN_OR_RETURN(RankGroup group, PlaceGroup(where, e.ranks, e.consecutive, shape));
    ORRERY_ASSIGN_OR_RETURN(FittedCollective fit,
                            BandwidthFit(CollectiveOp::kAllReduce, group, e.busbw, where, nominal));
    fits.push_back(std::move(fit));
  }
  AddLargestPerLevel(std::move(fits), calibration);
  return Status::Ok();
}

Status CalibrateFromGalvatron(const traces::GalvatronP2pBandwidth& table,
                              const CollectiveModel& nominal, CollectiveCalibration& calibration) {
  const traces::GalvatronClusterShape shape = ShapeOf(table.shape, nominal);
  std::vector<FittedCollective> fits;
  for (const traces::GalvatronP2pBandwidth::Entry& e : table.entries) {
    const std::string where = table.source + " (pp_size_" + std::to_string(e.pp) + ")";
    // Stages are strided over the devices, as Galvatron's pipeline groups.
    ORRERY_ASSIGN_OR_RETURN(RankGroup group, PlaceGroup(where, e.pp, false, shape));
    ORRERY_ASSIGN_OR_RETURN(
        FittedCollective fit,
        BandwidthFit(CollectiveOp::kSendRecv, group, e.bandwidth, where, nominal));
    fits.push_back(std::move(fit));
  }
  AddLargestPerLevel(std::move(fits), calibration);
  return Status::Ok();
}

Status CalibrateFromGalvatron(const traces::GalvatronCollectiveTimes& table,
                              const CollectiveModel& nominal, CollectiveCalibration& calibration,
                              const CollectiveFitOptions& options) {
  const traces::GalvatronClusterShape shape = ShapeOf(table.shape, nominal);
  // The points of each (op, ranks), in the order first seen.
  std::vector<std::pair<CollectiveOp, int>> keys;
  std::vector<std::vector<Point>> points;
  for (const traces::GalvatronCollectiveTimes::Entry& e : table.entries) {
    size_t i = 0;
    while (i < keys.size() && keys[i] != std::make_pair(e.op, e.ranks)) ++i;
    if (i == keys.size()) {
      keys.emplace_back(e.op, e.ranks);
      points.emplace_back();
    }
    points[i].push_back({static_cast<double>(e.size.count()), e.time.ToMicros()});
  }
  std::vector<FittedCollective> fits;
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto [op, ranks] = keys[i];
    const std::string where = table.source + " (" +
                              (op == CollectiveOp::kAllReduce ? "allreduce" : "all2all") +
                              "_size_" + std::to_string(ranks) + ")";
    if (points[i].size() < 2) {
      return InvalidArgumentError(where + ": expected at least 2 sizes to fit, got " +
                                  std::to_string(points[i].size()));
    }
    ORRERY_ASSIGN_OR_RETURN(RankGroup group, PlaceGroup(where, ranks, true, shape));
    Result<std::vector<CollectiveEstimate>> check = nominal.NominalCandidates(op, Bytes(0), group);
    if (!check.ok()) {
      return InvalidArgumentError(where + ": does not fit cluster '" + nominal.cluster().name +
                                  "': " + check.status().message());
    }
    ORRERY_ASSIGN_OR_RETURN(FittedCollective fit,
                            FitPoints(std::move(points[i]), op, group, where, nominal, options));
    fits.push_back(std::move(fit));
  }
  AddLargestPerLevel(std::move(fits), calibration);
  return Status::Ok();
}

}  // namespace orrery::costmodel
