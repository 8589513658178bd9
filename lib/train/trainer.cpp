#include "train/trainer.h"

#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <type_traits>

#include "eval/loss.h"
#include "io/weights.h"
#include "train/autocast.h"
#include "train/checkpoint.h"
#include "train/cuda_graph_step.h"
#include "train/fused_adamw.h"
#include "train/param_groups.h"
#include "train/train_state.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/progress.h"

namespace secateur::train {

namespace {

using json = nlohmann::json;

bool gates_empty(const model::Gates& g) { return g.tensors().empty(); }

model::Task task_of(const model::Model& m) { return m.config().task; }

std::string fmt(double v, const char* f = "%.4g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

struct Trainer::Impl {
  Impl(model::Model& m, TrainOptions o, std::shared_ptr<BatchSource> b, std::vector<std::shared_ptr<Extension>> e,
       std::shared_ptr<Evaluator> ev, Callbacks cb, std::shared_ptr<GradientSync> s)
      : model(m), options(std::move(o)), batches(std::move(b)), extensions(std::move(e)), evaluator(std::move(ev)),
        callbacks(std::move(cb)), sync(s ? std::move(s) : std::make_shared<GradientSync>()) {
    if (!batches) throw UserError(options.label + ": no training data");
    if (options.grad_accumulation < 1) throw UserError(options.label + ": grad_accumulation must be at least 1");
    if (batches->batches_per_epoch() < 1) throw UserError(options.label + ": the training data holds no full batch");
    total = compute_total_steps();
    setup_parameters();
    setup_optimizer();
    setup_cuda_graph();
  }

  // ---- setup ------------------------------------------------------------------------------

  int64_t compute_total_steps() const {
    if (options.steps > 0) return options.steps;
    const double micro = options.epochs * static_cast<double>(batches->batches_per_epoch());
    const auto steps = static_cast<int64_t>(std::ceil(micro / static_cast<double>(options.grad_accumulation) - 1e-9));
    if (steps < 1) throw UserError(options.label + ": epochs " + fmt(options.epochs) + " is less than one optimiser step");
    return steps;
  }

  void setup_parameters() {
    TrainableParameters t = make_param_groups(model, options, extensions);
    groups = std::move(t.groups);
    all_params = std::move(t.all_params);
    all_names = std::move(t.all_names);
    trainable = std::move(t.model_trainable);
  }

  void setup_optimizer() { optimizer = make_optimizer(groups, options.optimizer); }

  void setup_cuda_graph() {
    if (options.cuda_graph == CudaGraphMode::off) return;
    bool maximize = false;
    for (const auto& g : groups) maximize = maximize || g.maximize;
    const std::string obstacle = CudaGraphStep::obstacle({model.device(), !extensions.empty(), sync->world_size(),
                                                          options.optimizer.kind == OptimizerKind::adamw, maximize});
    if (!obstacle.empty()) {
      if (options.cuda_graph == CudaGraphMode::on) throw UserError(options.label + ": cuda_graph is true, but " + obstacle);
      return;
    }
    graph = std::make_unique<CudaGraphStep>(
        *optimizer, options.max_grad_norm, options.grad_accumulation,
        [this](const data::Batch& b, StepSums& sums) { graph_micro_step(b, sums); }, model.device());
  }

  // One micro-batch of a graphed step: the eager step's forward, loss and backward, with every
  // sum kept on the device.
  void graph_micro_step(const data::Batch& b, StepSums& sums) {
    model::ForwardOptions fo;
    fo.token_type_ids = b.token_type_ids;
    StepMetrics unused;
    const auto [task, loss] = forward_losses(b, model::Gates(), fo, StepInfo{step, total, 0, true, false}, unused);
    (loss / static_cast<double>(options.grad_accumulation)).backward();
    sums.loss.add_(task.detach().to(torch::kDouble));
    sums.tokens.add_(b.attention_mask.defined() ? b.attention_mask.sum() : torch::full({}, b.input_ids.numel(), sums.tokens.options()));
    sums.nonfinite.logical_or_(torch::logical_not(torch::isfinite(loss.detach())));
  }

  // One optimiser step through the graphs; false when they turned out unusable (nothing applied,
  // the data position restored) and the eager step must run instead.
  bool graphed_step() {
    const DataPosition before = position;
    std::vector<data::Batch> micro;
    for (int64_t k = 0; k < options.grad_accumulation; ++k) micro.push_back(next_batch());
    set_learning_rates(step);
    const auto r = graph->step(micro);
    if (!r) {
      position = before;
      if (options.cuda_graph == CudaGraphMode::on) throw UserError(options.label + ": cuda_graph is true, but " + graph->reason());
      log::info(options.label + ": running eagerly, " + graph->reason());
      return false;
    }
    window_loss += r->loss / static_cast<double>(options.grad_accumulation);
    window_tokens += r->tokens;
    first_bad_step = torch::where(r->nonfinite & (first_bad_step < 0), torch::full_like(first_bad_step, step), first_bad_step);
    window_grad_norm = r->grad_norm.clone();
    if (graph->replaying()) ++graph_replays;
    if (graph->replaying() && !graph_announced) {
      log::info(options.label + ": the training step is captured and replayed as CUDA graphs from step " + std::to_string(step + 1));
      graph_announced = true;
    }
    ++step;
    return true;
  }

  void set_learning_rates(int64_t s) {
    const double f = lr_factor(options.schedule, s, total);
    auto& pgs = optimizer->param_groups();
    for (size_t i = 0; i < groups.size(); ++i) {
      const double lr = groups[i].lr * f;
      if (options.optimizer.kind == OptimizerKind::adamw)
        static_cast<torch::optim::AdamWOptions&>(pgs[i].options()).lr(lr);
      else
        static_cast<torch::optim::SGDOptions&>(pgs[i].options()).lr(lr);
    }
    current_lr = options.optimizer.lr * f;
  }

  // ---- one optimiser step -----------------------------------------------------------------

  data::Batch next_batch() {
    if (position.batch >= batches->batches_per_epoch()) {
      ++position.epoch;
      position.batch = 0;
    }
    return batches->batch(position.epoch, position.batch++);
  }

  void prepare(const StepInfo& info, model::Gates& gates, model::ForwardOptions& fo) {
    for (const auto& e : extensions) e->prepare(info, gates, fo);
    for (const auto& e : extensions)
      if (e->needs_hidden_states()) fo.output_hidden_states = true;
  }

  bool logs_this_step() const {
    return options.log_every > 0 && ((step + 1) % options.log_every == 0 || step + 1 == total);
  }

  // A micro-batch's forward pass (bf16 autocast on a GPU when asked) and its losses: the task
  // loss, and what is back-propagated (task · task_loss_weight + every extension's term).
  std::pair<torch::Tensor, torch::Tensor> forward_losses(const data::Batch& b, const model::Gates& gates,
                                                         const model::ForwardOptions& fo, const StepInfo& info,
                                                         StepMetrics& metrics) {
    AutocastScope scope(options.bf16 && model.device().is_cuda());
    auto out = model.forward(b.input_ids, b.attention_mask, gates_empty(gates) ? nullptr : &gates, fo);
    out.logits = out.logits.to(torch::kFloat);
    const torch::Tensor task = eval::task_loss(task_of(model), out.logits, b);
    torch::Tensor loss = task * options.task_loss_weight;
    for (const auto& e : extensions) {
      auto extra = e->loss(info, b, out, metrics);
      if (extra.defined()) loss = loss + extra.to(torch::kFloat);
    }
    return {task, loss};
  }

  // Returns the summed (unscaled) task loss of the step's micro-batches, detached.
  torch::Tensor accumulate_gradients(StepMetrics& metrics) {
    const auto device = model.device();
    torch::Tensor step_loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
    torch::Tensor step_tokens = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device));
    if (!device.is_cuda()) {
      // What a checkpoint of "before this step" needs if this step's loss turns out non-finite.
      step_start_position = position;
      step_start_rng = state::rng_tensors();
    }
    bool nonfinite_here = false;
    for (int64_t k = 0; k < options.grad_accumulation; ++k) {
      const data::Batch b = next_batch().to(device);
      StepInfo info{step, total, k, true, logs_this_step()};
      model::Gates gates;
      model::ForwardOptions fo;
      fo.token_type_ids = b.token_type_ids;
      prepare(info, gates, fo);
      const auto [task, loss] = forward_losses(b, gates, fo, info, metrics);
      (loss / static_cast<double>(options.grad_accumulation)).backward();
      const auto t = task.detach().to(torch::kDouble);
      step_loss += t;
      step_tokens += b.attention_mask.defined() ? b.attention_mask.sum() : torch::full({}, b.input_ids.numel(), torch::kLong).to(device);
      // Non-finite check: every step on the CPU (free); on a GPU a device-side flag read at log
      // and checkpoint boundaries, so steps never wait on the host.
      const auto bad = torch::logical_not(torch::isfinite(loss.detach()));
      if (!device.is_cuda()) {
        // Alone: stop at once. Under data parallelism: after the micro-batches, with every rank.
        const bool bad_here = bad.item<bool>();
        if (bad_here && sync->world_size() == 1) nonfinite_found(step);
        nonfinite_here = nonfinite_here || bad_here;
      } else {
        first_bad_step = torch::where(bad & (first_bad_step < 0), torch::full_like(first_bad_step, step), first_bad_step);
      }
    }
    // Before the gradients are averaged: a non-finite loss on any rank stops every rank here.
    if (sync->world_size() > 1 && !device.is_cuda() && sync->any_rank(nonfinite_here)) nonfinite_found(step);
    window_tokens += step_tokens;
    return step_loss / static_cast<double>(options.grad_accumulation);
  }

