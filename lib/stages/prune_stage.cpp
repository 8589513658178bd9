// `prune`: scores the model's structures with an importance estimator, allocates what to remove
// to meet the target (one-shot, or iteratively re-estimating as Michel et al., optionally evaluating
// every round through the masks on the eval stage's data and metrics), optionally folds
// FLAP's bias compensation in, makes the pruning physical through surgery, checks the smaller
// model computes what the masked one did, and writes pruning.json: the kept indices, scores and
// order of removal, enough to re-apply the same pruning to another checkpoint (`from:`).
#include <algorithm>
#include <cmath>
#include <optional>

#include "importance/loss.h"
#include "model/prunable.h"
#include "stages/calibration.h"
#include "stages/eval_metrics.h"
#include "stages/model_access.h"
#include "stages/prune_options.h"
#include "stages/stage_kinds.h"
#include "stages/train_access.h"
#include "surgery/compensation.h"
#include "surgery/surgery.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/strings.h"

namespace secateur::stages {
namespace {

using methods::TargetKind;

// The units of a kind in the dense model: the base of an iterative schedule's steps.
int64_t model_units(const model::ModelConfig& c, TargetKind k) {
  int64_t n = 0;
  for (const model::LayerShape& s : c.layers) switch (k) {
      case TargetKind::heads: n += s.has_attention ? s.num_heads : 0; break;
      case TargetKind::ffn: n += s.has_mlp ? s.intermediate : 0; break;
      case TargetKind::attn_blocks: n += s.has_attention; break;
      case TargetKind::mlp_blocks: n += s.has_mlp; break;
      case TargetKind::layers: ++n; break;
      case TargetKind::hidden: break;
    }
  return k == TargetKind::hidden ? c.hidden_size : n;
}

// Round k of `rounds`: every target's share of the way, capped at the target itself.
methods::Targets round_targets(const methods::Targets& full, double step, int round, const model::ModelConfig& c) {
  if (step <= 0) return full;
  methods::Targets t = full;
  const double reach = step * round;
  for (auto& [k, a] : t.per_kind) {
    if (a.count >= 0) a.count = std::min<int64_t>(a.count, std::llround(reach * static_cast<double>(model_units(c, k))));
    else a.fraction = std::min(a.fraction, reach);
  }
  if (t.params >= 0) t.params = std::min(t.params, reach);
  return t;
}

int rounds_needed(const methods::Targets& t, double step, const model::ModelConfig& c) {
  if (step <= 0) return 1;
  double most = std::max(t.params, 0.0);
  for (const auto& [k, a] : t.per_kind)
    most = std::max(most, a.count >= 0 ? static_cast<double>(a.count) / std::max<int64_t>(1, model_units(c, k)) : a.fraction);
  return std::max(1, static_cast<int>(std::ceil(most / step - 1e-9)));
}

// Mean calibration loss through the masks: the metric of Michel et al.'s pruning curve.
double masked_loss(model::Model& m, const std::vector<data::Batch>& batches, const surgery::Masks& masks) {
  if (batches.empty() || m.config().task == model::Task::base) return NAN;
  torch::NoGradGuard no_grad;
  const model::Gates gates = masks.to_gates(m.config(), m.device());
  double sum = 0;
  for (const data::Batch& b : batches) sum += importance::calibration_loss(m, b, &gates).item<double>();
  return sum / static_cast<double>(batches.size());
}

// The eval stage's metrics of the model through the masks as gates (prune.schedule.iterative.eval),
// added to a curve point under the eval stage's names: at round 0 (all kept) what an eval stage
// records for the dense model, at the last round what it records for the pruned one.
void add_eval_metrics(model::Model& m, const TaskEvalData& data, const surgery::Masks& masks, nlohmann::json& point) {
  const model::Gates gates = masks.to_gates(m.config(), m.device());
  const nlohmann::json metrics = task_metrics(m, data, &gates);
  for (const std::string& key : curve_metric_keys(data.task))
    if (metrics.contains(key)) point[key] = metrics[key];
}

// "  accuracy 0.4123" for the log line of a round (empty without a per-round eval).
std::string eval_text(const nlohmann::json& point) {
  std::string out;
  for (const char* key : {"perplexity", "accuracy", "macro_f1"})
    if (point.contains(key)) out += std::string("  ") + key + " " + strings::format_number(std::round(point[key].get<double>() * 1e4) / 1e4);
  return out;
}

nlohmann::json kept_per_layer(const surgery::Masks& masks) {
  nlohmann::json layers = nlohmann::json::array();
  for (const surgery::LayerMask& l : masks.layers)
    layers.push_back({{"keep", l.keep}, {"heads", l.keep && l.attention ? l.heads.size() : 0},
                      {"kv_groups", l.keep && l.attention ? l.kv_groups.size() : 0}, {"ffn", l.keep && l.mlp ? l.ffn.size() : 0},
                      {"attention", l.keep && l.attention}, {"mlp", l.keep && l.mlp}});
  return layers;
}

class PruneStage : public recipe::Stage {
 public:
  explicit PruneStage(const recipe::Value& o) : options_(parse_prune_options(o)), yaml_(recipe::to_yaml(o)) {}

