#include "train/distill.h"

#include "util/error.h"

namespace secateur::train {

torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature,
                      const torch::Tensor& mask) {
  if (student_logits.sizes() != teacher_logits.sizes())
    throw UserError("distill: student logits " + std::to_string(student_logits.size(-1)) + " wide vs teacher " +
                    std::to_string(teacher_logits.size(-1)) + " (or different shapes): the teacher must share the task head");
  const auto log_ps = torch::log_softmax(student_logits.to(torch::kFloat) / temperature, -1);
  const auto log_pt = torch::log_softmax(teacher_logits.to(torch::kFloat) / temperature, -1);
  // KL(p_t ‖ p_s) = Σ_c p_t,c (log p_t,c − log p_s,c), per position.
  auto kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1);
  if (mask.defined()) {
    const auto m = mask.to(torch::kFloat);
    kl = (kl * m).sum() / m.sum().clamp_min(1.0);
  } else {
    kl = kl.mean();
  }
  return kl * (temperature * temperature);
}

torch::Tensor hidden_mse(const torch::Tensor& student, const torch::Tensor& teacher, const torch::Tensor& attention_mask) {
  const auto diff = (student.to(torch::kFloat) - teacher.to(torch::kFloat)).pow(2);
  if (!attention_mask.defined()) return diff.mean();
  const auto m = attention_mask.to(torch::kFloat).unsqueeze(-1);
  return (diff * m).sum() / (m.sum().clamp_min(1.0) * static_cast<double>(student.size(-1)));
}

std::vector<int64_t> match_layers(const torch::Tensor& losses) {
  const auto l = losses.detach().to(torch::kDouble).cpu();
  std::vector<int64_t> out;
  int64_t last = 0;
  for (int64_t i = 0; i < l.size(0); ++i) {
    int64_t best = last;
    double best_value = 0;
    for (int64_t j = last; j < l.size(1); ++j) {
      const double v = l[i][j].item<double>();
      if (j == last || v < best_value) {
        best = j;
        best_value = v;
      }
    }
    out.push_back(best);
    last = best;
  }
  return out;
}

Distillation::Distillation(std::shared_ptr<model::Model> teacher, const model::ModelConfig& student, DistillOptions options)
    : teacher_(std::move(teacher)), task_(student.task), options_(std::move(options)) {
  if (!teacher_) throw UserError("distill: no teacher model");
  const auto& tc = teacher_->config();
  if (tc.task != student.task)
    throw UserError("distill: the teacher is a " + model::to_string(tc.task) + " model, the student a " + model::to_string(student.task));
  teacher_->eval();
  for (const auto& name : teacher_->hf_names()) teacher_->hf_parameter(name).set_requires_grad(false);
  for (auto l : options_.teacher_layers)
    if (l < 1 || l > tc.num_layers)
      throw UserError("distill.teacher_layers: " + std::to_string(l) + " is outside 1.." + std::to_string(tc.num_layers));
  if (options_.alpha_hidden > 0) {
    if (options_.projection && tc.hidden_size != student.hidden_size)
      throw UserError("distill: teacher hidden size " + std::to_string(tc.hidden_size) + " differs from the student's " +
                      std::to_string(student.hidden_size));
    const int64_t chosen = options_.teacher_layers.empty() ? tc.num_layers : static_cast<int64_t>(options_.teacher_layers.size());
    if (options_.matching == LayerMatching::fixed && chosen != student.num_layers)
      throw UserError("distill.layer_matching fixed pairs student layer k with the k-th teacher layer: the student has " +
                      std::to_string(student.num_layers) + " layers, " + std::to_string(chosen) + " teacher layers are chosen");
    if (options_.projection)
      projection_ = torch::eye(student.hidden_size, torch::TensorOptions().dtype(torch::kFloat).device(teacher_->device()))
                        .set_requires_grad(true);
  }
}

std::vector<ParamGroup> Distillation::param_groups() {
  if (!projection_.defined()) return {};
  ParamGroup g;
  g.name = "projection";
  g.params = {projection_};
  g.lr = options_.projection_lr;
  return {g};
}

