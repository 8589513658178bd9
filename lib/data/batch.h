#pragma once
// One batch of model inputs, as every consumer (estimators, trainers, evaluation) receives it.
// Header-only so that lib/data's tokenizers stay torch-free.
#include <torch/torch.h>

namespace secateur::data {

struct Batch {
  torch::Tensor input_ids;       // [B, T] int64
  torch::Tensor attention_mask;  // [B, T] int64: 1 = token, 0 = padding
  torch::Tensor token_type_ids;  // [B, T] int64, encoder models only; undefined = all zeros
  // Causal / masked LM: [B, T] int64 target ids with -100 where no loss is taken (HF's
  // convention; for causal LM the labels are the inputs, shifted inside the loss).
  // Sequence classification: [B] int64 class ids. Undefined for unlabelled calibration data.
  torch::Tensor labels;

  int64_t size() const { return input_ids.defined() ? input_ids.size(0) : 0; }

  Batch to(const torch::Device& device) const {
    auto move = [&](const torch::Tensor& t) { return t.defined() ? t.to(device, /*non_blocking=*/true) : t; };
    return {move(input_ids), move(attention_mask), move(token_type_ids), move(labels)};
  }
};

}  // namespace secateur::data