  void run(run::RunState& state) override {
    ensure_model(state);
    remember_unpruned(state);
    const model::ModelConfig dense_config = state.model->config();
    const model::ParameterCount before = model::parameter_count(*state.model);
    nlohmann::json record = {{"params_before", before.total}, {"params_non_embedding_before", before.non_embedding}};
    surgery::Masks masks;
    nlohmann::json file = {{"format", "secateur.pruning/1"}, {"recipe_hash", state.recipe.hash}, {"stage_options", yaml_},
                           {"source", {{"model", model_path(state)}, {"config", dense_config.to_json()}}}};
    std::vector<data::Batch> batches;
    if (options_.search) {
      masks = search(state, file, record, batches);
    } else if (options_.from.empty()) {
      masks = estimate_and_allocate(state, file, record, batches);
    } else {
      masks = reapply(state, file);
    }
    // The smaller model must compute what the masked one did (bias compensation included).
    const std::shared_ptr<model::Model> pruned = surgery::prune(*state.model, masks);
    record["max_abs_logit_diff_vs_masked"] = check(*state.model, *pruned, masks, batches);
    state.model = pruned;

    const model::ParameterCount after = model::parameter_count(*pruned);
    record["params_after"] = after.total;
    record["params_non_embedding_after"] = after.non_embedding;
    record["sparsity"] = 1.0 - static_cast<double>(after.non_embedding) / static_cast<double>(before.non_embedding);
    record["kept_per_layer"] = kept_per_layer(masks);
    record["hf_loadable"] = pruned->config().is_uniform();
    file["masks"] = masks.to_json();
    file["kept_per_layer"] = record["kept_per_layer"];
    file["params"] = {{"before", before.total}, {"after", after.total}, {"non_embedding_before", before.non_embedding},
                      {"non_embedding_after", after.non_embedding}};
    fs::write_atomic(state.dir.file("pruning.json"), file.dump(1) + "\n");
    record["pruning_json"] = state.dir.file("pruning.json");
    state.record(record);
    log::info(state.stage_label() + "  params " + strings::human_count(static_cast<double>(before.total)) + " → " +
              strings::human_count(static_cast<double>(after.total)) + "  (non-embedding sparsity " +
              strings::format_number(std::round(record["sparsity"].get<double>() * 1e4) / 1e4) + ")  layers " +
              std::to_string(pruned->config().num_layers));
  }

 private:
  static std::string model_path(const run::RunState& state) {
    const recipe::Value* m = state.recipe.tree.find("model");
    return m ? m->at("path").text() : "";
  }

