#include "model/model.h"

#include <sys/stat.h>
#include <torch/version.h>

#include <algorithm>
#include <set>
#include <stdexcept>

#include "model/bert.h"
#include "model/functional.h"
#include "model/gpt2.h"
#include "model/llama.h"
#include "util/error.h"
#include "util/log.h"

namespace secateur::model {

namespace {

std::string shape_string(at::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// torch::nn::Module forbids dots in parameter names; the HF name is kept in Model::names_.
std::string module_name(std::string name) {
  std::replace(name.begin(), name.end(), '.', '/');
  return name;
}

std::string joined(const std::vector<std::string>& names, size_t limit = 8) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += ", … (" + std::to_string(names.size()) + " in all)";
  return s;
}

}  // namespace

Model::Model(ModelConfig config, torch::TensorOptions options)
    : config_(std::move(config)), options_(options.requires_grad(false)) {}

torch::Tensor Model::param(const std::string& hf_name, std::vector<int64_t> shape, Init init) {
  torch::Tensor t = register_parameter(module_name(hf_name), torch::empty(shape, options_));
  index_[hf_name] = names_.size();
  names_.push_back(hf_name);
  tensors_.push_back(t);
  inits_.push_back(init);
  return t;
}

namespace {

// Copies `parts` into one new buffer and re-points each at its rows (see Model::pack_rows);
// nothing to do when they already lie so, nothing possible when their dtypes or devices differ.
void pack(const std::vector<torch::Tensor>& parts) {
  if (fn::row_span(parts).defined()) return;
  for (const torch::Tensor& t : parts)
    if (t.scalar_type() != parts[0].scalar_type() || t.device() != parts[0].device()) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor buffer = torch::cat(parts, 0);
  int64_t offset = 0;
  for (torch::Tensor t : parts) {
    const int64_t rows = t.size(0);
    t.set_data(buffer.narrow(0, offset, rows));
    offset += rows;
  }
}

}  // namespace

void Model::pack_rows(const std::vector<torch::Tensor>& parts) {
  if (parts.empty() || std::any_of(parts.begin(), parts.end(), [](const torch::Tensor& t) { return !t.defined(); }))
    return;
  packs_.push_back(parts);
  pack(parts);
}

void Model::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(device, dtype, non_blocking);
  for (const auto& parts : packs_) pack(parts);
}

void Model::to(torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(dtype, non_blocking);
  for (const auto& parts : packs_) pack(parts);
}

void Model::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  for (const auto& parts : packs_) pack(parts);
}

torch::Tensor Model::hf_parameter(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) throw UserError("model has no parameter '" + name + "'");
  return tensors_[it->second];
}

torch::ScalarType Model::dtype() const { return tensors_.empty() ? torch::kFloat32 : tensors_[0].scalar_type(); }
torch::Device Model::device() const { return tensors_.empty() ? torch::Device(torch::kCPU) : tensors_[0].device(); }

void Model::init_weights() {
  const double std = config_.raw.value("initializer_range", 0.02);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    switch (inits_[i]) {
      case Init::normal: tensors_[i].normal_(0.0, std); break;
      case Init::ones: tensors_[i].fill_(1.0); break;
      case Init::zeros: tensors_[i].zero_(); break;
    }
  }
}

bool Model::ignored(const std::string& name) const {
  if (aliases_.count(name)) return true;
  return std::any_of(ignored_suffixes_.begin(), ignored_suffixes_.end(),
                     [&](const std::string& s) { return ends_with(name, s); });
}

// A weight's name in the file: exact, with or without the backbone prefix, or a tied alias.
const torch::Tensor* Model::find_weight(const io::TensorMap& weights, const std::string& name,
                                        std::string* found) const {
  std::vector<std::string> candidates{name};
  const std::string& p = base_prefix_;
  if (!p.empty()) {
    if (name.rfind(p, 0) == 0) candidates.push_back(name.substr(p.size()));
    else candidates.push_back(p + name);
  }
  for (const auto& [alias, canonical] : aliases_)
    if (canonical == name) candidates.push_back(alias);
  for (const std::string& c : candidates) {
    const auto it = weights.find(c);
    if (it != weights.end()) {
      *found = c;
      return &it->second;
    }
  }
  return nullptr;
}