  // Global L2 norm of the gradients, clipped to max_grad_norm as torch.nn.utils.clip_grad_norm_,
  // without a host sync.
  torch::Tensor clip_gradients() {
    std::vector<torch::Tensor> grads;
    for (const auto& p : all_params)
      if (p.grad().defined()) grads.push_back(p.grad());
    return clip_grad_norm(grads, options.max_grad_norm);
  }

  void optimizer_step(StepMetrics& metrics) {
    sync->synchronize(all_params);
    for (const auto& g : groups)
      if (g.maximize)
        for (const auto& p : g.params)
          if (p.grad().defined()) p.mutable_grad().neg_();
    window_grad_norm = clip_gradients();
    set_learning_rates(step);
    optimizer->step();
    for (auto& p : all_params) p.mutable_grad() = torch::Tensor();  // set_to_none, in both versions
    StepInfo info{step, total, options.grad_accumulation - 1, true, logs_this_step()};
    for (const auto& e : extensions) e->after_step(info, metrics);
    ++step;
  }

  [[noreturn]] void nonfinite_found(int64_t bad_step) {
    std::string where;
    // On the CPU the bad step has not been applied yet: the model still holds the last good state.
    if (!model.device().is_cuda() && bad_step == step && !checkpoint_dir.empty()) {
      for (auto& p : all_params) p.mutable_grad() = torch::Tensor();
      position = step_start_position;
      where = save_checkpoint(false, &step_start_rng);
    }
    else if (!last_checkpoint.empty()) where = last_checkpoint;
    throw UserError(options.label + ": the loss became non-finite (NaN or inf) at step " + std::to_string(bad_step + 1) + " of " +
                    std::to_string(total) + " (lr " + fmt(current_lr) + "); lower optimizer.lr, raise schedule.warmup, or set "
                    "max_grad_norm." + (where.empty() ? std::string(" No checkpoint was saved.") : " Last good checkpoint: " + where));
  }

