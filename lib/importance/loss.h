#pragma once
// The loss that gradient-based estimators differentiate, from a calibration batch.
#include <torch/torch.h>

#include "data/batch.h"
#include "model/gates.h"
#include "model/model.h"

namespace secateur::importance {

// Mean cross-entropy of one batch through `gates` (null = dense):
//   causal_lm                next-token prediction: logits[:, t] against labels[:, t+1], where
//                            labels default to input_ids with padding (attention_mask 0) ignored
//   masked_lm                against labels where given (−100 ignored); unlabelled calibration
//                            text is scored by predicting every non-padding input token (the
//                            unmasked reconstruction loss, the natural label-free choice)
//   sequence_classification  against labels; unlabelled data against the model's own dense
//                            predictions (argmax, detached): the loss of changing its decisions
//   base                     UserError: a bare backbone has no loss
torch::Tensor calibration_loss(model::Model& model, const data::Batch& batch, const model::Gates* gates);

}  // namespace secateur::importance
