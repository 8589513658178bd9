#pragma once
// The model interface every family implements, and the loader.
//
// Parameters are registered under their Hugging Face names and in HF's own layouts (GPT-2's
// Conv1D weights stay [in, out] and are applied as x·W + b, as HF does), so `hf_parameter(name)`
// is at once the live tensor, the tensor in the checkpoint, and what a ParamSlice indexes.
// Tied copies (lm_head ↔ word embeddings, MLM decoder bias) exist once; they are accepted on load
// and left out on save, as save_pretrained does.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/weights.h"
#include "model/config.h"
#include "model/gates.h"
#include "model/weight_transform.h"

namespace secateur::model {

struct ForwardOptions {
  bool output_hidden_states = false;
  torch::Tensor token_type_ids;   // encoder only, [B, T]; zeros when undefined
  bool exact_attention = false;   // matmul-softmax even where fused SDPA exists
  // Learned-weight methods (movement masks, LoRA): every layer projection computes with
  // weights->apply(name, W) instead of W (see projection_weights). nullptr = the plain forward.
  const WeightTransform* weights = nullptr;
  // Resume a pass at layer `start_layer` from `start_hidden`, that layer's input as an earlier
  // pass on the same ids, mask and gates up to it produced (its hidden_states[start_layer]): the
  // embedding and the layers before are skipped, and hidden_states holds only the layers run.
  // Perplexity search re-runs only the layers a candidate removal changes.
  int64_t start_layer = 0;
  torch::Tensor start_hidden;
  // Whether attention_mask hides some token, when the caller knows (it checked the batch on the
  // host): the pass then does not read a device mask back to find out, a host sync that a CUDA
  // graph cannot contain. true with a mask of all ones is still exact (an additive mask of zeros).
  std::optional<bool> attention_mask_padded;
};

// The first layer a pass runs: options.start_layer, checked against the model (UserError when out
// of range, or when it is not 0 and no start_hidden is given).
int64_t resume_layer(const ForwardOptions& options, const ModelConfig& config);

struct ForwardOutput {
  // masked_lm / causal_lm: [B, T, vocab]; sequence_classification: [B, num_labels];
  // base: the last hidden state.
  torch::Tensor logits;
  // As HF's output_hidden_states: the embedding output, then each layer's output, the last one
  // after the final norm for decoders. Filled only when asked for.
  std::vector<torch::Tensor> hidden_states;
  torch::Tensor last_hidden;      // HF's last_hidden_state (after the final norm for decoders)
};

struct LoadReport {
  std::vector<std::string> missing;     // required by the config, absent from the weights
  std::vector<std::string> unexpected;  // present but unused (tied copies and HF buffers excluded)
};

class Model : public torch::nn::Module {
 public:
  const ModelConfig& config() const { return config_; }

  virtual ForwardOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                                const Gates* gates = nullptr, const ForwardOptions& options = {}) = 0;

  // Copies HF-named tensors into the parameters (converting dtype and device). A tensor whose
  // shape differs from what the config implies, or that is not floating point, throws UserError
  // naming `source` and the tensor. Missing and unexpected names are reported, not thrown.
  LoadReport load_state(const io::TensorMap& weights, const std::string& source = "weights");

  // Every parameter under its HF name and layout (detached views of the live tensors; clone
  // before editing). Tied copies are left out, as save_pretrained does.
  io::TensorMap state_dict_hf() const;

  const std::vector<std::string>& hf_names() const { return names_; }
  bool has_hf_parameter(const std::string& name) const { return index_.count(name) > 0; }
  torch::Tensor hf_parameter(const std::string& name) const;  // the live parameter; UserError if unknown
  // Names HF checkpoints may use for one of our parameters (tied copies): alias → canonical name.
  const std::map<std::string, std::string>& tied_aliases() const { return aliases_; }

  torch::ScalarType dtype() const;
  torch::Device device() const;
  // Throws UserError when this LibTorch cannot run the model's dtype on its device
  // (float16 on the CPU before LibTorch 2). Every forward calls it.
  void check_runnable() const;

