#pragma once
// The prune stage's `calibration:` option: where importance estimators' batches come from.
//
//   source: data    the recipe's `data:` section (a built-in KJV dataset or files): windows of its
//                   train split for language models, labelled examples for classifiers
//                   (stages/data_access.h, lib/data)
//   source: text    a plain text file (calibration.path) tokenized with calibration.tokenizer
//                   (default: the model's directory), cut into num_sequences windows of seq_len
//                   tokens at offsets drawn from the seed (the sampling of SparseGPT, Wanda,
//                   LLM-Pruner)
//   source: random  uniform random token ids: a smoke-test source only, with none of real text's
//                   statistics (scores from it say nothing about a model's language)
#include <vector>

#include "data/batch.h"
#include "recipe/schema.h"
#include "run/run_state.h"

namespace secateur::stages {

recipe::SchemaPtr prune_calibration_schema();

// The batches `options` (validated against prune_calibration_schema()) describe for the run's
// model; the same recipe seed and options give the same batches (on every data-parallel rank:
// the estimators split them over ranks, importance/estimator.h). UserError naming the key for a
// missing file, a tokenizer whose ids exceed the model's vocabulary, or sequences longer than the
// model's positions.
std::vector<data::Batch> prune_calibration(run::RunState& state, const recipe::Value& options);

}  // namespace secateur::stages
