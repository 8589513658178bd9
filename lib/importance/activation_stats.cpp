#include "importance/activation_stats.h"

#include <stdexcept>

#include "dist/dist.h"
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
  const std::vector<data::Batch> mine = dist::owned(batches);
  {
    model::TapScope scope(this);
    run_batches(model, mine, gates, label);
  }
  last_input_ = torch::Tensor();
  for (const auto& [weight, source] : same_input_as_) channels_[weight] = channels_.at(source);
  pool_over_ranks(model.device());
}

void ActivationStats::run_batches(model::Model& model, const std::vector<data::Batch>& batches,
                                  const model::Gates* gates, const std::string& label) {
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

// Pooled as Chan et al. combine two parts, through the mean of all N tokens:
//   mean = Σ_r n_r·mean_r / N        Σ(x − mean)² = Σ_r [M2_r + n_r·(mean_r − mean)²]
// so the result is exact (to float64 rounding) whatever the split; counts and Σx² simply add.
void ActivationStats::pool_over_ranks(torch::Device device) {
  if (dist::world_size() == 1) return;
  agree_on_channels(device);
  std::vector<torch::Tensor> sums;
  for (auto& [name, c] : channels_)
    for (const torch::Tensor& t : {torch::full({1}, c.count, torch::kDouble), c.mean * c.count, c.sum_sq}) sums.push_back(t);
  dist::all_reduce_sum(sums);
  std::vector<torch::Tensor> spreads;
  size_t i = 0;
  for (auto& [name, c] : channels_) {
    const double total = sums[i].item<double>();
    const torch::Tensor mean = sums[i + 1] / total;
    spreads.push_back(c.m2 + (c.mean - mean).pow(2) * c.count);
    c.count = total;
    c.mean = mean;
    c.sum_sq = sums[i + 2];
    i += 3;
  }
  dist::all_reduce_sum(spreads);
  i = 0;
  for (auto& [name, c] : channels_) c.m2 = spreads[i++];
}

// Every rank must sum the same channels in the same order: a rank that saw no token of a
// watched weight (it owned no batch) takes the channel's shape from the ranks that did, with
// zero statistics; a weight no rank saw stays unseen.
void ActivationStats::agree_on_channels(torch::Device device) {
  std::set<std::string> watched;
  for (const auto& [impl, name] : names_) watched.insert(name);
  // Per watched weight, summed over ranks: [ranks that saw it, Σ in_dim, Σ in_features].
  torch::Tensor shapes = torch::zeros({static_cast<int64_t>(watched.size()), 3}, torch::kDouble);
  auto rows = shapes.accessor<double, 2>();
  int64_t k = 0;
  for (const std::string& name : watched) {
    const auto it = channels_.find(name);
    if (it != channels_.end() && it->second.count > 0) {
      rows[k][0] = 1;
      rows[k][1] = static_cast<double>(it->second.in_dim);
      rows[k][2] = static_cast<double>(it->second.mean.size(0));
    }
    ++k;
  }
  dist::all_reduce_sum(shapes);
  k = 0;
  for (const std::string& name : watched) {
    const double ranks = rows[k][0];
    const auto it = channels_.find(name);
    if (ranks == 0) {
      if (it != channels_.end()) channels_.erase(it);
    } else if (it == channels_.end() || it->second.count == 0) {
      Channel& c = channels_[name];
      c.in_dim = static_cast<int64_t>(rows[k][1] / ranks);
      c.count = 0;
      const auto zeros = torch::zeros({static_cast<int64_t>(rows[k][2] / ranks)}, torch::TensorOptions().dtype(torch::kDouble).device(device));
      c.mean = zeros;
      c.m2 = zeros.clone();
      c.sum_sq = zeros.clone();
    }
    ++k;
  }
}

void ActivationStats::projection_input(const torch::Tensor& weight, int64_t in_dim, const torch::Tensor& x) {
  const auto it = names_.find(weight.unsafeGetTensorImpl());
  if (it == names_.end()) return;
  if (last_input_.defined() && last_input_.unsafeGetTensorImpl() == x.unsafeGetTensorImpl()) {
    if (it->second != last_input_weight_) same_input_as_[it->second] = last_input_weight_;
    return;
  }
  last_input_ = x;
  last_input_weight_ = it->second;
  // Token rows [N, in]: per-token inputs lose their padding; pooled inputs [B, in] are all real.
  torch::Tensor rows = x.detach();
  if (rows.dim() == 3 && token_mask_.defined() && token_mask_.sizes() == rows.sizes().slice(0, 2))
    rows = rows.index({token_mask_});
  rows = rows.reshape({-1, rows.size(-1)});
  Channel& c = channels_[it->second];
  c.in_dim = in_dim;
  // Per chunk, Σx and Σx² in float64 straight from the activations' own dtype (one read each, no
  // float64 copy of the chunk: on a GPU those copies made a 1.1B calibration memory-bound for
  // minutes), then Chan, Golub & LeVeque's pairwise update of the mean and Σ(x − mean)², with
  // the chunk's own Σ(x − x̄)² = Σx² − (Σx)²/n. float64 keeps any split of the tokens into
  // batches equal to ~1e-12.
  for (const torch::Tensor& chunk : rows.split(16384)) {
    const double n = static_cast<double>(chunk.size(0));
    if (n == 0) continue;
    const torch::Tensor sum = chunk.sum(0, /*keepdim=*/false, torch::kDouble);
    const torch::Tensor batch_sq = at::linalg_vector_norm(chunk, 2, {0}, false, torch::kDouble).pow(2);
    const torch::Tensor batch_mean = sum / n;
    const torch::Tensor batch_m2 = (batch_sq - sum * batch_mean).clamp_min(0);
    if (c.count == 0) {
      c.mean = batch_mean;
      c.m2 = batch_m2;
      c.sum_sq = batch_sq;
    } else {
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
