#include "stages/eval_metrics.h"

#include "dist/dist.h"
#include "eval/classification.h"
#include "eval/graphed_forward.h"
#include "eval/loss.h"
#include "stages/data_access.h"
#include "util/error.h"
#include "util/progress.h"
#include "util/strings.h"

namespace secateur::stages {

using recipe::Schema;
using json = nlohmann::json;

recipe::SchemaBuilder task_eval_schema() {
  return Schema::structure()
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
      ->field("cuda_graph", Schema::boolean(),
              "On a GPU, replay each pass as a CUDA graph, one capture per batch shape (false: run eagerly, e.g. to "
              "spare the graphs' memory). Never through the masks of a pruning curve.",
              "true");
}

TaskEvalOptions task_eval_options(const recipe::Value& o) {
  TaskEvalOptions t;
  t.split = data::parse_split(o.get_string("split", "validation"));
  t.context = o.get_int("context", 0);
  t.stride = o.get_int("stride", 0);
  t.batch_size = o.get_int("batch_size", 0);
  t.max_tokens = o.get_int("max_tokens", 0);
  t.max_examples = o.get_int("max_examples", 0);
  t.cuda_graph = o.get_bool("cuda_graph", true);
  return t;
}

TaskEvalData task_eval_data(run::RunState& state, model::Model& m, const TaskEvalOptions& o, const std::string& where) {
  const data::DataSource& d = ensure_data(state);
  const int64_t batch_size = o.batch_size > 0 ? o.batch_size : d.config().batch_size;
  TaskEvalData out;
  out.task = m.config().task;
  out.cuda_graph = o.cuda_graph;
  out.info = {{"split", data::to_string(o.split)}, {"dataset", d.describe(o.split)}};
  out.seq_len = d.config().seq_len;
  switch (out.task) {
    case model::Task::causal_lm: {
      eval::PerplexityOptions& p = out.perplexity;
      p.context = o.context > 0 ? o.context : d.config().seq_len;
      p.stride = o.stride > 0 ? o.stride : p.context;
      p.batch_size = batch_size;
      p.cuda_graph = o.cuda_graph;
      const int64_t positions = usable_positions(m.config());
      if (positions > 0 && p.context > positions)
        throw UserError(where + ": context " + std::to_string(p.context) + " is longer than the model's " +
                        std::to_string(positions) + " positions");
      if (p.stride > p.context)
        throw UserError(where + ": stride " + std::to_string(p.stride) + " is larger than context " +
                        std::to_string(p.context) + " (tokens between windows would never be scored)");
      out.stream = d.stream(o.split, o.max_tokens);
      out.seq_len = p.context;
      break;
    }
    case model::Task::masked_lm:
      out.batches = d.masked_blocks(o.split, batch_size, state.seed, o.max_examples);
      out.info["protocol"] = "masked LM, " + strings::format_number(100 * d.config().mlm_probability) +
                             "% of tokens selected (80% [MASK] / 10% random / 10% kept), blocks of " +
                             std::to_string(out.seq_len) + ", seed " + std::to_string(state.seed);
      break;
    case model::Task::sequence_classification:
      out.batches = d.labelled_batches(o.split, batch_size, o.max_examples);
      break;
    case model::Task::base:
      throw UserError(where + ": a base model has no task head to evaluate");
  }
  return out;
}

namespace {

// The model's logits on this rank's share of `all`, batch by batch, with a progress line:
// visit(batch on the model's device, logits). The forward replays as a CUDA graph on a GPU, except
// through gates (they change between calls); the logits are then the graph's output, overwritten
// by the next batch's forward, so `visit` consumes them before returning.
template <class Visit>
void for_each_logits(model::Model& m, const std::vector<data::Batch>& all, const model::Gates* gates, bool graphed,
                     const char* label, Visit&& visit) {
  const std::vector<data::Batch> batches = dist::owned(all);
  eval::GraphedForward forward(
      [&m, gates](const data::Batch& b) {
        model::ForwardOptions f;
        f.token_type_ids = b.token_type_ids;
        // data::Batch::to dropped the mask on its way to the GPU unless it hides some token, so a
        // device mask is a padded one: no read of it back to the host, which a graph cannot hold.
        if (b.attention_mask.defined() && b.attention_mask.is_cuda()) f.attention_mask_padded = true;
        return std::vector<torch::Tensor>{m.forward(b.input_ids, b.attention_mask, gates, f).logits};
      },
      m.device(), graphed && gates == nullptr);
  Progress progress(label, static_cast<int64_t>(batches.size()), "batch");
  for (size_t k = 0; k < batches.size(); ++k) {
    const data::Batch b = batches[k].to(m.device());
    visit(b, forward(b).front());
    progress.update(static_cast<int64_t>(k + 1));
  }
  progress.finish();
}

json masked_lm(model::Model& m, const std::vector<data::Batch>& all, const model::Gates* gates, bool graphed) {
  double loss = 0;
  int64_t tokens = 0, correct = 0;
  for_each_logits(m, all, gates, graphed, "eval masked LM", [&](const data::Batch& b, const torch::Tensor& logits) {
    const auto s = eval::task_loss_sum(model::Task::masked_lm, logits, b);
    loss += s.sum.item<double>();
    tokens += s.count.item<int64_t>();
    const auto scored = b.labels != -100;
    correct += (logits.argmax(-1).eq(b.labels) & scored).sum().item<int64_t>();
  });
  std::vector<double> sums{loss, static_cast<double>(tokens), static_cast<double>(correct)};
  dist::sum_over_ranks(sums);
  loss = sums[0];
  tokens = static_cast<int64_t>(sums[1]);
  correct = static_cast<int64_t>(sums[2]);
  if (tokens == 0) throw UserError("eval: no token was selected for masking (data too short or data.mlm_probability too small)");
  return {{"loss", loss / static_cast<double>(tokens)}, {"accuracy", static_cast<double>(correct) / static_cast<double>(tokens)},
          {"masked_tokens", tokens}};
}

json classify(model::Model& m, const std::vector<data::Batch>& all, const model::Gates* gates, bool graphed) {
  eval::ClassificationMetrics metrics(m.config().num_labels);
  double loss = 0;
  int64_t count = 0;
  for_each_logits(m, all, gates, graphed, "eval classification", [&](const data::Batch& b, const torch::Tensor& logits) {
    const auto s = eval::task_loss_sum(model::Task::sequence_classification, logits, b);
    loss += s.sum.item<double>();
    count += s.count.item<int64_t>();
    metrics.add(logits.to(torch::kFloat).cpu(), b.labels.cpu());
  });
  metrics.sum_over_ranks();
  std::vector<double> sums{loss, static_cast<double>(count)};
  dist::sum_over_ranks(sums);
  loss = sums[0];
  count = static_cast<int64_t>(sums[1]);
  return {{"accuracy", metrics.accuracy()}, {"macro_f1", metrics.macro_f1()},
          {"loss", loss / static_cast<double>(std::max<int64_t>(1, count))}, {"examples", metrics.examples()}};
}

}  // namespace

json task_metrics(model::Model& m, const TaskEvalData& data, const model::Gates* gates) {
  torch::NoGradGuard no_grad;
  // Eval mode for the measurement, the caller's mode back afterwards.
  struct EvalMode {
    model::Model& m;
    const bool was_training;
    explicit EvalMode(model::Model& model) : m(model), was_training(model.is_training()) { m.eval(); }
    ~EvalMode() { m.train(was_training); }
  } eval_mode(m);
  switch (data.task) {
    case model::Task::causal_lm: {
      const auto r = eval::perplexity(m, data.stream, data.perplexity, gates);
      return {{"perplexity", r.perplexity}, {"loss", r.mean_nll}, {"protocol", r.protocol()}, {"tokens_scored", r.tokens_scored},
              {"windows", r.windows}, {"context", r.context}, {"stride", r.stride}};
    }
    case model::Task::masked_lm: return masked_lm(m, data.batches, gates, data.cuda_graph);
    case model::Task::sequence_classification: return classify(m, data.batches, gates, data.cuda_graph);
    case model::Task::base: break;
  }
  throw UserError("eval: a base model has no task head to evaluate");
}

std::vector<std::string> curve_metric_keys(model::Task task) {
  switch (task) {
    case model::Task::causal_lm: return {"perplexity", "loss"};
    case model::Task::masked_lm: return {"accuracy", "loss"};
    case model::Task::sequence_classification: return {"accuracy", "macro_f1", "loss"};
    case model::Task::base: break;
  }
  return {};
}

}  // namespace secateur::stages
