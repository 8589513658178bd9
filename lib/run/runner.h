#pragma once
// Runs a validated recipe: creates the run directory, seeds, sets threads, runs each stage in
// order, keeps report.json current after every stage, and marks the run failed (with the error)
// if a stage throws, so a crashed run still explains itself.
#include <cstdint>
#include <string>

#include "recipe/recipe.h"
#include "recipe/registry.h"

namespace secateur::run {

struct RunOptions {
  std::string out;                  // run directory; "" = <runs_root>/<name>-<UTC time>
  std::string runs_root = "runs";
  bool dry_run = false;             // print the plan, create nothing
  bool force = false;
  bool resume = false;
  std::string command_line;         // recorded in recipe.resolved.yaml
  int64_t rank = 0;                 // data-parallel rank (dist::join_for_run): only rank 0 writes the run dir
  std::string device;               // "" = the recipe's; a rank's own GPU under data parallelism
};

// Returns the run directory's path ("" for a dry run). Errors propagate (UserError etc.) after
// report.json records them.
std::string execute(const recipe::Recipe& recipe, const recipe::Registry& registry, const RunOptions& options);

// The plan a dry run prints: one line per stage with its options.
std::string describe_plan(const recipe::Recipe& recipe);

// The comment block heading recipe.resolved.yaml.
std::string provenance_header(const recipe::Recipe& recipe, const std::string& command_line);

}  // namespace secateur::run
