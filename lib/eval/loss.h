#pragma once
// The task loss of a model on a batch, as HF computes it: shifted next-token cross-entropy for
// causal LMs, masked-token cross-entropy for masked LMs, cross-entropy over classes for sequence
// classification. Labels of -100 take no loss (HF's ignore_index).
#include <torch/torch.h>

#include "data/batch.h"
#include "model/model.h"

namespace secateur::eval {

struct LossSum {
  torch::Tensor sum;    // scalar, fp32: summed token (or example) losses, differentiable
  torch::Tensor count;  // scalar int64: tokens (or examples) that took a loss
};

// Summed loss and count, so that losses over batches of different sizes combine exactly
// (mean = Σ sums / Σ counts). Causal LM without labels uses the inputs (padding ignored).
LossSum task_loss_sum(model::Task task, const torch::Tensor& logits, const data::Batch& batch);

// Σ −log softmax(logits)[target] over the targets that are not -100, and their count, for logits
// [..., V] and targets [...]; without gradients. Rows go through log-softmax in chunks of at most
// `chunk_elements` logits, computed in fp32 from the logits' dtype, so the whole fp32 copy and
// log-softmax of the logits are never held (task_loss_sum takes this path when no gradient is
// needed; the default chunk is 64 Mi logits, 256 MiB of fp32).
inline constexpr int64_t kLossChunkElements = int64_t{1} << 26;
LossSum token_cross_entropy_chunked(const torch::Tensor& logits, const torch::Tensor& targets,
                                    int64_t chunk_elements = kLossChunkElements);

// Mean loss of one batch (what an optimizer or a gradient estimator differentiates).
torch::Tensor task_loss(model::Task task, const torch::Tensor& logits, const data::Batch& batch);

}  // namespace secateur::eval
