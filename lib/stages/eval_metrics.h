#pragma once
// The eval stage's task metrics, callable through gates: the eval stage measures the model as it
// is; the prune stage's iterative schedule (schedule: {iterative: {eval: {...}}}) measures the
// dense model through each round's masks with the same code, options and data, so the pruning
// curve's points are what an eval stage would record for the physically pruned model.
//   causal LM            perplexity with HF's sliding-window protocol (context, stride)
//   masked LM            cross-entropy and accuracy on BERT-masked tokens
//   classifier           accuracy, macro-F1 and cross-entropy
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/batch.h"
#include "data/dataset.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "recipe/schema.h"
#include "recipe/value.h"
#include "run/run_state.h"

namespace secateur::stages {

// What to evaluate and how much of it (the eval stage's options of the same names).
struct TaskEvalOptions {
  data::Split split = data::Split::validation;
  int64_t context = 0;       // causal LM: perplexity window (0 = data.seq_len)
  int64_t stride = 0;        // causal LM: tokens between window starts (0 = context)
  int64_t batch_size = 0;    // 0 = data.batch_size
  int64_t max_tokens = 0;    // causal LM: at most this many tokens of the split (0 = all)
  int64_t max_examples = 0;  // classification: examples; masked LM: blocks (0 = all)
  bool cuda_graph = true;    // on a GPU, passes replay as CUDA graphs (eval::GraphedForward)
};

// {split, context, stride, batch_size, max_tokens, max_examples, cuda_graph}, documented, with defaults: the
// eval stage's schema starts from it, and so does prune.schedule.iterative.eval.
recipe::SchemaBuilder task_eval_schema();
TaskEvalOptions task_eval_options(const recipe::Value& options);

// The evaluation inputs of one split, drawn once: the same recipe seed and options give the same
// tokens, masked positions and examples, so evaluations of different models (or of one model
// through different gates) are comparable point by point.
struct TaskEvalData {
  model::Task task = model::Task::base;
  nlohmann::json info;                   // split, dataset (and protocol for masked LM)
  int64_t seq_len = 0;                   // the length the model is evaluated at (FLOPs)
  torch::Tensor stream;                  // causal LM: the split's tokens
  eval::PerplexityOptions perplexity;    // causal LM: context, stride, windows per pass
  std::vector<data::Batch> batches;      // masked LM and classification
  bool cuda_graph = true;                // TaskEvalOptions::cuda_graph
};

// Loads the recipe's data: section (ensure_data) and draws the inputs for `m`. UserError naming
// `where` (the stage label, or the option's key) for a context longer than the model's positions
// or a stride larger than the context, and for a base model.
TaskEvalData task_eval_data(run::RunState& state, model::Model& m, const TaskEvalOptions& options, const std::string& where);

// The task's metrics for `m` on `data`, every forward pass through `gates` (null = none), in eval
// mode (the model's mode is restored afterwards) without gradients:
//   causal LM       perplexity, loss (mean NLL), protocol, tokens_scored, windows, context, stride
//   masked LM       loss, accuracy, masked_tokens
//   classification  accuracy, macro_f1, loss, examples
// Under data parallelism each rank evaluates its share and the sums are added up over ranks, so
// every rank gets the metrics of the whole split (every rank must call it).
nlohmann::json task_metrics(model::Model& m, const TaskEvalData& data, const model::Gates* gates = nullptr);

// The keys of task_metrics() a pruning curve point carries for `task`: perplexity and loss;
// accuracy and loss; accuracy, macro_f1 and loss.
std::vector<std::string> curve_metric_keys(model::Task task);

}  // namespace secateur::stages
