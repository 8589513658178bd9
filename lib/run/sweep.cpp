#include "run/sweep.h"

#include <sys/wait.h>

#include <cstdio>

#include "recipe/diagnostics.h"
#include "run/run_dir.h"
#include "run/runner.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/strings.h"

namespace secateur::run {

recipe::SchemaPtr slurm_schema() {
  using recipe::Schema;
  return Schema::structure()
      ->field("partition", Schema::string(), "SLURM partition (#SBATCH --partition).")
      ->field("account", Schema::string(), "Account to charge (#SBATCH --account).")
      ->field("time", Schema::string(), "Wall-clock limit per point, e.g. 02:00:00 (#SBATCH --time).")
      ->field("mem", Schema::string(), "Memory per node, e.g. 32G (#SBATCH --mem).")
      ->field("cpus_per_task", Schema::integer()->min(1), "CPU cores per point (#SBATCH --cpus-per-task).")
      ->field("gpus_per_task", Schema::integer()->min(0), "GPUs per point (#SBATCH --gpus-per-task).")
      ->field("max_concurrent", Schema::integer()->min(1), "At most this many points run at once (--array=0-N%max).")
      ->field("extra", Schema::list(Schema::string()), "Further #SBATCH lines, verbatim, e.g. '--constraint=h100'.");
}

std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,@+") ==
                           std::string::npos)
    return word;
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

GridAxis parse_grid(const std::string& spec) {
  size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UsageError("--grid " + spec + ": expected KEY=[v1, v2, ...], e.g. --grid 'stages.1.prune.sparsity=[0.3,0.5]'");
  GridAxis axis{spec.substr(0, eq), {}};
  recipe::Value v;
  try {
    v = recipe::parse_yaml(spec.substr(eq + 1), "--grid " + spec);
  } catch (const recipe::RecipeErrors& e) {
    throw UsageError("--grid " + spec + ": " + e.errors().front().message);
  }
  if (v.is_list()) {
    // Each value as one-line YAML, so that --set parses it back to the same value.
    for (const auto& item : v.items()) axis.values.push_back(recipe::to_flow_yaml(item));
  } else {
    axis.values.push_back(spec.substr(eq + 1));
  }
  if (axis.values.empty()) throw UsageError("--grid " + spec + ": the list of values is empty");
  return axis;
}

namespace {

std::string safe_name(const std::string& text) {
  std::string out;
  for (char c : text)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '=' || c == ',') ? c : '_';
  return out;
}

std::string point_dir(const Sweep& sweep, const SweepPoint& point) { return fs::join(sweep.dir, point.name); }

}  // namespace

std::vector<SweepPoint> expand(const std::vector<GridAxis>& axes) {
  std::vector<SweepPoint> points{SweepPoint{}};
  for (const auto& axis : axes) {
    std::vector<SweepPoint> next;
    for (const auto& p : points)
      for (const auto& value : axis.values) {
        SweepPoint q = p;
        const std::string short_key = strings::split(axis.key, '.').back();
        q.name += (q.name.empty() ? "" : ",") + short_key + "=" + value;
        q.overrides.push_back(axis.key + "=" + value);
        next.push_back(q);
      }
    points = std::move(next);
  }
  for (auto& p : points) p.name = safe_name(p.name.empty() ? "base" : p.name);
  return points;
}