  // Moves or casts the parameters as torch::nn::Module::to does, then packs them again (see
  // pack_rows): Module::to converts each parameter on its own, into a buffer of its own.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  // Hugging Face's initialisation: normal(0, initializer_range) matrices and embeddings, ones
  // for norm weights, zeros for biases. Uses torch's global generator.
  void init_weights();

 protected:
  enum class Init { normal, ones, zeros };

  Model(ModelConfig config, torch::TensorOptions options);
  // Registers one parameter under its HF name.
  torch::Tensor param(const std::string& hf_name, std::vector<int64_t> shape, Init init = Init::normal);
  // Stores `parts` (parameters of one layer that share their input: q/k/v, gate/up) as consecutive
  // row blocks of one buffer, values kept, so that the forward pass can run them as one GEMM
  // (fn::linears); no memory is added, each part becomes a view of the buffer. Each parameter keeps
  // its TensorImpl (set_data), which the module registry, the HF-name index, optimisers and taps
  // hold. Remembered, so that `to` packs them again. Undefined parts (absent biases) pack nothing.
  void pack_rows(const std::vector<torch::Tensor>& parts);
  void tie(const std::string& alias, const std::string& canonical) { aliases_[alias] = canonical; }
  // HF checkpoints may carry buffers (causal masks, position ids, rotary tables) we recompute.
  void ignore_suffix(const std::string& suffix) { ignored_suffixes_.push_back(suffix); }
  // The backbone's prefix in task checkpoints ("bert.", "transformer.", "model."): a base model
  // reads task checkpoints and vice versa, as from_pretrained does.
  void set_base_prefix(const std::string& prefix) { base_prefix_ = prefix; }
  const std::string& base_prefix() const { return base_prefix_; }

  ModelConfig config_;

 private:
  const torch::Tensor* find_weight(const io::TensorMap& weights, const std::string& name, std::string* found) const;
  bool ignored(const std::string& name) const;

  torch::TensorOptions options_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> tensors_;
  std::vector<Init> inits_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> aliases_;
  std::vector<std::string> ignored_suffixes_;
  std::vector<std::vector<torch::Tensor>> packs_;  // pack_rows' groups
  std::string base_prefix_;
};

// The projections a WeightTransform applies to: q/k/v/o and gate/up/down (llama family),
// c_attn / attn.c_proj / c_fc / mlp.c_proj (GPT-2), query/key/value/attention.output.dense/
// intermediate.dense/output.dense (BERT, RoBERTa), in every layer, by HF name in model order.
// out_dim is the dim of the HF-layout weight indexing output units: 0 for nn.Linear [out, in],
// 1 for GPT-2's Conv1D [in, out].
struct ProjectionWeight {
  std::string name;
  int64_t out_dim = 0;
};
std::vector<ProjectionWeight> projection_weights(const Model& model);

// A model of `config` with HF-style random weights (dtype and device from `options`).
std::shared_ptr<Model> build_model(const ModelConfig& config,
                                   const torch::TensorOptions& options = torch::TensorOptions());

struct LoadOptions {
  std::string device = "cpu";                 // cpu, cuda, cuda:N
  // Default: config torch_dtype, else the weights' dtype; float16 becomes float32 where this
  // LibTorch has no float16 kernels for the device (the CPU before LibTorch 2).
  std::optional<torch::ScalarType> dtype;
};

// Loads a model from a directory (config.json + model.safetensors, a sharded index, or model.pt),
// or from a weights file (.safetensors or TorchScript .pt) whose config.json sits beside it.
// Missing tensors and shape mismatches throw UserError; unexpected tensors are logged.
std::shared_ptr<Model> load_model(const std::string& path, const LoadOptions& options = {});

// Whether float16 kernels exist on `device` in this LibTorch, and the UserError when they don't.
bool half_runs_on(torch::Device device);
void check_runnable(torch::ScalarType dtype, torch::Device device);

// "float32" / "bfloat16" / "float16" (also "fp32", "bf16", "fp16") → dtype; UserError otherwise.
torch::ScalarType parse_dtype(const std::string& name);
std::string dtype_name(torch::ScalarType dtype);

}  // namespace secateur::model
