#pragma once
// The training loop every training-based method runs: fine-tuning after pruning, learned masks
// (through train::Extension), distillation, and pretraining from scratch.
//
//   Trainer trainer(model, options, batches, extensions, callbacks);
//   TrainResult r = trainer.run({checkpoint_dir, /*resume=*/true});
//
// One optimiser step = grad_accumulation micro-batches (each: extensions' prepare → forward →
// task loss · task_loss_weight + Σ extension losses, divided by grad_accumulation → backward),
// then GradientSync (a no-op on one process; all-reduce under data parallelism), negation of
// `maximize` groups' gradients, clipping by global norm, learning rates from the schedule,
// optimiser step, zero_grad, extensions' after_step.
//
// Everything random derives from options.seed: the data order from (seed, epoch) through
// EpochSampler (SplitMix64, identical on every platform), masking from (seed, epoch, batch), and
// torch's generators (dropout, sampled gates), whose states the checkpoints carry. A run resumed
// from a checkpoint on the CPU reproduces the uninterrupted run bitwise.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/source.h"
#include "model/gates.h"
#include "model/model.h"
#include "train/extension.h"

namespace secateur::train {

// ---------------------------------------------------------------------------------------------
// Options

enum class OptimizerKind { adamw, sgd };
enum class ScheduleKind { constant, linear, cosine };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::adamw;
  double lr = 5e-5;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // AdamW
  double momentum = 0.0;                          // SGD
  bool nesterov = false;                          // SGD
  double weight_decay = 0.0;
  // Decoupled weight decay never applies to biases and norm weights (LayerNorm / RMSNorm);
  // embeddings are excluded too when this is set (see decays()).
  bool decay_embeddings = true;
};

// The learning-rate multiplier of Hugging Face's schedulers (transformers/optimization.py):
//   warm-up      s < W:  s / W
//   constant     1
//   linear       max(0, (N − s) / (N − W))
//   cosine       0.5·(1 + cos(π·(s − W)/(N − W)))
// with s the optimiser steps done, W the warm-up steps, N the total; then floored at
// min_lr_ratio after warm-up: m' = min_lr_ratio + (1 − min_lr_ratio)·m.
struct ScheduleOptions {
  ScheduleKind kind = ScheduleKind::linear;
  int64_t warmup_steps = 0;   // > 0 wins over warmup_ratio
  double warmup_ratio = 0.0;  // of the total steps
  double min_lr_ratio = 0.0;
};
int64_t warmup_steps(const ScheduleOptions& options, int64_t total_steps);
double lr_factor(const ScheduleOptions& options, int64_t step, int64_t total_steps);

// Which model parameters train. Extension parameters always train.
enum class FreezeMode {
  none,      // every model parameter trains
  all,       // no model parameter trains: only extensions' (gates, masks, LoRA adapters)
  patterns,  // only model parameters whose HF name matches one of `patterns`
};
struct FreezeOptions {
  FreezeMode mode = FreezeMode::none;
  // ECMAScript regular expressions searched in the HF name ("lora_", "\\.layers\\.[0-3]\\.").
  std::vector<std::string> patterns;
  // Model parameters that never train whatever the mode (e.g. "embed"), searched the same way.
  std::vector<std::string> exclude;
};

// Whether a training step is replayed as CUDA graphs (train/cuda_graph_step.h).
enum class CudaGraphMode { automatic, on, off };

struct TrainOptions {
  // Length: optimiser steps when > 0, else `epochs` passes over the training split.
  int64_t steps = 0;
  double epochs = 1.0;
  int64_t grad_accumulation = 1;  // micro-batches per optimiser step
  double max_grad_norm = 1.0;     // clip the global L2 norm; <= 0 = no clipping
  double task_loss_weight = 1.0;  // distillation mixes (1 − α)·task + α·KD through this
  bool bf16 = false;              // bf16 autocast of the forward pass on CUDA; ignored on the CPU
  CudaGraphMode cuda_graph = CudaGraphMode::automatic;  // auto: where the step allows (see the .cpp)
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  FreezeOptions freeze;

