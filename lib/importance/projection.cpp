// projection: AMP (Mugnaini et al. 2025, "Efficient LLMs with AMP: Attention Heads and MLP
// Pruning", arXiv:2504.21174), which scores structures by projecting the calibration inputs onto
// their weights (Sec. 3):
//   head n      I_n = ‖h_n W_n^O‖₁       h_n the head's output over the tokens of a sequence, W_n^O
//                                         its rows of the output projection: the L1 norm of the
//                                         head's contribution to the residual stream
//   MLP row m   I_m = (1/S) Σ_s |SiLU((x_s W_gate)_m) · (x_s W_up)_m|
//                                         the mean magnitude of the neuron's activation, i.e. of
//                                         input channel m of the down projection
// Both are read at the output projection's input (o_proj / attn.c_proj / attention.output.dense,
// down_proj / mlp.c_proj / output.dense; for GPT-2 and BERT the MLP activation is GELU(x W_in)).
// Sequences are pooled by averaging over all real calibration tokens, so I_n is the mean per-token
// ‖h_{n,s} W_n^O‖₁ (a per-layer constant away from the per-sequence sum: the same ranking). A KV
// unit in GQA group mode scores the sum over its query heads.
#include <algorithm>
#include <map>

#include "dist/dist.h"
#include "importance/estimators.h"
#include "model/tap.h"

namespace secateur::importance {
namespace {

// Σ over real tokens of each head's ‖h W^O‖₁ (block > 1) or of each channel's |x| (block 1), per
// watched output projection, accumulated on the model's device in float64.
class ProjectionTap : public model::Tap {
 public:
  struct Watch {
    std::string name;
    int64_t block = 1;   // input channels per scored unit: head_dim for heads, 1 for neurons
    int64_t units = 0;   // in / block
    torch::Tensor sum;   // [units], on the weight's device
  };

  void watch(const torch::Tensor& weight, const std::string& name, int64_t in_dim, int64_t block) {
    Watch& w = watched_[weight.unsafeGetTensorImpl()];
    w.name = name;
    w.block = block;
    w.units = weight.size(in_dim) / block;
    device_ = weight.device();
  }

  // Under data parallelism, every rank's sums added up, in name order (the map's keys are
  // addresses, which differ between processes); a weight this rank never saw (it owned no
  // batch) adds zeros. Alone: nothing.
  void sum_over_ranks() {
    if (dist::world_size() == 1) return;
    std::map<std::string, Watch*> by_name;
    for (auto& [impl, w] : watched_) by_name[w.name] = &w;
    std::vector<torch::Tensor> sums;
    for (auto& [name, w] : by_name) {
      if (!w->sum.defined()) w->sum = torch::zeros({w->units}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
      sums.push_back(w->sum);
    }
    dist::all_reduce_sum(sums);
  }
  void set_token_mask(torch::Tensor mask) { token_mask_ = std::move(mask); }

  void projection_input(const torch::Tensor& weight, int64_t in_dim, const torch::Tensor& x) override {
    const auto it = watched_.find(weight.unsafeGetTensorImpl());
    if (it == watched_.end()) return;
    Watch& w = it->second;
    torch::Tensor rows = x.detach();
    if (rows.dim() == 3 && token_mask_.defined() && token_mask_.sizes() == rows.sizes().slice(0, 2))
      rows = rows.index({token_mask_});
    rows = rows.reshape({-1, rows.size(-1)});
    const torch::Tensor part = w.block == 1 ? channel_magnitude(rows) : head_contribution(rows, weight.detach(), in_dim, w.block);
    w.sum = w.sum.defined() ? w.sum + part : part;
  }

  const std::map<const void*, Watch>& watched() const { return watched_; }

 private:
  // Σ_s |x_{s,m}| per channel m.
  static torch::Tensor channel_magnitude(const torch::Tensor& rows) { return rows.abs().sum(0, false, torch::kDouble); }

  // Σ_s ‖x_{s,n} W_n^O‖₁ per head n: the head's slice of the input times its slice of the weight,
  // in chunks of tokens so that the [tokens, heads, hidden] product stays small.
  static torch::Tensor head_contribution(const torch::Tensor& rows, const torch::Tensor& weight, int64_t in_dim, int64_t block) {
    const int64_t heads = rows.size(1) / block;
    // W as [heads, block, out] whatever the layout (Linear [out, in], Conv1D [in, out]).
    const torch::Tensor w = (in_dim == 1 ? weight.t() : weight).reshape({heads, block, -1}).to(torch::kFloat);
    torch::Tensor total = torch::zeros({heads}, rows.options().dtype(torch::kDouble));
    for (const torch::Tensor& chunk : rows.split(256)) {
      const torch::Tensor h = chunk.to(torch::kFloat).reshape({chunk.size(0), heads, block});
      // [heads, tokens, out] = per head, h_{s,n} · W_n
      const torch::Tensor contribution = torch::bmm(h.transpose(0, 1), w);
      total += contribution.abs().sum({1, 2}, false, torch::kDouble);
    }
    return total;
  }

  std::map<const void*, Watch> watched_;
  torch::Tensor token_mask_;
  torch::Device device_ = torch::kCPU;
};

class Projection : public Estimator {
 public:
  std::string name() const override { return "projection"; }
  bool needs_data() const override { return true; }
  std::set<GroupKind> supported() const override { return {GroupKind::head, GroupKind::kv_group, GroupKind::ffn_neuron}; }

