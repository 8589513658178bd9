// secateur's side of bench/run.sh (issue #8): the cases bench/hf_reference.py measures for HF,
// on identical shapes, dtype and random-init weights, one JSON line per measurement.
//
//   speed_bench llama_eval [--pruned]   LLaMA-shaped 1.1B decoder, evaluation forward with loss,
//                                       batch 8 × 2048, bf16: tokens/s and MFU (--ffn-keep N: the
//                                       pruned model keeps N FFN neurons per layer, not half)
//   speed_bench bert_infer [--pruned]   BERT-base classifier inference, batch 32 × 128, bf16
//   speed_bench bert_train              BERT-base classifier training step through train::Trainer
//                                       (AdamW, bf16 autocast), batch 32 × 128: samples/s
//   speed_bench grad_importance         head_gradient (or --estimator taylor) scores of heads, KV
//                                       groups and FFN neurons on a LLaMA-7B-shaped model (bf16
//                                       weights), 32 × 2048 tokens in micro-batches of
//                                       --micro-batch sequences: seconds and peak memory. Only
//                                       gate gradients are taken for head_gradient (the weights
//                                       do not require grad), so no full-model gradient exists.
//
// The pruned models are made the way users make them: masks (half the KV groups with their query
// heads and half the FFN neurons for LLaMA; 6 of 12 heads and 1216 of 3072 neurons for BERT)
// applied by surgery::prune to the dense model. --tiny shrinks every shape for a CPU smoke test.
// On a GPU, bert_train's step and llama_eval's and bert_infer's forward replay as CUDA graphs
// (train::CudaGraphStep, eval::GraphedForward; "cuda_graph_replays" counts them); --eager turns
// that off.
#include <torch/torch.h>
#include <torch/version.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/cost.h"
#include "profile.h"
#include "eval/graphed_forward.h"
#include "eval/loss.h"
#include "importance/estimator.h"
#include "model/prunable.h"
#include "model/model.h"
#include "surgery/masks.h"
#include "surgery/surgery.h"
#include "train/trainer.h"