  int64_t log_every = 10;          // metrics.jsonl line every N steps (the only GPU syncs)
  int64_t eval_every = 0;          // evaluate every N steps (0 = only at the end)
  int64_t checkpoint_every = 0;    // save every N steps (0 = only at the end / on interrupt)
  int64_t keep_last = 2;           // checkpoints kept besides the best one
  std::string best_metric = "loss";  // an Evaluator metric; "" = no best-checkpoint selection
  bool best_higher_is_better = false;
  bool load_best_at_end = false;   // leave the model holding the best checkpoint's weights

  uint64_t seed = 0;
  // Testing and SLURM time limits: behave as if SIGTERM arrived once this many optimiser steps
  // are done (0 = never).
  int64_t interrupt_after_steps = 0;
  std::string label = "train";     // progress / log prefix ("[3/5] train")
};

// Whether decoupled weight decay applies to a parameter, from its HF name: biases ("*.bias",
// "*_bias") and norm weights (LayerNorm, RMSNorm: "ln_*", "*norm*", "*LayerNorm*") never decay;
// embeddings ("wte", "wpe", "embed_tokens", "*_embeddings") decay only with decay_embeddings.
bool decays(const std::string& hf_name, bool decay_embeddings);

// ---------------------------------------------------------------------------------------------
// Data

// The order of one epoch's examples for one rank: a Fisher–Yates permutation of [0, n) drawn
// with SplitMix64 from (seed, epoch), then every world_size-th index starting at rank (as
// torch's DistributedSampler, dropping the tail so that every rank sees the same count).
class EpochSampler {
 public:
  EpochSampler(int64_t n, uint64_t seed, bool shuffle = true, int64_t rank = 0, int64_t world_size = 1);
  int64_t size() const;  // examples per epoch for this rank
  std::vector<int64_t> order(int64_t epoch) const;

 private:
  int64_t n_;
  uint64_t seed_;
  bool shuffle_;
  int64_t rank_, world_size_;
};

// Where the trainer is in the data, saved in checkpoints.
struct DataPosition {
  int64_t epoch = 0;
  int64_t batch = 0;  // micro-batches of this epoch already consumed
};

// Micro-batches for training, addressable by (epoch, index) so that a resumed run reads exactly
// what the uninterrupted one would have.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t batches_per_epoch() const = 0;
  virtual data::Batch batch(int64_t epoch, int64_t index) const = 0;
  virtual std::string describe() const = 0;
};

enum class TrainTask { causal_lm, masked_lm, classification };

struct BatchSourceOptions {
  TrainTask task = TrainTask::causal_lm;
  int64_t batch_size = 8;       // micro-batch size
  uint64_t seed = 0;
  bool shuffle = true;
  int64_t max_examples = 0;     // use at most this many blocks / examples of the split (0 = all)
  int64_t rank = 0, world_size = 1;
};

// The training split of a DataSource: causal LM blocks of data.seq_len; masked LM blocks masked
// per batch with a seed from (seed, epoch, index); classification examples padded per batch.
// The last partial batch of an epoch is dropped (fixed shapes). The DataSource must outlive it.
std::shared_ptr<BatchSource> make_batch_source(const data::DataSource& data, const BatchSourceOptions& options);

// ---------------------------------------------------------------------------------------------
// Evaluation, data parallelism, callbacks

// Metrics of the model as the extensions configure it for evaluation (StepInfo::training false).
class Evaluator {
 public:
  virtual ~Evaluator() = default;
  virtual StepMetrics evaluate(model::Model& model, const model::Gates* gates, const model::ForwardOptions& options) = 0;
};

struct EvalOptions {
  data::Split split = data::Split::validation;
  int64_t batch_size = 8;
  int64_t max_batches = 0;  // 0 = the whole split
  uint64_t seed = 0;        // masked LM masking
};
// On a DataSource's validation split: causal LM {loss, perplexity}; masked LM {loss, accuracy,
// perplexity}; classification {loss, accuracy, macro_f1}. Mean losses are token- (or example-)
// weighted over the whole split; under data parallelism each rank evaluates the batches it owns
// (dist::owns) and the sums are added up over ranks.
std::shared_ptr<Evaluator> make_evaluator(const data::DataSource& data, TrainTask task, const EvalOptions& options);

