#include "exec/op_recorder.h"

#include <string>
#include <utility>

#include "exec/mpi_world.h"

namespace orrery::exec {

OpRecorder::Scope::Scope(OpRecorder* recorder, traces::ExecutionOp op)
    : recorder_(recorder), op_(std::move(op)) {
  if (recorder_ == nullptr) return;
  // Everything issued before the op has finished when its clock starts.
  recorder_->backend_->Synchronize();
  op_.start = recorder_->Elapsed();
}

OpRecorder::Scope::Scope(Scope&& other) noexcept
    : recorder_(std::exchange(other.recorder_, nullptr)), op_(std::move(other.op_)) {}

OpRecorder::Scope::~Scope() {
  if (recorder_ == nullptr) return;
  recorder_->backend_->Synchronize();
  op_.end = recorder_->Elapsed();
  if (op_.end < op_.start) op_.end = op_.start;
  recorder_->ops_.push_back(std::move(op_));
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

Duration OpRecorder::Elapsed() const { return Seconds(MpiWorld::Now() - origin_seconds_); }

OpRecorder::Scope OpRecorder::Compute(std::string_view name, traces::ExecutionPhase phase,
                                      std::optional<int> layer,
                                      std::optional<int> micro_batch) {
  if (!recording_) return Scope(nullptr, traces::ExecutionOp{});
  traces::ExecutionOp op;
  op.rank = rank_;
  op.iteration = iteration_;
  op.name = std::string(name);
  op.kind = traces::ExecutionOpKind::kCompute;
  op.phase = phase;
  op.layer = layer;
  op.micro_batch = micro_batch;
  op.chunk = chunk_;
  return Scope(this, std::move(op));
}

OpRecorder::Scope OpRecorder::Communication(std::string_view name,
                                            traces::CollectiveOp collective,
                                            traces::ExecutionPhase phase,
                                            std::optional<int> layer,
                                            std::optional<int> micro_batch,
                                            const std::vector<int>& group, int64_t bytes) {
  if (!recording_) return Scope(nullptr, traces::ExecutionOp{});
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
  return Scope(this, std::move(op));
}

std::vector<traces::ExecutionOp> OpRecorder::TakeOps() { return std::exchange(ops_, {}); }

}  // namespace orrery::exec