  void check_device_nonfinite() {
    if (!first_bad_step.defined() || !model.device().is_cuda()) return;
    const int64_t bad = earliest_over_ranks(first_bad_step.item<int64_t>());
    if (bad >= 0) nonfinite_found(bad);
  }

  // The smallest non-negative `step` of all ranks (−1 when every rank has −1); alone, `step`.
  int64_t earliest_over_ranks(int64_t step_here) {
    if (sync->world_size() == 1) return step_here;
    int64_t earliest = -1;
    for (double v : sync->all_values(static_cast<double>(step_here)))
      if (v >= 0 && (earliest < 0 || v < static_cast<double>(earliest))) earliest = static_cast<int64_t>(v);
    return earliest;
  }

  // SIGINT/SIGTERM (or interrupt_after_steps) on any rank stops every rank at this step boundary:
  // one small collective per step under data parallelism, nothing alone.
  bool stop_requested(bool last) {
    const bool here = interrupt_requested() || (options.interrupt_after_steps > 0 && step == options.interrupt_after_steps && !last);
    return sync->world_size() > 1 ? sync->any_rank(here) : here;
  }

  // ---- evaluation -------------------------------------------------------------------------

  model::Gates eval_gates(model::ForwardOptions* fo_out) const {
    model::Gates gates;
    model::ForwardOptions fo;
    StepInfo info{step, total, 0, false};
    for (const auto& e : extensions) e->prepare(info, gates, fo);
    if (fo_out) *fo_out = fo;
    return gates;
  }

