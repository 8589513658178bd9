#pragma once
// Block search: remove attention / MLP blocks or whole layers by trying each removal on the
// calibration set and keeping the one that hurts least.
//
//   BlockPruner (Zhong et al. 2024, "BlockPruner: Fine-grained Pruning for Large Language
//     Models"): greedy over attention and MLP blocks; each step removes the block whose removal
//     gives the lowest calibration perplexity, until the target number of blocks is gone.
//   FinerCut (Zhang et al. 2024, "FinerCut: Finer-grained Interpretable Layer Pruning for Large
//     Language Models"): the same greedy over attention and MLP blocks, with an output-change
//     criterion: the candidate whose output stays closest to the original model's. The paper's
//     released code (llm_dissect, dissect/evaluators/output.py) offers logit-difference norm,
//     angular distance, KL and JS divergence; we take the Jensen–Shannon divergence
//     JS(p‖q) = ½ KL(p‖m) + ½ KL(q‖m), m = ½(p + q), between next-token distributions, averaged
//     over the real calibration tokens: bounded by ln 2 and symmetric.
//   Shortened LLaMA (Kim et al. 2024, "Shortened LLaMA: Depth Pruning for Large Language
//     Models"), PPL criterion: every whole layer is scored once, one-shot, by the perplexity of
//     the model without it, and the lowest-scoring layers are removed together.
//
// Evaluation is cached: the input of every layer of the current (pruned so far) model is kept
// for each calibration batch, so a candidate removal in layer l re-runs only layers l..L−1
// (model::ForwardOptions::start_layer), and after a step only the layers from the removed one on
// are recomputed.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/batch.h"
#include "methods/allocation.h"
#include "model/model.h"
#include "surgery/masks.h"

namespace secateur::methods {

enum class SearchCriterion { perplexity, output_change };
enum class SearchUnit { blocks, layers };

struct BlockSearchOptions {
  SearchCriterion criterion = SearchCriterion::perplexity;
  SearchUnit unit = SearchUnit::blocks;
  Amount remove;       // of the candidate units (attention + MLP blocks, or layers)
  bool greedy = true;  // false: score every candidate once on the starting model (Shortened LLaMA)
  bool cache = true;   // false: every evaluation runs the whole model (for tests and checks)
};

// One candidate: the attention or MLP block of a layer, or the whole layer.
struct Candidate {
  TargetKind kind = TargetKind::attn_blocks;  // attn_blocks | mlp_blocks | layers
  int64_t layer = 0;
};

// One removal, in the order the search took them; `score` is the criterion of the model right
// after it (perplexity, or mean JS divergence from the starting model).
struct Removal {
  Candidate candidate;
  double score = 0;
  int64_t step = 0;
};

struct BlockSearchResult {
  surgery::Masks masks;
  std::vector<Removal> order;
  int64_t units = 0;         // candidate units in the starting model
  int64_t requested = 0;     // units the target asks for
  double start_score = 0;    // criterion of the starting model
  // Per step, every candidate's score ({"kind", "layer", "score"}).
  nlohmann::json steps = nlohmann::json::array();
  int64_t layers_run = 0;    // layer forwards spent, all batches (shows what the cache saves)
  nlohmann::json order_json() const;
};

// Scores the model with candidate masks on the calibration batches: perplexity of next-token
// prediction (causal LMs; padding ignored), or the mean over real tokens (rows, for classifiers)
// of JS(p_start ‖ p_candidate) with p_start the output distribution of the model through the
// masks given at construction. Under data parallelism every rank passes the same batches, runs
// the ones it owns, and the sums are added up over ranks: every rank gets the same scores (and
// so makes the same choices) as one process on all batches.
class CandidateEvaluator {
 public:
  CandidateEvaluator(model::Model& model, const std::vector<data::Batch>& batches, SearchCriterion criterion,
                     const surgery::Masks& start, bool cache);
  // Makes `masks` the current model: layer inputs are recomputed from `first_changed` on.
  void set_current(const surgery::Masks& masks, int64_t first_changed = 0);
  // The criterion of the current model with `removal` applied on top.
  double evaluate(const Candidate& removal);
  // The criterion of the current model itself.
  double current();
  int64_t layers_run() const { return layers_run_; }

 private:
  torch::Tensor logits(size_t batch, const model::Gates* gates, int64_t start);
  double score(const std::vector<torch::Tensor>& logits);

  model::Model& model_;
  std::vector<data::Batch> batches_;  // this rank's share (dist::owns) of the calibration batches
  SearchCriterion criterion_;
  bool cache_;
  surgery::Masks current_;
  std::vector<std::vector<torch::Tensor>> inputs_;  // [batch][layer] input of the layer (cache)
  std::vector<torch::Tensor> reference_;            // output_change: log p_start per batch
  int64_t layers_run_ = 0;
};

// The units of `unit` that `masks` still have, in layer order (attention before MLP).
std::vector<Candidate> candidates(const model::ModelConfig& config, const surgery::Masks& masks, SearchUnit unit);

// `masks` with `c` removed.
surgery::Masks with_removal(surgery::Masks masks, const Candidate& c);

// Runs the search from `start` (keep_all for a dense model). UserError when the target asks for
// more units than can go (a model keeps at least one layer) or the criterion needs a causal LM.
BlockSearchResult block_search(model::Model& model, const std::vector<data::Batch>& batches,
                               const BlockSearchOptions& options, const surgery::Masks& start);

std::string to_string(SearchCriterion c);
std::string to_string(SearchUnit u);

}  // namespace secateur::methods
