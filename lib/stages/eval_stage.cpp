// `eval`: measures the model as it is now, on the recipe's `data:`, so that a report can put the
// dense and pruned models side by side:
//   causal LM            perplexity with HF's sliding-window protocol (context, stride recorded)
//   masked LM            cross-entropy and accuracy on BERT-masked tokens
//   classifier           accuracy, macro-F1 and cross-entropy
// and always parameters, FLOPs per token and per-layer shapes; throughput when asked.
#include <cmath>
#include <cstdio>

#include "dist/dist.h"
#include "eval/classification.h"
#include "eval/cost.h"
#include "eval/loss.h"
#include "eval/perplexity.h"
#include "model/prunable.h"
#include "stages/data_access.h"
#include "stages/model_access.h"
#include "stages/stage_kinds.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"
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
  explicit EvalStage(const recipe::Value& o)
      : split_(data::parse_split(o.get_string("split", "validation"))), context_(o.get_int("context", 0)),
        stride_(o.get_int("stride", 0)), batch_size_(o.get_int("batch_size", 0)), max_tokens_(o.get_int("max_tokens", 0)),
        max_examples_(o.get_int("max_examples", 0)), note_(o.get_string("note", "")) {
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
    const int64_t batch_size = batch_size_ > 0 ? batch_size_ : d.config().batch_size;
    torch::NoGradGuard no_grad;
    m.eval();

    json results = {{"split", data::to_string(split_)}, {"dataset", d.describe(split_)}};
    int64_t seq_len = d.config().seq_len;
    std::string headline;
    switch (m.config().task) {
      case model::Task::causal_lm: {
        eval::PerplexityOptions p;
        p.context = context_ > 0 ? context_ : d.config().seq_len;
        p.stride = stride_ > 0 ? stride_ : p.context;
        p.batch_size = batch_size;
        const int64_t positions = usable_positions(m.config());
        if (positions > 0 && p.context > positions)
          throw UserError(state.stage_label() + ": context " + std::to_string(p.context) + " is longer than the model's " +
                          std::to_string(positions) + " positions");
        if (p.stride > p.context)
          throw UserError(state.stage_label() + ": stride " + std::to_string(p.stride) + " is larger than context " +
                          std::to_string(p.context) + " (tokens between windows would never be scored)");
        const auto r = eval::perplexity(m, d.stream(split_, max_tokens_), p);
        seq_len = p.context;
        results.update({{"perplexity", r.perplexity}, {"loss", r.mean_nll}, {"protocol", r.protocol()},
                        {"tokens_scored", r.tokens_scored}, {"windows", r.windows}, {"context", r.context}, {"stride", r.stride}});
        headline = "perplexity " + fixed(r.perplexity, 3) + " (" + r.protocol() + ")";
        break;
      }
      case model::Task::masked_lm: {
        results.update(masked_lm(m, d.masked_blocks(split_, batch_size, state.seed, max_examples_)));
        results["protocol"] = "masked LM, " + strings::format_number(100 * d.config().mlm_probability) +
                              "% of tokens selected (80% [MASK] / 10% random / 10% kept), blocks of " +
                              std::to_string(seq_len) + ", seed " + std::to_string(state.seed);
        headline = "masked-token loss " + fixed(results["loss"].get<double>(), 4) + ", accuracy " +
                   fixed(results["accuracy"].get<double>(), 4) + " on " + std::to_string(results["masked_tokens"].get<int64_t>()) +
                   " masked tokens";
        break;
      }
      case model::Task::sequence_classification: {
        results.update(classify(m, d.labelled_batches(split_, batch_size, max_examples_)));
        headline = "accuracy " + fixed(results["accuracy"].get<double>(), 4) + ", macro-F1 " +
                   fixed(results["macro_f1"].get<double>(), 4) + " on " + std::to_string(results["examples"].get<int64_t>()) +
                   " examples";
        break;
      }
      case model::Task::base:
        throw UserError(state.stage_label() + ": a base model has no task head to evaluate");
    }

    // The model's cost at the length it was evaluated at.
    const json summary = model_summary(m);
    results.update({{"params", summary["params"]}, {"params_non_embedding", summary["params_non_embedding"]},
                    {"flops_per_token", model::flops_per_token(m.config(), seq_len)}, {"flops_seq_len", seq_len},
                    {"per_layer", summary["per_layer"]}});
    if (latency_) results.update(latency(state, m, d, batch_size));
    if (!note_.empty()) results["note"] = note_;
    state.record(results);
    log::info(state.stage_label() + "  " + data::to_string(split_) + "  " + headline + "  params " +
              strings::human_count(summary["params"].get<double>()) +
              (latency_ ? "  " + strings::human_count(results["tokens_per_s"].get<double>()) + " tokens/s" : ""));
  }

 private:
  // Under data parallelism each rank evaluates the batches it owns and the sums are added up
  // over ranks, so every rank reports the metrics of the whole split.
  static json masked_lm(model::Model& m, const std::vector<data::Batch>& all) {
    const auto device = m.device();
    const std::vector<data::Batch> batches = dist::owned(all);
    double loss = 0;
    int64_t tokens = 0, correct = 0;
    Progress progress("eval masked LM", static_cast<int64_t>(batches.size()), "batch");
    for (size_t k = 0; k < batches.size(); ++k) {
      const data::Batch b = batches[k].to(device);
      model::ForwardOptions f;
      f.token_type_ids = b.token_type_ids;
      const auto logits = m.forward(b.input_ids, b.attention_mask, nullptr, f).logits;
      const auto s = eval::task_loss_sum(model::Task::masked_lm, logits, b);
      loss += s.sum.item<double>();
      tokens += s.count.item<int64_t>();
      const auto scored = b.labels != -100;
      correct += (logits.argmax(-1).eq(b.labels) & scored).sum().item<int64_t>();
      progress.update(static_cast<int64_t>(k + 1));
    }
    progress.finish();
    std::vector<double> sums{loss, static_cast<double>(tokens), static_cast<double>(correct)};
    dist::sum_over_ranks(sums);
    loss = sums[0];
    tokens = static_cast<int64_t>(sums[1]);
    correct = static_cast<int64_t>(sums[2]);
    if (tokens == 0) throw UserError("eval: no token was selected for masking (data too short or data.mlm_probability too small)");
    return {{"loss", loss / static_cast<double>(tokens)}, {"accuracy", static_cast<double>(correct) / static_cast<double>(tokens)},
            {"masked_tokens", tokens}};
  }

  static json classify(model::Model& m, const std::vector<data::Batch>& all) {
    const auto device = m.device();
    const std::vector<data::Batch> batches = dist::owned(all);
    eval::ClassificationMetrics metrics(m.config().num_labels);
    double loss = 0;
    int64_t count = 0;
    Progress progress("eval classification", static_cast<int64_t>(batches.size()), "batch");
    for (size_t k = 0; k < batches.size(); ++k) {
      const data::Batch b = batches[k].to(device);
      model::ForwardOptions f;
      f.token_type_ids = b.token_type_ids;
      const auto logits = m.forward(b.input_ids, b.attention_mask, nullptr, f).logits;
      const auto s = eval::task_loss_sum(model::Task::sequence_classification, logits, b);
      loss += s.sum.item<double>();
      count += s.count.item<int64_t>();
      metrics.add(logits.to(torch::kFloat).cpu(), b.labels.cpu());
      progress.update(static_cast<int64_t>(k + 1));
    }
    progress.finish();
    metrics.sum_over_ranks();
    std::vector<double> sums{loss, static_cast<double>(count)};
    dist::sum_over_ranks(sums);
    loss = sums[0];
    count = static_cast<int64_t>(sums[1]);
    return {{"accuracy", metrics.accuracy()}, {"macro_f1", metrics.macro_f1()},
            {"loss", loss / static_cast<double>(std::max<int64_t>(1, count))}, {"examples", metrics.examples()}};
  }

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

  data::Split split_;
  int64_t context_, stride_, batch_size_, max_tokens_, max_examples_;
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
      Schema::structure()
          ->field("split", Schema::enumeration({"validation", "test"}), "Which split of data: to evaluate on.", "validation")
          ->field("context", Schema::integer()->min(0), "Causal LM: perplexity window in tokens (0 = data.seq_len).", "0")
          ->field("stride", Schema::integer()->min(0),
                  "Causal LM: tokens between window starts (0 = context: disjoint windows); smaller gives each scored "
                  "token more context.",
                  "0")
          ->field("batch_size", Schema::integer()->min(0), "Sequences per forward pass (0 = data.batch_size).", "0")
          ->field("max_tokens", Schema::integer()->min(0), "Causal LM: score at most this many tokens of the split (0 = all).", "0")
          ->field("max_examples", Schema::integer()->min(0),
                  "Classification: at most this many examples (a seeded subset); masked LM: at most this many blocks (0 = all).",
                  "0")
          ->field("latency", latency, "Also time the forward pass (tokens_per_s, latency_ms); absent = not measured.")
          ->field("note", Schema::string(), "A remark shown with the report (e.g. that the model is untrained).");
  registry.add_stage({"eval", "measure the model on data: (perplexity, masked-LM or classification metrics), its size and FLOPs",
                      schema, [](const recipe::Value& o) { return std::make_unique<EvalStage>(o); }});
}

}  // namespace secateur::stages