  StepMetrics evaluate() {
    if (!evaluator) return {};
    model::ForwardOptions fo;
    const auto gates = eval_gates(&fo);
    auto m = evaluator->evaluate(model, gates_empty(gates) ? nullptr : &gates, fo);
    last_eval = m;
    last_eval_step = step;
    if (!options.best_metric.empty()) {
      auto it = m.find(options.best_metric);
      if (it == m.end())
        throw UserError(options.label + ": best_metric '" + options.best_metric + "' is not among the evaluation's metrics");
      const bool better = best_step < 0 || (options.best_higher_is_better ? it->second > best_value : it->second < best_value);
      if (better) {
        best_value = it->second;
        best_step = step;
        best_metrics = m;
      }
    }
    return m;
  }

  // ---- checkpoints ------------------------------------------------------------------------

  static json metrics_json(const StepMetrics& m) { return m.empty() ? json::object() : json(m); }
  static StepMetrics metrics_from(const json& j) { return j.get<StepMetrics>(); }

  std::string save_checkpoint(bool final, const io::TensorMap* rng = nullptr) {
    // Under data parallelism every rank holds the same state; rank 0 alone writes it (the
    // temporary names are fixed, so two writers would collide), and every rank resumes from it.
    if (checkpoint_dir.empty()) return "";
    if (!sync->is_main()) return name_checkpoint_of_main();
    const std::string temp = checkpoint::begin(checkpoint_dir, step);
    io::write_safetensors(fs::join(temp, "model.safetensors"), model.state_dict_hf());
    json opt_steps = json::object();
    io::write_safetensors(fs::join(temp, "optimizer.safetensors"), state::optimizer_tensors(*optimizer, all_params, options.optimizer.kind, opt_steps));
    io::TensorMap ext_tensors;
    json ext_state = json::object();
    for (const auto& e : extensions) {
      io::TensorMap t;
      json s = json::object();
      e->save(t, s);
      for (auto& [k, v] : t) ext_tensors[e->name() + "." + k] = v;
      ext_state[e->name()] = s;
    }
    io::write_safetensors(fs::join(temp, "extensions.safetensors"), ext_tensors);
    io::TensorMap trainer_tensors = rng ? *rng : state::rng_tensors();
    trainer_tensors["window.loss"] = window_loss;
    trainer_tensors["window.tokens"] = window_tokens;
    io::write_safetensors(fs::join(temp, "trainer.safetensors"), trainer_tensors);
    json j = {{"step", step},
              {"total_steps", total},
              {"final", final},
              {"epoch", position.epoch},
              {"batch", position.batch},
              {"optimizer", options.optimizer.kind == OptimizerKind::adamw ? "adamw" : "sgd"},
              {"optimizer_steps", opt_steps},
              {"parameters", all_names},
              {"lr", current_lr},
              {"window_steps", window_steps},
              {"best_step", best_step},
              {"best_value", best_value},
              {"best_metrics", metrics_json(best_metrics)},
              {"last_eval", metrics_json(last_eval)},
              {"last_eval_step", last_eval_step},
              {"tokens_seen", tokens_seen},
              {"train_loss", train_loss},
              {"extensions", ext_state}};
    fs::write_atomic(fs::join(temp, "trainer.json"), j.dump(2));
    last_checkpoint = checkpoint::commit(checkpoint_dir, temp, step);
    checkpoint::prune(checkpoint_dir, options.keep_last, best_step);
    if (best_step >= 0) best_checkpoint = fs::join(checkpoint_dir, checkpoint::step_name(best_step));
    if (!fs::exists(best_checkpoint)) best_checkpoint.clear();
    return last_checkpoint;
  }

