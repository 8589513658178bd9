// `eval`: measures the model as it is now, on the recipe's `data:`, so that a report can put the
// dense and pruned models side by side:
//   causal LM            perplexity with HF's sliding-window protocol (context, stride recorded)
//   masked LM            cross-entropy and accuracy on BERT-masked tokens
//   classifier           accuracy, macro-F1 and cross-entropy
// and always parameters, FLOPs per token and per-layer shapes; throughput when asked. The task
// metrics live in stages/eval_metrics.h, which the prune stage's per-round evaluation shares.
#include <cmath>
#include <cstdio>

#include "eval/cost.h"
#include "model/prunable.h"
#include "stages/data_access.h"
#include "stages/eval_metrics.h"
#include "stages/model_access.h"
#include "stages/stage_kinds.h"
#include "util/error.h"
#include "util/log.h"
#include "util/strings.h"

namespace secateur::stages {
namespace {

using recipe::Schema;
using json = nlohmann::json;

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

class EvalStage : public recipe::Stage {
 public:
  explicit EvalStage(const recipe::Value& o) : options_(task_eval_options(o)), note_(o.get_string("note", "")) {
    if (const recipe::Value* l = o.find("latency")) {
      latency_ = true;
      latency_options_.batch_size = l->get_int("batch_size", 8);
      latency_options_.seq_len = l->get_int("seq_len", 0);
      latency_options_.repeats = static_cast<int>(l->get_int("repeats", 10));
      latency_options_.warmup = static_cast<int>(l->get_int("warmup", 3));
    }
  }

  void run(run::RunState& state) override {
    model::Model& m = ensure_model(state);
    const data::DataSource& d = ensure_data(state);
    const int64_t batch_size = options_.batch_size > 0 ? options_.batch_size : d.config().batch_size;
    torch::NoGradGuard no_grad;
    m.eval();

    const TaskEvalData inputs = task_eval_data(state, m, options_, state.stage_label());
    json results = inputs.info;
    results.update(task_metrics(m, inputs));
    std::string headline;
    switch (inputs.task) {
      case model::Task::causal_lm:
        headline = "perplexity " + fixed(results["perplexity"].get<double>(), 3) + " (" + results["protocol"].get<std::string>() + ")";
        break;
      case model::Task::masked_lm:
        headline = "masked-token loss " + fixed(results["loss"].get<double>(), 4) + ", accuracy " +
                   fixed(results["accuracy"].get<double>(), 4) + " on " + std::to_string(results["masked_tokens"].get<int64_t>()) +
                   " masked tokens";
        break;
      case model::Task::sequence_classification:
        headline = "accuracy " + fixed(results["accuracy"].get<double>(), 4) + ", macro-F1 " +
                   fixed(results["macro_f1"].get<double>(), 4) + " on " + std::to_string(results["examples"].get<int64_t>()) +
                   " examples";
        break;
      case model::Task::base: break;  // task_eval_data() refused it
    }

    // The model's cost at the length it was evaluated at.
    const int64_t seq_len = inputs.seq_len;
    const json summary = model_summary(m);
    results.update({{"params", summary["params"]}, {"params_non_embedding", summary["params_non_embedding"]},
                    {"flops_per_token", model::flops_per_token(m.config(), seq_len)}, {"flops_seq_len", seq_len},
                    {"per_layer", summary["per_layer"]}});
    if (latency_) results.update(latency(state, m, d, batch_size));
    if (!note_.empty()) results["note"] = note_;
    state.record(results);
    log::info(state.stage_label() + "  " + data::to_string(options_.split) + "  " + headline + "  params " +
              strings::human_count(summary["params"].get<double>()) +
              (latency_ ? "  " + strings::human_count(results["tokens_per_s"].get<double>()) + " tokens/s" : ""));
  }

 private:
  json latency(run::RunState& state, model::Model& m, const data::DataSource& d, int64_t batch_size) {
    eval::LatencyOptions o = latency_options_;
    if (o.seq_len == 0) o.seq_len = d.config().seq_len;
    const int64_t positions = usable_positions(m.config());
    if (positions > 0 && o.seq_len > positions)
      throw UserError(state.stage_label() + ": latency.seq_len " + std::to_string(o.seq_len) + " is longer than the model's " +
                      std::to_string(positions) + " positions");
    const auto r = eval::measure_latency(m, o);
    json out = {{"tokens_per_s", r.tokens_per_s}, {"latency_ms", r.median_ms}, {"latency_min_ms", r.min_ms},
                {"latency_max_ms", r.max_ms}, {"latency_batch_size", r.batch_size}, {"latency_seq_len", r.seq_len},
                {"latency_repeats", r.repeats}};
    if (r.peak_memory_bytes >= 0) out["peak_memory_bytes"] = r.peak_memory_bytes;
    return out;
  }

  TaskEvalOptions options_;
  std::string note_;
  bool latency_ = false;
  eval::LatencyOptions latency_options_;
};

}  // namespace

void register_eval(recipe::Registry& registry) {
  auto latency = Schema::structure()
                     ->field("batch_size", Schema::integer()->min(1), "Sequences per timed forward pass.", "8")
                     ->field("seq_len", Schema::integer()->min(0), "Tokens per sequence (0 = data.seq_len).", "0")
                     ->field("repeats", Schema::integer()->min(1), "Timed passes; the median is reported.", "10")
                     ->field("warmup", Schema::integer()->min(0), "Untimed passes first.", "3");
  auto schema =
      task_eval_schema()
          ->field("latency", latency, "Also time the forward pass (tokens_per_s, latency_ms); absent = not measured.")
          ->field("note", Schema::string(), "A remark shown with the report (e.g. that the model is untrained).");
  registry.add_stage({"eval", "measure the model on data: (perplexity, masked-LM or classification metrics), its size and FLOPs",
                      schema, [](const recipe::Value& o) { return std::make_unique<EvalStage>(o); }});
}

}  // namespace secateur::stages