  surgery::Masks estimate_and_allocate(run::RunState& state, nlohmann::json& file, nlohmann::json& record,
                                       std::vector<data::Batch>& batches) {
    importance::EstimatorOptions eo = options_.estimator;
    const auto layers = options_.targets.per_kind.find(TargetKind::layers);
    if (eo.metric == "angular" && !options_.run_length_given && layers != options_.targets.per_kind.end())
      eo.run_length = layers->second.count >= 0 ? layers->second.count
                                                : std::llround(layers->second.fraction * state.model->config().num_layers);
    eo.run_length = std::max<int64_t>(eo.run_length, 1);
    const std::unique_ptr<importance::Estimator> estimator = importance::make_estimator(eo);
    if (estimator->needs_data() || options_.bias_compensation) batches = prune_calibration(state, options_.calibration);
    // A copy: bias compensation replaces state.model (and frees the model this config belonged to).
    const model::ModelConfig c = state.model->config();
    const methods::ScoreRequest request = methods::score_request(c, options_.targets, options_.allocation);
    const bool hidden = options_.targets.per_kind.count(TargetKind::hidden) > 0;
    surgery::Masks masks = surgery::Masks::keep_all(c);
    const int rounds = rounds_needed(options_.targets, options_.step, c);
    nlohmann::json history = nlohmann::json::array();
    nlohmann::json compensation = {{"channels", 0}, {"biases", nlohmann::json::array()}, {"added", nlohmann::json::array()}, {"hf_exact", true}};
    nlohmann::json curve = nlohmann::json::array();
    std::optional<TaskEvalData> eval_data;
    if (options_.round_eval) {
      const recipe::Value* data = state.recipe.tree.find("data");
      if (!data || data->is_null())
        throw UserError("prune.schedule.iterative.eval needs the recipe's data: section (e.g. include: "
                        "[configs/data/kjv.yaml]): it evaluates on the same split an eval stage would");
      eval_data = task_eval_data(state, *state.model, options_.round_eval_options, "prune.schedule.iterative.eval");
      record["curve_eval"] = eval_data->info;
    }
    const double dense_loss = masked_loss(*state.model, batches, masks);
    if (!std::isnan(dense_loss) || eval_data) {
      nlohmann::json point = {{"round", 0}, {"params_removed_fraction", 0.0}};
      for (const auto& [k, a] : options_.targets.per_kind) point[methods::to_string(k) + "_removed_fraction"] = 0.0;
      if (!std::isnan(dense_loss)) point["calibration_loss"] = dense_loss;
      if (eval_data) add_eval_metrics(*state.model, *eval_data, masks, point);
      curve.push_back(point);
      log_point(state, point, 0);
      if (eval_data) log::info(state.stage_label() + "  round 0/" + std::to_string(rounds) + "  dense" + eval_text(point));
    }
    methods::Allocation allocation;
    for (int round = 1; round <= rounds; ++round) {
      model::PrunableOptions po;
      po.hidden_dims = hidden;
      const model::PrunableStructure structure = model::prunable_structure(*state.model, po);
      const model::Gates gates = masks.to_gates(c, state.model->device());
      importance::Context ctx{*state.model, structure, batches, round > 1 ? &gates : nullptr, request.kinds, request.kv_units};
      const importance::Scores scores = estimator->estimate(ctx);
      const methods::Targets targets = round_targets(options_.targets, options_.step, round, c);
      allocation = methods::allocate(*state.model, structure, scores, targets, options_.allocation, masks);
      for (methods::Step& s : allocation.steps) s.round = round;
      if (options_.bias_compensation) compensate(state, masks, allocation.masks, scores, compensation);
      masks = allocation.masks;
      const double loss = masked_loss(*state.model, batches, masks);
      const double removed = static_cast<double>(allocation.params_removed) / static_cast<double>(allocation.params_base);
      nlohmann::json event = {{"round", round}, {"params_removed_fraction", removed}};
      for (const auto& [k, r] : allocation.kinds)
        event[methods::to_string(k) + "_removed_fraction"] = r.units > 0 ? static_cast<double>(r.removed) / static_cast<double>(r.units) : 0.0;
      if (!std::isnan(loss)) event["calibration_loss"] = loss;
      if (eval_data) add_eval_metrics(*state.model, *eval_data, masks, event);
      curve.push_back(event);
      log_point(state, event, round);
      history.push_back({{"round", round}, {"scores", scores.to_json()}, {"allocation", allocation.to_json()}, {"metrics", event}});
      log::info(state.stage_label() + "  round " + std::to_string(round) + "/" + std::to_string(rounds) + "  " +
                estimator->name() + "  params removed " + strings::format_number(std::round(removed * 1e4) / 1e4) +
                (std::isnan(loss) ? "" : "  calibration loss " + strings::format_number(std::round(loss * 1e4) / 1e4)) +
                eval_text(event));
    }
    if (!allocation.met) throw UserError("prune: target not met after rounding: " + allocation.unmet);
    nlohmann::json kinds = nlohmann::json::object();
    for (const auto& [k, r] : allocation.kinds)
      kinds[methods::to_string(k)] = {{"units", r.units}, {"requested", r.requested}, {"target", r.target}, {"removed", r.removed}};
    record["targets"] = kinds;
    record["target_met"] = allocation.met;
    record["rounds"] = rounds;
    record["curve"] = curve;
    if (allocation.params_target >= 0) record["params_target"] = allocation.params_target;
    if (options_.bias_compensation) record["bias_compensation"] = compensation;
    file["estimator"] = estimator->name();
    file["rounds"] = history;
    file["compensation"] = compensation;
    return masks;
  }

