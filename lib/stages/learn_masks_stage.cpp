// `learn_masks`: learns which structures to remove by training masks with the model (CoFi's
// Hard-Concrete L0 gates under a Lagrangian sparsity constraint, VTrans' VIB gates under the VIB
// compression term and the same Lagrangian, movement / block movement scores under a cubic
// schedule, LoRAPrune's LoRA-guided importance), then turns the learned masks into surgery::Masks,
// prunes physically, checks that the smaller model computes what the masked one did, and records
// the sparsity and pruning.json as the prune stage does. train.distill trains with distillation
// from a teacher, as the train stage does (CoFi and VTrans distil from the dense model).
//
//   - learn_masks:
//       method: cofi
//       target_sparsity: 0.6
//       cofi: {warmup_steps: 100}
//       train: {steps: 200, optimizer: {lr: 2.0e-5}, distill: {teacher: dense}}   # the train stage's keys
#include <cmath>

#include "methods/cofi.h"
#include "methods/loraprune.h"
#include "methods/movement.h"
#include "methods/vib.h"
#include "stages/data_access.h"
#include "model/prunable.h"
#include "stages/model_access.h"
#include "stages/stage_kinds.h"
#include "stages/train_access.h"
#include "surgery/surgery.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/strings.h"

namespace secateur::stages {
namespace {

using recipe::Schema;
using json = nlohmann::json;

const recipe::Value& section(const recipe::Value& options, const std::string& key) {
  static const recipe::Value empty = recipe::Value::map();
  const recipe::Value* v = options.find(key);
  return v && v->is_map() ? *v : empty;
}

// The keys CoFi and VTrans share: the target's ramp, which gates exist, the learning rates.
recipe::SchemaBuilder structured_gate_schema(const std::string& gates) {
  return Schema::structure()
      ->field("start_sparsity", Schema::number()->min(0)->max(1, true), "Target at step 0 (t0 of the linear ramp).", "0")
      ->field("warmup_steps", Schema::integer()->min(0),
              "Steps over which the target ramps linearly from start_sparsity to target_sparsity (CoFi's "
              "lagrangian_warmup; 0 = the full target at once).", "0")
      ->field("heads", Schema::boolean(), "Gate attention heads (key/value groups in the llama family).", "true")
      ->field("ffn", Schema::boolean(), "Gate FFN neurons.", "true")
      ->field("hidden", Schema::boolean(), "Gate hidden dims, the embeddings' width (shared by every layer).", "true")
      ->field("blocks", Schema::boolean(), "Gate whole attention and MLP blocks.", "true")
      ->field("gate_lr", Schema::number()->min(0, true), "Learning rate of " + gates + ".", "0.1")
      ->field("lambda_lr", Schema::number()->min(0, true), "Learning rate of the Lagrange multipliers λ1, λ2 (ascent).", "0.1");
}

// Reads structured_gate_schema()'s keys (section `v`) and the stage's target into CoFi's or
// VTrans' options.
template <class Options>
Options structured_gate_options(const recipe::Value& stage, const recipe::Value& v) {
  Options o;
  o.target_sparsity = stage.get_double("target_sparsity", 0.5);
  o.start_sparsity = v.get_double("start_sparsity", 0);
  o.warmup_steps = v.get_int("warmup_steps", 0);
  o.heads = v.get_bool("heads", true);
  o.ffn = v.get_bool("ffn", true);
  o.hidden = v.get_bool("hidden", true);
  o.blocks = v.get_bool("blocks", true);
  o.gate_lr = v.get_double("gate_lr", 0.1);
  o.lambda_lr = v.get_double("lambda_lr", 0.1);
  return o;
}

recipe::SchemaBuilder cofi_schema() {
  return structured_gate_schema("log α (CoFi's reg_learning_rate)")
      ->field("droprate_init", Schema::number()->min(0, true)->max(1, true),
              "Initial drop rate d of FFN gates: log α starts at log((1 − d)/d).", "0.5")
      ->field("open_log_alpha", Schema::number(), "Initial log α of head, hidden and block gates (open).", "10");
}

recipe::SchemaBuilder vib_schema() {
  return structured_gate_schema("μ and log σ²")
      ->field("constraint", Schema::enumeration({"params", "flops"}),
              "What target_sparsity is a fraction of: the prunable parameters, or their forward FLOPs per token at "
              "data.seq_len (attention products included).", "params")
      ->field("kl_weight", Schema::number()->min(0), "γ of the VIB term γ·Σ ½·log(1 + μ²/σ²) (the authors' kl_factor).", "1e-6")
      ->field("threshold", Schema::number()->min(0, true), "τ: a gate stays when its α = μ²/σ² exceeds it.", "1")
      ->field("sharpness", Schema::number()->min(0, true),
              "β of the keep probability sigmoid(β·(log α − log τ)) in the expected size.", "10")
      ->field("masks", Schema::enumeration({"threshold", "target"}),
              "threshold = keep the gates with α > τ (the paper); target = hidden dims and blocks by τ, then remove "
              "heads and neurons in ascending α until target_sparsity is met exactly.", "threshold")
      ->field("init_log_variance", Schema::number(), "Initial log σ² of every gate (μ starts at 1).", "-9")
      ->field("data_fraction", Schema::number()->min(0, true)->max(1),
              "Train on this fraction of the training examples (Fast-VTrans: 0.03).", "1")
      ->field("train_model", Schema::boolean(), "false = only the masks train, the model stays frozen (Faster-VTrans).",
              "true");
}

recipe::SchemaBuilder block_schema(const std::string& units, const std::string& units_default,
                                   const std::string& hidden_default) {
  return Schema::structure()
      ->field("units", Schema::integer()->min(0), "Block extent along " + units + " (0 = the whole dimension).", units_default)
      ->field("hidden", Schema::integer()->min(0), "Block extent along the hidden axis (0 = the whole dimension).",
              hidden_default);
}

recipe::SchemaBuilder movement_schema() {
  return Schema::structure()
      ->field("mode", Schema::enumeration({"topv", "threshold"}),
              "topv = keep the top (1 − s_t) blocks of each matrix by score (hard movement); threshold = keep blocks with "
              "σ(S) > threshold, λ·mean σ(S) added to the loss (soft movement).", "topv")
      ->field("attention", block_schema("a head's q/k/v rows and o columns", "32", "32"),
              "Block shape in attention projections (block movement: 32×32; movement: 1×1).", "{}")
      ->field("ffn", block_schema("a neuron's up/gate row and down column", "1", "0"),
              "Block shape in FFN projections (hybrid: whole rows / columns, units 1, hidden 0).", "{}")
      ->field("initial_sparsity", Schema::number()->min(0)->max(1, true), "s_i of the cubic schedule.", "0")
      ->field("warmup_steps", Schema::integer()->min(0), "Steps at s_i before the cubic schedule starts (t0).", "0")
      ->field("cooldown_steps", Schema::integer()->min(0), "Steps at the final sparsity at the end.", "0")
      ->field("threshold", Schema::number()->min(0)->max(1), "τ of threshold mode.", "0.5")
      ->field("regularization", Schema::number()->min(0), "λ of soft movement.", "0")
      ->field("score_init", Schema::number(), "Initial scores S.", "0")
      ->field("score_lr", Schema::number()->min(0, true), "Learning rate of the scores.", "0.01");
}

recipe::SchemaBuilder loraprune_schema() {
  return Schema::structure()
      ->field("rank", Schema::integer()->min(1), "LoRA rank r.", "8")
      ->field("alpha", Schema::number()->min(0, true), "LoRA α (scaling α/r).", "16")
      ->field("iterations", Schema::integer()->min(1), "Pruning rounds; round k removes target·k/iterations.", "5")
      ->field("prune_every", Schema::integer()->min(1), "Optimiser steps of LoRA fine-tuning between rounds.", "10")
      ->field("beta", Schema::number()->min(0)->max(1), "λ of the importance moving average (eq. 11).", "0.9")
      ->field("heads", Schema::boolean(), "Prune heads (key/value groups in the llama family).", "true")
      ->field("ffn", Schema::boolean(), "Prune FFN neurons.", "true")
      ->field("lr", Schema::number(), "Adapters' learning rate (< 0 = train.optimizer.lr).", "-1");
}

recipe::SchemaBuilder learn_masks_schema() {
  return Schema::structure()
      ->field("method", Schema::enumeration({"cofi", "vib", "movement", "block_movement", "loraprune"}),
              "cofi = Xia et al. 2022, Hard-Concrete L0 gates on heads, FFN neurons, hidden dims and blocks; vib = VTrans "
              "(Dutta et al. 2024), variational information bottleneck gates on the same structures; movement / "
              "block_movement = Sanh et al. 2020 / Lagunas et al. 2021, learned block scores with a cubic sparsity schedule "
              "(movement uses 1×1 attention blocks unless movement.attention says otherwise); loraprune = Zhang et al. "
              "2023, LoRA-guided importance with iterative pruning (the model is frozen, only adapters train).", "cofi")
      ->field("target_sparsity", Schema::number()->min(0)->max(1, true),
              "Fraction of the prunable parameters (attention heads and FFN neurons with their hidden-dim share) to remove.",
              "0.5")
      ->field("tolerance", Schema::number()->min(0),
              "The learned masks meet the target when their sparsity is at least target_sparsity − tolerance.", "0.02")
      ->field("cofi", cofi_schema(), "CoFi's options.", "{}")
      ->field("vib", vib_schema(), "VTrans' options (target_sparsity: of the parameters or FLOPs constraint).", "{}")
      ->field("movement", movement_schema(), "Movement / block movement options (target_sparsity is s_f).", "{}")
      ->field("loraprune", loraprune_schema(), "LoRAPrune's options (target_sparsity: fraction of each layer's heads "
              "and neurons removed).", "{}")
      ->field("train", train_schema(), "The training loop (the train stage's keys; distill: trains with distillation).",
              "{}");
}

class LearnMasksStage : public recipe::Stage {
 public:
  explicit LearnMasksStage(const recipe::Value& o) : options_(o), yaml_(recipe::to_yaml(o)) {}

