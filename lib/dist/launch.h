#pragma once
// `secateur run` as one process of a data-parallel job (torchrun --no-python, or srun):
//   - the recipe's `distributed:` section (schema below) picks the backend, timeout, bucket size;
//   - join_for_run() reads the world from the launcher's environment and, when there is more
//     than one process, joins the group before any stage runs: the run directory is the one
//     rank 0 chose, `device: cuda` becomes cuda:<local rank>, and only rank 0 writes the run
//     directory (RunOptions::rank); the others run every stage and write nothing there.
#include <memory>
#include <string>

#include "dist/dist.h"
#include "recipe/recipe.h"
#include "recipe/schema.h"
#include "run/runner.h"

namespace secateur::dist {

// The `distributed:` recipe section.
recipe::SchemaPtr distributed_schema();

// GroupOptions from the section (nullptr: its defaults) for the recipe's device.
GroupOptions group_options(const recipe::Value* section, const std::string& device);

// "cuda" → "cuda:<local_rank>" (one GPU per process); anything else unchanged.
std::string device_for_rank(const std::string& device, int64_t local_rank);

// Joins the group when the environment describes more than one process (torchrun's WORLD_SIZE,
// or SLURM_NTASKS when the recipe has a `distributed:` section) and fills options.rank,
// options.device and options.out (rank 0's default run directory, shared through the store).
// Returns nullptr when this process runs alone (options untouched). Keep the Session alive
// while the run executes.
std::unique_ptr<Session> join_for_run(const recipe::Recipe& recipe, run::RunOptions& options);

}  // namespace secateur::dist