LoadReport Model::load_state(const io::TensorMap& weights, const std::string& source) {
  LoadReport report;
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < names_.size(); ++i) {
    std::string found;
    const torch::Tensor* w = find_weight(weights, names_[i], &found);
    if (w == nullptr) {
      report.missing.push_back(names_[i]);
      continue;
    }
    used.insert(found);
    if (!w->is_floating_point())
      throw UserError(source + ": tensor '" + found + "' has dtype " + std::string(c10::toString(w->scalar_type())) +
                      ", expected a floating-point type (float32, bfloat16 or float16)");
    if (w->sizes() != tensors_[i].sizes())
      throw UserError(source + ": tensor '" + found + "' has shape " + shape_string(w->sizes()) + ", expected " +
                      shape_string(tensors_[i].sizes()) + " from the config");
    tensors_[i].copy_(*w);
  }
  for (const auto& [name, tensor] : weights)
    if (!used.count(name) && !ignored(name)) report.unexpected.push_back(name);
  return report;
}

io::TensorMap Model::state_dict_hf() const {
  io::TensorMap out;
  for (size_t i = 0; i < names_.size(); ++i) out[names_[i]] = tensors_[i].detach();
  return out;
}

namespace {

// The family's model with uninitialised parameters.
std::shared_ptr<Model> make_model(const ModelConfig& config, const torch::TensorOptions& options) {
  switch (config.family) {
    case Family::encoder: return std::make_shared<EncoderModel>(config, options);
    case Family::gpt2: return std::make_shared<Gpt2Model>(config, options);
    case Family::llama: return std::make_shared<LlamaModel>(config, options);
  }
  throw std::logic_error("unknown model family");
}

}  // namespace

std::vector<ProjectionWeight> projection_weights(const Model& model) {
  struct Rule {
    const char* layer_marker;  // only names inside a transformer layer
    std::vector<const char*> suffixes;
    int64_t out_dim;
  };
  static const Rule llama{"layers.",
                          {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                           "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"},
                          0};
  static const Rule gpt2{"h.", {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"}, 1};
  static const Rule encoder{"encoder.layer.",
                            {"attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
                             "attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight"},
                            0};
  const Family family = model.config().family;
  const Rule& rule = family == Family::llama ? llama : family == Family::gpt2 ? gpt2 : encoder;
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  std::vector<ProjectionWeight> out;
  for (const std::string& name : model.hf_names()) {
    if (name.find(rule.layer_marker) == std::string::npos) continue;
    for (const char* suffix : rule.suffixes)
      if (ends_with(name, std::string(".") + suffix)) {
        out.push_back({name, rule.out_dim});
        break;
      }
  }
  return out;
}

std::shared_ptr<Model> build_model(const ModelConfig& config, const torch::TensorOptions& options) {
  std::shared_ptr<Model> model = make_model(config, options);
  model->init_weights();
  return model;
}

bool half_runs_on(torch::Device device) {
  // LibTorch 1.13 lacks CPU float16 kernels for layer_norm and matmul; 2.x has them.
  return device.is_cuda() || TORCH_VERSION_MAJOR >= 2;
}

void check_runnable(torch::ScalarType dtype, torch::Device device) {
  if (dtype == torch::kHalf && !half_runs_on(device))
    throw UserError("float16 on the CPU needs LibTorch 2 or newer (this is " TORCH_VERSION "): use float32 or bfloat16");
}

void Model::check_runnable() const { model::check_runnable(dtype(), device()); }

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32" || name == "float") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16" || name == "half") return torch::kHalf;
  throw UserError("dtype \"" + name + "\" is not supported (expected float32, bfloat16 or float16)");
}