  // Block search (BlockPruner, FinerCut, Shortened LLaMA): the method decides the removals itself;
  // pruning.json records every step's candidate scores and the order blocks were removed in.
  surgery::Masks search(run::RunState& state, nlohmann::json& file, nlohmann::json& record, std::vector<data::Batch>& batches) {
    batches = prune_calibration(state, options_.calibration);
    const methods::BlockSearchOptions& o = options_.search_options;
    const methods::BlockSearchResult r =
        methods::block_search(*state.model, batches, o, surgery::Masks::keep_all(state.model->config()));
    const std::string what = o.unit == methods::SearchUnit::layers ? "layers" : "blocks";
    record["targets"] = {{what, {{"units", r.units}, {"requested", r.requested}, {"target", r.requested},
                                 {"removed", static_cast<int64_t>(r.order.size())}}}};
    record["target_met"] = static_cast<int64_t>(r.order.size()) == r.requested;
    record["search"] = {{"criterion", methods::to_string(o.criterion)}, {"unit", what}, {"greedy", o.greedy},
                        {"start_score", r.start_score}, {"layers_run", r.layers_run}};
    nlohmann::json curve = nlohmann::json::array();
    curve.push_back({{"step", 0}, {"score", r.start_score}});
    log_point(state, curve.back(), 0);
    for (const methods::Removal& rm : r.order)
      if (o.greedy) {
        curve.push_back({{"step", rm.step}, {"score", rm.score}, {"removed", methods::to_string(rm.candidate.kind)},
                         {"layer", rm.candidate.layer}});
        log_point(state, curve.back(), rm.step);
      }
    record["curve"] = curve;
    file["estimator"] = "search:" + methods::to_string(o.criterion);
    file["order"] = r.order_json();
    file["search"] = {{"criterion", methods::to_string(o.criterion)}, {"unit", what}, {"greedy", o.greedy},
                      {"start_score", r.start_score}, {"steps", r.steps}};
    log::info(state.stage_label() + "  block search (" + methods::to_string(o.criterion) + ") removed " +
              std::to_string(r.order.size()) + " " + what + ", " + std::to_string(r.layers_run) + " layer passes");
    return r.masks;
  }

  // One point of the pruning curve in metrics.jsonl (report.json gets the whole curve at the end).
  static void log_point(run::RunState& state, const nlohmann::json& values, int64_t step) {
    state.dir.log_event({{"stage", state.stage_kind}, {"stage_index", state.stage_index}, {"step", step}, {"values", values}});
  }

  void compensate(run::RunState& state, const surgery::Masks& before, const surgery::Masks& after,
                  const importance::Scores& scores, nlohmann::json& summary) {
    surgery::ChannelMeans means{scores.channel_means, scores.channel_in_dim};
    const surgery::Compensation c = surgery::compensate(state.model, before, after, means);
    state.model = c.model;
    summary["channels"] = summary["channels"].get<int64_t>() + c.channels;
    for (const std::string& b : c.biases) summary["biases"].push_back(b);
    for (const std::string& b : c.added) summary["added"].push_back(b);
    summary["hf_exact"] = summary["hf_exact"].get<bool>() && c.hf_exact;
    if (!c.hf_exact)
      log::warn("bias compensation added biases that transformers' " + state.model->config().model_type +
                " class cannot hold: secateur reloads the export exactly, transformers would drop them");
  }

  surgery::Masks reapply(run::RunState& state, nlohmann::json& file) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(fs::read_file(options_.from));
    } catch (const nlohmann::json::exception& e) {
      throw UserError("prune.from: " + options_.from + " is not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object() || !j.contains("masks"))
      throw UserError("prune.from: " + options_.from + " has no \"masks\" (expected a pruning.json written by secateur)");
    const surgery::Masks masks = surgery::Masks::from_json(j.at("masks"), state.model->config(), options_.from);
    if (j.contains("compensation") && j["compensation"].value("channels", 0) > 0)
      log::warn("prune.from: " + options_.from + " used bias compensation, which depends on the original checkpoint's "
                "activations and is not re-applied");
    file["reapplied_from"] = options_.from;
    return masks;
  }

  // Largest |logit difference| between the masked dense model and the pruned one, on the first
  // calibration batch (or fixed random ids); an fp32 mismatch is a bug, not a user error.
  static double check(model::Model& dense, model::Model& pruned, const surgery::Masks& masks,
                      const std::vector<data::Batch>& batches) {
    torch::NoGradGuard no_grad;
    torch::Tensor ids, mask;
    if (!batches.empty()) {
      ids = batches.front().input_ids;
      mask = batches.front().attention_mask;
    } else {
      auto generator = at::detail::createCPUGenerator(1234);
      const int64_t length = std::min<int64_t>(16, std::max<int64_t>(2, dense.config().max_position_embeddings / 2));
      ids = torch::randint(0, dense.config().vocab_size, {2, length}, generator, torch::kLong);
    }
    const model::Gates gates = masks.to_gates(dense.config(), dense.device());
    const torch::Tensor a = dense.forward(ids, mask, &gates).logits.to(torch::kFloat);
    const torch::Tensor b = pruned.forward(ids, mask).logits.to(torch::kFloat);
    const double diff = (a - b).abs().max().item<double>();
    if (dense.dtype() == torch::kFloat && !(diff <= 1e-4 * std::max(1.0, a.abs().max().item<double>())))
      throw std::logic_error("surgery changed the function: max |Δlogit| = " + std::to_string(diff));
    return diff;
  }

  PruneOptions options_;
  std::string yaml_;
};

}  // namespace

void register_prune(recipe::Registry& registry) {
  registry.add_stage({"prune", "score structures, remove the least important (heads, neurons, blocks, layers), write pruning.json",
                      prune_schema(), [](const recipe::Value& o) { return std::make_unique<PruneStage>(o); }});
}

}  // namespace secateur::stages