Sweep plan_sweep(const SweepOptions& o, const recipe::Registry& registry) {
  Sweep sweep;
  sweep.points = expand(o.axes);
  if (!o.only.empty()) {
    std::vector<SweepPoint> kept;
    for (const auto& p : sweep.points)
      if (std::find(o.only.begin(), o.only.end(), p.name) != o.only.end()) kept.push_back(p);
    for (const auto& name : o.only) {
      bool found = false;
      for (const auto& p : sweep.points) found |= p.name == name;
      if (!found) throw UsageError("--only " + name + ": no such point in this grid");
    }
    sweep.points = kept;
  }
  auto schema = registry.recipe_schema();
  std::vector<recipe::Diagnostic> errors;
  for (const auto& p : sweep.points) {
    std::vector<std::string> overrides = o.base_overrides;
    overrides.insert(overrides.end(), p.overrides.begin(), p.overrides.end());
    try {
      sweep.recipes.push_back(recipe::load_recipe(o.recipe_path, overrides, *schema));
    } catch (const recipe::RecipeErrors& e) {
      for (auto d : e.errors()) {
        d.message = "point " + p.name + ": " + d.message;
        errors.push_back(d);
      }
    }
  }
  if (!errors.empty()) throw recipe::RecipeErrors(errors);
  sweep.recipe_name = sweep.recipes.empty() ? "sweep" : sweep.recipes.front().name();
  sweep.dir = o.out.empty() ? RunDir::default_path("runs", sweep.recipe_name + "-sweep") : o.out;
  fs::create_directories(sweep.dir);
  nlohmann::json manifest = {{"recipe", o.recipe_path}, {"overrides", o.base_overrides}, {"points", nlohmann::json::array()}};
  for (const auto& axis : o.axes) manifest["grid"][axis.key] = axis.values;
  for (const auto& p : sweep.points)
    manifest["points"].push_back({{"name", p.name}, {"overrides", p.overrides}, {"run_dir", point_dir(sweep, p)}});
  fs::write_atomic(fs::join(sweep.dir, "sweep.json"), manifest.dump(2) + "\n");
  return sweep;
}

std::string point_command(const SweepOptions& o, const Sweep& sweep, const SweepPoint& p) {
  std::string cmd = shell_quote(o.binary) + " run " + shell_quote(o.recipe_path);
  for (const auto& s : o.base_overrides) cmd += " --set " + shell_quote(s);
  for (const auto& s : p.overrides) cmd += " --set " + shell_quote(s);
  return cmd + " --out " + shell_quote(point_dir(sweep, p));
}

int run_local(const SweepOptions& o, const Sweep& sweep, const recipe::Registry& registry) {
  std::vector<std::string> failed;
  for (size_t i = 0; i < sweep.points.size(); ++i) {
    const auto& p = sweep.points[i];
    log::info("sweep point " + std::to_string(i + 1) + "/" + std::to_string(sweep.points.size()) + ": " + p.name);
    RunOptions ro;
    ro.out = point_dir(sweep, p);
    ro.command_line = point_command(o, sweep, p);
    try {
      execute(sweep.recipes[i], registry, ro);
    } catch (const std::exception& e) {
      log::error("sweep point " + p.name + " failed: " + std::string(e.what()).substr(0, std::string(e.what()).find('\n')));
      failed.push_back(p.name);
    }
  }
  std::printf("sweep %s: %zu of %zu points completed\n", sweep.dir.c_str(), sweep.points.size() - failed.size(),
              sweep.points.size());
  if (!failed.empty()) {
    std::printf("failed: %s\nre-run them alone with the same command plus", strings::join(failed, ", ").c_str());
    for (const auto& f : failed) std::printf(" --only %s", shell_quote(f).c_str());
    std::printf(" --force\n");
  }
  std::printf("table: secateur report %s\n", shell_quote(sweep.dir).c_str());
  return static_cast<int>(failed.size());
}

