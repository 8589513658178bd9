// Learning-rate schedules and the weight-decay exclusion rule.
#include <algorithm>
#include <cmath>

#include "train/trainer.h"

namespace secateur::train {

int64_t warmup_steps(const ScheduleOptions& options, int64_t total_steps) {
  if (options.warmup_steps > 0) return options.warmup_steps;
  return static_cast<int64_t>(std::llround(options.warmup_ratio * static_cast<double>(total_steps)));
}

// transformers/optimization.py: get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
// get_cosine_schedule_with_warmup (num_cycles = 0.5). `step` is the number of optimiser steps
// already taken, as LambdaLR's current_step.
double lr_factor(const ScheduleOptions& options, int64_t step, int64_t total_steps) {
  const int64_t warmup = warmup_steps(options, total_steps);
  if (step < warmup) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  double m = 1.0;
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  const double progress = static_cast<double>(step - warmup) / span;
  switch (options.kind) {
    case ScheduleKind::constant:
      m = 1.0;
      break;
    case ScheduleKind::linear:
      m = std::max(0.0, 1.0 - progress);
      break;
    case ScheduleKind::cosine:
      m = std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
      break;
  }
  return options.min_lr_ratio + (1.0 - options.min_lr_ratio) * m;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

bool decays(const std::string& hf_name, bool decay_embeddings) {
  // Biases: "...dense.bias", "...c_attn.bias", and extension-style "*_bias".
  if (ends_with(hf_name, "bias")) return false;
  // Norm weights. HF names: BERT/RoBERTa "LayerNorm", GPT-2 "ln_1"/"ln_2"/"ln_f", LLaMA-family
  // "input_layernorm"/"post_attention_layernorm"/"model.norm".
  if (contains(hf_name, "LayerNorm") || contains(hf_name, "layernorm") || contains(hf_name, "layer_norm") ||
      contains(hf_name, ".ln_") || hf_name.rfind("ln_", 0) == 0 || contains(hf_name, "norm."))
    return false;
  if (!decay_embeddings && (contains(hf_name, "embed") || contains(hf_name, ".wte.") || contains(hf_name, ".wpe.")))
    return false;
  return true;
}

}  // namespace secateur::train
