#include "stages/sections.h"

namespace secateur::stages {

using recipe::Schema;

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
                           "Output head; from config.json's architectures when absent.");
  registry.add_section({"model", "The model to prune: where it is and how to load it.", model, false});
}

}  // namespace secateur::stages