namespace {

// The #SBATCH lines: the job array over the points (`%N` caps how many run at once) and the
// resources the recipe's `slurm:` section asks for.
std::string sbatch_header(const SweepOptions& o, const Sweep& sweep, const recipe::Value& slurm) {
  const size_t n = sweep.points.size();
  std::string array = "0-" + std::to_string(n == 0 ? 0 : n - 1);
  const long long cap = slurm.get_int("max_concurrent", 0);
  if (cap > 0) array += "%" + std::to_string(cap);
  std::string s = "#!/bin/bash\n";
  s += "# secateur sweep of " + o.recipe_path + ": " + std::to_string(n) + " points, one array task each.\n";
  s += "# Submit: sbatch " + fs::join(sweep.dir, "sweep.sbatch") + "   Table: secateur report " + sweep.dir + "\n";
  s += "# Submitted again (or requeued), a task resumes its point's unfinished run and skips a completed one.\n";
  s += "#SBATCH --job-name=" + safe_name(sweep.recipe_name) + "\n";
  s += "#SBATCH --array=" + array + "\n";
  s += "#SBATCH --output=" + fs::join(sweep.dir, "slurm-%A_%a.out") + "\n";
  // A requeued task writes to the same file: append, so the interrupted attempt's log survives.
  s += "#SBATCH --open-mode=append\n";
  auto line = [&](const char* key, const char* flag) {
    std::string v = slurm.get_string(key, "");
    if (!v.empty()) s += std::string("#SBATCH --") + flag + "=" + v + "\n";
  };
  line("partition", "partition");
  line("account", "account");
  line("time", "time");
  line("mem", "mem");
  if (slurm.get_int("cpus_per_task", 0) > 0) s += "#SBATCH --cpus-per-task=" + std::to_string(slurm.get_int("cpus_per_task", 0)) + "\n";
  if (slurm.get_int("gpus_per_task", 0) > 0) s += "#SBATCH --gpus-per-task=" + std::to_string(slurm.get_int("gpus_per_task", 0)) + "\n";
  if (const auto* extra = slurm.find("extra"); extra && extra->is_list())
    for (const auto& e : extra->items()) s += "#SBATCH " + e.text() + "\n";
  return s;
}

// What one array task runs. `exec` makes secateur the batch step's process, so the SIGTERM of a
// preemption, a time limit, `scontrol requeue` or `scancel --batch --signal=TERM` reaches it
// directly (it checkpoints and exits 0). A run directory left by an earlier attempt of the task
// is resumed rather than refused; a completed one (top-level "status" of report.json, written by
// RunDir::write_report with a two-space indent) is left alone.
std::string task_body(const SweepOptions& o, const Sweep& sweep) {
  std::string s = "set -euo pipefail\n";
  s += "line=$((SLURM_ARRAY_TASK_ID + 1))\n";
  s += "cmd=$(sed -n \"${line}p\" " + shell_quote(fs::join(sweep.dir, "commands.txt")) + ")\n";
  s += "run_dir=$(sed -n \"${line}p\" " + shell_quote(fs::join(sweep.dir, "run_dirs.txt")) + ")\n";
  s += "if [[ -f $run_dir/recipe.resolved.yaml ]]; then\n";
  s += "  if grep -q '^  \"status\": \"completed\"' \"$run_dir/report.json\" 2>/dev/null; then\n";
  s += "    echo \"secateur sweep task $SLURM_ARRAY_TASK_ID: $run_dir is already completed\"\n";
  s += "    exit 0\n";
  s += "  fi\n";
  s += "  echo \"secateur sweep task $SLURM_ARRAY_TASK_ID on $(hostname): resuming $run_dir\"\n";
  s += "  exec " + shell_quote(o.binary) + " run --resume \"$run_dir\"\n";
  s += "fi\n";
  s += "echo \"secateur sweep task $SLURM_ARRAY_TASK_ID on $(hostname): $cmd\"\n";
  s += "eval \"exec $cmd\"\n";
  return s;
}

}  // namespace

std::string slurm_script(const SweepOptions& o, const Sweep& sweep, const recipe::Value& slurm) {
  return sbatch_header(o, sweep, slurm) + task_body(o, sweep);
}

std::string write_slurm(const SweepOptions& o, const Sweep& sweep, const recipe::Value& slurm) {
  std::string commands, run_dirs;
  for (const auto& p : sweep.points) {
    commands += point_command(o, sweep, p) + "\n";
    run_dirs += point_dir(sweep, p) + "\n";
  }
  fs::write_atomic(fs::join(sweep.dir, "commands.txt"), commands);
  fs::write_atomic(fs::join(sweep.dir, "run_dirs.txt"), run_dirs);
  const std::string path = fs::join(sweep.dir, "sweep.sbatch");
  fs::write_atomic(path, slurm_script(o, sweep, slurm));
  return path;
}

namespace {
std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}
}  // namespace

std::string submit_slurm(const Sweep& sweep, const std::string& script) {
  const std::string command = "sbatch --parsable " + shell_quote(script);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw UserError("cannot run '" + command + "'");
  std::string out;
  char buf[256];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = ::pclose(pipe);
  if (status != 0)
    throw UserError("'" + command + "' failed (" + (WIFEXITED(status) && WEXITSTATUS(status) == 127 ? std::string("sbatch not found")
                                                     : "exit status " + std::to_string(WEXITSTATUS(status))) +
                    "): is SLURM installed here and SLURM_CONF pointing at a running cluster?");
  // --parsable prints "jobid" or "jobid;cluster".
  const std::string id = trim(out.substr(0, out.find(';')));
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    throw UserError("'" + command + "' printed '" + trim(out) + "', not a job id");
  fs::append_line(fs::join(sweep.dir, "slurm_jobs.txt"), id);
  return id;
}

}  // namespace secateur::run