  // What rank 0's save_checkpoint records at this step, without writing, so that every rank
  // names the same checkpoints (the last good one after a non-finite loss, TrainResult) and
  // load_best_at_end reads the same best one. Rank 0 keeps the best path only if that step was
  // saved; here that is the path noted when the best step itself was saved.
  std::string name_checkpoint_of_main() {
    last_checkpoint = fs::join(checkpoint_dir, checkpoint::step_name(step));
    if (best_step == step) best_checkpoint = last_checkpoint;
    else if (best_step < 0 || best_checkpoint != fs::join(checkpoint_dir, checkpoint::step_name(best_step))) best_checkpoint.clear();
    return last_checkpoint;
  }

  // Restores everything save_checkpoint wrote; returns whether the checkpoint was final.
  bool load_checkpoint(const std::string& path) {
    const json j = json::parse(fs::read_file(fs::join(path, "trainer.json")));
    if (j.at("parameters").get<std::vector<std::string>>() != all_names || j.at("total_steps").get<int64_t>() != total)
      throw UserError("checkpoint " + path + " was written by a different training configuration (parameters or total steps "
                      "differ); --resume needs the run's own recipe, or remove " + checkpoint_dir + " to start over");
    const auto weights = io::load_weights(fs::join(path, "model.safetensors"));
    {
      torch::NoGradGuard no_grad;
      model.load_state(weights, path + "/model.safetensors");
    }
    state::load_optimizer(*optimizer, all_params, options.optimizer.kind,
                          io::load_safetensors(fs::join(path, "optimizer.safetensors")), j.at("optimizer_steps"));
    const auto ext_tensors = io::load_safetensors(fs::join(path, "extensions.safetensors"));
    for (const auto& e : extensions) {
      io::TensorMap mine;
      const std::string prefix = e->name() + ".";
      for (const auto& [k, v] : ext_tensors)
        if (k.rfind(prefix, 0) == 0) mine[k.substr(prefix.size())] = v;
      e->load(mine, j.at("extensions").value(e->name(), json::object()));
    }
    const auto trainer_tensors = io::load_safetensors(fs::join(path, "trainer.safetensors"));
    state::load_rng(trainer_tensors);
    window_loss = trainer_tensors.at("window.loss").to(model.device()).clone();
    window_tokens = trainer_tensors.at("window.tokens").to(model.device()).clone();
    step = j.at("step").get<int64_t>();
    position.epoch = j.at("epoch").get<int64_t>();
    position.batch = j.at("batch").get<int64_t>();
    current_lr = j.at("lr").get<double>();
    window_steps = j.at("window_steps").get<int64_t>();
    best_step = j.at("best_step").get<int64_t>();
    best_value = j.at("best_value").get<double>();
    best_metrics = metrics_from(j.at("best_metrics"));
    last_eval = metrics_from(j.at("last_eval"));
    last_eval_step = j.at("last_eval_step").get<int64_t>();
    tokens_seen = j.at("tokens_seen").get<int64_t>();
    train_loss = j.at("train_loss").get<double>();
    last_checkpoint = path;
    if (best_step >= 0) best_checkpoint = fs::join(checkpoint_dir, checkpoint::step_name(best_step));
    if (!fs::exists(best_checkpoint)) best_checkpoint.clear();
    return j.at("final").get<bool>();
  }

