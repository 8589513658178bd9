#include "eval/loss.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "kernels/fused.h"
#include "util/error.h"

namespace secateur::eval {

namespace {
constexpr int64_t kIgnore = -100;

// The differentiable path: one cross-entropy over all tokens, as HF computes it.
LossSum token_cross_entropy_with_grad(const torch::Tensor& logits, const torch::Tensor& targets) {
  auto flat_logits = logits.reshape({-1, logits.size(-1)}).to(torch::kFloat);
  auto flat_targets = targets.reshape({-1});
  auto losses = torch::nn::functional::cross_entropy(
      flat_logits, flat_targets,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnore).reduction(torch::kSum));
  return {losses, (flat_targets != kIgnore).sum()};
}

// Without gradients, evaluation needs neither an fp32 copy of all logits (16384 × 32000 bf16
// logits make a 2 GB one) nor their whole log-softmax.
// On CUDA with lib/kernels compiled, one kernel reads each row of the logits in place (the causal
// shift included) and reduces it in float: no fp32 copy and no log-softmax tensor at all.
LossSum token_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  if (torch::GradMode::is_enabled() && logits.requires_grad()) return token_cross_entropy_with_grad(logits, targets);
  if (kernels::supports(logits.scalar_type()) && targets.scalar_type() == torch::kLong &&
      kernels::launches({logits, targets})) {
    kernels::CrossEntropySum s = kernels::token_cross_entropy(logits, targets, kIgnore);
    return {std::move(s.sum), std::move(s.count)};
  }
  return token_cross_entropy_chunked(logits, targets);
}

// Leading dims peeled off until each block is [rows, V]: the causal shift's [B, T−1, V] slice of
// [B, T, V] logits is not viewable as [B·(T−1), V] (reshape would copy it), but each row of it is.
void collect_row_blocks(const torch::Tensor& logits, const torch::Tensor& targets,
                        std::vector<torch::Tensor>& logit_blocks, std::vector<torch::Tensor>& target_blocks) {
  if (logits.dim() <= 2) {
    logit_blocks.push_back(logits.dim() == 2 ? logits : logits.unsqueeze(0));
    target_blocks.push_back(targets.reshape({-1}));
    return;
  }
  for (int64_t i = 0; i < logits.size(0); ++i) collect_row_blocks(logits[i], targets[i], logit_blocks, target_blocks);
}

// Σ −log softmax(row)[target] over one [rows, V] block, `chunk_rows` rows at a time; the same
// log_softmax + nll_loss that cross_entropy runs, on fp32 values of the chunk only.
torch::Tensor block_nll_sum(const torch::Tensor& logits, const torch::Tensor& targets, int64_t chunk_rows) {
  torch::Tensor sum = torch::zeros({}, logits.options().dtype(torch::kFloat));
  for (int64_t begin = 0; begin < logits.size(0); begin += chunk_rows) {
    const int64_t n = std::min(chunk_rows, logits.size(0) - begin);
    const torch::Tensor log_probs = torch::log_softmax(logits.narrow(0, begin, n), -1, torch::kFloat);
    sum += torch::nll_loss(log_probs, targets.narrow(0, begin, n), {}, at::Reduction::Sum, kIgnore);
  }
  return sum;
}
}  // namespace

LossSum token_cross_entropy_chunked(const torch::Tensor& logits, const torch::Tensor& targets, int64_t chunk_elements) {
  std::vector<torch::Tensor> logit_blocks, target_blocks;
  collect_row_blocks(logits, targets, logit_blocks, target_blocks);
  const int64_t chunk_rows = std::max<int64_t>(1, chunk_elements / std::max<int64_t>(1, logits.size(-1)));
  torch::Tensor sum = torch::zeros({}, logits.options().dtype(torch::kFloat));
  for (size_t i = 0; i < logit_blocks.size(); ++i) sum += block_nll_sum(logit_blocks[i], target_blocks[i], chunk_rows);
  return {sum, (targets != kIgnore).sum()};
}

LossSum task_loss_sum(model::Task task, const torch::Tensor& logits, const data::Batch& batch) {
  switch (task) {
    case model::Task::causal_lm: {
      torch::Tensor labels = batch.labels;
      if (!labels.defined()) {
        labels = batch.input_ids.clone();
        if (batch.attention_mask.defined()) labels.masked_fill_(batch.attention_mask == 0, kIgnore);
      }
      // Position t predicts token t+1.
      auto shifted_logits = logits.slice(1, 0, logits.size(1) - 1);
      auto shifted_labels = labels.slice(1, 1, labels.size(1));
      return token_cross_entropy(shifted_logits, shifted_labels);
    }
    case model::Task::masked_lm:
      if (!batch.labels.defined()) throw UserError("masked-LM loss needs labels (-100 where no token is masked)");
      return token_cross_entropy(logits, batch.labels);
    case model::Task::sequence_classification: {
      if (!batch.labels.defined()) throw UserError("classification loss needs a label per example");
      auto losses = torch::nn::functional::cross_entropy(
          logits.to(torch::kFloat), batch.labels,
          torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnore).reduction(torch::kSum));
      return {losses, (batch.labels != kIgnore).sum()};
    }
    case model::Task::base:
      break;
  }
  throw UserError("a base model (no task head) has no loss: load it with a causal_lm, masked_lm or "
                  "sequence_classification head");
}

torch::Tensor task_loss(model::Task task, const torch::Tensor& logits, const data::Batch& batch) {
  LossSum s = task_loss_sum(task, logits, batch);
  return s.sum / s.count.clamp_min(1).to(torch::kFloat);
}

}  // namespace secateur::eval
