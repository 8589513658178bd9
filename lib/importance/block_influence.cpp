// block_influence: ShortGPT (Men et al. 2024, "ShortGPT: Layers in Large Language Models are More
// Redundant Than You Expect"), Block Influence of layer i with input X_i and output X_{i+1}:
//   BI_i = 1 − E_{X,t} [ X_{i,t}ᵀ X_{i+1,t} / (‖X_{i,t}‖₂ ‖X_{i+1,t}‖₂) ]
// over every real token t of every calibration sequence; the same for an attention or MLP block
// with that block's input and output. With metric `angular`, also Gromov et al. 2024 ("The
// Unreasonable Ineffectiveness of the Deeper Layers"):
//   d(x^(l), x^(l+n)) = (1/π) arccos( x^(l)·x^(l+n) / (‖x^(l)‖ ‖x^(l+n)‖) )
// at each sequence's last real token, averaged over sequences, for every start l: removing layers
// l..l+n−1 joins the two least different representations.
#include <algorithm>
#include <cmath>

#include "dist/dist.h"
#include "importance/estimators.h"
#include "model/tap.h"
#include "util/progress.h"

namespace secateur::importance {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Follows the residual stream block by block within one forward pass.
class StreamTap : public model::Tap {
 public:
  StreamTap(const model::ModelConfig& c, torch::Tensor token_mask, torch::Tensor last_index)
      : config_(c), mask_(std::move(token_mask)), last_(std::move(last_index)) {}

  void block_output(int64_t layer, bool attention, const torch::Tensor& x) override {
    const model::LayerShape& s = config_.layers[layer];
    const bool first_in_layer = attention || !s.has_attention;
    const bool last_in_layer = !attention || !s.has_mlp;
    if (first_in_layer) layer_input_ = stream_;
    record(attention ? block_attn_ : block_mlp_, layer, stream_, x, attention ? 0 : 1);
    if (last_in_layer) record(layer_, layer, layer_input_, x, 2);
    stream_ = x.detach();
    boundary_[layer + 1] = at_last(stream_);
  }

  // The embedding output (hidden_states[0]) resolves what waited for it: blocks that had no
  // recorded input, and the layers before the first block that have no blocks at all.
  void finish(const torch::Tensor& embedding) {
    const torch::Tensor e = embedding.detach();
    for (const auto& [key, out] : deferred_) add(key.first == 0 ? block_attn_ : key.first == 1 ? block_mlp_ : layer_, key.second, cosines(e, out));
    deferred_.clear();
    boundary_[0] = at_last(e);
    // A layer without blocks passes its input through: its output boundary is its input's.
    for (int64_t l = 0; l < config_.num_layers; ++l)
      if (!boundary_.count(l + 1)) boundary_[l + 1] = boundary_.at(l);
  }

  struct Sum {
    double cos = 0;
    double tokens = 0;
  };
  std::map<int64_t, Sum> block_attn_, block_mlp_, layer_;
  std::map<int64_t, torch::Tensor> boundary_;  // x^(l) at each sequence's last real token [B, H]

 private:
  torch::Tensor cosines(const torch::Tensor& a, const torch::Tensor& b) const {
    torch::Tensor c = torch::cosine_similarity(a.to(torch::kFloat), b.to(torch::kFloat), -1);
    return mask_.defined() ? c.index({mask_}) : c.reshape({-1});
  }
  void add(std::map<int64_t, Sum>& sums, int64_t layer, const torch::Tensor& cos) {
    sums[layer].cos += cos.sum().item<double>();
    sums[layer].tokens += static_cast<double>(cos.numel());
  }
  void record(std::map<int64_t, Sum>& sums, int64_t layer, const torch::Tensor& in, const torch::Tensor& out, int kind) {
    if (in.defined()) add(sums, layer, cosines(in, out));
    else deferred_.push_back({{kind, layer}, out.detach()});
  }
  torch::Tensor at_last(const torch::Tensor& x) const {
    const torch::Tensor rows = torch::arange(x.size(0), last_.options());
    return x.index({rows, last_}).to(torch::kFloat);
  }

  const model::ModelConfig& config_;
  torch::Tensor mask_, last_;
  torch::Tensor stream_, layer_input_;
  std::vector<std::pair<std::pair<int, int64_t>, torch::Tensor>> deferred_;
};

class BlockInfluence : public Estimator {
 public:
  explicit BlockInfluence(const EstimatorOptions& o) : angular_(o.metric == "angular"), run_(o.run_length) {}

  std::string name() const override { return "block_influence"; }
  bool needs_data() const override { return true; }
  std::set<GroupKind> supported() const override { return {GroupKind::attn_block, GroupKind::mlp_block, GroupKind::layer}; }

