// Capacity planning: what-if sweeps over hypothetical clusters (issue #9,
// `orrery capacity`, docs/capacity.md).
//
// A sweep file lists cluster families — a cluster (preset or spec file) and
// lists of node counts, NIC bandwidths per device, top-tier
// oversubscriptions and memory sizes, with a price per device-hour; every
// combination of the listed values is one point. For each point the search
// (search/search.h, ranked by the analytical model, not event-simulated
// unless asked) finds the fastest plan of a model at a global batch, and
// the sweep reports what training T tokens would take:
//
//   tokens_per_s = global_batch × seq_len / iteration_time
//   seconds      = tokens / tokens_per_s,  days = seconds / 86,400
//   device_hours = devices × seconds / 3,600
//   cost         = device_hours × price_per_device_hour
//   mfu          = model FLOPs per token × tokens_per_s / (devices × dense
//                  peak at the plan's precision)
//
// with model FLOPs per token from workload::TrainingFlopsPerToken (PaLM
// App. B: 6·N + 12·L·H·Q·T, recomputation not counted) and `devices` every
// device of the point, idle ones included (they are paid for). Then what
// bounds the plan (ClassifyBound) and three sensitivities: the days with
// twice the NIC bandwidth, twice the memory per device and twice the
// devices, each from a search on the modified cluster.
//
// Work is planned as jobs, one per distinct materialized cluster (its JSON
// text is the key), so a sensitivity variant equal to another point (NIC
// 400 → 800 when 800 is listed; devices × 2 when the next count is listed)
// is searched once. Jobs are independent: the command deals them to MPI
// ranks (JobsOfRank) and gathers their outcomes as JSON
// (CapacityOutcomeToJson / CapacityOutcomeFromJson, exact round trip).
//
// Monotonicity by construction (AssembleRows): a larger cluster may run
// the best plan of a smaller point of the same entry and the same other
// knobs on a subset of its devices (idle devices still paid for), so a
// point reports the faster of its own best plan and that one, with
// `devices_used` saying which; days_devices_x2 likewise is never above
// the point's days, nor days_nic_x2 and days_memory_x2 (the same plan runs
// no slower with faster NICs or more memory).
//
// Thread-safety: functions of their arguments; RunCapacityJob uses every
// core through the search's OpenMP.
#ifndef ORRERY_SEARCH_CAPACITY_H_
#define ORRERY_SEARCH_CAPACITY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "core/units.h"
#include "search/search.h"
#include "sim/faults.h"
#include "topology/cluster_spec.h"
#include "workload/model_spec.h"
#include "workload/phases.h"

namespace orrery::search {

// A token count ("15T", "300B", 15e12): workload/phases.h's.
using workload::ParseTokenCount;

// One entry of a sweep file's "clusters" list.
struct SweepEntry {
  std::string name;
  std::string cluster_source;  // "cluster" as written: a preset or a file
  topology::ClusterSpec base;  // resolved (topology::ResolveCluster)
  std::vector<int> nodes;      // from "nodes", or "devices" / devices per node
  // Empty: the base spec's value only.
  std::vector<double> nic_gbps;          // NIC bandwidth per device, Gb/s
  std::vector<double> oversubscription;  // of the top network tier
  std::vector<double> memory_gib;        // memory per device, GiB
  double price_per_device_hour = 0;      // USD
};

// A fault scenario of a sweep's "faults" list (sim/faults.h): one slow
// device, one degraded link, or several at once, applied to every point's
// best plan in the event simulator.
struct FaultScenario {
  std::string name;
  sim::Faults faults;
};

struct Sweep {
  std::string source;  // the file's path, for messages
  std::vector<SweepEntry> entries;
  std::vector<FaultScenario> faults;  // empty: none
};

// Reads a sweep (docs/capacity.md): {"clusters": [{"name", "cluster",
// "nodes" | "devices", "nic_gbps"?, "oversubscription"?, "memory_gib"?,
// "price_per_device_hour"}], "faults"?: [{"name", "slow_device"?:
// ["RANK:FACTOR", ...], "degrade_link"?: ["LINK:FACTOR", ...]}]}. Errors
// are InvalidArgument naming `source` and the field (unknown fields
// included); a cluster that does not resolve is its loader's error
// prefixed with the field; device counts must be multiples of the
// cluster's devices per node; a fault scenario needs a unique name and at
// least one fault, each in the command line's form (sim/faults.h).
Result<Sweep> ParseSweep(const Json& json, const std::string& source);
Result<Sweep> LoadSweepFile(const std::string& path);

// The knobs of one hypothetical cluster.
struct ClusterKnobs {
  int nodes = 1;
  double nic_gbps = 0;          // per device
  double oversubscription = 1;  // of the top tier
  double memory_gib = 0;        // per device

