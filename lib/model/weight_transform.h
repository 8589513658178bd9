#pragma once
// A weight transform: what a learned-weight method computes with in place of a projection's
// stored weight, e.g. movement pruning's W ⊙ M(S) or LoRA's W + (α/r)·B·A. It is given to one
// forward pass through ForwardOptions::weights and applies to the linear projections of every
// transformer layer (see projection_weights); embeddings, norms and heads are never transformed.
// Without a transform the forward pass is exactly the plain one.
#include <torch/torch.h>

#include <string>

namespace secateur::model {

class WeightTransform {
 public:
  virtual ~WeightTransform() = default;
  // The weight the forward pass uses for the projection whose HF parameter is `hf_name`; `weight`
  // is the live parameter in its HF layout (GPT-2's Conv1D weights are [in, out]). The result must
  // have the same shape; returning `weight` itself leaves that projection unchanged.
  virtual torch::Tensor apply(const std::string& hf_name, const torch::Tensor& weight) const = 0;
};

}  // namespace secateur::model