torch::Tensor Distillation::layer_loss(const std::vector<torch::Tensor>& student_hidden, const std::vector<torch::Tensor>& teacher_hidden,
                                       const torch::Tensor& attention_mask) {
  // hidden_states[0] is the embedding output; layers are 1..L.
  std::vector<torch::Tensor> students;
  for (size_t j = 1; j < student_hidden.size(); ++j) {
    const auto h = student_hidden[j].to(torch::kFloat);
    students.push_back(projection_.defined() ? torch::matmul(h, projection_.t()) : h);
  }
  std::vector<int64_t> chosen = options_.teacher_layers;
  if (chosen.empty())
    for (size_t i = 1; i < teacher_hidden.size(); ++i) chosen.push_back(static_cast<int64_t>(i));
  const auto n_t = static_cast<int64_t>(chosen.size()), n_s = static_cast<int64_t>(students.size());
  if (options_.matching == LayerMatching::fixed) {
    torch::Tensor total = torch::zeros({}, students.front().options());
    last_matching_.clear();
    for (int64_t k = 0; k < n_t; ++k) {
      total = total + hidden_mse(students[static_cast<size_t>(k)], teacher_hidden[static_cast<size_t>(chosen[k])], attention_mask);
      last_matching_.push_back(k);
    }
    return total;
  }
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < n_t; ++i)
    for (int64_t j = 0; j < n_s; ++j)
      rows.push_back(hidden_mse(students[static_cast<size_t>(j)], teacher_hidden[static_cast<size_t>(chosen[i])], attention_mask));
  const auto losses = torch::stack(rows).view({n_t, n_s});
  last_matching_ = match_layers(losses);
  const auto index = torch::tensor(last_matching_, torch::kLong).to(losses.device()).unsqueeze(1);
  return losses.gather(1, index).sum();
}

torch::Tensor Distillation::loss(const StepInfo& step, const data::Batch& batch, const model::ForwardOutput& output,
                                 StepMetrics& metrics) {
  model::ForwardOutput t;
  {
    torch::NoGradGuard no_grad;
    model::ForwardOptions f;
    f.token_type_ids = batch.token_type_ids;
    f.output_hidden_states = options_.alpha_hidden > 0;
    t = teacher_->forward(batch.input_ids, batch.attention_mask, nullptr, f);
  }
  torch::Tensor total;
  if (options_.alpha_logits > 0) {
    torch::Tensor mask;
    if (task_ == model::Task::masked_lm && batch.labels.defined()) mask = batch.labels != -100;
    else if (output.logits.dim() == 3 && batch.attention_mask.defined()) mask = batch.attention_mask != 0;
    const auto kd = kd_loss(output.logits, t.logits, options_.temperature, mask);
    if (step.logging) metrics["distill_kd"] = kd.detach().item<double>();
    total = options_.alpha_logits * kd;
  }
  if (options_.alpha_hidden > 0) {
    if (output.hidden_states.empty() || t.hidden_states.empty())
      throw UserError("distill: hidden states were not returned by the forward pass");
    const auto hl = layer_loss(output.hidden_states, t.hidden_states, batch.attention_mask);
    if (step.logging) metrics["distill_hidden"] = hl.detach().item<double>();
    total = total.defined() ? total + options_.alpha_hidden * hl : options_.alpha_hidden * hl;
  }
  return total;
}

void Distillation::save(io::TensorMap& tensors, nlohmann::json& state) const {
  if (projection_.defined()) tensors["projection"] = projection_.detach();
  state["last_matching"] = last_matching_;
}

void Distillation::load(const io::TensorMap& tensors, const nlohmann::json& state) {
  if (projection_.defined()) {
    auto it = tensors.find("projection");
    if (it == tensors.end()) throw UserError("checkpoint: the distill extension's projection is missing");
    torch::NoGradGuard no_grad;
    projection_.copy_(it->second);
  }
  if (state.contains("last_matching")) last_matching_ = state["last_matching"].get<std::vector<int64_t>>();
}

}  // namespace secateur::train
