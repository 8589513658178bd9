#pragma once
// Distillation from a teacher as a train::Extension (lib/train/extension.h):
//
//   logits   L_KD = T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))           (Hinton et al., 2015, eq. 2;
//            the T² keeps gradient magnitudes comparable across temperatures), averaged over
//            the positions that take a loss: non-padding tokens (causal LM), masked tokens
//            (masked LM), examples (classification).
//   hidden   L_layer = Σ_{i ∈ teacher layers} MSE(W·h_s^{m(i)}, h_t^{i})   (CoFi, Xia et al. 2022,
//            §3.3, "layerwise distillation"), W a learned linear map (identity at the start) or
//            the identity; m(i) is either
//              dynamic  CoFi's matching: teacher layers in order, each matched to the student layer
//                       of smallest MSE among those at or after the previous match
//                       (m(i) = argmin_{j ≥ m(i−1)} MSE(W·h_s^j, h_t^i), m(−1) = 0;
//                       princeton-nlp/CoFiPruning trainer.py, layer_distill_version 4)
//              fixed    student layer k ↔ the k-th chosen teacher layer (same depth: Minitron's
//                       intermediate-state loss after width pruning, Muralidharan et al. 2024)
//
// The trainer mixes them with the task loss: task_loss_weight·L_task + α_logits·L_KD + α_hidden·L_layer
// (the train stage sets task_loss_weight = 1 − α_logits unless told otherwise).
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "train/extension.h"

namespace secateur::train {

// T²·KL(softmax(teacher/T) ‖ softmax(student/T)) per position (the last dim holds the classes),
// averaged over positions where `mask` is true (mask shaped as the logits without their last
// dim; undefined = every position). Computed in fp32.
torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature,
                      const torch::Tensor& mask = {});

// Mean squared error between hidden states [B, T, H] over positions where attention_mask is 1
// (undefined = all): Σ m·‖s − t‖² / (H·Σ m). Equals torch's mse_loss when nothing is padded.
torch::Tensor hidden_mse(const torch::Tensor& student, const torch::Tensor& teacher, const torch::Tensor& attention_mask = {});

// CoFi's dynamic layer matching from a [teachers, students] matrix of losses: for each teacher
// layer in order, the student layer with the smallest loss among those >= the previous match.
std::vector<int64_t> match_layers(const torch::Tensor& losses);

enum class LayerMatching { dynamic, fixed };

struct DistillOptions {
  double alpha_logits = 0.5;  // weight of L_KD (0 = no logit distillation)
  double temperature = 2.0;
  double alpha_hidden = 0.0;  // weight of L_layer (0 = no hidden-state distillation)
  LayerMatching matching = LayerMatching::dynamic;
  // Teacher hidden states to match, as indices into HF's hidden_states (1 = first layer's
  // output, L = last); empty = every layer. CoFi uses 3, 6, 9, 12 of a 12-layer BERT.
  std::vector<int64_t> teacher_layers;
  bool projection = true;     // learn W (initialised to the identity); false: W = I
  double projection_lr = -1;  // < 0: the trainer's learning rate
};

class Distillation : public Extension {
 public:
  // `teacher` runs in eval mode without gradients; it must have the student's task head (and,
  // for logits, vocabulary / classes) and, with projection, the student's hidden size.
  Distillation(std::shared_ptr<model::Model> teacher, const model::ModelConfig& student, DistillOptions options);

  std::string name() const override { return "distill"; }
  std::vector<ParamGroup> param_groups() override;
  bool needs_hidden_states() const override { return options_.alpha_hidden > 0; }
  torch::Tensor loss(const StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                     StepMetrics& metrics) override;
  void save(io::TensorMap& tensors, nlohmann::json& state) const override;
  void load(const io::TensorMap& tensors, const nlohmann::json& state) override;

  // The last micro-batch's matching (student layer of each chosen teacher layer).
  const std::vector<int64_t>& last_matching() const { return last_matching_; }
  // The hidden-state loss of one forward pass (used by loss(), public for tests).
  torch::Tensor layer_loss(const std::vector<torch::Tensor>& student_hidden, const std::vector<torch::Tensor>& teacher_hidden,
                           const torch::Tensor& attention_mask);

 private:
  std::shared_ptr<model::Model> teacher_;
  model::Task task_;
  DistillOptions options_;
  torch::Tensor projection_;  // [H, H], applied as h·Wᵀ (a Linear without bias)
  std::vector<int64_t> last_matching_;
};

}  // namespace secateur::train
