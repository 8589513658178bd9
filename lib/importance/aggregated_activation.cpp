// aggregated_activation: Minitron (Muralidharan et al. 2024, "Compact Language Models via Pruning
// and Knowledge Distillation", §2.2, activation-based importance), which scores width by the
// activations a structure produces on a small calibration set, aggregated over the sequence and
// then over the batch:
//   head i        F_head(i)  = agg_B agg_S ‖Attn(XW^{Q,i}, XW^{K,i}, XW^{V,i})‖₂   the L2 norm of
//                              the head's output (its context, as the output projection reads it)
//   neuron i      F_neuron(i) = agg_B agg_S X·(W₁^i)ᵀ   the pre-activation of the projection that
//                              feeds the nonlinearity (GPT-2 c_fc, BERT intermediate.dense, the
//                              gate_proj of SwiGLU MLPs), bias included
//   hidden dim i  F_emb(i)   = agg_B agg_S LN(X)_i   the normalised residual stream, as the
//                              attention and MLP blocks read it, summed over every layer's norms
// agg_S over the real tokens of a sequence and agg_B over sequences are each mean, L2 norm or
// (unbiased) variance; the paper's ablation settles on L2 over the batch and mean over the
// sequence, the defaults. A key/value group (GQA "group" mode) scores the sum over its query heads.
#include <cmath>
#include <map>

#include "dist/dist.h"
#include "importance/estimators.h"
#include "model/tap.h"
#include "util/error.h"

namespace secateur::importance {
namespace {

enum class Aggregation { mean, l2, var };

Aggregation parse(const std::string& name) {
  return name == "l2" ? Aggregation::l2 : name == "var" ? Aggregation::var : Aggregation::mean;
}

// agg over dim 1 of values [rows, n, units] where `mask` [rows, n] is true (undefined = all):
// [rows, units], with the rows' counts.
torch::Tensor aggregate(const torch::Tensor& values, const torch::Tensor& mask, Aggregation a, torch::Tensor& count) {
  const torch::Tensor m = mask.defined() ? mask.to(torch::kDouble).unsqueeze(-1)
                                         : torch::ones({values.size(0), values.size(1), 1}, values.options().dtype(torch::kDouble));
  const torch::Tensor v = values.to(torch::kDouble) * m;
  count = m.sum(1);
  const torch::Tensor sum = v.sum(1), sum_sq = (v * v).sum(1);
  switch (a) {
    case Aggregation::mean: return sum / count.clamp_min(1);
    case Aggregation::l2: return sum_sq.sqrt();
    case Aggregation::var: return ((sum_sq - sum * sum / count.clamp_min(1)) / (count - 1).clamp_min(1)).clamp_min(0);
  }
  return sum;
}

// One scored quantity (a projection's head outputs, neuron pre-activations or input channels):
// per unit Σ_b v_b and Σ_b v_b² over sequences b, v_b the sequence aggregate, and the count of
// sequences — sufficient for every batch aggregation.
struct Quantity {
  torch::Tensor sum, sum_sq;
  double sequences = 0;

  void add(const torch::Tensor& per_token, const torch::Tensor& mask, Aggregation sequence) {
    torch::Tensor count;
    const torch::Tensor v = aggregate(per_token, mask, sequence, count);
    const torch::Tensor real = (count.squeeze(-1) > 0).to(torch::kDouble).unsqueeze(-1);  // sequences with tokens
    const torch::Tensor s = (v * real).sum(0), s2 = (v * v * real).sum(0);
    sum = sum.defined() ? sum + s : s;
    sum_sq = sum_sq.defined() ? sum_sq + s2 : s2;
    sequences += real.sum().item<double>();
  }

  torch::Tensor finish(Aggregation batch) const {
    const double n = std::max(sequences, 1.0);
    switch (batch) {
      case Aggregation::mean: return sum / n;
      case Aggregation::l2: return sum_sq.sqrt();
      case Aggregation::var: return ((sum_sq - sum * sum / n) / std::max(sequences - 1, 1.0)).clamp_min(0);
    }
    return sum;
  }
};

// What is watched on one projection weight.
struct Watch {
  std::string name;
  int64_t in_dim = 1;     // the dim of the HF weight indexing its inputs (1 Linear, 0 Conv1D)
  int64_t head_dim = 0;   // > 0: its inputs are heads' contexts (an output projection)
  bool neurons = false;   // its outputs are neurons: score their pre-activations
  bool channels = false;  // its input is a norm's output: score its channels
  std::string bias;       // the neurons' bias, if any
  Quantity heads, preactivations, inputs;
};

class AggregationTap : public model::Tap {
 public:
  AggregationTap(const model::Model& model, Aggregation sequence) : model_(model), sequence_(sequence) {}

