#include "stages/data_access.h"

#include <map>
#include <mutex>

#include "stages/model_access.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/strings.h"

namespace secateur::stages {

namespace {

std::string model_path(const run::RunState& state) {
  const recipe::Value* m = state.recipe.tree.find("model");
  return m ? m->at("path").text() : "";
}

bool holds_tokenizer(const std::string& dir) {
  if (fs::is_regular_file(fs::join(dir, "tokenizer.json"))) return true;
  for (const auto& name : fs::list_directory(dir))
    if (strings::ends_with(name, ".model") && fs::is_regular_file(fs::join(dir, name))) return true;
  return false;
}

// Everything that decides what DataSource::load() produces, as text: the memo key.
std::string config_key(const data::DataConfig& c) {
  std::string k = c.name + "|" + strings::join(c.files.files, ",") + "|" + data::to_string(c.files.task) + "|" + c.files.format +
                  "|" + c.files.text_field + "|" + c.files.text_pair_field + "|" + c.files.label_field + "|" +
                  strings::join(c.files.labels, ",") + "|" + strings::format_number(c.splits.validation) + "|" +
                  strings::format_number(c.splits.test) + "|" + std::to_string(c.splits.seed) + "|" + c.tokenizer + "|" +
                  std::to_string(c.seq_len) + "|" + (c.truncation ? "t" : "f") + "|" +
                  strings::format_number(c.mlm_probability) + "|" + (c.tokenize.cache ? c.tokenize.cache_dir : "-");
  const data::TokenizerTraining& t = c.train_tokenizer;
  k += "|train " + std::to_string(t.vocab_size) + " " + t.model_type + " " + strings::format_number(t.character_coverage) + " " +
       (t.byte_fallback ? "t" : "f") + " " + std::to_string(t.max_sentences);
  for (const auto& [key, value] : t.options) k += " " + key + "=" + value;
  return k;
}

}  // namespace

int64_t usable_positions(const model::ModelConfig& config) {
  if (config.max_position_embeddings <= 0) return 0;
  // RoBERTa numbers positions from padding_idx + 1, so the first padding_idx + 1 rows are unused.
  if (config.model_type == "roberta") return config.max_position_embeddings - config.pad_token_id.value_or(1) - 1;
  return config.max_position_embeddings;
}

data::DataConfig data_config(run::RunState& state) {
  const recipe::Value* s = state.recipe.tree.find("data");
  if (!s || s->is_null())
    throw UserError(state.stage_label() + " needs data: add a `data:` section to the recipe (e.g. `data: {name: kjv}`; "
                                          "`secateur help section data` lists its keys)");
  data::DataConfig c;
  c.name = s->get_string("name", "");
  if (const recipe::Value* files = s->find("files"))
    for (const auto& f : files->items()) c.files.files.push_back(f.as_string());
  const std::string task = s->get_string("task", "auto");
  if (task == "auto")
    c.files.task = ensure_model(state).config().task == model::Task::sequence_classification ? data::TaskKind::classification
                                                                                            : data::TaskKind::language_modeling;
  else
    c.files.task = task == "classification" ? data::TaskKind::classification : data::TaskKind::language_modeling;
  c.files.format = s->get_string("format", "auto");
  c.files.text_field = s->get_string("text_field", "text");
  c.files.text_pair_field = s->get_string("text_pair_field", "");
  c.files.label_field = s->get_string("label_field", "label");
  if (const recipe::Value* labels = s->find("labels"))
    for (const auto& l : labels->items()) c.files.labels.push_back(l.as_string());
  if (const recipe::Value* splits = s->find("splits")) {
    c.splits.validation = splits->get_double("validation", 0.05);
    c.splits.test = splits->get_double("test", 0.05);
  }
  c.splits.seed = static_cast<uint64_t>(s->get_int("split_seed", 0));
  const recipe::Value* tokenizer = s->find("tokenizer");
  if (tokenizer && tokenizer->is_map()) {
    const recipe::Value& t = tokenizer->at("train");
    c.train_tokenizer.vocab_size = static_cast<int>(t.get_int("vocab_size", 0));
    c.train_tokenizer.model_type = t.get_string("model_type", "unigram");
    c.train_tokenizer.character_coverage = t.get_double("character_coverage", 1.0);
    c.train_tokenizer.byte_fallback = t.get_bool("byte_fallback", false);
    c.train_tokenizer.max_sentences = t.get_int("max_sentences", 0);
    if (const recipe::Value* extra = t.find("options"))
      for (const auto& e : extra->entries()) c.train_tokenizer.options[e.key] = e.value.text();
  } else {
    c.tokenizer = s->get_string("tokenizer", "");
  }
  if (c.tokenizer.empty() && c.train_tokenizer.vocab_size == 0) {
    std::string dir = model_path(state);
    if (dir.empty())
      throw UserError("data.tokenizer is not set and the recipe has no model: to take it from: set data.tokenizer");
    if (!fs::is_directory(dir)) dir = fs::parent_path(dir).empty() ? "." : fs::parent_path(dir);
    if (!holds_tokenizer(dir))
      throw UserError("data.tokenizer is not set and the model directory " + dir +
                      " holds no tokenizer.json or SentencePiece .model: set data.tokenizer to the model's tokenizer");
    c.tokenizer = dir;
  }
  c.seq_len = s->get_int("seq_len", 128);
  c.batch_size = s->get_int("batch_size", 8);
  c.truncation = s->get_bool("truncation", true);
  c.mlm_probability = s->get_double("mlm_probability", 0.15);
  c.tokenize.cache = s->get_bool("cache", true);
  c.tokenize.cache_dir = s->get_string("cache_dir", "");
  return c;
}

const data::DataSource& ensure_data(run::RunState& state) {
  // One loaded dataset per run directory and configuration; stages of one run share it.
  static std::mutex mutex;
  static std::string loaded_key;
  static std::shared_ptr<data::DataSource> loaded;
  const data::DataConfig config = data_config(state);
  const std::string key = state.dir.path() + "\n" + config_key(config);
  model::Model& m = ensure_model(state);
  std::lock_guard<std::mutex> lock(mutex);
  if (!loaded || loaded_key != key) {
    loaded.reset();
    loaded = data::DataSource::load(config);
    loaded_key = key;
  }
  const data::DataSource& d = *loaded;
  const auto& mc = m.config();
  const std::string where = "model " + model_path(state);

  const bool classifier = mc.task == model::Task::sequence_classification;
  if (mc.task == model::Task::base)
    throw UserError(where + " is a base model without a task head: evaluation and calibration need a causal_lm, masked_lm "
                            "or sequence_classification head (model.task_head)");
  if (classifier != (d.task() == data::TaskKind::classification))
    throw UserError("data " + d.dataset().name + " is a " + data::to_string(d.task()) + " dataset but " + where + " is a " +
                    model::to_string(mc.task) + " model" +
                    (classifier ? " (use a classification dataset: data.name kjv_testament, kjv_genre or kjv_books, or data.files with labels)"
                                : " (use a language-modelling dataset: data.name kjv, or text files)"));
  int32_t max_id = std::max(d.tokens().max_id(), d.pad_id());
  if (mc.task == model::Task::masked_lm) max_id = std::max(max_id, d.mask_id());
  if (max_id >= mc.vocab_size)
    throw UserError("data.tokenizer " + d.config().tokenizer + " produces token id " + std::to_string(max_id) + " but " + where +
                    " has a vocabulary of " + std::to_string(mc.vocab_size) + " (config.json vocab_size): use the model's own tokenizer");
  const int64_t positions = usable_positions(mc);
  if (positions > 0 && config.seq_len > positions)
    throw UserError("data.seq_len " + std::to_string(config.seq_len) + " is longer than the " + std::to_string(positions) +
                    " positions of " + where + " (config.json max_position_embeddings)");
  if (classifier && static_cast<int64_t>(d.dataset().label_names.size()) > mc.num_labels)
    throw UserError("data " + d.dataset().name + " has " + std::to_string(d.dataset().label_names.size()) + " classes (" +
                    strings::join(d.dataset().label_names, ", ") + ") but the classifier of " + where + " has " +
                    std::to_string(mc.num_labels) + " (config.json num_labels)");
  return d;
}

recipe::SchemaPtr calibration_schema() {
  using recipe::Schema;
  return Schema::structure()
      ->field("num_sequences", Schema::integer()->min(1), "Calibration sequences N, drawn from the train split of data:.", "128")
      ->field("seq_len", Schema::integer()->min(0), "Tokens per sequence L (0 = data.seq_len).", "0")
      ->field("batch_size", Schema::integer()->min(1), "Sequences per batch.", "8")
      ->field("seed", Schema::integer()->min(0), "Combined with the recipe seed to draw the sequences.", "0");
}

data::CalibrationOptions calibration_options(const recipe::Value& options, run::RunState& state) {
  data::CalibrationOptions o;
  o.num_sequences = options.get_int("num_sequences", 128);
  o.seq_len = options.get_int("seq_len", 0);
  if (o.seq_len == 0) o.seq_len = data_config(state).seq_len;
  o.batch_size = options.get_int("batch_size", 8);
  // A different stream per (recipe seed, option seed) pair, the same for equal pairs.
  data::SplitMix64 mix(state.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(options.get_int("seed", 0)));
  o.seed = mix.next();
  return o;
}

std::vector<data::Batch> calibration_batches(run::RunState& state, const data::CalibrationOptions& options) {
  const data::DataSource& d = ensure_data(state);
  const int64_t positions = usable_positions(state.model->config());
  if (positions > 0 && options.seq_len > positions)
    throw UserError("calibration seq_len " + std::to_string(options.seq_len) + " is longer than the " +
                    std::to_string(positions) + " positions of model " + model_path(state));
  return data::calibration_batches(d, options);
}

}  // namespace secateur::stages