  Scores estimate(const Context& ctx) override {
    check_request(*this, ctx);
    torch::NoGradGuard no_grad;
    EvalScope eval(ctx.model);
    const model::ModelConfig& c = ctx.model.config();
    const model::Gates gates = leaf_gates(ctx, false);
    std::map<int64_t, StreamTap::Sum> attn, mlp, layer;
    std::vector<double> distance(std::max<int64_t>(c.num_layers - run_ + 1, 0), 0.0);
    double sequences = 0;
    const std::vector<data::Batch> mine = dist::owned(ctx.batches);
    Progress progress("block_influence", static_cast<int64_t>(mine.size()), "batch");
    int64_t done = 0;
    for (const data::Batch& in : mine) {
      const data::Batch b = in.to(ctx.model.device());
      const torch::Tensor mask = b.attention_mask.defined() ? b.attention_mask.ne(0) : torch::ones_like(b.input_ids).ne(0);
      const torch::Tensor positions = torch::arange(b.input_ids.size(1), b.input_ids.options());
      const torch::Tensor last = (positions * mask.to(torch::kLong)).argmax(-1);
      StreamTap tap(c, mask, last);
      model::ForwardOptions options;
      options.output_hidden_states = true;
      options.token_type_ids = b.token_type_ids;
      {
        model::TapScope scope(&tap);
        const model::ForwardOutput out = ctx.model.forward(b.input_ids, b.attention_mask, ctx.gates ? &gates : nullptr, options);
        tap.finish(out.hidden_states.at(0));
      }
      merge(attn, tap.block_attn_);
      merge(mlp, tap.block_mlp_);
      merge(layer, tap.layer_);
      for (int64_t l = 0; l + run_ <= c.num_layers && angular_; ++l) {
        const torch::Tensor cos = torch::cosine_similarity(tap.boundary_.at(l), tap.boundary_.at(l + run_), -1);
        distance[l] += (torch::arccos(cos.clamp(-1.0, 1.0)) / kPi).sum().item<double>();
      }
      sequences += static_cast<double>(b.size());
      progress.update(++done);
    }
    progress.finish();
    sum_over_ranks({&attn, &mlp, &layer}, distance, sequences, c.num_layers);
    Scores scores;
    put(scores, ctx, GroupKind::attn_block, attn, c);
    put(scores, ctx, GroupKind::mlp_block, mlp, c);
    put(scores, ctx, GroupKind::layer, layer, c);
    if (angular_) {
      for (double& d : distance) d /= std::max(sequences, 1.0);
      scores.layer_runs = distance;
      scores.run_length = run_;
    }
    return scores;
  }

 private:
  static void merge(std::map<int64_t, StreamTap::Sum>& into, const std::map<int64_t, StreamTap::Sum>& from) {
    for (const auto& [l, s] : from) {
      into[l].cos += s.cos;
      into[l].tokens += s.tokens;
    }
  }
  // Under data parallelism, the sums of every rank's batches (cosines, tokens, distances,
  // sequences) in one collective; alone there is nothing to add.
  static void sum_over_ranks(const std::vector<std::map<int64_t, StreamTap::Sum>*>& sums, std::vector<double>& distance,
                             double& sequences, int64_t layers) {
    if (dist::world_size() == 1) return;
    std::vector<double> flat;
    for (const auto* per_layer : sums)
      for (int64_t l = 0; l < layers; ++l) {
        const auto it = per_layer->find(l);
        flat.push_back(it == per_layer->end() ? 0.0 : it->second.cos);
        flat.push_back(it == per_layer->end() ? 0.0 : it->second.tokens);
      }
    flat.insert(flat.end(), distance.begin(), distance.end());
    flat.push_back(sequences);
    dist::sum_over_ranks(flat);
    size_t i = 0;
    for (auto* per_layer : sums)
      for (int64_t l = 0; l < layers; ++l, i += 2) (*per_layer)[l] = {flat[i], flat[i + 1]};
    std::copy(flat.begin() + static_cast<std::ptrdiff_t>(i), flat.end() - 1, distance.begin());
    sequences = flat.back();
  }

  // BI = 1 − mean cosine; a layer (or block) the stream never crossed changes nothing: BI 0.
  static void put(Scores& scores, const Context& ctx, GroupKind kind, const std::map<int64_t, StreamTap::Sum>& sums,
                  const model::ModelConfig& c) {
    if (!ctx.kinds.count(kind)) return;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const model::LayerShape& s = c.layers[l];
      if ((kind == GroupKind::attn_block && !s.has_attention) || (kind == GroupKind::mlp_block && !s.has_mlp)) continue;
      const auto it = sums.find(l);
      const double bi = it == sums.end() || it->second.tokens == 0 ? 0.0 : 1.0 - it->second.cos / it->second.tokens;
      scores.set(kind, l, torch::tensor({bi}, torch::kDouble));
    }
  }

  bool angular_;
  int64_t run_;
};

}  // namespace

std::unique_ptr<Estimator> make_block_influence(const EstimatorOptions& options) {
  return std::make_unique<BlockInfluence>(options);
}

}  // namespace secateur::importance