  void run(run::RunState& state) override {
    model::Model& dense = ensure_model(state);
    remember_unpruned(state);
    TrainSetup setup = train_setup(section(options_, "train"), state);
    torch::manual_seed(static_cast<uint64_t>(state.seed));  // the method's initial parameters
    const std::string method = options_.get_string("method", "cofi");
    if (method == "cofi") {
      const auto cofi = std::make_shared<methods::Cofi>(dense, cofi_options());
      if (run_training(state, setup, {cofi}).interrupted) return;
      const surgery::Masks masks = cofi->masks();
      const double expected = cofi->expected_sparsity().item<double>();
      const double achieved = 1 - cofi->expected_size(cofi->indicators(masks)).item<double>() / cofi->prunable_size();
      finish(state, masks, {{"method", method}, {"expected_sparsity", expected}, {"mask_sparsity", achieved}});
    } else if (method == "vib") {
      run_vib(state, setup);
    } else if (method == "movement" || method == "block_movement") {
      const auto movement = std::make_shared<methods::Movement>(dense, movement_options(method));
      if (run_training(state, setup, {movement}).interrupted) return;
      if (movement_options(method).mode == methods::MovementMode::topv)
        movement->set_sparsity(options_.get_double("target_sparsity", 0.5));
      const double achieved = movement->weight_sparsity();
      movement->apply_to_weights(dense);  // sparse blocks stay as zeros; empty heads and neurons go
      finish(state, movement->structural_masks(), {{"method", method}, {"mask_sparsity", achieved}});
    } else {
      setup.options.freeze.mode = train::FreezeMode::all;  // only the adapters train
      const auto lp = std::make_shared<methods::LoraPrune>(dense, loraprune_options());
      if (run_training(state, setup, {lp}).interrupted) return;
      if (lp->rounds_done() < loraprune_options().iterations)
        lp->prune_to(options_.get_double("target_sparsity", 0.5));  // the schedule ended early: finish it
      lp->lora().merge_into(dense);
      const surgery::Masks masks = lp->masks();
      finish(state, masks, {{"method", method}, {"mask_sparsity", unit_sparsity(dense.config(), masks)},
                            {"rounds", lp->rounds_done()}});
    }
  }