  // ---- logging ----------------------------------------------------------------------------

  void log_window(Progress& progress, StepMetrics& ext_metrics, double elapsed) {
    const double loss = window_steps > 0 ? window_loss.item<double>() / static_cast<double>(window_steps) : 0.0;
    const int64_t tokens = window_tokens.item<int64_t>();
    tokens_seen += tokens;
    const double dt = std::max(1e-9, elapsed - window_start_s);
    const double tps = static_cast<double>(tokens) / dt;
    train_loss = loss;
    tokens_per_s = tps;
    json values = {{"loss", loss}, {"lr", current_lr}, {"grad_norm", window_grad_norm.defined() ? window_grad_norm.item<double>() : 0.0},
                   {"tokens_per_s", tps}, {"epoch", position.epoch}, {"tokens", tokens_seen}};
    const double per_step = dt / static_cast<double>(std::max<int64_t>(1, window_steps));
    values["eta_s"] = per_step * static_cast<double>(total - step);
    for (const auto& [k, v] : ext_metrics) values[k] = v;
    if (callbacks.log) callbacks.log(values, step);
    progress.update(step, "loss " + fmt(loss) + " lr " + fmt(current_lr, "%.3g"));
    reset_window(elapsed);
    ext_metrics.clear();
  }

  void reset_window(double now) {
    const auto device = model.device();
    window_loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
    window_tokens = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device));
    window_steps = 0;
    window_start_s = now;
  }

  // ---- the loop ---------------------------------------------------------------------------

  TrainResult run(const CheckpointOptions& ck) {
    checkpoint_dir = ck.dir;
    TrainResult result;
    const auto begin_time = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_time).count(); };
    reset_window(0);
    first_bad_step = torch::full({}, -1, torch::TensorOptions().dtype(torch::kLong).device(model.device()));

    bool finished = false;
    if (ck.resume && !checkpoint_dir.empty()) {
      const std::string latest = latest_checkpoint(checkpoint_dir);
      if (!latest.empty()) {
        finished = load_checkpoint(latest);
        result.resumed_from = step;
        log::info(options.label + ": resumed from " + latest + " (step " + std::to_string(step) + " of " + std::to_string(total) +
                  (finished ? ", already finished" : "") + ")");
      }
    }
    if (!finished)
      log::info(options.label + ": " + std::to_string(total) + " optimiser steps of " + std::to_string(options.grad_accumulation) +
                " micro-batch(es) on " + batches->describe() + "; training " + std::to_string(trainable.size()) +
                " model tensors and " + std::to_string(all_params.size() - trainable.size()) + " extension tensors");

    install_interrupt_handlers();
    struct Restore {
      ~Restore() { restore_interrupt_handlers(); }
    } restore;
    model.train();
    Progress progress(options.label, total, "step");
    StepMetrics ext_metrics;
    while (!finished && step < total) {
      if (!(graph && graph->usable() && graphed_step())) {
        window_loss += accumulate_gradients(ext_metrics);
        optimizer_step(ext_metrics);
      }
      ++window_steps;
      const bool last = step == total;
      if (options.log_every > 0 && (step % options.log_every == 0 || last)) {
        check_device_nonfinite();
        log_window(progress, ext_metrics, elapsed());
      }
      if ((options.eval_every > 0 && step % options.eval_every == 0) || last) {
        const auto m = evaluate();
        if (!m.empty()) {
          json values = metrics_json(m);
          std::string line;
          for (const auto& [k, v] : m) line += " " + k + " " + fmt(v);
          log::info(options.label + " step " + std::to_string(step) + " eval:" + line);
          json event = {{"eval", values}};
          if (callbacks.log) callbacks.log(event, step);
        }
        model.train();
      }
      const bool interrupted = stop_requested(last);
      if (last || interrupted || (options.checkpoint_every > 0 && step % options.checkpoint_every == 0)) {
        check_device_nonfinite();
        save_checkpoint(last);
      }
      if (interrupted && !last) {
        result.interrupted = true;
        progress.finish("interrupted");
        log::warn(options.label + ": interrupted at step " + std::to_string(step) + " of " + std::to_string(total) +
                  "; checkpoint " + last_checkpoint);
        break;
      }
    }
    if (!result.interrupted) {
      progress.update(step, "loss " + fmt(train_loss));
      progress.finish();
    }
    if (window_steps > 0 && !result.interrupted) train_loss = window_loss.item<double>() / static_cast<double>(window_steps);
    model.eval();
    if (options.load_best_at_end && !result.interrupted && !best_checkpoint.empty() && best_step != step) {
      torch::NoGradGuard no_grad;
      model.load_state(io::load_weights(fs::join(best_checkpoint, "model.safetensors")), best_checkpoint);
      log::info(options.label + ": loaded the best checkpoint (step " + std::to_string(best_step) + ", " + options.best_metric +
                " " + fmt(best_value) + ")");
    }
    result.steps = step;
    result.train_loss = train_loss;
    result.final_metrics = last_eval;
    result.best_metrics = best_metrics;
    result.best_step = best_step;
    result.last_checkpoint = last_checkpoint;
    result.best_checkpoint = best_checkpoint;
    result.tokens_per_s = tokens_per_s;
    result.graph_replays = graph_replays;
    return result;
  }

  // ---- state ------------------------------------------------------------------------------

  model::Model& model;
  TrainOptions options;
  std::shared_ptr<BatchSource> batches;
  std::vector<std::shared_ptr<Extension>> extensions;
  std::shared_ptr<Evaluator> evaluator;
  Callbacks callbacks;
  std::shared_ptr<GradientSync> sync;

  int64_t total = 0;
  std::vector<OptimizerGroup> groups;
  std::vector<torch::Tensor> all_params;
  std::vector<std::string> all_names, trainable;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<CudaGraphStep> graph;  // null: eager steps
  bool graph_announced = false;
  int64_t graph_replays = 0;

  int64_t step = 0;
  DataPosition position, step_start_position;
  io::TensorMap step_start_rng;
  double current_lr = 0;
  std::string checkpoint_dir, last_checkpoint, best_checkpoint;

  torch::Tensor window_loss, window_tokens, window_grad_norm, first_bad_step;
  int64_t window_steps = 0;
  double window_start_s = 0;
  int64_t tokens_seen = 0;
  double train_loss = 0, tokens_per_s = 0;

  StepMetrics last_eval, best_metrics;
  int64_t last_eval_step = -1, best_step = -1;
  double best_value = 0;
};

Trainer::Trainer(model::Model& model, TrainOptions options, std::shared_ptr<BatchSource> batches,
                 std::vector<std::shared_ptr<Extension>> extensions, std::shared_ptr<Evaluator> evaluator, Callbacks callbacks,
                 std::shared_ptr<GradientSync> sync)
    : impl_(std::make_unique<Impl>(model, std::move(options), std::move(batches), std::move(extensions), std::move(evaluator),
                                   std::move(callbacks), std::move(sync))) {}

Trainer::~Trainer() = default;

TrainResult Trainer::run(const CheckpointOptions& checkpoints) { return impl_->run(checkpoints); }
int64_t Trainer::total_steps() const { return impl_->total; }
model::Gates Trainer::eval_gates(model::ForwardOptions* options) const { return impl_->eval_gates(options); }
std::vector<std::string> Trainer::trainable_names() const { return impl_->trainable; }

}  // namespace secateur::train
