#include "costmodel/collective_calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
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
  fit.op = *table.collective;
  fit.ranks = ranks;
  fit.nodes = nodes;
  fit.source = source;
  const double factor = traces::BusBandwidthFactor(fit.op, ranks);
  RankGroup group{nodes, ranks / nodes, RankGroup::Placement::kConsecutive};
  size_t begin = 0;
  for (size_t end : ends) {
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
  // regime: at its sizes the bandwidth term is negligible by construction.
  Bandwidth fastest = Bandwidth::Zero();
  for (const FittedRegime& r : fit.regimes) fastest = std::max(fastest, r.busbw);
  if (fastest <= Bandwidth::Zero()) {
    return InvalidArgumentError(source + ": times do not grow with size; no bandwidth to fit");
  }
  for (FittedRegime& r : fit.regimes) {
    if (r.busbw <= Bandwidth::Zero()) r.busbw = fastest;
  }
  return fit;
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

}  // namespace orrery::costmodel
