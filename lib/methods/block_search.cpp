#include "methods/block_search.h"

#include <algorithm>
#include <cmath>

#include "dist/dist.h"
#include "util/error.h"
#include "util/progress.h"

namespace secateur::methods {

std::string to_string(SearchCriterion c) { return c == SearchCriterion::perplexity ? "perplexity" : "output_change"; }
std::string to_string(SearchUnit u) { return u == SearchUnit::blocks ? "blocks" : "layers"; }

std::vector<Candidate> candidates(const model::ModelConfig& config, const surgery::Masks& masks, SearchUnit unit) {
  std::vector<Candidate> out;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const surgery::LayerMask& m = masks.layers[l];
    if (!m.keep) continue;
    if (unit == SearchUnit::layers) {
      out.push_back({TargetKind::layers, l});
      continue;
    }
    if (m.attention && config.layers[l].has_attention) out.push_back({TargetKind::attn_blocks, l});
    if (m.mlp && config.layers[l].has_mlp) out.push_back({TargetKind::mlp_blocks, l});
  }
  return out;
}

surgery::Masks with_removal(surgery::Masks masks, const Candidate& c) {
  surgery::LayerMask& m = masks.layers.at(c.layer);
  switch (c.kind) {
    case TargetKind::attn_blocks: m.attention = false; break;
    case TargetKind::mlp_blocks: m.mlp = false; break;
    default: m.keep = false; break;
  }
  return masks;
}

namespace {

// Σ over real target tokens of −log p(next token), and their count (causal LM, padding ignored).
std::pair<double, double> next_token_nll(const torch::Tensor& logits, const data::Batch& b) {
  const torch::Tensor ids = b.input_ids.to(logits.device());
  const torch::Tensor pred = logits.narrow(1, 0, logits.size(1) - 1).to(torch::kFloat);
  const torch::Tensor target = ids.narrow(1, 1, ids.size(1) - 1);
  torch::Tensor nll = -torch::log_softmax(pred, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1);
  if (b.attention_mask.defined()) {
    const torch::Tensor real = b.attention_mask.to(logits.device()).narrow(1, 1, ids.size(1) - 1).ne(0);
    return {nll.index({real}).sum().item<double>(), real.sum().item<double>()};
  }
  return {nll.sum().item<double>(), static_cast<double>(nll.numel())};
}

// Σ over real tokens (rows for [B, L] logits) of JS(p ‖ q) from log-probabilities, and the count:
//   JS(p ‖ q) = ½ KL(p ‖ m) + ½ KL(q ‖ m),  m = ½ (p + q).
std::pair<double, double> js_divergence(const torch::Tensor& log_p, const torch::Tensor& logits, const data::Batch& b) {
  const torch::Tensor log_q = torch::log_softmax(logits.to(torch::kFloat), -1);
  const torch::Tensor log_m = torch::logsumexp(torch::stack({log_p, log_q}), 0) - std::log(2.0);
  torch::Tensor js = 0.5 * (log_p.exp() * (log_p - log_m)).sum(-1) + 0.5 * (log_q.exp() * (log_q - log_m)).sum(-1);
  if (js.dim() == 2 && b.attention_mask.defined()) {
    const torch::Tensor real = b.attention_mask.to(js.device()).ne(0);
    return {js.index({real}).sum().item<double>(), real.sum().item<double>()};
  }
  return {js.sum().item<double>(), static_cast<double>(js.numel())};
}

}  // namespace

CandidateEvaluator::CandidateEvaluator(model::Model& model, const std::vector<data::Batch>& batches,
                                       SearchCriterion criterion, const surgery::Masks& start, bool cache)
    : model_(model), batches_(dist::owned(batches)), criterion_(criterion), cache_(cache) {
  if (criterion_ == SearchCriterion::output_change) {
    const model::Gates gates = start.to_gates(model.config(), model.device());
    for (size_t b = 0; b < batches_.size(); ++b) {
      torch::NoGradGuard no_grad;
      model::ForwardOptions o;
      o.token_type_ids = batches_[b].token_type_ids;
      const torch::Tensor out = model_.forward(batches_[b].input_ids, batches_[b].attention_mask, &gates, o).logits;
      reference_.push_back(torch::log_softmax(out.to(torch::kFloat), -1));
      layers_run_ += model.config().num_layers;
    }
  }
  set_current(start, 0);
}

void CandidateEvaluator::set_current(const surgery::Masks& masks, int64_t first_changed) {
  current_ = masks;
  if (!cache_) return;
  torch::NoGradGuard no_grad;
  const model::ModelConfig& c = model_.config();
  const model::Gates gates = masks.to_gates(c, model_.device());
  inputs_.resize(batches_.size());
  for (size_t b = 0; b < batches_.size(); ++b) {
    const int64_t start = inputs_[b].empty() ? 0 : first_changed;
    model::ForwardOptions o;
    o.output_hidden_states = true;
    o.token_type_ids = batches_[b].token_type_ids;
    o.start_layer = start;
    if (start > 0) o.start_hidden = inputs_[b][start];
    const model::ForwardOutput out = model_.forward(batches_[b].input_ids, batches_[b].attention_mask, &gates, o);
    inputs_[b].resize(c.num_layers);
    // hidden_states[i] is the input of layer start + i (the last entry is the final output).
    for (int64_t l = start; l < c.num_layers; ++l) inputs_[b][l] = out.hidden_states.at(l - start);
    layers_run_ += c.num_layers - start;
  }
}

