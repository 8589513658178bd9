#pragma once
// The training a recipe asks for, for every stage that trains (`train`, and the learned-mask
// methods' stages, which add their own keys to train_schema() and pass their extensions):
//
//   auto setup = train_setup(options, state);          // parse keys, resolve against data/model
//   auto result = run_training(state, setup, {my_extension});
//
// run_training loads the data (ensure_data), builds the batch source and evaluator, adds the
// distillation the options' `distill:` asks for (after the stage's own extensions), keeps the
// checkpoints under checkpoints/<stage index>-<kind>/, resumes from them under --resume, writes
// metrics.jsonl events and the stage's report entry, and marks the run interrupted on
// SIGINT/SIGTERM (the runner then stops, exit 0).
#include <memory>
#include <optional>
#include <vector>

#include "recipe/schema.h"
#include "run/run_state.h"
#include "train/distill.h"
#include "train/extension.h"
#include "train/trainer.h"

namespace secateur::stages {

// Every key of the training loop, documented, with defaults (see `secateur help stage train`).
recipe::SchemaBuilder train_schema();

struct TrainSetup {
  train::TrainTask task = train::TrainTask::causal_lm;
  train::TrainOptions options;
  train::BatchSourceOptions data;
  train::EvalOptions eval;
  bool evaluate = true;  // run the validation evaluator (eval.every / at the end)
  std::optional<recipe::Value> distill;  // the `distill:` options when present
};

// Reads train_schema()'s keys (validated already) for the model in `state` (ensure_model).
TrainSetup train_setup(const recipe::Value& options, run::RunState& state);

// Distillation from the teacher `distill:` names (train_schema()'s distill group): dense = a copy
// of the model as the stage starts; unpruned = the model as the run's first pruning stage found
// it (remember_unpruned); else a model path. task_weight: what the task loss keeps (1 − alpha
// unless distill.task_weight says).
struct DistillSetup {
  std::shared_ptr<train::Distillation> extension;
  double task_weight = 1.0;
};
DistillSetup make_distillation(const recipe::Value& distill, run::RunState& state);

// A deep copy of `m` (same config, dtype, device, weights).
std::shared_ptr<model::Model> copy_model(const model::Model& m);

// Stages that prune call this before they change the model: when a later stage distils from
// `teacher: unpruned` and no earlier stage kept one, state.unpruned becomes a copy of the model
// (a copy: training and bias compensation change weights in place before surgery).
void remember_unpruned(run::RunState& state);

// Runs the loop and records its results; returns them (result.interrupted: the stage should
// return at once).
train::TrainResult run_training(run::RunState& state, const TrainSetup& setup,
                                std::vector<std::shared_ptr<train::Extension>> extensions = {});

}  // namespace secateur::stages
