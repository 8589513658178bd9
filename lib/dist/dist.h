#pragma once
// The process group of this process, for code that must behave the same on one process and on
// many: estimators sum their calibration statistics over ranks, stages write files only on the
// main rank. Alone (no Session), every helper is the one-process identity: rank 0 of 1, sums are
// the tensors themselves.
//
//   dist::Session session(dist::ProcessGroup::over_tcp(world, options));   // secateur run does this
//   ...
//   for (int64_t b = 0; b < batches; ++b) if (dist::owns(b)) accumulate(stats, batch(b));
//   dist::all_reduce_sum(stats);        // every rank: the statistics of all batches
//   if (dist::is_main()) write(...);
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "dist/process_group.h"

namespace secateur::dist {

// The current group (nullptr alone).
std::shared_ptr<ProcessGroup> current();
int64_t rank();
int64_t world_size();
bool is_main();
// Whether item `index` of a sequence split over ranks is this rank's (index mod world == rank):
// the calibration batches an estimator accumulates here.
bool owns(int64_t index);
// The items this rank owns, in order (all of them alone): the calibration batches an estimator
// runs here when every rank holds the whole set.
template <class T>
std::vector<T> owned(const std::vector<T>& items) {
  std::vector<T> mine;
  for (size_t i = 0; i < items.size(); ++i)
    if (owns(static_cast<int64_t>(i))) mine.push_back(items[i]);
  return mine;
}

// In place, the element-wise sum over ranks. Tensors may live anywhere (they travel to the
// backend's device and back) and have any floating or integer dtype; several tensors are reduced
// together in buckets of the group's bucket size. Every rank must pass the same shapes in the
// same order.
void all_reduce_sum(torch::Tensor& tensor);
void all_reduce_sum(std::vector<torch::Tensor>& tensors);
// Host scalars over ranks (one small collective each, and a host sync on GPUs): the global mean
// of a logged loss, or whether any rank saw SIGTERM, so that all ranks stop at the same step.
double sum_over_ranks(double value);
// In place, several host values in one collective (exact for integer counts below 2⁵³).
void sum_over_ranks(std::vector<double>& values);
bool any_rank(bool flag);
// Returns when every rank has reached it (at once alone): after the main rank wrote files that
// the others may read.
void barrier();

// Installs a group as current() for its lifetime (and restores the previous one after). Its
// destructor waits for every rank (a barrier) unless an exception is unwinding, so that no rank
// tears the rendezvous store down while another still needs it.
class Session {
 public:
  explicit Session(std::shared_ptr<ProcessGroup> group);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ProcessGroup& group() const { return *group_; }

 private:
  std::shared_ptr<ProcessGroup> group_, previous_;
};

// The collectives of all_reduce_sum / DataParallelSync on an explicit group.
//   buckets: consecutive tensors of one dtype and device, up to bucket_bytes each (a tensor
//   larger than that is a bucket alone); every bucket is flattened into one buffer, all buffers
//   are all-reduced asynchronously, then waited for and copied back.
std::vector<std::vector<size_t>> plan_buckets(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes);
void all_reduce_sum(ProcessGroup& group, std::vector<torch::Tensor>& tensors);
// In place: every rank ends with rank `root`'s values (parameters before training).
void broadcast(ProcessGroup& group, std::vector<torch::Tensor>& tensors, int64_t root = 0);

}  // namespace secateur::dist
