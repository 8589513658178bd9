// `secateur sweep RECIPE --grid KEY=[v1,...]... [--set K=V]... [--local | --slurm [--submit]]`
#include <boost/program_options.hpp>

#include <cstdio>
#include <unistd.h>

#include "apps/commands.h"
#include "run/sweep.h"
#include "stages/builtin.h"
#include "util/error.h"
#include "util/fs.h"

namespace po = boost::program_options;

namespace secateur::cli {

namespace {
// The running binary's absolute path, so that batch jobs call this very build.
std::string self_path() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "secateur";
  buf[n] = '\0';
  return buf;
}
}  // namespace

int sweep(const std::vector<std::string>& args) {
  po::options_description options("sweep");
  options.add_options()("recipe", po::value<std::string>(), "recipe")(
      "grid", po::value<std::vector<std::string>>()->composing(), "KEY=[v1, v2, ...]")(
      "set", po::value<std::vector<std::string>>()->composing(), "KEY=VALUE for every point")(
      "out", po::value<std::string>(), "sweep directory")("local", po::bool_switch(), "run the points here, one after another")(
      "slurm", po::bool_switch(), "write a SLURM job-array script")("submit", po::bool_switch(), "with --slurm: sbatch it")(
      "only", po::value<std::vector<std::string>>()->composing(), "run only this point (repeatable)");
  po::positional_options_description positional;
  positional.add("recipe", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
  po::notify(vm);
  if (!vm.count("recipe")) throw UsageError("sweep: missing RECIPE");
  if (!vm.count("grid")) throw UsageError("sweep: give at least one --grid KEY=[v1, v2, ...]");
  const bool local = vm["local"].as<bool>(), slurm = vm["slurm"].as<bool>();
  if (local == slurm) throw UsageError("sweep: choose --local (run here) or --slurm (write a job array)");
  if (vm["submit"].as<bool>() && !slurm) throw UsageError("sweep: --submit goes with --slurm");

  run::SweepOptions o;
  o.recipe_path = vm["recipe"].as<std::string>();
  for (const auto& g : vm["grid"].as<std::vector<std::string>>()) o.axes.push_back(run::parse_grid(g));
  if (vm.count("set")) o.base_overrides = vm["set"].as<std::vector<std::string>>();
  if (vm.count("out")) o.out = vm["out"].as<std::string>();
  if (vm.count("only")) o.only = vm["only"].as<std::vector<std::string>>();
  o.binary = self_path();
  const auto& registry = stages::registry();
  run::Sweep sweep = run::plan_sweep(o, registry);
  std::printf("sweep: %zu points in %s\n", sweep.points.size(), sweep.dir.c_str());
  if (local) return run::run_local(o, sweep, registry) == 0 ? 0 : 1;

  const recipe::Value* section = sweep.recipes.front().tree.find("slurm");
  const std::string script = run::write_slurm(o, sweep, section ? *section : recipe::Value::map());
  if (!vm["submit"].as<bool>()) {
    std::printf("wrote %s\nsubmit it with: sbatch %s\n", script.c_str(), run::shell_quote(script).c_str());
    return 0;
  }
  std::printf("wrote %s\n", script.c_str());
  std::fflush(stdout);
  const std::string job = run::submit_slurm(sweep, script);
  std::printf("submitted job array %s (%zu tasks)\nwatch: squeue -j %s\ntable when done: secateur report %s\n", job.c_str(),
              sweep.points.size(), job.c_str(), run::shell_quote(sweep.dir).c_str());
  return 0;
}

}  // namespace secateur::cli
