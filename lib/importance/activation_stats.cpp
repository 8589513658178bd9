#include "importance/activation_stats.h"

#include <stdexcept>

#include "importance/estimator.h"
#include "util/progress.h"

namespace secateur::importance {

ActivationStats::ActivationStats(const model::Model& model, const std::set<std::string>& weights) {
  for (const std::string& name : weights) names_[model.hf_parameter(name).unsafeGetTensorImpl()] = name;
}

void ActivationStats::collect(model::Model& model, const std::vector<data::Batch>& batches,
                              const model::Gates* gates, const std::string& label) {
  torch::NoGradGuard no_grad;
  EvalScope eval(model);
  model::TapScope scope(this);
  Progress progress(label, static_cast<int64_t>(batches.size()), "batch");
  int64_t done = 0;
  for (const data::Batch& in : batches) {
    const data::Batch b = in.to(model.device());
    token_mask_ = b.attention_mask.defined() ? b.attention_mask.ne(0) : torch::Tensor();
    model::ForwardOptions options;
    options.token_type_ids = b.token_type_ids;
    model.forward(b.input_ids, b.attention_mask, gates, options);
    progress.update(++done);
  }
  token_mask_ = torch::Tensor();
  progress.finish();
}

void ActivationStats::projection_input(const torch::Tensor& weight, int64_t in_dim, const torch::Tensor& x) {
  const auto it = names_.find(weight.unsafeGetTensorImpl());
  if (it == names_.end()) return;
  // Token rows [N, in]: per-token inputs lose their padding; pooled inputs [B, in] are all real.
  torch::Tensor rows = x.detach();
  if (rows.dim() == 3 && token_mask_.defined() && token_mask_.sizes() == rows.sizes().slice(0, 2))
    rows = rows.index({token_mask_});
  rows = rows.reshape({-1, rows.size(-1)});
  Channel& c = channels_[it->second];
  c.in_dim = in_dim;
  // float64 chunks: exact enough that any split of the tokens into batches gives the same
  // statistics, without ever holding a float64 copy of a whole large activation.
  for (const torch::Tensor& chunk : rows.split(4096)) {
    const torch::Tensor xs = chunk.to(torch::kDouble);
    const double n = static_cast<double>(xs.size(0));
    if (n == 0) continue;
    const torch::Tensor batch_mean = xs.mean(0);
    const torch::Tensor batch_m2 = (xs - batch_mean).pow(2).sum(0);
    const torch::Tensor batch_sq = xs.pow(2).sum(0);
    if (c.count == 0) {
      c.mean = batch_mean;
      c.m2 = batch_m2;
      c.sum_sq = batch_sq;
    } else {
      // Chan, Golub & LeVeque's pairwise update of the mean and Σ(x − mean)².
      const double total = c.count + n;
      const torch::Tensor delta = batch_mean - c.mean;
      c.mean = c.mean + delta * (n / total);
      c.m2 = c.m2 + batch_m2 + delta.pow(2) * (c.count * n / total);
      c.sum_sq = c.sum_sq + batch_sq;
    }
    c.count += n;
  }
}

bool ActivationStats::seen(const std::string& weight) const { return channels_.count(weight) > 0; }

const ActivationStats::Channel& ActivationStats::channel(const std::string& weight) const {
  const auto it = channels_.find(weight);
  if (it == channels_.end()) throw std::out_of_range("no activations were seen for " + weight);
  return it->second;
}

torch::Tensor ActivationStats::variance(const std::string& weight) const {
  const Channel& c = channel(weight);
  return c.count > 1 ? c.m2 / (c.count - 1) : torch::zeros_like(c.m2);
}

namespace {

std::set<std::string> unit_projection_weights(const Context& ctx) {
  std::set<std::string> weights;
  for (const model::Group& g : ctx.structure.groups)
    if (ctx.kinds.count(g.kind))
      for (const model::ParamSlice* s : unit_slices(ctx, g))
        if (ctx.model.hf_parameter(s->hf_param_name).dim() == 2) weights.insert(s->hf_param_name);
  return weights;
}

}  // namespace

UnitActivations unit_activations(const Context& ctx, const std::string& label) {
  std::set<std::string> weights = unit_projection_weights(ctx);
  UnitActivations out{weights, ActivationStats(ctx.model, weights)};
  const model::Gates gates = leaf_gates(ctx, false);
  out.stats.collect(ctx.model, ctx.batches, ctx.gates ? &gates : nullptr, label);
  return out;
}

void UnitActivations::record_channel_means(Scores& scores) const {
  for (const std::string& w : weights)
    if (stats.seen(w)) {
      scores.channel_means[w] = stats.channel(w).mean.to(torch::kCPU);
      scores.channel_in_dim[w] = stats.channel(w).in_dim;
    }
}

}  // namespace secateur::importance