 private:
  // VTrans: Fast-VTrans trains on a fraction of the examples, Faster-VTrans only the masks; the
  // learned means are folded into the output projections before surgery (pruned == evaluated).
  void run_vib(run::RunState& state, TrainSetup& setup) {
    const recipe::Value& v = section(options_, "vib");
    const double fraction = v.get_double("data_fraction", 1.0);
    const int64_t examples = train::make_batch_source(ensure_data(state), setup.data)->batches_per_epoch() * setup.data.batch_size;
    if (fraction < 1)
      setup.data.max_examples = std::max<int64_t>(setup.data.batch_size, std::llround(fraction * static_cast<double>(examples)));
    const bool train_model = v.get_bool("train_model", true);
    if (!train_model) setup.options.freeze.mode = train::FreezeMode::all;
    model::Model& dense = *state.model;
    const auto vib = std::make_shared<methods::Vib>(dense, vib_options(state));
    if (run_training(state, setup, {vib}).interrupted) return;
    const surgery::Masks masks = vib->masks();
    const json record = {{"method", "vib"},
                         {"expected_sparsity", vib->expected_sparsity().item<double>()},
                         {"mask_sparsity", vib->sparsity(masks)},
                         {"constraint", v.get_string("constraint", "params")},
                         {"vib_kl", vib->kl().item<double>()},
                         {"data_fraction", fraction},
                         {"train_examples", setup.data.max_examples > 0 ? std::min(examples, setup.data.max_examples) : examples},
                         {"model_trained", train_model}};
    vib->fold_means(dense);
    finish(state, masks, record);
  }

