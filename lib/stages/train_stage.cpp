// `train`: fine-tunes (or pretrains) the run's model on the recipe's `data:` training split with
// lib/train's loop, optionally distilling from a teacher (the model as this stage found it, or a
// model path). Other training stages reuse train_schema() / train_setup() / run_training().
#include <algorithm>

#include "model/model.h"
#include "stages/data_access.h"
#include "stages/model_access.h"
#include "stages/stage_kinds.h"
#include "stages/train_access.h"
#include "dist/data_parallel.h"
#include "train/distill.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"

namespace secateur::stages {

using recipe::Schema;
using json = nlohmann::json;

namespace {

std::vector<std::string> strings(const recipe::Value* v) {
  std::vector<std::string> out;
  if (v && v->is_list())
    for (const auto& i : v->items()) out.push_back(i.text());
  return out;
}

const recipe::Value& section(const recipe::Value& options, const std::string& key) {
  static const recipe::Value empty = recipe::Value::map();
  const recipe::Value* v = options.find(key);
  return v && v->is_map() ? *v : empty;
}

train::TrainTask task_for(const std::string& name, const model::ModelConfig& c, const std::string& label) {
  model::Task t = c.task;
  if (name == "causal_lm") return train::TrainTask::causal_lm;
  if (name == "masked_lm") return train::TrainTask::masked_lm;
  if (name == "classification") return train::TrainTask::classification;
  switch (t) {
    case model::Task::causal_lm: return train::TrainTask::causal_lm;
    case model::Task::masked_lm: return train::TrainTask::masked_lm;
    case model::Task::sequence_classification: return train::TrainTask::classification;
    case model::Task::base: break;
  }
  throw UserError(label + ": a base model has no head to train; load a model with a task head (model.task_head)");
}

model::Task model_task(train::TrainTask t) {
  switch (t) {
    case train::TrainTask::causal_lm: return model::Task::causal_lm;
    case train::TrainTask::masked_lm: return model::Task::masked_lm;
    case train::TrainTask::classification: return model::Task::sequence_classification;
  }
  return model::Task::base;
}

// Whether `v` (a stage's options, at any depth) names `teacher: unpruned`.
bool names_unpruned_teacher(const recipe::Value& v) {
  if (v.is_list()) return std::any_of(v.items().begin(), v.items().end(), names_unpruned_teacher);
  if (!v.is_map()) return false;
  for (const auto& e : v.entries())
    if ((e.key == "teacher" && !e.value.is_map() && e.value.text() == "unpruned") || names_unpruned_teacher(e.value)) return true;
  return false;
}

}  // namespace

std::shared_ptr<model::Model> copy_model(const model::Model& m) {
  auto copy = model::build_model(m.config(), torch::TensorOptions().dtype(m.dtype()).device(m.device()));
  torch::NoGradGuard no_grad;
  copy->load_state(m.state_dict_hf(), "the model");
  return copy;
}

void remember_unpruned(run::RunState& state) {
  if (state.unpruned) return;
  const recipe::Value* stages = state.recipe.tree.find("stages");
  if (!stages || !stages->is_list()) return;
  const auto& items = stages->items();
  // stage_index is 1-based: later stages start at items[stage_index].
  const bool wanted = std::any_of(items.begin() + std::min<size_t>(items.size(), static_cast<size_t>(state.stage_index)),
                                  items.end(), names_unpruned_teacher);
  if (wanted) state.unpruned = copy_model(ensure_model(state));
}

DistillSetup make_distillation(const recipe::Value& dv, run::RunState& state) {
  model::Model& m = ensure_model(state);
  const std::string teacher_name = dv.get_string("teacher", "dense");
  std::shared_ptr<model::Model> teacher;
  if (teacher_name == "dense") {
    teacher = copy_model(m);
  } else if (teacher_name == "unpruned") {
    if (!state.unpruned)
      throw UserError(state.stage_label() + ": distill.teacher unpruned needs an earlier prune or learn_masks stage");
    teacher = state.unpruned;
  } else {
    model::LoadOptions lo;
    lo.device = state.device;
    lo.dtype = m.dtype();
    teacher = model::load_model(teacher_name, lo);
  }
  train::DistillOptions o;
  o.alpha_logits = dv.get_double("alpha", 0.5);
  o.temperature = dv.get_double("temperature", 2.0);
  const double tw = dv.get_double("task_weight", -1);
  const auto& h = section(dv, "hidden");
  o.alpha_hidden = h.get_double("alpha", 0);
  o.matching = h.get_string("matching", "dynamic") == "fixed" ? train::LayerMatching::fixed : train::LayerMatching::dynamic;
  if (const recipe::Value* tl = h.find("teacher_layers"))
    for (const auto& v : tl->items()) o.teacher_layers.push_back(v.as_int());
  o.projection = h.get_bool("projection", true);
  o.projection_lr = h.get_double("projection_lr", -1);
  const std::string described = teacher_name == "dense"      ? "the dense model"
                                : teacher_name == "unpruned" ? "the model before pruning"
                                                             : teacher_name;
  log::info(state.stage_label() + ": distilling from " + described + " (alpha " + std::to_string(o.alpha_logits) + ", T " +
            std::to_string(o.temperature) + ", hidden alpha " + std::to_string(o.alpha_hidden) + ")");
  return {std::make_shared<train::Distillation>(teacher, m.config(), o), tw < 0 ? 1.0 - o.alpha_logits : tw};
}

recipe::SchemaBuilder train_schema() {
  auto optimizer =
      Schema::structure()
          ->field("name", Schema::enumeration({"adamw", "sgd"}),
                  "adamw = torch's AdamW (decoupled weight decay); sgd = SGD with optional momentum (L2 weight decay).", "adamw")
          ->field("lr", Schema::number()->min(0, true), "Peak learning rate.", "5e-5")
          ->field("beta1", Schema::number()->min(0)->max(1, true), "AdamW β1.", "0.9")
          ->field("beta2", Schema::number()->min(0)->max(1, true), "AdamW β2.", "0.999")
          ->field("eps", Schema::number()->min(0, true), "AdamW ε.", "1e-8")
          ->field("momentum", Schema::number()->min(0)->max(1, true), "SGD momentum.", "0")
          ->field("nesterov", Schema::boolean(), "SGD Nesterov momentum.", "false")
          ->field("weight_decay", Schema::number()->min(0),
                  "Weight decay of matrices (never of biases and LayerNorm/RMSNorm weights).", "0")
          ->field("decay_embeddings", Schema::boolean(), "Apply weight decay to embedding matrices too.", "true");
  auto schedule =
      Schema::structure()
          ->field("name", Schema::enumeration({"constant", "linear", "cosine"}),
                  "Learning-rate schedule after warm-up (HF's get_*_schedule_with_warmup).", "linear")
          ->field("warmup_steps", Schema::integer()->min(0), "Linear warm-up from 0 over this many steps (wins over warmup_ratio).", "0")
          ->field("warmup_ratio", Schema::number()->min(0)->max(1), "Warm-up as a fraction of the total steps.", "0")
          ->field("min_lr_ratio", Schema::number()->min(0)->max(1), "Floor of the decayed rate, as a fraction of lr.", "0");
  auto freeze =
      Schema::structure()
          ->field("mode", Schema::enumeration({"none", "all", "patterns"}),
                  "none = every model parameter trains; all = none does (only method parameters: masks, gates, LoRA, "
                  "projections); patterns = only parameters whose HF name matches freeze.patterns.", "none")
          ->field("patterns", Schema::list(Schema::string()), "Regular expressions (ECMAScript, searched in HF names) of the "
                  "parameters that train in mode patterns, e.g. ['lora_', 'classifier'].", "[]")
          ->field("exclude", Schema::list(Schema::string()), "Regular expressions of parameters that never train.", "[]");
  auto eval =
      Schema::structure()
          ->field("every", Schema::integer()->min(0), "Evaluate on the validation split every N steps (0 = only at the end).", "0")
          ->field("split", Schema::enumeration({"validation", "test"}), "Split to evaluate on.", "validation")
          ->field("batch_size", Schema::integer()->min(0), "Sequences per evaluation batch (0 = the training batch size).", "0")
          ->field("max_batches", Schema::integer()->min(0), "Evaluate at most this many batches (0 = the whole split).", "0")
          ->field("enabled", Schema::boolean(), "false: no evaluation (and no best-checkpoint selection).", "true");
  auto checkpoint =
      Schema::structure()
          ->field("every", Schema::integer()->min(0), "Save a checkpoint every N steps (0 = only at the end and on interrupt).", "0")
          ->field("keep_last", Schema::integer()->min(1), "Checkpoints kept besides the best one.", "2")
          ->field("best_metric", Schema::string(), "Evaluation metric that picks the best checkpoint (loss, perplexity, "
                  "accuracy, macro_f1); '' = none.", "loss")
          ->field("higher_is_better", Schema::boolean(), "Whether best_metric is better when higher (accuracy: true).", "false")
          ->field("load_best", Schema::boolean(), "Leave the model holding the best checkpoint's weights at the end.", "false");
  auto hidden =
      Schema::structure()
          ->field("alpha", Schema::number()->min(0), "Weight of the layer-wise hidden-state loss (0 = none).", "0")
          ->field("matching", Schema::enumeration({"dynamic", "fixed"}),
                  "dynamic = CoFi's matching (each teacher layer ↔ the closest student layer at or after the previous "
                  "match); fixed = student layer k ↔ k-th teacher layer (Minitron, same depth).", "dynamic")
          ->field("teacher_layers", Schema::list(Schema::integer()->min(1)),
                  "Teacher layers to match (1 = first layer's output); [] = all. CoFi: [3, 6, 9, 12] of 12.", "[]")
          ->field("projection", Schema::boolean(), "Learn a linear map of student states (identity at the start).", "true")
          ->field("projection_lr", Schema::number(), "Its learning rate (< 0 = optimizer.lr).", "-1");
  auto distill =
      Schema::structure()
          // Required: every other key has a default, and an option group whose keys all have
          // defaults is filled in when absent — distillation would then always be on.
          ->required("teacher", Schema::string(),
                     "dense = the model as this stage starts (a copy); unpruned = the model before the run's first "
                     "prune / learn_masks stage (Minitron's and CoFi's dense teacher after pruning); or a model path.")
          ->field("alpha", Schema::number()->min(0), "Weight of the logit KD loss T²·KL(p_t ‖ p_s) (0 = none).", "0.5")
          ->field("temperature", Schema::number()->min(0, true), "Softmax temperature T.", "2")
          ->field("task_weight", Schema::number(), "Weight of the task loss (< 0 = 1 − alpha).", "-1")
          ->field("hidden", hidden, "Layer-wise hidden-state distillation (CoFi / Minitron).", "{}");
  return Schema::structure()
      ->field("task", Schema::enumeration({"auto", "causal_lm", "masked_lm", "classification"}),
              "What to train on data:'s training split; auto = the model's head.", "auto")
      ->field("steps", Schema::integer()->min(0), "Optimiser steps (0 = epochs).", "0")
      ->field("epochs", Schema::number()->min(0, true), "Passes over the training split when steps is 0.", "1")
      ->field("batch_size", Schema::integer()->min(0), "Sequences per micro-batch (0 = data.batch_size).", "0")
      ->field("grad_accumulation", Schema::integer()->min(1), "Micro-batches per optimiser step.", "1")
      ->field("max_examples", Schema::integer()->min(0), "Train on at most this many blocks / examples (0 = all).", "0")
      ->field("shuffle", Schema::boolean(), "Shuffle every epoch (from the seed).", "true")
      ->field("max_grad_norm", Schema::number()->min(0), "Clip the gradients' global L2 norm (0 = no clipping).", "1.0")
      ->field("bf16", Schema::boolean(), "bf16 autocast of forward passes on CUDA (ignored on the CPU).", "false")
      ->field("cuda_graph", Schema::enumeration({"auto", "true", "false"}),
              "Replay the training step as CUDA graphs (no kernel launches from the host): auto = on a GPU when "
              "the step allows it (no learned masks or distillation, one process, AdamW, batches of one shape); "
              "true = the same, but an error when it cannot; false = eager.", "auto")
      ->field("seed", Schema::integer()->min(0), "Added to the recipe seed for data order and masking.", "0")
      ->field("log_every", Schema::integer()->min(0), "metrics.jsonl line (loss, lr, grad norm, tokens/s, ETA) every N steps.", "10")
      ->field("interrupt_after_steps", Schema::integer()->min(0),
              "Act as if SIGTERM arrived after this many steps (checkpoint, exit 0): tests and time limits.", "0")
      ->field("optimizer", optimizer, "Optimiser.", "{}")
      ->field("schedule", schedule, "Learning-rate schedule.", "{}")
      ->field("freeze", freeze, "Which parameters train.", "{}")
      ->field("eval", eval, "Validation during training.", "{}")
      ->field("checkpoint", checkpoint, "Checkpoints under the run's checkpoints/ (resume with secateur run --resume).", "{}")
      ->field("distill", distill, "Distillation from a teacher; absent = none.");
}

TrainSetup train_setup(const recipe::Value& o, run::RunState& state) {
  model::Model& m = ensure_model(state);
  const data::DataSource& d = ensure_data(state);
  TrainSetup s;
  const std::string label = state.stage_label();
  s.task = task_for(o.get_string("task", "auto"), m.config(), label);
  if (model_task(s.task) != m.config().task)
    throw UserError(label + ": task " + o.get_string("task", "auto") + " needs a " + model::to_string(model_task(s.task)) +
                    " model; the model is " + model::to_string(m.config().task));

  auto& t = s.options;
  t.label = label;
  t.steps = o.get_int("steps", 0);
  t.epochs = o.get_double("epochs", 1.0);
  t.grad_accumulation = o.get_int("grad_accumulation", 1);
  t.max_grad_norm = o.get_double("max_grad_norm", 1.0);
  t.bf16 = o.get_bool("bf16", false);
  const std::string graph = o.get_string("cuda_graph", "auto");
  t.cuda_graph = graph == "true" ? train::CudaGraphMode::on : graph == "false" ? train::CudaGraphMode::off : train::CudaGraphMode::automatic;
  t.log_every = o.get_int("log_every", 10);
  t.interrupt_after_steps = o.get_int("interrupt_after_steps", 0);
  t.seed = state.seed + static_cast<uint64_t>(o.get_int("seed", 0));

  const auto& opt = section(o, "optimizer");
  t.optimizer.kind = opt.get_string("name", "adamw") == "sgd" ? train::OptimizerKind::sgd : train::OptimizerKind::adamw;
  t.optimizer.lr = opt.get_double("lr", 5e-5);
  t.optimizer.beta1 = opt.get_double("beta1", 0.9);
  t.optimizer.beta2 = opt.get_double("beta2", 0.999);
  t.optimizer.eps = opt.get_double("eps", 1e-8);
  t.optimizer.momentum = opt.get_double("momentum", 0);
  t.optimizer.nesterov = opt.get_bool("nesterov", false);
  t.optimizer.weight_decay = opt.get_double("weight_decay", 0);
  t.optimizer.decay_embeddings = opt.get_bool("decay_embeddings", true);

  const auto& sch = section(o, "schedule");
  const std::string kind = sch.get_string("name", "linear");
  t.schedule.kind = kind == "constant" ? train::ScheduleKind::constant
                    : kind == "cosine" ? train::ScheduleKind::cosine
                                       : train::ScheduleKind::linear;
  t.schedule.warmup_steps = sch.get_int("warmup_steps", 0);
  t.schedule.warmup_ratio = sch.get_double("warmup_ratio", 0);
  t.schedule.min_lr_ratio = sch.get_double("min_lr_ratio", 0);

  const auto& fr = section(o, "freeze");
  const std::string mode = fr.get_string("mode", "none");
  t.freeze.mode = mode == "all" ? train::FreezeMode::all : mode == "patterns" ? train::FreezeMode::patterns : train::FreezeMode::none;
  t.freeze.patterns = strings(fr.find("patterns"));
  t.freeze.exclude = strings(fr.find("exclude"));

  const auto& ck = section(o, "checkpoint");
  t.checkpoint_every = ck.get_int("every", 0);
  t.keep_last = ck.get_int("keep_last", 2);
  t.best_metric = ck.get_string("best_metric", "loss");
  t.best_higher_is_better = ck.get_bool("higher_is_better", false);
  t.load_best_at_end = ck.get_bool("load_best", false);

  const int64_t batch = o.get_int("batch_size", 0) > 0 ? o.get_int("batch_size", 0) : d.config().batch_size;
  s.data.task = s.task;
  s.data.batch_size = batch;
  s.data.seed = t.seed;
  s.data.shuffle = o.get_bool("shuffle", true);
  s.data.max_examples = o.get_int("max_examples", 0);

  const auto& ev = section(o, "eval");
  t.eval_every = ev.get_int("every", 0);
  s.evaluate = ev.get_bool("enabled", true);
  s.eval.split = data::parse_split(ev.get_string("split", "validation"));
  s.eval.batch_size = ev.get_int("batch_size", 0) > 0 ? ev.get_int("batch_size", 0) : batch;
  s.eval.max_batches = ev.get_int("max_batches", 0);
  s.eval.seed = state.seed;
  if (!s.evaluate) t.best_metric.clear();
  if (const recipe::Value* dv = o.find("distill"); dv && dv->is_map()) s.distill = *dv;
  return s;
}

train::TrainResult run_training(run::RunState& state, const TrainSetup& setup,
                                std::vector<std::shared_ptr<train::Extension>> extensions) {
  model::Model& m = ensure_model(state);
  const data::DataSource& d = ensure_data(state);
  // One process: a no-op. Under torchrun / srun with `distributed:`: rank 0's weights broadcast,
  // gradients averaged across ranks, each rank reading its share of every epoch.
  std::shared_ptr<train::GradientSync> sync = dist::make_gradient_sync(m);
  train::BatchSourceOptions data_options = setup.data;
  data_options.rank = sync->rank();
  data_options.world_size = sync->world_size();
  auto batches = train::make_batch_source(d, data_options);
  std::shared_ptr<train::Evaluator> evaluator;
  if (setup.evaluate) evaluator = train::make_evaluator(d, setup.task, setup.eval);

  train::TrainOptions options = setup.options;
  if (setup.distill) {
    DistillSetup distill = make_distillation(*setup.distill, state);
    options.task_loss_weight = distill.task_weight;
    extensions.push_back(distill.extension);
  }

  train::Callbacks callbacks;
  const std::string kind = state.stage_kind;
  const int index = state.stage_index;
  run::RunDir& dir = state.dir;
  callbacks.log = [&dir, kind, index](const json& values, int64_t step) {
    dir.log_event({{"stage", kind}, {"stage_index", index}, {"step", step}, {"values", values}});
  };
  const std::string checkpoints = fs::join(state.dir.checkpoints(), std::to_string(state.stage_index) + "-" + state.stage_kind);
  train::Trainer trainer(m, options, batches, std::move(extensions), evaluator, callbacks, sync);
  const auto r = trainer.run({checkpoints, state.resume});

  json results = {{"steps", r.steps},
                  {"total_steps", trainer.total_steps()},
                  {"train_loss", r.train_loss},
                  {"train_data", batches->describe()},
                  {"checkpoint", r.last_checkpoint},
                  {"tokens_per_s", r.tokens_per_s}};
  if (r.resumed_from >= 0) results["resumed_from_step"] = r.resumed_from;
  json final_metrics = json::object(), best = json::object();
  for (const auto& [k, v] : r.final_metrics) final_metrics[k] = v;
  for (const auto& [k, v] : r.best_metrics) best[k] = v;
  if (!r.final_metrics.empty()) results["eval"] = final_metrics;
  if (r.best_step >= 0) {
    results["best"] = best;
    results["best_step"] = r.best_step;
    results["best_checkpoint"] = r.best_checkpoint;
  }
  if (r.interrupted) {
    results["interrupted_at_step"] = r.steps;
    state.interrupted = true;
    log::warn(state.stage_label() + ": interrupted at step " + std::to_string(r.steps) + "; resume with: secateur run --resume " +
              state.dir.path());
  }
  state.record(results);
  return r;
}

namespace {

class TrainStage : public recipe::Stage {
 public:
  explicit TrainStage(const recipe::Value& o) : options_(o) {}

  void run(run::RunState& state) override { run_training(state, train_setup(options_, state)); }

 private:
  recipe::Value options_;
};

}  // namespace

void register_train(recipe::Registry& registry) {
  registry.add_stage({"train",
                      "train the model on data:'s training split (fine-tune, pretrain, distil): AdamW/SGD, schedules, "
                      "accumulation, clipping, bf16 autocast, evaluation, checkpoints, resume",
                      train_schema(), [](const recipe::Value& o) { return std::make_unique<TrainStage>(o); }});
}

}  // namespace secateur::stages
