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

  // On a GPU: host tensors go through pinned memory, so the copies are asynchronous, and an
  // all-ones attention mask is dropped (undefined means "every token visible", which every
  // consumer accepts): the model then chooses its unmasked attention kernel without reading the
  // mask back from the device, a host sync per forward pass. Elsewhere the batch is unchanged.
  Batch to(const torch::Device& device) const {
    const bool to_gpu = device.is_cuda();
    auto move = [&](const torch::Tensor& t) {
      if (!t.defined()) return t;
      if (to_gpu && t.device().is_cpu()) return t.pin_memory().to(device, /*non_blocking=*/true);
      return t.to(device, /*non_blocking=*/true);
    };
    const bool all_visible = to_gpu && attention_mask.defined() && attention_mask.device().is_cpu() &&
                             attention_mask.all().item<bool>();
    return {move(input_ids), all_visible ? torch::Tensor() : move(attention_mask), move(token_type_ids), move(labels)};
  }
};

}  // namespace secateur::data
