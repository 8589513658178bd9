#include "stages/calibration.h"

#include "data/batching.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "model/model.h"
#include "stages/data_access.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"

namespace secateur::stages {

using recipe::Schema;

recipe::SchemaPtr prune_calibration_schema() {
  return Schema::structure()
      ->field("source", Schema::enumeration({"data", "text", "random"}),
              "data: the train split of the recipe's data: section; text: calibration.path tokenized with "
              "calibration.tokenizer; random: uniform random token ids (smoke tests only: no real-text statistics).",
              "data")
      ->field("path", Schema::string(), "source text: a plain text file (UTF-8).")
      ->field("tokenizer", Schema::string(),
              "source text: tokenizer.json, SentencePiece .model, or a directory holding one (default: the model directory).")
      ->field("num_sequences", Schema::integer()->min(1), "Calibration sequences N.", "128")
      ->field("seq_len", Schema::integer()->min(0), "Tokens per sequence L (0: data.seq_len for source data, else 128).", "0")
      ->field("batch_size", Schema::integer()->min(1), "Sequences per batch.", "8")
      ->field("seed", Schema::integer()->min(0), "Combined with the recipe seed to draw the sequences.", "0");
}

namespace {

std::string model_dir(const run::RunState& state) {
  const recipe::Value* section = state.recipe.tree.find("model");
  if (!section) return "";
  const std::string path = section->at("path").text();
  return fs::is_directory(path) ? path : fs::parent_path(path);
}

torch::Tensor text_stream(const run::RunState& state, const recipe::Value& o, int64_t vocab) {
  const std::string path = o.get_string("path", "");
  if (path.empty()) throw UserError("prune.calibration: source text needs calibration.path (a plain text file)");
  if (!fs::is_regular_file(path)) throw UserError("prune.calibration.path: " + path + " is not a readable file");
  std::string tokenizer_path = o.get_string("tokenizer", "");
  if (tokenizer_path.empty()) tokenizer_path = model_dir(state);
  const std::unique_ptr<data::Tokenizer> tokenizer = data::load_tokenizer(tokenizer_path);
  if (tokenizer->vocab_size() > vocab)
    throw UserError("prune.calibration.tokenizer: " + tokenizer_path + " has " + std::to_string(tokenizer->vocab_size()) +
                    " tokens but the model's vocabulary has " + std::to_string(vocab) + " (expected the model's own tokenizer)");
  const std::vector<int32_t> ids = tokenizer->encode(fs::read_file(path), /*add_special_tokens=*/false);
  std::vector<int64_t> wide(ids.begin(), ids.end());
  log::info("calibration: " + path + " → " + std::to_string(wide.size()) + " tokens");
  return torch::tensor(wide, torch::kLong);
}

}  // namespace

std::vector<data::Batch> prune_calibration(run::RunState& state, const recipe::Value& o) {
  const model::ModelConfig& c = state.model->config();
  const std::string source = o.get_string("source", "data");
  if (source == "data") {
    if (!state.recipe.tree.find("data"))
      throw UserError("prune.calibration: source data needs the recipe's data: section (e.g. include: "
                      "[configs/data/kjv.yaml]), or set calibration.source to text");
    return calibration_batches(state, calibration_options(o, state));
  }
  data::CalibrationOptions options;
  options.num_sequences = o.get_int("num_sequences", 128);
  options.seq_len = o.get_int("seq_len", 0);
  if (options.seq_len == 0) options.seq_len = 128;
  options.batch_size = o.get_int("batch_size", 8);
  // A different draw per (recipe seed, option seed) pair, the same for equal pairs.
  data::SplitMix64 mix(state.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(o.get_int("seed", 0)));
  options.seed = mix.next();
  const int64_t limit = usable_positions(c);
  if (limit > 0 && options.seq_len > limit)
    throw UserError("prune.calibration.seq_len " + std::to_string(options.seq_len) + " is longer than the model's " +
                    std::to_string(limit) + " positions");
  if (source == "random") {
    log::warn("calibration: uniform random token ids (source: random) — a smoke-test source; scores from it do not "
              "reflect real text");
    auto generator = at::detail::createCPUGenerator(options.seed);
    const torch::Tensor ids = torch::randint(0, c.vocab_size, {options.num_sequences, options.seq_len}, generator, torch::kLong);
    std::vector<data::Batch> out;
    for (const torch::Tensor& rows : ids.split(options.batch_size)) out.push_back({rows, torch::ones_like(rows), {}, {}});
    return out;
  }
  return data::sample_windows(text_stream(state, o, c.vocab_size), options, o.get_string("path", ""));
}

}  // namespace secateur::stages
