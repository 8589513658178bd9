#include "stages/prune_options.h"

#include <cmath>

#include "stages/calibration.h"
#include "util/error.h"
#include "util/strings.h"

namespace secateur::stages {

using recipe::Schema;

namespace {

recipe::SchemaPtr amount() {
  return Schema::number()->min(0)->check(
      [](const recipe::Value& v) -> std::string {
        const double x = v.as_double();
        return x < 1 || std::floor(x) == x ? "" : "a fraction in [0, 1) or a whole count";
      },
      "a fraction in [0, 1) or a whole count");
}

// An integer for every width kind, or one per kind: `round_to: 8` or `round_to: {ffn: 64, heads: 2}`.
recipe::SchemaPtr per_width() {
  auto each = Schema::structure()
                  ->field("heads", Schema::integer()->min(1), "Query heads.")
                  ->field("ffn", Schema::integer()->min(1), "FFN neurons.")
                  ->field("hidden", Schema::integer()->min(1), "Hidden dims.");
  return Schema::union_of({Schema::integer()->min(1), each});
}

void read_per_width(const recipe::Value* v, std::map<methods::TargetKind, int64_t>& out, bool int_applies_to_heads) {
  if (!v || v->is_null()) return;
  using methods::TargetKind;
  if (v->is_scalar()) {
    out[TargetKind::ffn] = out[TargetKind::hidden] = v->as_int();
    if (int_applies_to_heads) out[TargetKind::heads] = v->as_int();
    return;
  }
  for (const auto& e : v->entries()) out[methods::target_kind(e.key)] = e.value.as_int();
}

void read_search(const recipe::Value& s, PruneOptions& p) {
  p.search = true;
  methods::BlockSearchOptions& o = p.search_options;
  o.criterion = s.get_string("criterion", "perplexity") == "output_change" ? methods::SearchCriterion::output_change
                                                                            : methods::SearchCriterion::perplexity;
  o.unit = s.get_string("unit", "blocks") == "layers" ? methods::SearchUnit::layers : methods::SearchUnit::blocks;
  const double x = s.at("remove").as_double();
  o.remove = x < 1 ? methods::Amount{x, -1} : methods::Amount{0, static_cast<int64_t>(x)};
  o.greedy = s.get_bool("greedy", true);
  o.cache = s.get_bool("cache", true);
}

}  // namespace

recipe::SchemaPtr prune_schema() {
  std::vector<std::string> estimators = importance::estimator_names();
  auto estimator =
      Schema::structure()
          ->field("name", Schema::enumeration(estimators),
                  "magnitude (no data) | head_gradient (Michel et al. 2019) | taylor (LLM-Pruner) | activation (Wanda) | "
                  "fluctuation (FLAP) | block_influence (ShortGPT; Gromov et al. with metric angular) | projection (AMP) | "
                  "aggregated_activation (Minitron).", "magnitude")
          ->field("norm", Schema::enumeration({"l1", "l2"}), "magnitude: the norm of a group's weights.", "l2")
          ->field("normalize", Schema::boolean(), "ℓ2-normalise each layer's scores (Michel et al.).", "false")
          ->field("variant", Schema::enumeration({"vector", "element"}),
                  "taylor: vector = |Σ w·∂L/∂w| over the group; element = Σ |w·∂L/∂w|.", "vector")
          ->field("standardize", Schema::boolean(), "Standardise each layer's scores (FLAP).", "false")
          ->field("metric", Schema::enumeration({"bi", "angular"}),
                  "block_influence: bi = 1 − mean cosine per layer/block; angular = also arccos(cos)/π between layers l "
                  "and l+n at the last token, to drop the best run of n layers.", "bi")
          ->field("run_length", Schema::integer()->min(1), "block_influence angular: n (default: the layers target).")
          ->field("per_example", Schema::boolean(),
                  "head_gradient: one backward per example (E_x |∂L(x)/∂ξ| read literally) instead of one per batch "
                  "(Michel et al.'s released code).", "false")
          ->field("batch_aggregation", Schema::enumeration({"mean", "l2", "var"}),
                  "aggregated_activation: how sequences' values combine (Minitron's best: l2).", "l2")
          ->field("sequence_aggregation", Schema::enumeration({"mean", "l2", "var"}),
                  "aggregated_activation: how a sequence's token values combine (Minitron's best: mean).", "mean");
  auto target =
      Schema::structure()
          ->field("heads", amount(), "Query heads to remove, of all heads in kept attention blocks (GQA units: see gqa).")
          ->field("ffn", amount(), "FFN neurons to remove, of all neurons in kept MLP blocks.")
          ->field("hidden", amount(), "Hidden dims to remove (every hidden-sized tensor is sliced).")
          ->field("attn_blocks", amount(), "Attention blocks to remove (lowest score first).")
          ->field("mlp_blocks", amount(), "MLP blocks to remove (lowest score first).")
          ->field("layers", amount(), "Whole layers to remove (lowest score first, or Gromov et al.'s best run).")
          ->field("params", Schema::number()->min(0)->max(1, true),
                  "Remove this fraction of the non-embedding parameters, taking units of params_kinds in score order.")
          ->field("params_kinds", Schema::list(Schema::enumeration({"heads", "ffn", "attn_blocks", "mlp_blocks", "layers"}))->min_items(1),
                  "What a params target removes.", "[heads, ffn]");
  auto iterative =
      Schema::structure()
          ->required("step", Schema::number()->min(0, true)->max(1),
                     "Fraction of each kind's units removed per round; scores are re-estimated every round.")
          ->field("eval",
                  task_eval_schema()->doc(
                      "The eval stage's split and limits (split, context, stride, batch_size, max_tokens, max_examples)."),
                  "Evaluate on the recipe's data: after round 0 (dense) and every round, through the round's masks as "
                  "gates, with the eval stage's metrics (perplexity; masked-LM accuracy; accuracy and macro-F1): each "
                  "curve point gets them, and the report draws them against params_removed_fraction. Absent = only "
                  "calibration_loss.");
  auto schedule = Schema::union_of({Schema::enumeration({"one_shot"}), Schema::structure()->required("iterative", iterative, "Michel et al.'s iterative pruning.")})
                      ->doc("one_shot, or {iterative: {step: 0.1, eval: {split: test}}}");
  auto search =
      Schema::structure()
          ->field("criterion", Schema::enumeration({"perplexity", "output_change"}),
                  "perplexity: calibration perplexity with the unit removed (BlockPruner; Shortened LLaMA PPL); "
                  "output_change: mean Jensen–Shannon divergence from the starting model's outputs (FinerCut).", "perplexity")
          ->field("unit", Schema::enumeration({"blocks", "layers"}),
                  "blocks: attention and MLP blocks compete (BlockPruner, FinerCut); layers: whole layers (Shortened LLaMA).", "blocks")
          ->field("remove", amount(),
                  "Units to remove: a fraction in [0, 1) of the candidate units or a whole count. Setting it turns the "
                  "search on.")
          ->field("greedy", Schema::boolean(),
                  "true: remove one unit per step, re-scoring the rest each time; false: score every unit once on the "
                  "starting model and remove the lowest together (Shortened LLaMA's one-shot).", "true")
          ->field("cache", Schema::boolean(),
                  "Keep every layer's input per calibration batch so a candidate in layer l re-runs only layers l.. "
                  "(memory: layers × calibration tokens × hidden); false re-runs the whole model each time.", "true");
  return Schema::structure()
      ->field("estimator", estimator, "How groups are scored.")
      ->field("search", search,
              "Block search instead of estimator + allocation: try removing each attention/MLP block or layer on the "
              "calibration set and remove the least harmful (BlockPruner, FinerCut, Shortened LLaMA).")
      ->field("target", target, "What to remove (fractions < 1 or counts ≥ 1, per kind; or a params fraction).")
      ->field("allocation", Schema::enumeration({"uniform", "global", "adaptive"}),
              "uniform: the same fraction in every layer; global: one ranking across layers; adaptive: global over "
              "per-layer standardised scores (FLAP).", "uniform")
      ->field("round_to", per_width(),
              "Kept widths are multiples of this: an integer applies to ffn and hidden, or give {heads, ffn, hidden}.", "1")
      ->field("min_per_layer", per_width(),
              "Fewest units a layer keeps: an integer applies to heads, ffn and hidden, or give {heads, ffn, hidden}.", "1")
      ->field("gqa", Schema::enumeration({"group", "within"}),
              "Grouped-query attention: group = a key/value group goes with all its query heads; within = every group "
              "loses the same number of query heads.", "group")
      ->field("schedule", schedule,
              "one_shot or {iterative: {step, eval}}: remove step of each target per round, re-estimating scores; "
              "eval evaluates every round through the masks (the accuracy/perplexity-vs-sparsity curve).",
              "one_shot")
      ->field("bias_compensation", Schema::boolean(),
              "FLAP: fold removed channels' mean activations into the output projections' biases (needs estimator "
              "fluctuation or activation).", "false")
      ->field("calibration", prune_calibration_schema(), "Calibration data for estimators that need it.")
      ->field("from", Schema::string(), "Re-apply the masks of this pruning.json (written by an earlier prune) instead of estimating.");
}

PruneOptions parse_prune_options(const recipe::Value& o) {
  PruneOptions p;
  const recipe::Value& e = o.at("estimator");
  p.estimator.name = e.get_string("name", "magnitude");
  p.estimator.norm = e.get_string("norm", "l2");
  p.estimator.normalize = e.get_bool("normalize", false);
  p.estimator.variant = e.get_string("variant", "vector");
  p.estimator.standardize = e.get_bool("standardize", false);
  p.estimator.metric = e.get_string("metric", "bi");
  p.run_length_given = e.has("run_length") && !e.at("run_length").is_null();
  p.estimator.run_length = e.get_int("run_length", 1);
  p.estimator.per_example = e.get_bool("per_example", false);
  p.estimator.batch_aggregation = e.get_string("batch_aggregation", "l2");
  p.estimator.sequence_aggregation = e.get_string("sequence_aggregation", "mean");
  const recipe::Value* target = o.find("target");
  const recipe::Value empty_target;
  const recipe::Value& t = target && target->is_map() ? *target : empty_target;
  for (methods::TargetKind k : methods::all_target_kinds()) {
    const recipe::Value* v = t.find(methods::to_string(k));
    if (!v || v->is_null()) continue;
    const double x = v->as_double();
    p.targets.per_kind[k] = x < 1 ? methods::Amount{x, -1} : methods::Amount{0, static_cast<int64_t>(x)};
  }
  if (t.has("params") && !t.at("params").is_null()) {
    p.targets.params = t.at("params").as_double();
    p.targets.params_kinds.clear();
    for (const recipe::Value& k : t.at("params_kinds").items()) p.targets.params_kinds.push_back(methods::target_kind(k.text()));
  }
  const std::string mode = o.get_string("allocation", "uniform");
  p.allocation.mode = mode == "global" ? methods::Mode::global : mode == "adaptive" ? methods::Mode::adaptive : methods::Mode::uniform;
  p.allocation.gqa = o.get_string("gqa", "group") == "within" ? methods::GqaMode::within : methods::GqaMode::group;
  read_per_width(o.find("round_to"), p.allocation.round_to, false);
  read_per_width(o.find("min_per_layer"), p.allocation.min_per_layer, true);
  const recipe::Value& schedule = o.at("schedule");
  if (schedule.is_map()) {
    const recipe::Value& iterative = schedule.at("iterative");
    p.step = iterative.at("step").as_double();
    if (const recipe::Value* e = iterative.find("eval"); e && e->is_map()) {
      p.round_eval = true;
      p.round_eval_options = task_eval_options(*e);
    }
  }
  p.bias_compensation = o.get_bool("bias_compensation", false);
  p.from = o.get_string("from", "");
  p.calibration = o.at("calibration");
  if (const recipe::Value* s = o.find("search"); s && s->is_map() && s->find("remove") && !s->at("remove").is_null())
    read_search(*s, p);
  if (p.search && (!p.targets.per_kind.empty() || p.targets.params >= 0 || p.step > 0 || p.bias_compensation || !p.from.empty()))
    throw UserError("prune.search decides what to remove itself: leave out target, schedule, bias_compensation and from");
  if (p.round_eval && !p.from.empty())
    throw UserError("prune.schedule.iterative.eval: from: re-applies a pruning.json in one step, there is no curve to "
                    "evaluate; leave out schedule (or from)");
  if (p.from.empty() && !p.search && p.targets.per_kind.empty() && p.targets.params < 0)
    throw UserError("prune: target is empty — say what to remove, e.g. target: {heads: 0.5} or search: {remove: 2} (or give `from: pruning.json`)");
  if (p.bias_compensation && p.estimator.name != "fluctuation" && p.estimator.name != "activation")
    throw UserError("prune.bias_compensation needs channel means: use estimator fluctuation or activation, not " + p.estimator.name);
  return p;
}

}  // namespace secateur::stages