torch::Tensor CandidateEvaluator::logits(size_t batch, const model::Gates* gates, int64_t start) {
  model::ForwardOptions o;
  o.token_type_ids = batches_[batch].token_type_ids;
  if (cache_ && start > 0) {
    o.start_layer = start;
    o.start_hidden = inputs_[batch][start];
  } else {
    start = 0;
  }
  layers_run_ += model_.config().num_layers - start;
  return model_.forward(batches_[batch].input_ids, batches_[batch].attention_mask, gates, o).logits;
}

double CandidateEvaluator::score(const std::vector<torch::Tensor>& all) {
  std::vector<double> sum_count{0, 0};
  for (size_t b = 0; b < all.size(); ++b) {
    const auto [s, n] = criterion_ == SearchCriterion::perplexity ? next_token_nll(all[b], batches_[b])
                                                                  : js_divergence(reference_[b], all[b], batches_[b]);
    sum_count[0] += s;
    sum_count[1] += n;
  }
  dist::sum_over_ranks(sum_count);
  const double mean = sum_count[0] / std::max(sum_count[1], 1.0);
  return criterion_ == SearchCriterion::perplexity ? std::exp(mean) : mean;
}

double CandidateEvaluator::evaluate(const Candidate& removal) {
  torch::NoGradGuard no_grad;
  const surgery::Masks masks = with_removal(current_, removal);
  const model::Gates gates = masks.to_gates(model_.config(), model_.device());
  std::vector<torch::Tensor> all;
  for (size_t b = 0; b < batches_.size(); ++b) all.push_back(logits(b, &gates, removal.layer));
  return score(all);
}

double CandidateEvaluator::current() {
  torch::NoGradGuard no_grad;
  const model::Gates gates = current_.to_gates(model_.config(), model_.device());
  std::vector<torch::Tensor> all;
  for (size_t b = 0; b < batches_.size(); ++b) all.push_back(logits(b, &gates, 0));
  return score(all);
}

nlohmann::json BlockSearchResult::order_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const Removal& r : order)
    out.push_back({{"kind", to_string(r.candidate.kind)}, {"layer", r.candidate.layer}, {"score", r.score}, {"step", r.step}});
  return out;
}

namespace {

nlohmann::json scored(const std::vector<Candidate>& cands, const std::vector<double>& scores) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < cands.size(); ++i)
    out.push_back({{"kind", to_string(cands[i].kind)}, {"layer", cands[i].layer}, {"score", scores[i]}});
  return out;
}

int64_t requested_units(const BlockSearchOptions& o, int64_t units, SearchUnit unit) {
  const int64_t n = o.remove.count >= 0 ? o.remove.count : std::llround(o.remove.fraction * static_cast<double>(units));
  const int64_t most = unit == SearchUnit::layers ? units - 1 : units;
  if (n > most)
    throw UserError("prune.search: cannot remove " + std::to_string(n) + " " + to_string(unit) + " of " +
                    std::to_string(units) + (unit == SearchUnit::layers ? " (a model keeps at least one layer)" : ""));
  return n;
}

}  // namespace

BlockSearchResult block_search(model::Model& model, const std::vector<data::Batch>& batches,
                               const BlockSearchOptions& options, const surgery::Masks& start) {
  const model::ModelConfig& config = model.config();
  if (options.criterion == SearchCriterion::perplexity && config.task != model::Task::causal_lm)
    throw UserError("prune.search: criterion perplexity needs a causal LM (this model's task is " +
                    model::to_string(config.task) + "); use criterion output_change");
  if (batches.empty()) throw UserError("prune.search needs calibration data: add a `calibration:` section to the prune stage");
  BlockSearchResult result;
  result.masks = start;
  const std::vector<Candidate> first = candidates(config, start, options.unit);
  result.units = static_cast<int64_t>(first.size());
  result.requested = requested_units(options, result.units, options.unit);
  CandidateEvaluator evaluator(model, batches, options.criterion, start, options.cache);
  result.start_score = evaluator.current();
  const int64_t rounds = options.greedy ? result.requested : (result.requested > 0 ? 1 : 0);
  Progress progress("block search", rounds, "step");
  for (int64_t step = 1; step <= rounds; ++step) {
    const std::vector<Candidate> cands = candidates(config, result.masks, options.unit);
    std::vector<double> scores;
    for (const Candidate& c : cands) scores.push_back(evaluator.evaluate(c));
    result.steps.push_back({{"step", step}, {"candidates", scored(cands, scores)}});
    // Lowest score first; ties go to the earlier candidate (layer order, attention first).
    std::vector<size_t> rank(cands.size());
    for (size_t i = 0; i < rank.size(); ++i) rank[i] = i;
    std::stable_sort(rank.begin(), rank.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
    const size_t take = options.greedy ? 1 : static_cast<size_t>(result.requested);
    int64_t first_changed = config.num_layers;
    for (size_t k = 0; k < take; ++k) {
      const Candidate& c = cands[rank[k]];
      result.masks = with_removal(result.masks, c);
      result.order.push_back({c, scores[rank[k]], step});
      first_changed = std::min(first_changed, c.layer);
    }
    if (step < rounds) evaluator.set_current(result.masks, first_changed);
    progress.update(step);
  }
  progress.finish();
  result.layers_run = static_cast<int64_t>(dist::sum_over_ranks(static_cast<double>(evaluator.layers_run())));
  return result;
}

}  // namespace secateur::methods
