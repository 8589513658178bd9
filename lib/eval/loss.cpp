#include "eval/loss.h"

#include "util/error.h"

namespace secateur::eval {

namespace {
constexpr int64_t kIgnore = -100;

LossSum token_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  auto flat_logits = logits.reshape({-1, logits.size(-1)}).to(torch::kFloat);
  auto flat_targets = targets.reshape({-1});
  auto losses = torch::nn::functional::cross_entropy(
      flat_logits, flat_targets,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnore).reduction(torch::kSum));
  return {losses, (flat_targets != kIgnore).sum()};
}
}  // namespace

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