  Watch& watch(const std::string& name) {
    Watch& w = watched_[model_.hf_parameter(name).unsafeGetTensorImpl()];
    w.name = name;
    w.in_dim = model_.config().family == model::Family::gpt2 ? 0 : 1;
    return w;
  }
  void set_token_mask(torch::Tensor mask) { mask_ = std::move(mask); }
  const std::map<const void*, Watch>& watched() const { return watched_; }

  // Under data parallelism, every rank's sums and sequence counts added up, in name order (the
  // map's keys are addresses, which differ between processes); a quantity this rank never fed
  // (it owned no batch) adds zeros. Alone: nothing.
  void sum_over_ranks() {
    if (dist::world_size() == 1) return;
    std::map<std::string, Watch*> by_name;
    for (auto& [impl, w] : watched_) by_name[w.name] = &w;
    std::vector<Quantity*> quantities;
    std::vector<torch::Tensor> sums;
    std::vector<double> sequences;
    auto share = [&](Quantity& q, int64_t units, const torch::Tensor& weight) {
      const auto zeros = [&] { return torch::zeros({units}, weight.options().dtype(torch::kDouble)); };
      if (!q.sum.defined()) {
        q.sum = zeros();
        q.sum_sq = zeros();
      }
      quantities.push_back(&q);
      sums.insert(sums.end(), {q.sum, q.sum_sq});
      sequences.push_back(q.sequences);
    };
    for (auto& [name, w] : by_name) {
      const torch::Tensor weight = model_.hf_parameter(name);
      const int64_t in = weight.size(w->in_dim), out = weight.size(1 - w->in_dim);
      if (w->head_dim > 0) share(w->heads, in / w->head_dim, weight);
      if (w->channels) share(w->inputs, in, weight);
      if (w->neurons) share(w->preactivations, out, weight);
    }
    dist::all_reduce_sum(sums);
    dist::sum_over_ranks(sequences);
    for (size_t i = 0; i < quantities.size(); ++i) quantities[i]->sequences = sequences[i];
  }

  void projection_input(const torch::Tensor& weight, int64_t in_dim, const torch::Tensor& x) override {
    const auto it = watched_.find(weight.unsafeGetTensorImpl());
    if (it == watched_.end() || x.dim() != 3) return;
    Watch& w = it->second;
    const torch::Tensor input = x.detach().to(torch::kFloat);
    const torch::Tensor mask = mask_.defined() && mask_.sizes() == input.sizes().slice(0, 2) ? mask_ : torch::Tensor();
    if (w.head_dim > 0) {
      const torch::Tensor per_head = input.reshape({input.size(0), input.size(1), -1, w.head_dim}).norm(2, -1);
      w.heads.add(per_head, mask, sequence_);
    }
    if (w.channels) w.inputs.add(input, mask, sequence_);
    if (w.neurons) {
      const torch::Tensor W = weight.detach().to(torch::kFloat);
      torch::Tensor pre = in_dim == 1 ? torch::matmul(input, W.t()) : torch::matmul(input, W);
      if (!w.bias.empty()) pre = pre + model_.hf_parameter(w.bias).detach().to(torch::kFloat);
      w.preactivations.add(pre, mask, sequence_);
    }
  }

 private:
  const model::Model& model_;
  Aggregation sequence_;
  std::map<const void*, Watch> watched_;
  torch::Tensor mask_;
};

class AggregatedActivation : public Estimator {
 public:
  explicit AggregatedActivation(const EstimatorOptions& o)
      : batch_(parse(o.batch_aggregation)), sequence_(parse(o.sequence_aggregation)) {}

  std::string name() const override { return "aggregated_activation"; }
  bool needs_data() const override { return true; }
  std::set<GroupKind> supported() const override {
    return {GroupKind::head, GroupKind::kv_group, GroupKind::ffn_neuron, GroupKind::hidden_dim};
  }