  Scores estimate(const Context& ctx) override {
    check_request(*this, ctx);
    ProjectionTap tap;
    watch_output_projections(ctx, tap);
    const double tokens = run(ctx, tap);
    std::map<std::string, const ProjectionTap::Watch*> by_name;
    for (const auto& [impl, w] : tap.watched()) by_name[w.name] = &w;
    // Each output-projection slice of a unit adds the scores of the heads / channels it covers.
    auto value = [&](const std::string& name, int64_t dim) -> torch::Tensor {
      const auto it = by_name.find(name);
      if (it == by_name.end() || !it->second->sum.defined() || dim != input_dim(ctx, name)) return {};
      const ProjectionTap::Watch& w = *it->second;
      // Spread each head's score evenly over its channels: a slice of whole heads sums to theirs.
      const torch::Tensor per_channel = (w.sum / (static_cast<double>(w.block) * tokens)).repeat_interleave(w.block);
      // Shaped [1, in] (Linear) or [in, 1] (Conv1D): summing over the other dim leaves it as is.
      return per_channel.unsqueeze(dim == 1 ? 0 : 1);
    };
    return sum_over_units(ctx, value, [](double v) { return v; });
  }

 private:
  // The dim of an HF weight that indexes its inputs: 0 for GPT-2's Conv1D, 1 for nn.Linear.
  static int64_t input_dim(const Context& ctx, const std::string& name) {
    return ctx.model.config().family == model::Family::gpt2 ? 0 : 1;
  }

  // Every output projection a requested unit has a slice of along its input dim: a head's (o_proj)
  // is head_dim wide, a neuron's (down_proj) one channel.
  static void watch_output_projections(const Context& ctx, ProjectionTap& tap) {
    for (const model::Group& g : ctx.structure.groups) {
      if (!ctx.kinds.count(g.kind)) continue;
      for (const model::ParamSlice* s : unit_slices(ctx, g)) {
        const torch::Tensor w = ctx.model.hf_parameter(s->hf_param_name);
        if (w.dim() != 2 || s->dim != input_dim(ctx, s->hf_param_name)) continue;
        const bool neuron = g.kind == GroupKind::ffn_neuron;
        const int64_t block = neuron ? 1 : ctx.model.config().head_dim;
        tap.watch(w, s->hf_param_name, s->dim, block);
      }
    }
  }

  // One forward pass per batch this rank owns with the tap installed, then the sums over ranks;
  // returns the number of real tokens (of all ranks).
  static double run(const Context& ctx, ProjectionTap& tap) {
    torch::NoGradGuard no_grad;
    EvalScope eval(ctx.model);
    const double tokens = run_batches(ctx, tap, dist::owned(ctx.batches));
    tap.sum_over_ranks();
    return std::max(dist::sum_over_ranks(tokens), 1.0);
  }

  static double run_batches(const Context& ctx, ProjectionTap& tap, const std::vector<data::Batch>& batches) {
    const model::Gates gates = leaf_gates(ctx, false);
    model::TapScope scope(&tap);
    double tokens = 0;
    for (const data::Batch& in : batches) {
      const data::Batch b = in.to(ctx.model.device());
      const torch::Tensor mask = b.attention_mask.defined() ? b.attention_mask.ne(0) : torch::Tensor();
      tap.set_token_mask(mask);
      model::ForwardOptions options;
      options.token_type_ids = b.token_type_ids;
      ctx.model.forward(b.input_ids, b.attention_mask, ctx.gates ? &gates : nullptr, options);
      tokens += mask.defined() ? mask.sum().item<double>() : static_cast<double>(b.input_ids.numel());
    }
    return tokens;
  }
};

}  // namespace

std::unique_ptr<Estimator> make_projection(const EstimatorOptions&) { return std::make_unique<Projection>(); }

}  // namespace secateur::importance
