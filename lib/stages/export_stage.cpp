// `export`: writes the current model as an HF directory (config.json + safetensors, sharded above
// a size), copies the tokenizer files of the source model, and proves the files load back into
// the same function by comparing logits on a fixed random batch. Only the main rank writes.
#include "dist/dist.h"
#include "io/weights.h"
#include "stages/model_access.h"
#include "stages/stage_kinds.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"

namespace secateur::stages {
namespace {

using recipe::Schema;

const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                 "special_tokens_map.json", "vocab.txt", "merges.txt", "vocab.json"};

class ExportStage : public recipe::Stage {
 public:
  explicit ExportStage(const recipe::Value& o)
      : dir_(o.get_string("dir", "export")), max_shard_mb_(o.get_int("max_shard_mb", 5000)),
        dtype_(o.get_string("dtype", "")), verify_(o.get_bool("verify", true)) {}

  // Under data parallelism every rank holds the same model: the main rank alone writes it (two
  // writers of one directory would interleave their files), and the others wait until it is
  // complete, so that whatever runs next on any rank finds the whole export at `out` (in the
  // main rank's run directory: another rank's RunDir::file() is its private scratch).
  void run(run::RunState& state) override {
    model::Model& m = ensure_model(state);
    const std::string out = fs::is_absolute(dir_) ? dir_ : state.dir.path() + "/" + dir_;
    if (dist::is_main()) write(state, m, out);
    dist::barrier();
  }

 private:
  void write(run::RunState& state, model::Model& m, const std::string& out) {
    io::TensorMap tensors = m.state_dict_hf();
    if (!dtype_.empty()) {
      const auto type = model::parse_dtype(dtype_);
      for (auto& [name, t] : tensors) t = t.to(type);
    }
    model::ModelConfig config = m.config();
    config.torch_dtype = dtype_.empty() ? model::dtype_name(m.dtype()) : dtype_;
    io::save_weights(out, tensors, static_cast<uint64_t>(max_shard_mb_) * 1000 * 1000,
                     {{"producer", "secateur"}, {"recipe_hash", state.recipe.hash}});
    config.save(out);
    const int copied = copy_tokenizer_files(state, out);
    // A pruned model carries its pruning.json (kept indices, scores, recipe hash) with it.
    const bool pruning = fs::is_regular_file(state.dir.file("pruning.json"));
    if (pruning) fs::copy_file(state.dir.file("pruning.json"), fs::join(out, "pruning.json"));

    nlohmann::json results = {{"export_dir", out}, {"hf_loadable", config.is_uniform()}, {"tokenizer_files", copied},
                              {"pruning_json", pruning}};
    if (verify_) results["max_abs_logit_diff"] = verify(m, out, state.device);
    state.record(results);
    log::info(state.stage_label() + "  " + out + "  (HF-loadable: " + (config.is_uniform() ? "yes" : "no, per-layer shapes in block_configs") + ")");
  }

  int copy_tokenizer_files(run::RunState& state, const std::string& out) {
    const recipe::Value* section = state.recipe.tree.find("model");
    if (!section) return 0;
    std::string src = section->at("path").text();
    if (!fs::is_directory(src)) src = fs::parent_path(src);
    int copied = 0;
    for (const char* name : kTokenizerFiles) {
      if (!fs::is_regular_file(fs::join(src, name))) continue;
      fs::copy_file(fs::join(src, name), fs::join(out, name));
      ++copied;
    }
    return copied;
  }

  // Loads the export back and compares logits on a fixed batch: the export is only done when it
  // reproduces the model it came from.
  static double verify(model::Model& m, const std::string& out, const std::string& device) {
    torch::NoGradGuard no_grad;
    auto reloaded = model::load_model(out, {device, m.dtype()});
    reloaded->eval();
    auto generator = at::detail::createCPUGenerator(1234);
    const int64_t length = std::min<int64_t>(16, std::max<int64_t>(2, m.config().max_position_embeddings / 2));
    auto ids = torch::randint(0, m.config().vocab_size, {2, length}, generator, torch::kLong).to(m.device());
    auto a = m.forward(ids).logits.to(torch::kFloat);
    auto b = reloaded->forward(ids).logits.to(torch::kFloat);
    double diff = (a - b).abs().max().item<double>();
    if (!(diff <= 1e-5 * std::max(1.0, a.abs().max().item<double>())) && m.dtype() == torch::kFloat)
      throw UserError("export to " + out + " does not reproduce the model: max |Δlogit| = " + std::to_string(diff));
    return diff;
  }

  std::string dir_;
  long long max_shard_mb_;
  std::string dtype_;
  bool verify_;
};

}  // namespace

void register_export(recipe::Registry& registry) {
  auto schema = Schema::structure()
                    ->field("format", Schema::enumeration({"hf"}), "hf: config.json + safetensors, as save_pretrained writes them.", "hf")
                    ->field("dir", Schema::string(), "Output directory, relative to the run directory.", "export")
                    ->field("max_shard_mb", Schema::integer()->min(1), "Shard the weights above this many MB (HF's max_shard_size).", "5000")
                    ->field("dtype", Schema::enumeration({"float32", "bfloat16", "float16"}), "Save in this dtype (default: the model's).")
                    ->field("verify", Schema::boolean(), "Load the export back and check it reproduces the model's logits.", "true");
  registry.add_stage({"export", "write the model as an HF directory (config.json + safetensors) and check it loads back",
                      schema, [](const recipe::Value& o) { return std::make_unique<ExportStage>(o); }});
}

}  // namespace secateur::stages
