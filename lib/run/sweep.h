#pragma once
// Sweeps: one recipe, a grid of values for some of its keys, one run per grid point. A sweep
// runs its points locally one after another, or becomes a SLURM job array (one array task per
// point) that a user submits with sbatch. Every point is validated before anything runs.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "recipe/recipe.h"
#include "recipe/registry.h"

namespace secateur::run {

struct GridAxis {
  std::string key;                  // "stages.1.prune.sparsity"
  std::vector<std::string> values;  // YAML text of each value: "0.3", "{heads: 0.5}"
};

// Parses "key=[v1, v2, ...]" (a YAML flow list; a single value is a one-point axis).
GridAxis parse_grid(const std::string& spec);

struct SweepPoint {
  std::string name;                    // "sparsity=0.3,seed=1" made file-name safe
  std::vector<std::string> overrides;  // the grid's --set arguments for this point
};

// The cartesian product, the first axis varying slowest.
std::vector<SweepPoint> expand(const std::vector<GridAxis>& axes);

struct SweepOptions {
  std::string recipe_path;
  std::vector<std::string> base_overrides;  // --set applied to every point
  std::vector<GridAxis> axes;
  std::string out;                          // sweep directory; "" = runs/<name>-sweep-<UTC time>
  std::string binary = "secateur";          // how the batch script calls secateur
  std::vector<std::string> only;            // run only these point names (re-running failures)
};

struct Sweep {
  std::string dir;
  std::string recipe_name;
  std::vector<SweepPoint> points;
  std::vector<recipe::Recipe> recipes;  // validated, one per point
};

// Validates every point (all errors at once, each naming its point), creates the sweep
// directory and writes sweep.json (points, their overrides and run directories).
Sweep plan_sweep(const SweepOptions& options, const recipe::Registry& registry);

// The command line that runs one point (also what the batch script runs).
std::string point_command(const SweepOptions& options, const Sweep& sweep, const SweepPoint& point);

// Runs every point in this process, one after another; a failing point is recorded and the
// sweep goes on. Returns the number of failed points and prints a summary with the command that
// re-runs the failed ones.
int run_local(const SweepOptions& options, const Sweep& sweep, const recipe::Registry& registry);

// Text of the SLURM batch script: #SBATCH lines from the recipe's `slurm:` section, a job array
// over the points (`%N` caps concurrency when slurm.max_concurrent is set), each task exec'ing its
// point's command from sweep/commands.txt — or, when its run directory (sweep/run_dirs.txt)
// already holds an unfinished run (a requeued or resubmitted task), `secateur run --resume` on it;
// a completed run is skipped.
std::string slurm_script(const SweepOptions& options, const Sweep& sweep, const recipe::Value& slurm);
// Writes commands.txt, run_dirs.txt and sweep.sbatch into the sweep directory; returns the
// script's path.
std::string write_slurm(const SweepOptions& options, const Sweep& sweep, const recipe::Value& slurm);
// Runs `sbatch --parsable SCRIPT` (from the current directory, which becomes the jobs' working
// directory), appends the job id to <sweep>/slurm_jobs.txt and returns it. Throws UserError when
// sbatch is missing or refuses the script (its own message is on stderr).
std::string submit_slurm(const Sweep& sweep, const std::string& script);

std::string shell_quote(const std::string& word);

// The recipe's `slurm:` section: how `secateur sweep --slurm` asks SLURM for resources.
recipe::SchemaPtr slurm_schema();

}  // namespace secateur::run