// The hook data parallelism fills: average gradients across ranks before the optimiser step,
// and agree on when to stop. The default is one process: nothing to do.
class GradientSync {
 public:
  virtual ~GradientSync() = default;
  virtual int64_t rank() const { return 0; }
  virtual int64_t world_size() const { return 1; }
  virtual void synchronize(const std::vector<torch::Tensor>& params) { (void)params; }
  // Every rank's `value`, indexed by rank, on every rank: a collective that all ranks must reach
  // at the same point (the trainer's step boundaries, so that a signal or a non-finite loss on
  // one rank stops them all at the same step).
  virtual std::vector<double> all_values(double value) { return {value}; }
  bool any_rank(bool flag) {
    const std::vector<double> flags = all_values(flag ? 1.0 : 0.0);
    return std::any_of(flags.begin(), flags.end(), [](double v) { return v != 0.0; });
  }
  bool is_main() const { return rank() == 0; }
};

struct Callbacks {
  // One event per log / eval step (metrics.jsonl + progress): values and the optimiser step.
  std::function<void(const nlohmann::json& values, int64_t step)> log;
};

struct CheckpointOptions {
  std::string dir;       // checkpoints/ of the run; "" = no checkpoints (and no resume)
  bool resume = false;   // continue from the latest complete checkpoint in dir, if any
};

struct TrainResult {
  int64_t steps = 0;               // optimiser steps done in total (including before a resume)
  int64_t resumed_from = -1;       // the step of the checkpoint resumed from; -1 = fresh start
  bool interrupted = false;        // stopped by SIGINT/SIGTERM (or interrupt_after_steps)
  double train_loss = 0;           // mean task loss of the last logging window
  StepMetrics final_metrics;       // the last evaluation
  StepMetrics best_metrics;        // the best evaluation (best_metric)
  int64_t best_step = -1;
  std::string last_checkpoint, best_checkpoint;  // paths ("" when none)
  double tokens_per_s = 0;
  int64_t graph_replays = 0;       // steps replayed from captured CUDA graphs (cuda_graph)
};

// ---------------------------------------------------------------------------------------------
// The trainer

class Trainer {
 public:
  Trainer(model::Model& model, TrainOptions options, std::shared_ptr<BatchSource> batches,
          std::vector<std::shared_ptr<Extension>> extensions = {}, std::shared_ptr<Evaluator> evaluator = nullptr,
          Callbacks callbacks = {}, std::shared_ptr<GradientSync> sync = nullptr);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains to options.steps (or epochs). Throws UserError naming the step on a non-finite loss,
  // after the last good state is in a checkpoint. On SIGINT/SIGTERM saves a checkpoint at the
  // next step boundary and returns with interrupted = true. Under data parallelism both hold for
  // every rank when any rank sees the signal or the non-finite loss: all stop at the same step.
  TrainResult run(const CheckpointOptions& checkpoints = {});

  int64_t total_steps() const;
  // The gates and forward options the extensions set for evaluation (what the trained model
  // "is" after training): for stages that evaluate or prune after the loop.
  model::Gates eval_gates(model::ForwardOptions* options = nullptr) const;
  // The model parameters that train, under their HF names (after freezing).
  std::vector<std::string> trainable_names() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Interrupts

// Installs SIGINT/SIGTERM handlers that only set a flag (idempotent); the trainer checks it at
// every step boundary. A second signal while the flag is set restores the default action, so a
// stuck run can still be killed.
void install_interrupt_handlers();
void restore_interrupt_handlers();  // the actions in place before install (the trainer calls it at the end)
bool interrupt_requested();
void request_interrupt();        // as if a signal arrived (tests)
void clear_interrupt();

// Latest complete checkpoint in `dir` ("" when none).
std::string latest_checkpoint(const std::string& dir);

}  // namespace secateur::train
