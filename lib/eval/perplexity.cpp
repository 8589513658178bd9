#include "eval/perplexity.h"

#include <cmath>

#include "dist/dist.h"
#include "eval/graphed_forward.h"
#include "eval/loss.h"
#include "util/error.h"
#include "util/progress.h"

namespace secateur::eval {

std::string PerplexityResult::protocol() const {
  return "sliding window, context " + std::to_string(context) + ", stride " + std::to_string(stride) + ", " +
         std::to_string(tokens_scored) + " tokens";
}

namespace {

struct Window {
  int64_t begin, end, target_len;  // scores tokens [end - target_len, end)
};

std::vector<Window> windows_of(int64_t length, int64_t context, int64_t stride) {
  std::vector<Window> out;
  int64_t previous_end = 0;
  for (int64_t begin = 0; begin < length; begin += stride) {
    int64_t end = std::min(begin + context, length);
    out.push_back({begin, end, end - previous_end});
    previous_end = end;
    if (end == length) break;
  }
  return out;
}

// Windows [first, last) that share a forward pass: up to batch_size consecutive windows of equal
// length.
struct Pass {
  size_t first, last;
};

std::vector<Pass> passes_of(const std::vector<Window>& windows, int64_t batch_size) {
  std::vector<Pass> out;
  for (size_t i = 0; i < windows.size();) {
    size_t j = i;
    const int64_t length = windows[i].end - windows[i].begin;
    while (j < windows.size() && static_cast<int64_t>(j - i) < batch_size && windows[j].end - windows[j].begin == length) ++j;
    out.push_back({i, j});
    i = j;
  }
  return out;
}

}  // namespace

PerplexityResult perplexity(model::Model& model, const torch::Tensor& tokens, const PerplexityOptions& o,
                            const model::Gates* gates) {
  if (!model.config().is_causal() || model.config().task != model::Task::causal_lm)
    throw UserError("perplexity needs a causal LM (got a " + model::to_string(model.config().task) + " " +
                    model.config().model_type + " model)");
  if (o.context < 2 || o.stride < 1 || o.stride > o.context)
    throw UserError("perplexity: need context ≥ 2 and 1 ≤ stride ≤ context (got context " + std::to_string(o.context) +
                    ", stride " + std::to_string(o.stride) + ")");
  const int64_t max_positions = model.config().max_position_embeddings;
  if (max_positions > 0 && o.context > max_positions)
    throw UserError("perplexity context " + std::to_string(o.context) + " is longer than the model's " +
                    std::to_string(max_positions) + " positions");
  if (tokens.dim() != 1 || tokens.size(0) < 2) throw UserError("perplexity: the evaluation text has fewer than 2 tokens");

  torch::NoGradGuard no_grad;
  model.eval();
  const auto device = model.device();
  const auto windows = windows_of(tokens.size(0), o.context, o.stride);
  torch::Tensor nll_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  torch::Tensor count = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device));
  // Under data parallelism each rank runs its share of the passes; the sums add up over ranks.
  const std::vector<Pass> passes = dist::owned(passes_of(windows, o.batch_size));
  int64_t mine = 0, done = 0;
  for (const Pass& pass : passes) mine += static_cast<int64_t>(pass.last - pass.first);
  // A pass (forward and loss) replays as a CUDA graph on a GPU, except through gates: they change
  // between calls (iterative pruning), and a graph would keep reading the ones it was captured with.
  GraphedForward pass_loss(
      [&model, gates](const data::Batch& b) {
        const LossSum s = task_loss_sum(model::Task::causal_lm, model.forward(b.input_ids, {}, gates).logits, b);
        return std::vector<torch::Tensor>{s.sum, s.count};
      },
      device, o.cuda_graph && gates == nullptr);
  Progress progress("perplexity", mine, "win");
  for (const Pass& pass : passes) {
    const int64_t length = windows[pass.first].end - windows[pass.first].begin;
    std::vector<torch::Tensor> inputs, labels;
    for (size_t j = pass.first; j < pass.last; ++j) {
      auto ids = tokens.slice(0, windows[j].begin, windows[j].end);
      auto lab = ids.clone();
      lab.slice(0, 0, length - windows[j].target_len).fill_(-100);  // context only, already scored
      inputs.push_back(ids);
      labels.push_back(lab);
    }
    data::Batch batch;
    batch.input_ids = torch::stack(inputs).to(device);
    batch.labels = torch::stack(labels).to(device);
    const std::vector<torch::Tensor> s = pass_loss(batch);  // consumed before the next pass overwrites it
    nll_sum += s[0].to(torch::kDouble);
    count += s[1];
    done += static_cast<int64_t>(pass.last - pass.first);
    progress.update(done);
  }
  progress.finish();
  std::vector<torch::Tensor> sums{nll_sum, count};
  dist::all_reduce_sum(sums);
  PerplexityResult r;
  r.tokens_scored = count.item<int64_t>();
  r.mean_nll = nll_sum.item<double>() / static_cast<double>(std::max<int64_t>(1, r.tokens_scored));
  r.perplexity = std::exp(r.mean_nll);
  r.windows = static_cast<int64_t>(windows.size());
  r.context = o.context;
  r.stride = o.stride;
  return r;
}

}  // namespace secateur::eval
