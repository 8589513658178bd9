#include "importance/loss.h"

#include "eval/loss.h"
#include "util/error.h"

namespace secateur::importance {

torch::Tensor calibration_loss(model::Model& model, const data::Batch& batch_in, const model::Gates* gates) {
  const model::Task task = model.config().task;
  if (task == model::Task::base)
    throw UserError("gradient-based importance needs a model with a head (causal_lm, masked_lm or "
                    "sequence_classification); this " + model.config().model_type + " checkpoint is a bare backbone");
  const data::Batch batch = batch_in.to(model.device());
  model::ForwardOptions options;
  options.token_type_ids = batch.token_type_ids;
  const torch::Tensor logits = model.forward(batch.input_ids, batch.attention_mask, gates, options).logits;
  data::Batch labelled = batch;
  if (!labelled.labels.defined() && task == model::Task::masked_lm) {
    // Unlabelled text: every real input token is its own target (no token is masked).
    labelled.labels = batch.input_ids.clone();
    if (batch.attention_mask.defined()) labelled.labels.masked_fill_(batch.attention_mask.eq(0), -100);
  }
  if (!labelled.labels.defined() && task == model::Task::sequence_classification) {
    // Unlabelled text: the dense model's own decisions are the targets.
    torch::NoGradGuard no_grad;
    labelled.labels = model.forward(batch.input_ids, batch.attention_mask, nullptr, options).logits.argmax(-1);
  }
  return eval::task_loss(task, logits, labelled);
}

}  // namespace secateur::importance