  bool operator==(const ClusterKnobs&) const = default;
};

// The base spec's own knobs: NIC bandwidth of device 0, the top tier's
// oversubscription (1 without tiers), the device memory in GiB, its nodes.
ClusterKnobs KnobsOf(const topology::ClusterSpec& base);

// `base` with `knobs`: WithNodes(nodes); every NIC's bandwidth set so that
// each device's NIC bandwidth (NodeType::NicBandwidthPerDevice) is
// Gbps(nic_gbps) — a NIC serving k devices gets k × nic_gbps / c when
// every device is served by NIC shares summing to c; the top tier's
// oversubscription; the device's memory GiBf(memory_gib). Then validated.
// The result depends on the knobs' values only (not on how they were
// reached), so equal knobs give equal specs. InvalidArgument when the
// knobs cannot apply (several node types, NICs unevenly shared, an
// oversubscription without a tier, values out of range).
Result<topology::ClusterSpec> MaterializeCluster(const topology::ClusterSpec& base,
                                                 const ClusterKnobs& knobs);

// One point of a sweep.
struct CapacityPoint {
  int entry = 0;  // index into Sweep::entries
  ClusterKnobs knobs;
};

// What the command asks of every point.
struct CapacitySettings {
  workload::ModelSpec model;
  double tokens = 0;           // to train
  int global_batch_size = 2048;
  int sequence_length = 0;     // 0: the model's default
  std::string algorithm;       // a registered search algorithm
  std::optional<double> time_limit_s;  // per search
  // Event-simulate the chosen plan of every search (RunSearch's re-scoring
  // with top_k 1): slow at 10,000+ devices.
  bool simulate_best = false;
  // ClassifyBound's threshold: a non-compute component at least this share
  // of the iteration bounds it.
  double bound_share = 0.25;
  // The sweep's fault scenarios: every point's best plan is event-simulated
  // healthy and under each (RunCapacityJob with_faults).
  std::vector<FaultScenario> faults;
};

// The work of a sweep: its points and the distinct searches they need.
struct CapacityJob {
  std::string key;  // the materialized cluster's JSON text
  topology::ClusterSpec cluster;
  int entry = 0;
  ClusterKnobs knobs;
  std::string label;  // "h100 2048 devices 400 Gb/s" (+ " [nic x2]", ...)
  bool is_point = false;  // some point's own search (else a variant only)
};

struct CapacityWork {
  std::vector<CapacityPoint> points;  // entries in order; within one, the
                                      // nodes, nic, oversubscription and
                                      // memory lists, outer to inner
  std::vector<CapacityJob> jobs;      // in order of first use
  // Per point, the jobs of its own search and of its three variants
  // (nullopt: that sensitivity was not asked for).
  struct Uses {
    int point = 0;
    std::optional<int> nic_x2;
    std::optional<int> memory_x2;
    std::optional<int> devices_x2;
  };
  std::vector<Uses> uses;
};

// Which sensitivity searches a sweep runs.
struct Sensitivities {
  bool nic_x2 = true;
  bool memory_x2 = true;
  bool devices_x2 = true;
};
// "nic,memory,devices" (any subset, in any order) or "none".
Result<Sensitivities> ParseSensitivities(std::string_view text);

// Every combination of the sweep's values (the count is the product of
// the lists' lengths, an absent list counting 1) and the distinct clusters
// to search: the points', then the variants' `which` asks for. Errors:
// MaterializeCluster's, prefixed with the entry.
Result<CapacityWork> PlanCapacityWork(const Sweep& sweep, const Sensitivities& which = {});

// Checks every fault scenario against every point's cluster before any
// search runs (ranks within its devices, links that exist): the first
// failure, naming the sweep file, the scenario and the point.
Status CheckSweepFaults(const Sweep& sweep, const CapacityWork& work);

// The jobs rank `rank` of `ranks` runs: jobs sorted by device count,
// largest first (ties: job index), dealt round-robin.
std::vector<int> JobsOfRank(const CapacityWork& work, int rank, int ranks);

// Where one iteration of the best plan goes, on the bottleneck lane of
// the analytical estimate (sim/analytical.h: compute + recompute +
// exposed comm + bubble = iteration time), in seconds.
struct BoundBreakdown {
  double compute = 0;    // forward/backward compute and the optimizer step
  double memory = 0;     // recompute (memory's price: it never speeds a plan up)
  double bubble = 0;     // pipeline idle time
  double path_comm = 0;  // TP/SP, CP, EP collectives in the compute path
  double p2p = 0;        // exposed pipeline transfers
  double dp = 0;         // exposed gradient reduction and parameter gathers (ZeRO too)
  // The slowest level each crosses: "intra-node:<fabric>" or
  // "network:<tier name>" (ClusterSpec tier names); "" when absent.
  std::string path_tier;
  std::string p2p_tier;
  std::string dp_tier;
};

// The bound of an iteration of `iteration_s` seconds: the label with the
// largest time among "memory capacity" (memory), "pipeline bubble"
// (bubble), and the tiers of path_comm, p2p and dp (equal tiers summed),
// when it is at least `share` of the iteration; "compute" otherwise.
std::string ClassifyBound(const BoundBreakdown& b, double iteration_s, double share);

// One fault scenario's effect on a job's best plan: the event-simulated
// iteration, healthy and faulted.
struct FaultOutcome {
  std::string name;
  Duration healthy;
  Duration faulted;
  double slowdown() const { return faulted.ToSeconds() / healthy.ToSeconds(); }
};

// The answer of one job.
struct CapacityOutcome {
  bool found = false;  // false: no plan fits (bound "memory capacity")
  Json plan = nullptr; // workload::PlanToJson of the best plan
  std::string summary; // PlanSummary
  int devices_used = 0;
  Duration iteration_time;
  Bytes peak_memory;
  bool simulated = false;  // iteration_time from the event simulator
  BoundBreakdown breakdown;
  std::string bound;
  double search_time_s = 0;  // wall time of this job (informational)
  int64_t evaluated = 0;
  std::vector<FaultOutcome> faults;  // settings.faults' order; empty without
};

// Runs the search of `settings` on `cluster` and classifies the bound.
// With `with_faults` (a point's own search, not a sensitivity variant's)
// and fault scenarios in `settings`, the best plan is then event-simulated
// healthy and under each scenario. The search's and the simulator's
// errors; no fitting plan is an outcome with found false.
Result<CapacityOutcome> RunCapacityJob(const CapacitySettings& settings,
                                       const topology::ClusterSpec& cluster,
                                       const ProgressFn& progress = {},
                                       bool with_faults = false);

// Exact round trip (durations in picoseconds, bytes as integers).
Json CapacityOutcomeToJson(const CapacityOutcome& outcome);
Result<CapacityOutcome> CapacityOutcomeFromJson(const Json& json, std::string_view source);

// The arithmetic of the header for one plan.
struct CapacityFigures {
  double iteration_s = 0;
  double tokens_per_s = 0;
  double seconds = 0;
  double days = 0;
  double device_hours = 0;
  double cost = 0;
  double mfu = 0;
};
// REQUIRES: iteration_time > 0, devices >= 1, peak > 0.
CapacityFigures ComputeFigures(double tokens, int global_batch_size, int sequence_length,
                               Duration iteration_time, int devices,
                               double price_per_device_hour, Flops model_flops_per_token,
                               FlopRate peak_per_device);

// One row of the report (the CSV's columns, docs/capacity.md).
struct CapacityRow {
  std::string name;
  std::string device;  // device type name
  int devices = 0;
  int devices_used = 0;
  int nodes = 0;
  ClusterKnobs knobs;
  double price_per_device_hour = 0;
  int global_batch_size = 0;
  int sequence_length = 0;
  bool found = false;
  std::string plan;  // summary; "" when none fits
  Json plan_json = nullptr;
  bool simulated = false;
  CapacityFigures figures;  // zero when none fits
  std::string bound;
  double peak_memory_gib = 0;
  BoundBreakdown breakdown;
  std::optional<double> days_nic_x2;
  std::optional<double> days_memory_x2;
  std::optional<double> days_devices_x2;
  // Per fault scenario: the faulted iteration over the healthy one (event
  // simulator, the plan the row reports) and the days at that pace.
  struct Fault {
    std::string name;
    std::optional<double> slowdown;  // nullopt when no plan fits
    std::optional<double> days;
  };
  std::vector<Fault> faults;  // one per scenario, in the sweep's order
};

// The rows of every point from the jobs' outcomes (outcomes[j] of
// work.jobs[j]), with the monotonicity rule of the header.
// REQUIRES: outcomes.size() == work.jobs.size().
Result<std::vector<CapacityRow>> AssembleRows(const CapacitySettings& settings,
                                              const Sweep& sweep, const CapacityWork& work,
                                              const std::vector<CapacityOutcome>& outcomes);

// The CSV header (one line, no newline) and the CSV of `rows`; with fault
// scenarios, RowsToCsv appends two columns per scenario,
// fault_<name>_slowdown and fault_<name>_days.
std::string_view CapacityCsvHeader();
std::string RowsToCsv(const std::vector<CapacityRow>& rows);
Json RowsToJson(const CapacitySettings& settings, const std::vector<CapacityRow>& rows);
std::string RowsToText(const CapacitySettings& settings, const std::vector<CapacityRow>& rows);

}  // namespace orrery::search

#endif  // ORRERY_SEARCH_CAPACITY_H_
