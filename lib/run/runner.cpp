#include "run/runner.h"

#include <exception>

#include "run/run_state.h"
#include "run/runtime.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/strings.h"
#include "util/version.h"

namespace secateur::run {

void RunState::record(const nlohmann::json& values, int64_t step) {
  auto& entry = report["stages"][static_cast<size_t>(stage_index - 1)]["results"];
  if (entry.is_null()) entry = nlohmann::json::object();
  entry.update(values);
  nlohmann::json event = {{"stage", stage_kind}, {"stage_index", stage_index}};
  if (step >= 0) event["step"] = step;
  event["values"] = values;
  dir.log_event(event);
}

namespace {

std::string one_line(const recipe::Value& options) {
  std::string text = recipe::to_yaml(options);
  // Flow-ish summary for the plan: collapse the block YAML onto one line.
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == '\n' || c == ' ') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
  }
  return out == "{}" ? "" : out;
}

}  // namespace

std::string describe_plan(const recipe::Recipe& recipe) {
  const auto& stages = recipe.tree.at("stages").items();
  std::string out = "plan for '" + recipe.name() + "' (" + std::to_string(stages.size()) + " stages, seed " +
                    recipe.tree.at("seed").text() + ", device " + recipe.tree.at("device").text() + "):\n";
  for (size_t i = 0; i < stages.size(); ++i) {
    const auto& e = stages[i].entries().front();
    out += "  [" + std::to_string(i + 1) + "/" + std::to_string(stages.size()) + "] " + e.key;
    std::string opts = one_line(e.value);
    if (!opts.empty()) out += "  " + opts;
    out += "\n";
  }
  return out;
}

std::string provenance_header(const recipe::Recipe& recipe, const std::string& command_line) {
  std::string h;
  h += std::string("# secateur ") + version::number() + " (git " + version::git_commit() + ") · LibTorch " +
       runtime::torch_version() + "\n";
  h += "# resolved " + RunDir::utc_timestamp(false) + " from " + strings::join(recipe.files, ", ") + "\n";
  if (!command_line.empty()) h += "# command: " + command_line + "\n";
  h += "# recipe hash: " + recipe.hash + "  (run it again: secateur run THIS_FILE)\n";
  return h;
}

std::string execute(const recipe::Recipe& recipe, const recipe::Registry& registry, const RunOptions& options) {
  if (options.dry_run) {
    std::printf("%s", describe_plan(recipe).c_str());
    return "";
  }
  const std::string device =
      runtime::validate_device(options.device.empty() ? recipe.tree.at("device").text() : options.device);
  const std::string path = options.out.empty() ? RunDir::default_path(options.runs_root, recipe.name()) : options.out;
  RunDir dir(path, {options.force, options.resume, options.rank});
  log::add_file_sink(dir.file("log.txt"));
  struct SinkGuard {
    ~SinkGuard() { log::remove_file_sinks(); }
  } sink_guard;

  const uint64_t seed = static_cast<uint64_t>(recipe.tree.at("seed").as_int());
  const int threads = runtime::set_threads(static_cast<int>(recipe.tree.at("threads").as_int()));
  runtime::seed_everything(seed);
  // A resume that fails (e.g. --set changed the training schedule, which its checkpoint refuses)
  // must not replace the recipe the run's state came from: the next plain --resume reads it.
  const std::string resolved_path = dir.file("recipe.resolved.yaml");
  const std::string previous_recipe =
      options.resume && fs::exists(resolved_path) ? fs::read_file(resolved_path) : std::string();
  dir.write_resolved_recipe(provenance_header(recipe, options.command_line), recipe::to_yaml(recipe.tree));

  RunState state(recipe, dir);
  state.device = device;
  state.seed = seed;
  state.resume = options.resume;
  const auto& stages = recipe.tree.at("stages").items();
  state.stage_count = static_cast<int>(stages.size());
  state.report = {{"name", recipe.name()},
                  {"recipe", recipe.path},
                  {"recipe_hash", recipe.hash},
                  {"secateur_version", version::number()},
                  {"git_commit", version::git_commit()},
                  {"torch_version", runtime::torch_version()},
                  {"device", device},
                  {"threads", threads},
                  {"seed", seed},
                  {"started", RunDir::utc_timestamp(false)},
                  {"status", "running"},
                  {"stages", nlohmann::json::array()}};
  for (const auto& s : stages) state.report["stages"].push_back({{"kind", s.entries().front().key}, {"status", "pending"}});
  dir.write_report(state.report);

  log::info(std::string("secateur ") + version::number() + " · LibTorch " + runtime::torch_version() + " · " +
            runtime::device_description(device) + " · run dir " + dir.path());
  for (size_t i = 0; i < stages.size(); ++i) {
    const auto& entry = stages[i].entries().front();
    state.stage_index = static_cast<int>(i + 1);
    state.stage_kind = entry.key;
    auto& stage_report = state.report["stages"][i];
    const double begin = dir.elapsed_seconds();
    dir.log_event({{"stage", entry.key}, {"stage_index", i + 1}, {"event", "start"}});
    try {
      const recipe::StageKind* kind = registry.stage(entry.key);
      if (!kind) throw std::logic_error("stage '" + entry.key + "' validated but not registered");
      kind->make(entry.value)->run(state);
    } catch (const std::exception& e) {
      stage_report["status"] = "failed";
      stage_report["wall_s"] = dir.elapsed_seconds() - begin;
      state.report["status"] = "failed";
      state.report["error"] = state.stage_label() + ": " + e.what();
      state.report["finished"] = RunDir::utc_timestamp(false);
      dir.log_event({{"stage", entry.key}, {"stage_index", i + 1}, {"event", "failed"}, {"error", e.what()}});
      dir.write_report(state.report);
      if (!previous_recipe.empty() && dir.is_main()) fs::write_atomic(resolved_path, previous_recipe);
      throw;
    }
    stage_report["status"] = state.interrupted ? "interrupted" : "done";
    stage_report["wall_s"] = dir.elapsed_seconds() - begin;
    dir.log_event({{"stage", entry.key}, {"stage_index", i + 1}, {"event", state.interrupted ? "interrupted" : "end"},
                   {"wall_s", stage_report["wall_s"]}});
    dir.write_report(state.report);
    if (state.interrupted) {
      state.report["status"] = "interrupted";
      state.report["resume"] = "secateur run --resume " + dir.path();
      state.report["finished"] = RunDir::utc_timestamp(false);
      dir.write_report(state.report);
      log::warn("interrupted in " + state.stage_label() + "; resume with: secateur run --resume " + dir.path());
      return dir.path();
    }
  }
  state.report["status"] = "completed";
  state.report["finished"] = RunDir::utc_timestamp(false);
  state.report["wall_s"] = dir.elapsed_seconds();
  dir.write_report(state.report);
  log::info("done in " + strings::human_duration(dir.elapsed_seconds()) + " · report: " + dir.file("report.json"));
  return dir.path();
}

}  // namespace secateur::run
