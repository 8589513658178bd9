#include "apps/commands.h"

#include <boost/program_options.hpp>

#include <cstdio>

#include "dist/launch.h"
#include "recipe/recipe.h"
#include "run/runner.h"
#include "run/runtime.h"
#include "stages/builtin.h"
#include "util/error.h"
#include "util/version.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/strings.h"

namespace po = boost::program_options;

namespace secateur::cli {
namespace {

struct RecipeArgs {
  std::string recipe;
  std::vector<std::string> overrides;
};

po::variables_map parse(const std::vector<std::string>& args, const po::options_description& options,
                        const char* positional_name, int positional_count) {
  po::positional_options_description positional;
  if (positional_name) positional.add(positional_name, positional_count);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
  po::notify(vm);
  return vm;
}

std::vector<std::string> strings_of(const po::variables_map& vm, const char* key) {
  return vm.count(key) ? vm[key].as<std::vector<std::string>>() : std::vector<std::string>{};
}

}  // namespace

int version() {
  std::printf("secateur %s (git %s)\n", version::number(), version::git_commit());
  std::printf("LibTorch %s\n", runtime::torch_version().c_str());
  int gpus = runtime::cuda_device_count();
  std::printf("CUDA %s\n", gpus > 0 ? ("available, " + std::to_string(gpus) + " device(s)").c_str() : "not available");
  return 0;
}

int help(const std::vector<std::string>& args) {
  const auto& registry = stages::registry();
  const std::string topic = args.empty() ? "" : args[0];
  if (topic.empty()) {
    std::printf("secateur help recipe          keys every recipe has\n"
                "secateur help stages          the stage kinds a recipe can list\n"
                "secateur help stage NAME      one stage's options (types, defaults, docs)\n"
                "secateur help section NAME    one top-level section's options (%s)\n",
                strings::join(registry.section_names(), ", ").c_str());
    return 0;
  }
  if (topic == "recipe") {
    std::printf("A recipe is a YAML file. `include: [configs/x.yaml, ...]` merges fragments first\n"
                "(the recipe's own keys win); `--set a.b.0.c=value` overrides any key.\n\n%s",
                registry.recipe_schema()->help().c_str());
    return 0;
  }
  if (topic == "stages") {
    for (const auto& name : registry.stage_names())
      std::printf("  %-14s %s\n", name.c_str(), registry.stage(name)->summary.c_str());
    return 0;
  }
  if (topic == "stage" || topic == "section" || registry.stage(topic) || registry.section(topic)) {
    const bool named_kind = topic == "stage" || topic == "section";
    if (named_kind && args.size() < 2) throw UsageError("help " + topic + ": which one? e.g. secateur help " + topic + " NAME");
    const std::string name = named_kind ? args[1] : topic;
    if (topic != "section") {
      if (const auto* kind = registry.stage(name)) {
        std::printf("stage %s — %s\n\n%s", name.c_str(), kind->summary.c_str(), kind->schema->help(2).c_str());
        return 0;
      }
    }
    if (const auto* section = registry.section(name)) {
      std::printf("section %s — %s\n\n%s", name.c_str(), section->summary.c_str(), section->schema->help(2).c_str());
      return 0;
    }
    std::vector<std::string> all = registry.stage_names();
    for (const auto& s : registry.section_names()) all.push_back(s);
    std::string guess = strings::closest(name, all);
    throw UsageError("help: no stage or section '" + name + "'" + (guess.empty() ? "" : " — did you mean '" + guess + "'?"));
  }
  throw UsageError("help: unknown topic '" + topic + "' (topics: recipe, stages, stage NAME, section NAME)");
}

int validate(const std::vector<std::string>& args) {
  po::options_description options("validate");
  options.add_options()("recipe", po::value<std::string>(), "recipe file")(
      "set", po::value<std::vector<std::string>>()->composing(), "KEY=VALUE override");
  auto vm = parse(args, options, "recipe", 1);
  if (!vm.count("recipe")) throw UsageError("validate: missing RECIPE");
  const auto& registry = stages::registry();
  auto recipe = recipe::load_recipe(vm["recipe"].as<std::string>(), strings_of(vm, "set"), *registry.recipe_schema());
  std::printf("# %s: valid (hash %s)\n%s", recipe.path.c_str(), recipe.hash.c_str(), recipe::to_yaml(recipe.tree).c_str());
  return 0;
}

int run(const std::vector<std::string>& args, const std::string& command_line) {
  po::options_description options("run");
  options.add_options()("recipe", po::value<std::string>(), "recipe file")(
      "set", po::value<std::vector<std::string>>()->composing(), "KEY=VALUE override")(
      "out", po::value<std::string>(), "run directory")("device", po::value<std::string>(), "cpu, cuda or cuda:N")(
      "threads", po::value<std::string>(), "CPU threads (0 = all cores)")("dry-run", po::bool_switch(), "print the plan only")(
      "force", po::bool_switch(), "start over in an existing run directory")(
      "resume", po::value<std::string>(), "continue the run in RUN_DIR");
  auto vm = parse(args, options, "recipe", 1);

  run::RunOptions opts;
  opts.command_line = command_line;
  opts.dry_run = vm["dry-run"].as<bool>();
  opts.force = vm["force"].as<bool>();
  std::string recipe_path;
  if (vm.count("resume")) {
    if (vm.count("recipe")) throw UsageError("run --resume RUN_DIR takes no RECIPE: the run's own recipe.resolved.yaml is used");
    opts.out = vm["resume"].as<std::string>();
    opts.resume = true;
    recipe_path = opts.out + "/recipe.resolved.yaml";
    if (!fs::exists(recipe_path)) throw UserError("--resume " + opts.out + ": no run there (no recipe.resolved.yaml)");
  } else {
    if (!vm.count("recipe")) throw UsageError("run: missing RECIPE (or --resume RUN_DIR)");
    recipe_path = vm["recipe"].as<std::string>();
    if (vm.count("out")) opts.out = vm["out"].as<std::string>();
  }
  std::vector<std::string> overrides = strings_of(vm, "set");
  // --device and --threads are shorthands for --set, so they are validated like any key.
  if (vm.count("device")) overrides.push_back("device=" + vm["device"].as<std::string>());
  if (vm.count("threads")) overrides.push_back("threads=" + vm["threads"].as<std::string>());

  const auto& registry = stages::registry();
  auto recipe = recipe::load_recipe(recipe_path, overrides, *registry.recipe_schema());
  if (opts.resume) log::info("resuming " + opts.out + ": stages with checkpoints continue from them, others run again");
  // One process of a data-parallel job (torchrun / srun): join the group before any stage runs.
  const auto dist_session = dist::join_for_run(recipe, opts);
  run::execute(recipe, registry, opts);
  return 0;
}

}  // namespace secateur::cli