  Scores estimate(const Context& ctx) override {
    check_request(*this, ctx);
    AggregationTap tap(ctx.model, sequence_);
    watch(ctx, tap);
    run(ctx, tap);
    tap.sum_over_ranks();
    std::map<std::string, const Watch*> by_name;
    for (const auto& [impl, w] : tap.watched()) by_name[w.name] = &w;
    auto value = [&](const std::string& name, int64_t dim) -> torch::Tensor {
      const auto it = by_name.find(name);
      if (it == by_name.end()) return {};
      const Watch& w = *it->second;
      torch::Tensor v;
      if (dim == w.in_dim && w.head_dim > 0 && w.heads.sum.defined()) {
        // Each head's score spread evenly over its channels: a slice of whole heads sums to theirs.
        v = (w.heads.finish(batch_) / static_cast<double>(w.head_dim)).repeat_interleave(w.head_dim);
      } else if (dim == w.in_dim && w.channels && w.inputs.sum.defined()) {
        v = w.inputs.finish(batch_);
      } else if (dim != w.in_dim && w.neurons && w.preactivations.sum.defined()) {
        v = w.preactivations.finish(batch_);
      } else {
        return {};
      }
      // Shaped along `dim` of the 2-D weight, size 1 on the other: summing over it leaves v.
      return v.unsqueeze(dim == 0 ? 1 : 0);
    };
    return sum_over_units(ctx, value, [](double v) { return v; });
  }

 private:
  // From the structure: a head's first slice is its query rows (q_proj, GPT-2's c_attn, BERT's
  // query: the projection reading the attention norm's output) and its 2-D input slice the output
  // projection; a neuron's first slice is the row of the projection feeding the nonlinearity (the
  // MLP norm's reader), followed by that row's bias when there is one.
  static void watch(const Context& ctx, AggregationTap& tap) {
    const bool hidden = ctx.kinds.count(GroupKind::hidden_dim) > 0;
    const bool heads = ctx.kinds.count(GroupKind::head) || ctx.kinds.count(GroupKind::kv_group);
    const int64_t input_dim = ctx.model.config().family == model::Family::gpt2 ? 0 : 1;
    for (const model::Group& g : ctx.structure.groups) {
      if (g.index != 0 || g.slices.empty()) continue;
      if (g.kind == GroupKind::head) {
        if (hidden) tap.watch(g.slices.front().hf_param_name).channels = true;
        if (!heads) continue;
        for (const model::ParamSlice& s : g.slices)
          if (ctx.model.hf_parameter(s.hf_param_name).dim() == 2 && s.dim == input_dim)
            tap.watch(s.hf_param_name).head_dim = ctx.model.config().head_dim;
      } else if (g.kind == GroupKind::ffn_neuron) {
        Watch& w = tap.watch(g.slices.front().hf_param_name);
        w.channels = w.channels || hidden;
        if (!ctx.kinds.count(GroupKind::ffn_neuron)) continue;
        w.neurons = true;
        if (g.slices.size() > 1 && ctx.model.hf_parameter(g.slices[1].hf_param_name).dim() == 1) w.bias = g.slices[1].hf_param_name;
      }
    }
  }

  // One forward pass per batch this rank owns (every batch alone) with the tap installed.
  static void run(const Context& ctx, AggregationTap& tap) {
    torch::NoGradGuard no_grad;
    EvalScope eval(ctx.model);
    const model::Gates gates = leaf_gates(ctx, false);
    model::TapScope scope(&tap);
    for (const data::Batch& in : dist::owned(ctx.batches)) {
      const data::Batch b = in.to(ctx.model.device());
      tap.set_token_mask(b.attention_mask.defined() ? b.attention_mask.ne(0) : torch::Tensor());
      model::ForwardOptions options;
      options.token_type_ids = b.token_type_ids;
      ctx.model.forward(b.input_ids, b.attention_mask, ctx.gates ? &gates : nullptr, options);
    }
  }

  Aggregation batch_, sequence_;
};

}  // namespace

std::unique_ptr<Estimator> make_aggregated_activation(const EstimatorOptions& options) {
  return std::make_unique<AggregatedActivation>(options);
}

}  // namespace secateur::importance
