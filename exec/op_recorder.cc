#include "exec/op_recorder.h"

#include <cmath>
#include <string>
#include <utility>

#include "core/check.h"
#include "exec/mpi_world.h"

namespace orrery::exec {

OpRecorder::Scope::Scope(OpRecorder* recorder, traces::ExecutionOp op, bool record)
    : recorder_(recorder), record_(record), op_(std::move(op)) {
  if (recorder_ == nullptr) return;
  // Everything issued before the op has finished when its clock starts.
  recorder_->backend_->Synchronize();
  op_.start = recorder_->Elapsed();
}

OpRecorder::Scope::Scope(Scope&& other) noexcept
    : recorder_(std::exchange(other.recorder_, nullptr)),
      record_(other.record_),
      op_(std::move(other.op_)) {}

OpRecorder::Scope::~Scope() {
  if (recorder_ == nullptr) return;
  recorder_->backend_->Synchronize();
  op_.end = recorder_->Elapsed();
  if (op_.end < op_.start) op_.end = op_.start;
  if (op_.kind == traces::ExecutionOpKind::kCompute && recorder_->compute_factor_ > 1.0) {
    // Busy-wait, as a slower device would be busy: the rank does nothing
    // else meanwhile.
    const Duration extra = (op_.end - op_.start) * (recorder_->compute_factor_ - 1.0);
    const Duration until = op_.end + extra;
    Duration now = recorder_->Elapsed();
    while (now < until) now = recorder_->Elapsed();
    recorder_->injected_ += now - op_.end;
    op_.end = now;
  }
  if (record_) recorder_->ops_.push_back(std::move(op_));
}

void OpRecorder::Scope::set_gemm(const workload::GemmShape& shape) {
  if (recorder_ != nullptr) op_.gemm = shape;
}

void OpRecorder::Scope::set_bytes(int64_t bytes) {
  if (recorder_ != nullptr) op_.bytes = bytes;
}

OpRecorder::OpRecorder(Backend& backend, int rank)
    : backend_(&backend), rank_(rank), origin_seconds_(MpiWorld::Now()) {}

void OpRecorder::ResetOrigin() { origin_seconds_ = MpiWorld::Now(); }

void OpRecorder::set_compute_factor(double factor) {
  ORRERY_CHECK(factor >= 1.0 && std::isfinite(factor)) << "compute factor " << factor;
  compute_factor_ = factor;
}

Duration OpRecorder::Elapsed() const { return Seconds(MpiWorld::Now() - origin_seconds_); }

OpRecorder::Scope OpRecorder::Compute(std::string_view name, traces::ExecutionPhase phase,
                                      std::optional<int> layer,
                                      std::optional<int> micro_batch) {
  if (!recording_ && compute_factor_ == 1.0) return Scope(nullptr, traces::ExecutionOp{}, false);
  traces::ExecutionOp op;
  op.rank = rank_;
  op.iteration = iteration_;
  op.name = std::string(name);
  op.kind = traces::ExecutionOpKind::kCompute;
  op.phase = phase;
  op.layer = layer;
  op.micro_batch = micro_batch;
  op.chunk = chunk_;
  return Scope(this, std::move(op), recording_);
}

OpRecorder::Scope OpRecorder::Communication(std::string_view name,
                                            traces::CollectiveOp collective,
                                            traces::ExecutionPhase phase,
                                            std::optional<int> layer,
                                            std::optional<int> micro_batch,
                                            const std::vector<int>& group, int64_t bytes) {
  if (!recording_) return Scope(nullptr, traces::ExecutionOp{}, false);
  traces::ExecutionOp op;
  op.rank = rank_;
  op.iteration = iteration_;
  op.name = std::string(name);
  op.kind = traces::ExecutionOpKind::kCommunication;
  op.phase = phase;
  op.layer = layer;
  op.micro_batch = micro_batch;
  op.chunk = chunk_;
  op.collective = collective;
  op.bytes = bytes;
  op.group = group;
  return Scope(this, std::move(op), true);
}

std::vector<traces::ExecutionOp> OpRecorder::TakeOps() { return std::exchange(ops_, {}); }

}  // namespace orrery::exec
