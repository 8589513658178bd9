#pragma once
// The data a recipe's `data:` section names, for the stages that read it (eval, and the
// calibration of pruning estimators): loaded once per run, checked against the model.
#include <memory>
#include <vector>

#include "data/source.h"
#include "model/model.h"
#include "recipe/schema.h"
#include "run/run_state.h"

namespace secateur::stages {

// The `data:` section as a DataConfig, with its defaults resolved against the model: the
// tokenizer defaults to the model directory, task auto follows the model's head. UserError when
// the recipe has no `data:` section or no tokenizer can be found.
data::DataConfig data_config(run::RunState& state);

// Loads the data (once per run directory and configuration) and checks that it fits the model:
// every token id inside the model's vocabulary, the task matching the model's head, classes
// within the classifier's labels, data.seq_len within the model's positions.
const data::DataSource& ensure_data(run::RunState& state);

// The longest input the model accepts (RoBERTa's positions start after its padding index);
// 0 = no learned limit.
int64_t usable_positions(const model::ModelConfig& config);

// For stages that draw calibration data (the prune stage's `calibration:` option):
//   calibration_schema()   {num_sequences, seq_len, batch_size, seed}, documented, with defaults
//   calibration_options()  those values, seed combined with the recipe seed; seq_len 0 = data.seq_len
//   calibration_batches()  the batches, deterministic for a recipe seed
recipe::SchemaPtr calibration_schema();
data::CalibrationOptions calibration_options(const recipe::Value& options, run::RunState& state);
std::vector<data::Batch> calibration_batches(run::RunState& state, const data::CalibrationOptions& options);

}  // namespace secateur::stages
