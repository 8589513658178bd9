#pragma once
// Checkpoint directories of one training run (internal to lib/train):
//   <dir>/step-00000120/   model.safetensors      every model parameter (HF names)
//                          optimizer.safetensors  per-parameter optimiser state (p<i>.exp_avg ...)
//                          extensions.safetensors extension tensors (<name>.<tensor>)
//                          trainer.safetensors    RNG states, the loss window's accumulators
//                          trainer.json           step, data position, optimiser steps, schedule,
//                                                 extension JSON, best metric — written last
// A checkpoint is written under .tmp-step-... and renamed into place when complete, so a
// directory named step-* always holds a whole checkpoint; trainer.json is checked as well.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace secateur::train::checkpoint {

std::string step_name(int64_t step);  // "step-00000120"
// A fresh temp directory for a checkpoint of `step` under `dir` (any leftover removed).
std::string begin(const std::string& dir, int64_t step);
// Renames the finished temp directory into place (replacing one of the same step); returns its path.
std::string commit(const std::string& dir, const std::string& temp, int64_t step);
// Complete checkpoints, oldest first: (step, path).
std::vector<std::pair<int64_t, std::string>> list(const std::string& dir);
// Removes all but the newest `keep_last` checkpoints, never the one of step `keep_step`.
void prune(const std::string& dir, int64_t keep_last, int64_t keep_step);

}  // namespace secateur::train::checkpoint