namespace {

using namespace secateur;
using nlohmann::json;

constexpr double kPeakBf16Flops = 989e12;  // H100 SXM dense bf16

struct Args {
  std::string case_name;
  bool pruned = false;
  bool tiny = false;
  std::string device = "cuda";
  int64_t warmup = 10, steps = 60, window = 10;
  std::string estimator = "head_gradient";
  int64_t micro_batch = 2;
  int64_t ffn_keep = 0;  // --pruned: FFN neurons kept per layer (0: LLaMA half, BERT 1216)
  std::string profile;  // Chrome trace of a few more steps after the timed ones
  int64_t profile_steps = 3;
  // --eager = off: bert_train's step, llama_eval's and bert_infer's forward run eagerly.
  train::CudaGraphMode cuda_graph = train::CudaGraphMode::automatic;
};

json llama7b_config(bool tiny) {
  if (tiny) return nullptr;
  return {{"model_type", "llama"}, {"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 32000},
          {"hidden_size", 4096}, {"num_hidden_layers", 32}, {"num_attention_heads", 32},
          {"num_key_value_heads", 8}, {"head_dim", 128}, {"intermediate_size", 14336},
          {"max_position_embeddings", 2048}, {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", false}};
}

json llama_config(bool tiny) {
  if (tiny)
    return {{"model_type", "llama"}, {"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 512},
            {"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 8},
            {"num_key_value_heads", 4}, {"head_dim", 8}, {"intermediate_size", 128},
            {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", false}};
  return {{"model_type", "llama"}, {"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 32000},
          {"hidden_size", 2048}, {"num_hidden_layers", 22}, {"num_attention_heads", 32},
          {"num_key_value_heads", 4}, {"head_dim", 64}, {"intermediate_size", 5632},
          {"max_position_embeddings", 2048}, {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", false}};
}

json bert_config(bool tiny) {
  if (tiny)
    return {{"model_type", "bert"}, {"architectures", {"BertForSequenceClassification"}}, {"vocab_size", 512},
            {"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
            {"intermediate_size", 128}, {"max_position_embeddings", 64}, {"num_labels", 2}};
  return {{"model_type", "bert"}, {"architectures", {"BertForSequenceClassification"}}, {"vocab_size", 30522},
          {"hidden_size", 768}, {"num_hidden_layers", 12}, {"num_attention_heads", 12},
          {"intermediate_size", 3072}, {"max_position_embeddings", 512}, {"num_labels", 2}};
}

std::vector<int64_t> first(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// Keeps the first `kv_keep` key/value groups (with all their query heads) and `ffn_keep` neurons
// of every layer: which ones are kept does not change the speed, only the shapes do.
surgery::Masks shrink(const model::ModelConfig& c, int64_t kv_keep, int64_t heads_keep, int64_t ffn_keep) {
  surgery::Masks m = surgery::Masks::keep_all(c);
  for (auto& layer : m.layers) {
    layer.kv_groups = first(kv_keep);
    layer.heads = first(heads_keep);
    layer.ffn = first(ffn_keep);
  }
  return m;
}

std::shared_ptr<model::Model> make_model(const json& config_json, bool pruned, const Args& a) {
  torch::manual_seed(0);
  model::ModelConfig config = model::ModelConfig::from_json(config_json, "bench config");
  auto model = model::build_model(config, torch::TensorOptions().dtype(torch::kFloat32));
  if (pruned) {
    const int64_t heads = config.num_heads / 2;
    const int64_t kv = config.family == model::Family::llama ? config.num_kv_heads / 2 : heads;
    // LLaMA: half of everything. BERT: 60% of the FFN removed, rounded to a multiple of 64.
    const int64_t ffn = a.ffn_keep > 0 ? std::min(a.ffn_keep, config.intermediate_size)
                        : config.family == model::Family::llama
                            ? config.intermediate_size / 2
                            : std::max<int64_t>(64, (config.intermediate_size * 4 / 10) / 64 * 64);
    model = surgery::prune(*model, shrink(config, kv, heads, ffn));
  }
  const auto dtype = a.device == "cpu" ? torch::kFloat32 : torch::kBFloat16;
  model->to(torch::Device(a.device), dtype);
  model->eval();
  return model;
}

int64_t total_parameters(const model::Model& m) {
  int64_t n = 0;
  for (const auto& [name, t] : m.state_dict_hf()) n += t.numel();
  return n;
}

// Seconds per step: the median over windows of `window` steps after `warmup` steps.
double time_step(const std::function<void()>& step, const Args& a, torch::Device device) {
  for (int64_t i = 0; i < a.warmup; ++i) step();
  eval::synchronize(device);
  std::vector<double> per_step;
  for (int64_t w = 0; w < std::max<int64_t>(1, a.steps / a.window); ++w) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < a.window; ++i) step();
    eval::synchronize(device);
    per_step.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / a.window);
  }
  if (!a.profile.empty())
    bench::profile_to(a.profile, [&] {
      for (int64_t i = 0; i < a.profile_steps; ++i) step();
      eval::synchronize(device);
    });
  return eval::median(per_step);
}

json llama_eval(const Args& a) {
  auto model = make_model(llama_config(a.tiny), a.pruned, a);
  const torch::Device device = model->device();
  const int64_t b = a.tiny ? 2 : 8, t = a.tiny ? 64 : 2048;
  data::Batch batch;
  batch.input_ids = torch::randint(0, model->config().vocab_size, {b, t}, torch::kLong).to(device);
  batch.labels = batch.input_ids;
  c10::InferenceMode inference;
  eval::GraphedForward eval_loss(
      [&](const data::Batch& x) {
        return std::vector<torch::Tensor>{eval::task_loss(model::Task::causal_lm, model->forward(x.input_ids).logits, x)};
      },
      device, a.cuda_graph != train::CudaGraphMode::off);
  eval::reset_peak_memory(device);
  const double s = time_step([&] { eval_loss(batch); }, a, device);
  const int64_t n = total_parameters(*model);
  const double tokens_per_s = static_cast<double>(b * t) / s;
  return {{"tokens_per_s", tokens_per_s}, {"step_ms", s * 1e3}, {"params", n},
          {"mfu", 2.0 * n * tokens_per_s / kPeakBf16Flops},
          {"peak_mem_gb", eval::peak_memory_bytes(device) / double(1 << 30)},
          {"cuda_graph_replays", eval_loss.replays()}};
}

json bert_infer(const Args& a) {
  auto model = make_model(bert_config(a.tiny), a.pruned, a);
  const torch::Device device = model->device();
  const int64_t b = a.tiny ? 4 : 32, t = a.tiny ? 32 : 128;
  const torch::Tensor ids = torch::randint(0, model->config().vocab_size, {b, t}, torch::kLong).to(device);
  const bool graphed = a.cuda_graph != train::CudaGraphMode::off;
  // No attention mask: the batch has no padding, and evaluation hands such batches over without
  // their all-ones mask (data::Batch::to drops it), graphed or eager alike.
  data::Batch batch;
  batch.input_ids = ids;
  c10::InferenceMode inference;
  eval::GraphedForward forward(
      [&](const data::Batch& x) { return std::vector<torch::Tensor>{model->forward(x.input_ids, x.attention_mask).logits}; },
      device, graphed);
  eval::reset_peak_memory(device);
  const double s = time_step([&] { forward(batch); }, a, device);
  return {{"samples_per_s", b / s}, {"step_ms", s * 1e3}, {"params", total_parameters(*model)},
          {"peak_mem_gb", eval::peak_memory_bytes(device) / double(1 << 30)},
          {"cuda_graph_replays", forward.replays()}};
}

// The same random batch every step: the benchmark times the step, not the data.
class FixedBatches : public train::BatchSource {
 public:
  explicit FixedBatches(data::Batch batch) : batch_(std::move(batch)) {}
  int64_t batches_per_epoch() const override { return 1 << 20; }
  data::Batch batch(int64_t, int64_t) const override { return batch_; }
  std::string describe() const override { return "random token ids"; }

 private:
  data::Batch batch_;
};

json bert_train(const Args& a) {
  torch::manual_seed(0);
  const model::ModelConfig config = model::ModelConfig::from_json(bert_config(a.tiny), "bench config");
  const torch::Device device(a.device);
  auto model = model::build_model(config, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  const int64_t b = a.tiny ? 4 : 32, t = a.tiny ? 32 : 128;
  data::Batch batch;
  // On the host, as a data loader hands batches over: the trainer copies them asynchronously
  // through pinned memory (and drops the all-ones mask there), as in a real run.
  batch.input_ids = torch::randint(0, config.vocab_size, {b, t}, torch::kLong);
  batch.attention_mask = torch::ones_like(batch.input_ids);
  batch.labels = torch::randint(0, config.num_labels, {b}, torch::kLong);
  auto source = std::make_shared<FixedBatches>(batch);
  // One run (one optimiser, one capture when graphed) of warm-up + timed windows; the trainer's
  // log line at the end of every window is its one host sync there, as in the HF loop, and the
  // time between two of them is a window.
  const int64_t windows = std::max<int64_t>(1, a.steps / a.window);
  const int64_t warmup_windows = std::max<int64_t>(1, (a.warmup + a.window - 1) / a.window);
  auto run = [&](int64_t total_windows, std::vector<double>* window_s) {
    train::TrainOptions o;
    o.steps = total_windows * a.window;
    o.bf16 = device.is_cuda();
    o.optimizer.lr = 1e-5;
    o.schedule.kind = train::ScheduleKind::constant;
    o.log_every = a.window;
    o.label = "bench";
    o.cuda_graph = a.cuda_graph;
    std::vector<std::chrono::steady_clock::time_point> marks;
    train::Callbacks callbacks;
    callbacks.log = [&](const json& event, int64_t) {
      if (!event.contains("eval")) marks.push_back(std::chrono::steady_clock::now());
    };
    train::Trainer trainer(*model, o, source, {}, nullptr, callbacks);
    const train::TrainResult r = trainer.run();
    if (window_s)
      for (size_t i = warmup_windows; i < marks.size(); ++i)
        window_s->push_back(std::chrono::duration<double>(marks[i] - marks[i - 1]).count() / a.window);
    return r;
  };
  eval::reset_peak_memory(device);
  std::vector<double> per_step;
  const train::TrainResult result = run(warmup_windows + windows, &per_step);
  const double s = eval::median(per_step);
  if (!a.profile.empty()) bench::profile_to(a.profile, [&] { run(1, nullptr); });
  return {{"samples_per_s", b / s}, {"step_ms", s * 1e3}, {"windows", per_step.size()},
          {"cuda_graph_replays", result.graph_replays},
          {"params", total_parameters(*model)}, {"peak_mem_gb", eval::peak_memory_bytes(device) / double(1 << 30)}};
}

json grad_importance(const Args& a) {
  const json config_json = a.tiny ? llama_config(true) : llama7b_config(false);
  torch::manual_seed(0);
  model::ModelConfig config = model::ModelConfig::from_json(config_json, "bench config");
  const torch::Device device(a.device);
  const auto dtype = a.device == "cpu" ? torch::kFloat32 : torch::kBFloat16;
  // Built directly in the target dtype and device: a 7B model in fp32 on the host is 28 GB.
  auto model = model::build_model(config, torch::TensorOptions().dtype(dtype).device(device));
  if (a.estimator == "head_gradient")
    for (auto& p : model->parameters()) p.set_requires_grad(false);
  const int64_t sequences = a.tiny ? 4 : 32, t = a.tiny ? 64 : 2048;
  std::vector<data::Batch> batches;
  for (int64_t done = 0; done < sequences; done += a.micro_batch) {
    data::Batch b;
    b.input_ids = torch::randint(0, config.vocab_size, {std::min(a.micro_batch, sequences - done), t}, torch::kLong).to(device);
    b.attention_mask = torch::ones_like(b.input_ids);
    batches.push_back(b);
  }
  model::PrunableOptions structure_options;
  structure_options.hidden_dims = false;  // not scored here, and ~9·layers·hidden slices at 7B
  const model::PrunableStructure structure = model::prunable_structure(*model, structure_options);
  importance::EstimatorOptions options;
  options.name = a.estimator;
  auto estimator = importance::make_estimator(options);
  importance::Context ctx{*model, structure, batches};
  ctx.kinds = {model::GroupKind::head, model::GroupKind::kv_group, model::GroupKind::ffn_neuron};
  eval::synchronize(device);
  eval::reset_peak_memory(device);
  const auto t0 = std::chrono::steady_clock::now();
  importance::Scores scores = estimator->estimate(ctx);
  eval::synchronize(device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {{"seconds", seconds}, {"tokens_per_s", sequences * t / seconds}, {"estimator", a.estimator},
          {"tokens", sequences * t}, {"micro_batch", a.micro_batch}, {"params", total_parameters(*model)},
          {"peak_mem_gb", eval::peak_memory_bytes(device) / double(1 << 30)}};
}

int usage() {
  std::cerr << "usage: speed_bench llama_eval|bert_infer|bert_train|grad_importance [--pruned] [--tiny] [--device cpu|cuda]\n"
               "                   [--warmup N] [--steps N] [--window N] [--estimator NAME] [--micro-batch N] [--ffn-keep N]\n"
               "                   [--profile TRACE.json [--profile-steps N]] [--eager]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (argc < 2) return usage();
  a.case_name = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--pruned") a.pruned = true;
    else if (arg == "--tiny") a.tiny = true;
    else if (arg == "--device") a.device = next();
    else if (arg == "--warmup") a.warmup = std::stoll(next());
    else if (arg == "--steps") a.steps = std::stoll(next());
    else if (arg == "--window") a.window = std::stoll(next());
    else if (arg == "--estimator") a.estimator = next();
    else if (arg == "--micro-batch") a.micro_batch = std::stoll(next());
    else if (arg == "--ffn-keep") a.ffn_keep = std::stoll(next());
    else if (arg == "--profile") a.profile = next();
    else if (arg == "--eager") a.cuda_graph = train::CudaGraphMode::off;
    else if (arg == "--profile-steps") a.profile_steps = std::stoll(next());
    else return usage();
  }
  if (a.device != "cpu" && !torch::cuda::is_available()) {
    std::cerr << "speed_bench: CUDA is not available here (use --device cpu --tiny for a smoke test)\n";
    return 1;
  }
  at::globalContext().setAllowTF32CuBLAS(true);
  json result;
  if (a.case_name == "llama_eval") result = llama_eval(a);
  else if (a.case_name == "bert_infer") result = bert_infer(a);
  else if (a.case_name == "grad_importance") result = grad_importance(a);
  else if (a.case_name == "bert_train") result = bert_train(a);
  else return usage();
  result["system"] = "secateur";
  result["case"] = a.case_name;
  result["pruned"] = a.pruned;
  result["torch"] = TORCH_VERSION;
  std::cout << result.dump() << std::endl;
  return 0;
}
