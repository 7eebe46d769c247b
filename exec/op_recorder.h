// OpRecorder: the executor's stopwatch. Model units and the runtime wrap
// every operator in a scope; when recording is on, the scope synchronizes
// the backend at its start and end and appends a traces::ExecutionOp with
// the rank's steady-clock times relative to the recorder's origin.
//
// Synchronizing around every operator is what makes per-operator times
// exact on an asynchronous device; it also serializes communication that
// would otherwise overlap compute. The runtime therefore records only the
// iterations it is asked to trace and measures iteration times with
// recording off (docs/executor.md, "Measurement").
//
//   OpRecorder::Scope s = recorder.Compute("attn.qkv", ExecutionPhase::kForward, layer, mb);
//   s.set_gemm({rows, 3 * h / tp, h});
//   backend.Gemm(...);
//   // ~Scope records the end.
//
// When recording is off a Scope costs two branches.
//
// Fault injection: set_compute_factor(f) makes every compute scope last f
// times as long — after the operator the scope busy-waits (f − 1) × its
// time — a slow GPU (throttled by power or heat) or a CPU core shared with
// another tenant, for checking the simulator's stragglers (sim/faults.h)
// against real runs and for re-planning. It synchronizes the backend
// around each compute operator, as recording does.
//
// Thread-safety: used from one thread.
#ifndef ORRERY_EXEC_OP_RECORDER_H_
#define ORRERY_EXEC_OP_RECORDER_H_

#include <optional>
#include <string_view>
#include <vector>

#include "exec/backend.h"
#include "traces/execution_trace.h"

namespace orrery::exec {

class OpRecorder {
 public:
  class Scope {
   public:
    Scope(Scope&& other) noexcept;
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    Scope& operator=(Scope&&) = delete;
    ~Scope();  // records the end (when recording)

    void set_gemm(const workload::GemmShape& shape);
    // For communication scopes: the size as nccl-tests counts it.
    void set_bytes(int64_t bytes);

   private:
    friend class OpRecorder;
    Scope(OpRecorder* recorder, traces::ExecutionOp op, bool record);
    OpRecorder* recorder_ = nullptr;  // nullptr: neither recording nor slowed
    bool record_ = false;
    traces::ExecutionOp op_;
  };

  // `backend` is synchronized around recorded ops; `rank` is written into
  // each op.
  OpRecorder(Backend& backend, int rank);

  // Turns recording on or off; ops of the current iteration carry `iteration`.
  void set_recording(bool on) { recording_ = on; }
  bool recording() const { return recording_; }
  void set_iteration(int iteration) { iteration_ = iteration; }
  // Compute scopes take `factor` (>= 1, finite) times as long; 1: as they
  // are.
  void set_compute_factor(double factor);
  double compute_factor() const { return compute_factor_; }
  // The busy-waiting added so far by the compute factor.
  Duration injected_delay() const { return injected_; }

  // Sets the origin of recorded times to now.
  void ResetOrigin();
  // The current chunk (model chunk of an interleaved schedule) written into ops.
  void set_chunk(int chunk) { chunk_ = chunk; }

  Scope Compute(std::string_view name, traces::ExecutionPhase phase, std::optional<int> layer,
                std::optional<int> micro_batch);
  // `group` is the world ranks of the communicator's group.
  Scope Communication(std::string_view name, traces::CollectiveOp collective,
                      traces::ExecutionPhase phase, std::optional<int> layer,
                      std::optional<int> micro_batch, const std::vector<int>& group,
                      int64_t bytes);

  const std::vector<traces::ExecutionOp>& ops() const { return ops_; }
  std::vector<traces::ExecutionOp> TakeOps();

 private:
  Duration Elapsed() const;
  Backend* backend_;
  int rank_;
  bool recording_ = false;
  int iteration_ = 0;
  int chunk_ = 0;
  double origin_seconds_ = 0;
  double compute_factor_ = 1.0;
  Duration injected_;
  std::vector<traces::ExecutionOp> ops_;
};

}  // namespace orrery::exec

#endif  // ORRERY_EXEC_OP_RECORDER_H_