  methods::VibOptions vib_options(run::RunState& state) const {
    const recipe::Value& v = section(options_, "vib");
    auto o = structured_gate_options<methods::VibOptions>(options_, v);
    o.measure = v.get_string("constraint", "params") == "flops" ? methods::SizeMeasure::flops : methods::SizeMeasure::params;
    o.seq_len = ensure_data(state).config().seq_len;
    o.kl_weight = v.get_double("kl_weight", 1e-6);
    o.threshold = v.get_double("threshold", 1);
    o.sharpness = v.get_double("sharpness", 10);
    o.rule = v.get_string("masks", "threshold") == "target" ? methods::VibMaskRule::target : methods::VibMaskRule::threshold;
    o.init_log_variance = v.get_double("init_log_variance", -9);
    return o;
  }

  methods::CofiOptions cofi_options() const {
    const recipe::Value& c = section(options_, "cofi");
    auto o = structured_gate_options<methods::CofiOptions>(options_, c);
    o.droprate_init = c.get_double("droprate_init", 0.5);
    o.open_log_alpha = c.get_double("open_log_alpha", 10);
    return o;
  }

  methods::MovementOptions movement_options(const std::string& method) const {
    const recipe::Value& m = section(options_, "movement");
    methods::MovementOptions o;
    o.mode = m.get_string("mode", "topv") == "threshold" ? methods::MovementMode::threshold : methods::MovementMode::topv;
    const recipe::Value& a = section(m, "attention");
    const recipe::Value& f = section(m, "ffn");
    const int64_t attention_default = method == "movement" ? 1 : 32;
    o.attention = {a.get_int("units", attention_default), a.get_int("hidden", attention_default)};
    o.ffn = {f.get_int("units", 1), f.get_int("hidden", 0)};
    o.schedule.initial = m.get_double("initial_sparsity", 0);
    o.schedule.final = options_.get_double("target_sparsity", 0.5);
    o.schedule.warmup_steps = m.get_int("warmup_steps", 0);
    o.schedule.cooldown_steps = m.get_int("cooldown_steps", 0);
    o.threshold = m.get_double("threshold", 0.5);
    o.regularization = m.get_double("regularization", 0);
    o.score_init = m.get_double("score_init", 0);
    o.score_lr = m.get_double("score_lr", 0.01);
    return o;
  }

  methods::LoraPruneOptions loraprune_options() const {
    const recipe::Value& l = section(options_, "loraprune");
    methods::LoraPruneOptions o;
    o.lora.rank = l.get_int("rank", 8);
    o.lora.alpha = l.get_double("alpha", 16);
    o.target = options_.get_double("target_sparsity", 0.5);
    o.iterations = l.get_int("iterations", 5);
    o.prune_every = l.get_int("prune_every", 10);
    o.beta = l.get_double("beta", 0.9);
    o.heads = l.get_bool("heads", true);
    o.ffn = l.get_bool("ffn", true);
    o.lr = l.get_double("lr", -1);
    return o;
  }

  // Fraction of heads and FFN neurons removed (LoRAPrune's per-layer target).
  static double unit_sparsity(const model::ModelConfig& c, const surgery::Masks& masks) {
    double removed = 0, total = 0;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const model::LayerShape& s = c.layers[l];
      const surgery::LayerMask& m = masks.layers[l];
      if (s.has_attention) total += s.num_heads, removed += s.num_heads - (m.keep && m.attention ? m.heads.size() : 0);
      if (s.has_mlp) total += s.intermediate, removed += s.intermediate - (m.keep && m.mlp ? m.ffn.size() : 0);
    }
    return total > 0 ? removed / total : 0;
  }

