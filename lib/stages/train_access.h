#pragma once
// The training a recipe asks for, for every stage that trains (`train`, and the learned-mask
// methods' stages, which add their own keys to train_schema() and pass their extensions):
//
//   auto setup = train_setup(options, state);          // parse keys, resolve against data/model
//   auto result = run_training(state, setup, {my_extension});
//
// run_training loads the data (ensure_data), builds the batch source and evaluator, keeps the
// checkpoints under checkpoints/<stage index>-<kind>/, resumes from them under --resume, writes
// metrics.jsonl events and the stage's report entry, and marks the run interrupted on
// SIGINT/SIGTERM (the runner then stops, exit 0).
#include <memory>
#include <vector>

#include "recipe/schema.h"
#include "run/run_state.h"
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
};

// Reads train_schema()'s keys (validated already) for the model in `state` (ensure_model).
TrainSetup train_setup(const recipe::Value& options, run::RunState& state);

// Runs the loop and records its results; returns them (result.interrupted: the stage should
// return at once).
train::TrainResult run_training(run::RunState& state, const TrainSetup& setup,
                                std::vector<std::shared_ptr<train::Extension>> extensions = {});

}  // namespace secateur::stages
