#pragma once
// Perplexity of a causal LM over one long token stream with HF's sliding-window method
// (transformers docs, "Perplexity of fixed-length models"): windows of `context` tokens start
// every `stride` tokens; each window scores only the tokens the previous window did not, using
// everything before them in the window as context. stride == context gives disjoint windows (what
// LLM-Pruner and FLAP report at context 128); stride < context gives each token more context.
// Papers disagree on the protocol, so the result always carries it.
#include <torch/torch.h>

#include <string>

#include "model/model.h"

namespace secateur::eval {

struct PerplexityOptions {
  int64_t context = 2048;
  int64_t stride = 2048;
  int64_t batch_size = 8;  // windows per forward pass
  bool cuda_graph = true;  // on a GPU, passes (forward + loss) replay as CUDA graphs when no gates are given
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;        // natural log
  int64_t tokens_scored = 0;
  int64_t windows = 0;
  int64_t context = 0, stride = 0;
  std::string protocol() const;  // "sliding window, context 128, stride 128, 12345 tokens"
};

// `tokens`: 1-D int64 ids of the whole evaluation text. The model runs in eval mode without
// gradients on its own device; logits are reduced in fp32. Under data parallelism every rank
// passes the same text, runs its share of the windows and gets the perplexity of all of them.
// `gates` (optional) are handed to every forward pass: the model evaluated through masks, as the
// prune stage's per-round curve does.
PerplexityResult perplexity(model::Model& model, const torch::Tensor& tokens, const PerplexityOptions& options,
                            const model::Gates* gates = nullptr);

}  // namespace secateur::eval
