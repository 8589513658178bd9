// calibration_bench (issue #6, "Speed"): how fast activation statistics are collected. Builds a
// random-init LLaMA-shaped model (default the 1.1B shape: hidden 2048, 22 layers, 32 heads, 4 KV
// heads, intermediate 5632, vocab 32000; bf16 on CUDA), draws random token ids (128 × 2048 by
// default) and times each estimator's full calibration pass — activation (Wanda) and fluctuation
// (FLAP) by default, projection (AMP) on request — over heads, KV units and FFN neurons. Prints
// one JSON line per estimator: seconds, tokens/s, peak CUDA memory.
//
//   calibration_bench [--config 1b|tiny|CONFIG.json] [--device cuda|cpu] [--sequences 128]
//                     [--seq-len 2048] [--batch 8] [--estimators activation,fluctuation]
//
// `--config tiny --device cpu` is the smoke test ctest runs (label bench).
#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/cost.h"
#include "importance/estimator.h"
#include "model/model.h"
#include "model/prunable.h"
#include "util/error.h"
#include "util/fs.h"

namespace {

using namespace secateur;
using nlohmann::json;

struct Args {
  std::string config = "1b";
  std::string device = "cuda";
  int64_t sequences = 128, seq_len = 2048, batch = 8;
  std::vector<std::string> estimators = {"activation", "fluctuation"};
};

json llama_config(const std::string& which) {
  if (which == "tiny")
    return {{"model_type", "llama"}, {"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 256},
            {"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 8}, {"num_key_value_heads", 4},
            {"head_dim", 8}, {"intermediate_size", 128}, {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5}};
  if (which == "1b")
    return {{"model_type", "llama"}, {"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 32000},
            {"hidden_size", 2048}, {"num_hidden_layers", 22}, {"num_attention_heads", 32}, {"num_key_value_heads", 4},
            {"head_dim", 64}, {"intermediate_size", 5632}, {"max_position_embeddings", 2048}, {"rms_norm_eps", 1e-5}};
  try {
    return json::parse(fs::read_file(which));
  } catch (const json::exception& e) {
    throw UserError("--config " + which + ": expected 1b, tiny or a config.json (" + e.what() + ")");
  }
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) out.push_back(part);
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (i + 1 >= argc) throw UserError(key + " needs a value");
    const std::string value = argv[++i];
    if (key == "--config") a.config = value;
    else if (key == "--device") a.device = value;
    else if (key == "--sequences") a.sequences = std::stoll(value);
    else if (key == "--seq-len") a.seq_len = std::stoll(value);
    else if (key == "--batch") a.batch = std::stoll(value);
    else if (key == "--estimators") a.estimators = split(value);
    else throw UserError("unknown option " + key + " (see the comment at the top of bench/calibration_bench.cpp)");
  }
  if (a.config == "tiny" && a.seq_len > 64) a.seq_len = 32;  // the tiny model has 64 positions
  return a;
}

json run(model::Model& m, const std::vector<data::Batch>& batches, const std::string& name, torch::Device device) {
  const model::PrunableStructure structure = model::prunable_structure(m);
  importance::EstimatorOptions o;
  o.name = name;
  importance::Context ctx{m, structure, batches, nullptr,
                          {model::GroupKind::head, model::GroupKind::kv_group, model::GroupKind::ffn_neuron}, true};
  const std::unique_ptr<importance::Estimator> estimator = importance::make_estimator(o);
  eval::synchronize(device);
  eval::reset_peak_memory(device);
  const auto t0 = std::chrono::steady_clock::now();
  estimator->estimate(ctx);
  eval::synchronize(device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double tokens = 0;
  for (const data::Batch& b : batches) tokens += static_cast<double>(b.input_ids.numel());
  return {{"bench", "calibration"}, {"estimator", name}, {"seconds", seconds}, {"tokens", tokens},
          {"tokens_per_s", tokens / seconds}, {"peak_cuda_bytes", eval::peak_memory_bytes(device)}};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    torch::set_num_threads(a.device == "cpu" ? 2 : 8);
    torch::manual_seed(0);
    const torch::Device device(a.device);
    const model::ModelConfig config = model::ModelConfig::from_json(llama_config(a.config), "bench config");
    auto m = model::build_model(config, torch::TensorOptions().dtype(torch::kFloat32));
    m->to(device, device.is_cuda() ? torch::kBFloat16 : torch::kFloat32);
    m->eval();
    std::vector<data::Batch> batches;
    for (int64_t done = 0; done < a.sequences; done += a.batch) {
      const int64_t n = std::min(a.batch, a.sequences - done);
      batches.push_back({torch::randint(0, config.vocab_size, {n, a.seq_len}, torch::kLong), {}, {}, {}});
    }
    const json common = {{"config", a.config}, {"device", a.device}, {"dtype", model::dtype_name(m->dtype())},
                         {"sequences", a.sequences}, {"seq_len", a.seq_len}, {"batch", a.batch},
                         {"params", static_cast<int64_t>(model::parameter_count(*m).total)}};
    for (const std::string& name : a.estimators) {
      json line = run(*m, batches, name, device);
      line.update(common);
      std::cout << line.dump() << std::endl;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "calibration_bench: " << e.what() << "\n";
    return 1;
  }
}
