#include "stages/sections.h"

#include "data/kjv.h"
#include "dist/launch.h"

namespace secateur::stages {

using recipe::Schema;

namespace {

void register_data_section(recipe::Registry& registry) {
  auto train = Schema::structure()
                   ->required("vocab_size", Schema::integer()->min(8), "Pieces in the vocabulary (at most the model's vocab_size).")
                   ->field("model_type", Schema::enumeration({"unigram", "bpe", "char", "word"}), "SentencePiece algorithm.",
                           "unigram")
                   ->field("character_coverage", Schema::number()->min(0, true)->max(1),
                           "Share of the text's characters the vocabulary must cover (rarer ones become <unk>).", "1.0")
                   ->field("byte_fallback", Schema::boolean(), "Characters outside the vocabulary become <0xNN> byte pieces.",
                           "false")
                   ->field("max_sentences", Schema::integer()->min(0),
                           "Train on the first N examples of the train split only (0 = all).", "0")
                   ->field("options", Schema::map_of(Schema::string()),
                           "Further sentencepiece trainer flags, verbatim, e.g. {split_digits: 'true'}.");
  auto tokenizer = Schema::union_of(
      {Schema::string(), Schema::structure()->required("train", train, "Train a SentencePiece model on data's train split.")});
  auto splits = Schema::structure()
                    ->field("validation", Schema::number()->min(0)->max(1, true), "Share of the examples held out for validation.", "0.05")
                    ->field("test", Schema::number()->min(0)->max(1, true), "Share of the examples held out for testing.", "0.05");
  auto data =
      Schema::structure()
          ->field("name", Schema::enumeration(data::builtin_dataset_names()),
                  "Built-in dataset (King James Bible, from Debian's bible-kjv): kjv = language modelling on its 31,102 "
                  "verses; kjv_testament / kjv_genre / kjv_books = which testament / genre (6) / book (66) a verse is "
                  "from. Fixed split by chapter.")
          ->field("files", Schema::list(Schema::string())->min_items(1),
                  "Instead of name: text files (one document per line), directories of them, JSONL, TSV or CSV.")
          ->field("task", Schema::enumeration({"auto", "language_modeling", "classification"}),
                  "What data.files hold; auto = classification for a sequence-classification model, else language modelling.",
                  "auto")
          ->field("format", Schema::enumeration({"auto", "text", "jsonl", "tsv", "csv"}),
                  "File format; auto = by extension (.jsonl/.json, .tsv, .csv, anything else text).", "auto")
          ->field("text_field", Schema::string(), "JSONL field / TSV or CSV column holding the text.", "text")
          ->field("text_pair_field", Schema::string(), "Field / column of the second text of pair tasks (none by default).")
          ->field("label_field", Schema::string(), "Field / column holding the class label (classification).", "label")
          ->field("labels", Schema::list(Schema::string())->min_items(1),
                  "Class names in id order (default: integer labels as they are, else the names sorted).")
          ->field("splits", splits, "Held-out shares for data.files, drawn by split_seed (built-ins have a fixed split).", "{}")
          ->field("split_seed", Schema::integer()->min(0),
                  "Seed of the train/validation/test split of data.files; separate from the recipe seed so that seed "
                  "sweeps evaluate on the same test set.", "0")
          ->field("tokenizer", tokenizer,
                  "tokenizer.json, SentencePiece .model, or a directory holding one (default: the model directory); "
                  "or {train: {...}}: a SentencePiece model trained on the dataset's train split, cached by corpus and options.")
          ->field("seq_len", Schema::integer()->min(1),
                  "Tokens per language-modelling block (and default perplexity context); classification: maximum "
                  "example length. At most the model's positions.", "128")
          ->field("batch_size", Schema::integer()->min(1), "Sequences per batch (evaluation; classification pads per batch).", "8")
          ->field("truncation", Schema::boolean(),
                  "Classification: cut examples longer than seq_len (keeping a final [SEP] / </s>); false makes them an error.",
                  "true")
          ->field("mlm_probability", Schema::number()->min(0, true)->max(1, true),
                  "Masked LM: share of tokens selected (80% [MASK], 10% random, 10% kept).", "0.15")
          ->field("cache", Schema::boolean(), "Keep token ids on disk, keyed by tokenizer and data, so runs skip tokenizing.", "true")
          ->field("cache_dir", Schema::string(),
                  "Token cache directory (default $SECATEUR_CACHE_DIR, else $XDG_CACHE_HOME/secateur, else ~/.cache/secateur).")
          ->check(
              [](const recipe::Value& v) -> std::string {
                if (v.has("name") == v.has("files")) return "exactly one of data.name or data.files";
                return "";
              },
              "");
  registry.add_section({"data", "Evaluation and calibration data: a built-in corpus or task, or files; tokenizer, "
                                "sequence length, splits, batch size.",
                        data, false});
}

}  // namespace

void register_sections(recipe::Registry& registry) {
  auto model = Schema::structure()
                   ->required("path", Schema::string(),
                              "HF model directory (config.json + model.safetensors or a sharded index), or a "
                              "TorchScript .pt whose config.json sits beside it. TorchScript runs code when loaded: "
                              "prefer safetensors for files from others.")
                   ->field("family", Schema::enumeration({"bert", "roberta", "gpt2", "llama", "mistral", "qwen2"}),
                           "Architecture; detected from config.json's model_type when absent.")
                   ->field("dtype", Schema::enumeration({"float32", "bfloat16", "float16"}),
                           "Weight dtype after loading.", "float32")
                   ->field("task_head",
                           Schema::enumeration({"base", "masked_lm", "causal_lm", "sequence_classification"}),
                           "Output head; from config.json's architectures when absent.")
                   ->field("init", Schema::enumeration({"weights", "random"}),
                           "weights = load the weights in path; random = build the architecture path/config.json "
                           "describes with HF's initialisation (normal(0, initializer_range), seeded by the recipe "
                           "seed) and no weights: pretraining from scratch.",
                           "weights")
                   ->field("head",
                           Schema::structure()
                               // Required, so that a recipe without `head:` gets no head group at all
                               // (absent option groups are filled in only when they validate empty).
                               ->required("task", Schema::enumeration({"base", "masked_lm", "causal_lm", "sequence_classification"}),
                                          "The new head.")
                               ->field("num_labels", Schema::integer()->min(1), "Classes of a sequence-classification head.", "2"),
                           "Replace the output head: keep the backbone's weights, add a newly initialised head (e.g. "
                           "fine-tune a pretrained masked LM as a classifier). task_head then names the new head.");
  registry.add_section({"model", "The model to prune: where it is and how to load it.", model, false});
  register_data_section(registry);
  registry.add_section({"distributed",
                        "Data-parallel training over several processes (torchrun, or srun with this section): "
                        "backend, timeout, gradient bucket size.",
                        dist::distributed_schema(), false});
}

}  // namespace secateur::stages