std::string dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kHalf: return "float16";
    default: return c10::toString(dtype);
  }
}

namespace {

torch::Device parse_device(const std::string& device) {
  if (device != "cpu" && device != "cuda" && device.rfind("cuda:", 0) != 0)
    throw UserError("device \"" + device + "\" is not supported (expected cpu, cuda or cuda:N)");
  if (device != "cpu" && !torch::cuda::is_available())
    throw UserError("device \"" + device + "\" requested, but CUDA is not available");
  try {
    return torch::Device(device);
  } catch (const c10::Error&) {
    throw UserError("device \"" + device + "\" is not a valid device (expected cpu, cuda or cuda:N)");
  }
}

// POSIX rather than std::filesystem: with the PyTorch 2.11 wheel, std::filesystem calls can bind
// to libtorch.so's own copy of those symbols (remove_all crashes there).
bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// The dtype a checkpoint's weights come in: the most common floating dtype among them.
torch::ScalarType weights_dtype(const io::TensorMap& weights) {
  std::map<torch::ScalarType, size_t> counts;
  for (const auto& [name, t] : weights)
    if (t.is_floating_point()) ++counts[t.scalar_type()];
  if (counts.empty()) return torch::kFloat32;
  return std::max_element(counts.begin(), counts.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
}

}  // namespace

std::shared_ptr<Model> load_model(const std::string& path, const LoadOptions& options) {
  if (!path_exists(path)) throw UserError(path + ": no such file or directory");
  const bool dir = is_directory(path);
  const std::string config_path = (dir ? path : parent_directory(path)) + "/config.json";
  if (!path_exists(config_path))
    throw UserError(path + ": no config.json " + (dir ? "in this directory" : "beside this file"));
  // ModelConfig::load reads a directory's config.json: a config.json that is itself a directory
  // would be searched for a config.json inside it and reported as missing there.
  if (is_directory(config_path)) throw UserError(config_path + ": is a directory, expected a file");
  const ModelConfig config = ModelConfig::load(config_path);
  const torch::Device device = parse_device(options.device);
  const io::TensorMap weights = io::load_weights(path);

  torch::ScalarType dtype = weights_dtype(weights);
  if (!config.torch_dtype.empty() && config.torch_dtype != "auto") {
    try {
      dtype = parse_dtype(config.torch_dtype);
    } catch (const UserError& e) {
      throw UserError(config_path + ": " + e.what());
    }
  }
  if (options.dtype) dtype = *options.dtype;
  if (!half_runs_on(device) && dtype == torch::kHalf) {
    if (options.dtype) check_runnable(dtype, device);  // asked for explicitly: say why not
    log::warn(path + ": float16 weights run as float32 on the CPU (LibTorch " TORCH_VERSION " has no CPU float16 kernels)");
    dtype = torch::kFloat32;
  }

  const std::shared_ptr<Model> model = make_model(config, torch::TensorOptions().dtype(dtype).device(device));
  const LoadReport report = model->load_state(weights, path);
  if (!report.missing.empty())
    throw UserError(path + ": " + std::to_string(report.missing.size()) +
                    " tensor(s) required by config.json are missing: " + joined(report.missing));
  if (!report.unexpected.empty())
    log::warn(path + ": ignoring " + std::to_string(report.unexpected.size()) +
              " tensor(s) the model does not use: " + joined(report.unexpected));
  model->eval();
  return model;
}

int64_t resume_layer(const ForwardOptions& options, const ModelConfig& config) {
  const int64_t l = options.start_layer;
  if (l < 0 || l > config.num_layers || (l > 0 && !options.start_hidden.defined()))
    throw UserError("forward: start_layer " + std::to_string(l) + " needs start_hidden and must lie in [0, " +
                    std::to_string(config.num_layers) + "]");
  return l;
}

}  // namespace secateur::model
