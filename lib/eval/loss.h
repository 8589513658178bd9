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

// Mean loss of one batch (what an optimizer or a gradient estimator differentiates).
torch::Tensor task_loss(model::Task task, const torch::Tensor& logits, const data::Batch& batch);

}  // namespace secateur::eval
