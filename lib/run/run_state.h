#pragma once
// What stages share while a recipe runs: the model being pruned, the run directory, and the
// report being built. Each stage reads and updates the same RunState, in recipe order.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "recipe/recipe.h"
#include "run/run_dir.h"

namespace secateur::model {
class Model;
}

namespace secateur::run {

struct RunState {
  RunState(const recipe::Recipe& recipe, RunDir& dir) : recipe(recipe), dir(dir) {}

  const recipe::Recipe& recipe;
  RunDir& dir;
  std::string device = "cpu";
  uint64_t seed = 0;
  // --resume: every stage runs again (stages are deterministic from the recipe seed); training
  // stages continue from their checkpoints instead of starting over.
  bool resume = false;
  // Set by a stage stopped by SIGINT/SIGTERM after saving a checkpoint: the runner stops after
  // it and marks the run interrupted (not failed), so that `secateur run --resume` continues it.
  bool interrupted = false;

  // The stage now running (1-based index, for "[2/6] prune" labels).
  int stage_index = 0;
  int stage_count = 0;
  std::string stage_kind;

  std::shared_ptr<model::Model> model;  // loaded from the recipe's `model:` section on first use
  // The model before the run's first pruning stage, kept only when a later stage distils from it
  // (`distill: {teacher: unpruned}`, stages::remember_unpruned).
  std::shared_ptr<model::Model> unpruned;

  nlohmann::json report;  // written to report.json after every stage

  std::string stage_label() const {
    return "[" + std::to_string(stage_index) + "/" + std::to_string(stage_count) + "] " + stage_kind;
  }
  // Adds values to this stage's entry in report.json and writes one metrics.jsonl event.
  void record(const nlohmann::json& values, int64_t step = -1);
};

}  // namespace secateur::run