  // Surgery, the masked-vs-pruned check, the record and pruning.json (as the prune stage writes it).
  void finish(run::RunState& state, const surgery::Masks& masks, json record) {
    model::Model& dense = *state.model;
    const model::ParameterCount before = model::parameter_count(dense);
    const std::shared_ptr<model::Model> pruned = surgery::prune(dense, masks);
    record["max_abs_logit_diff_vs_masked"] = check(dense, *pruned, masks);
    const model::ParameterCount after = model::parameter_count(*pruned);
    const double target = options_.get_double("target_sparsity", 0.5);
    const double achieved = record["mask_sparsity"].get<double>();
    record["target_sparsity"] = target;
    record["target_met"] = achieved >= target - options_.get_double("tolerance", 0.02);
    record["params_before"] = before.total;
    record["params_after"] = after.total;
    record["params_non_embedding_before"] = before.non_embedding;
    record["params_non_embedding_after"] = after.non_embedding;
    record["sparsity"] = 1.0 - static_cast<double>(after.non_embedding) / static_cast<double>(before.non_embedding);
    json kept = json::array();
    for (const surgery::LayerMask& l : masks.layers)
      kept.push_back({{"keep", l.keep}, {"heads", l.keep && l.attention ? l.heads.size() : 0},
                      {"kv_groups", l.keep && l.attention ? l.kv_groups.size() : 0}, {"ffn", l.keep && l.mlp ? l.ffn.size() : 0},
                      {"attention", l.keep && l.attention}, {"mlp", l.keep && l.mlp}});
    record["kept_per_layer"] = kept;
    record["hidden_kept"] = masks.hidden.size();
    record["hf_loadable"] = pruned->config().is_uniform();
    const recipe::Value* m = state.recipe.tree.find("model");
    json file = {{"format", "secateur.pruning/1"}, {"recipe_hash", state.recipe.hash}, {"stage_options", yaml_},
                 {"source", {{"model", m ? m->at("path").text() : ""}, {"config", dense.config().to_json()}}},
                 {"estimator", "learn_masks:" + record["method"].get<std::string>()},
                 {"masks", masks.to_json()}, {"kept_per_layer", kept},
                 {"params", {{"before", before.total}, {"after", after.total}, {"non_embedding_before", before.non_embedding},
                             {"non_embedding_after", after.non_embedding}}}};
    fs::write_atomic(state.dir.file("pruning.json"), file.dump(1) + "\n");
    record["pruning_json"] = state.dir.file("pruning.json");
    state.model = pruned;
    state.record(record);
    if (!record["target_met"].get<bool>())
      log::warn(state.stage_label() + ": learned masks remove " + strings::format_number(achieved) + " of the prunable "
                "parameters, short of the target " + strings::format_number(target) + " (train longer, or raise lambda_lr)");
    log::info(state.stage_label() + "  params " + strings::human_count(static_cast<double>(before.total)) + " → " +
              strings::human_count(static_cast<double>(after.total)) + "  (prunable sparsity " +
              strings::format_number(std::round(achieved * 1e4) / 1e4) + ", target " + strings::format_number(target) + ")");
  }

  // Largest |logit difference| between the masked dense model and the pruned one on fixed ids.
  static double check(model::Model& dense, model::Model& pruned, const surgery::Masks& masks) {
    torch::NoGradGuard no_grad;
    auto generator = at::detail::createCPUGenerator(1234);
    const int64_t length = std::min<int64_t>(16, std::max<int64_t>(2, dense.config().max_position_embeddings / 2));
    const torch::Tensor ids = torch::randint(0, dense.config().vocab_size, {2, length}, generator, torch::kLong);
    const bool was_training = dense.is_training();
    dense.eval(), pruned.eval();
    const model::Gates gates = masks.to_gates(dense.config(), dense.device());
    const torch::Tensor a = dense.forward(ids, {}, &gates).logits.to(torch::kFloat);
    const torch::Tensor b = pruned.forward(ids).logits.to(torch::kFloat);
    if (was_training) dense.train(), pruned.train();
    const double diff = (a - b).abs().max().item<double>();
    if (dense.dtype() == torch::kFloat && !(diff <= 1e-4 * std::max(1.0, a.abs().max().item<double>())))
      throw std::logic_error("surgery changed the function: max |Δlogit| = " + std::to_string(diff));
    return diff;
  }

  recipe::Value options_;
  std::string yaml_;
};

}  // namespace

void register_learn_masks(recipe::Registry& registry) {
  registry.add_stage({"learn_masks",
                      "learn which structures to remove by training masks with the model (CoFi, VTrans, movement, "
                      "LoRAPrune), then prune physically and write pruning.json",
                      learn_masks_schema(), [](const recipe::Value& o) { return std::make_unique<LearnMasksStage>(o); }});
}

}  // namespace secateur::stages
