// `inspect`: records what the model is right now (family, dtype, parameters, per-layer heads /
// KV heads / FFN width), so a report shows the shape before and after each pruning stage.
#include "stages/model_access.h"
#include "stages/stage_kinds.h"
#include "util/log.h"
#include "util/strings.h"

namespace secateur::stages {
namespace {

class InspectStage : public recipe::Stage {
 public:
  explicit InspectStage(const recipe::Value& o) : per_layer_(o.get_bool("per_layer", true)) {}

  void run(run::RunState& state) override {
    nlohmann::json summary = model_summary(ensure_model(state));
    std::string line = state.stage_label() + "  " + summary["model_type"].get<std::string>() + " " +
                       summary["task"].get<std::string>() + "  " + summary["dtype"].get<std::string>() + "  params " +
                       strings::human_count(summary["params"].get<double>()) + "  layers " +
                       std::to_string(summary["layers"].get<int64_t>());
    log::info(line);
    if (per_layer_) {
      int index = 0;
      for (const auto& l : summary["per_layer"])
        log::info("    layer " + std::to_string(index++) + ": heads " + std::to_string(l["heads"].get<int64_t>()) +
                  ", kv " + std::to_string(l["kv_heads"].get<int64_t>()) + ", ffn " + std::to_string(l["ffn"].get<int64_t>()));
    } else {
      summary.erase("per_layer");
    }
    state.record(summary);
  }

 private:
  bool per_layer_;
};

}  // namespace

void register_inspect(recipe::Registry& registry) {
  auto schema = recipe::Schema::structure()->field("per_layer", recipe::Schema::boolean(),
                                                   "Also record each layer's heads, KV heads and FFN width.", "true");
  registry.add_stage({"inspect", "record the model's shape: parameters and per-layer heads / FFN width", schema,
                      [](const recipe::Value& o) { return std::make_unique<InspectStage>(o); }});
}

}  // namespace secateur::stages
