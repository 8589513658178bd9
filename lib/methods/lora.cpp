#include "methods/lora.h"

#include <cmath>

#include "util/error.h"

namespace secateur::methods {

Lora::Lora(const model::Model& model, LoraOptions options) : options_(options) {
  if (options_.rank < 1) throw UserError("lora: rank must be at least 1");
  for (const model::ProjectionWeight& pw : model::projection_weights(model)) {
    const torch::Tensor w = model.hf_parameter(pw.name);
    const int64_t out = w.size(pw.out_dim), in = w.size(1 - pw.out_dim);
    const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(w.device());
    Adapter ad;
    ad.out_dim = pw.out_dim;
    // peft: kaiming_uniform_(A, a = √5), i.e. U(−1/√in, 1/√in).
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    ad.a = torch::empty({options_.rank, in}, opts).uniform_(-bound, bound).requires_grad_(true);
    ad.b = torch::zeros({out, options_.rank}, opts).requires_grad_(true);
    adapters_[pw.name] = ad;
    order_.push_back(pw.name);
  }
}

std::vector<torch::Tensor> Lora::parameters() const {
  std::vector<torch::Tensor> out;
  for (const std::string& n : order_) out.push_back(adapters_.at(n).a), out.push_back(adapters_.at(n).b);
  return out;
}

torch::Tensor Lora::delta(const std::string& hf_name) const {
  const Adapter& ad = adapters_.at(hf_name);
  const torch::Tensor d = torch::matmul(ad.b, ad.a) * scaling();
  return ad.out_dim == 0 ? d : d.t();
}

torch::Tensor Lora::apply(const std::string& hf_name, const torch::Tensor& weight) const {
  if (adapters_.find(hf_name) == adapters_.end()) return weight;
  return weight + delta(hf_name).to(weight.dtype());
}

void Lora::merge_into(model::Model& model) {
  torch::NoGradGuard no_grad;
  for (const std::string& n : order_) {
    torch::Tensor w = model.hf_parameter(n);
    w.add_(delta(n).to(w.dtype()));
    adapters_.at(n).b.zero_();
  }
}

torch::Tensor Lora::importance(const std::string& hf_name, const torch::Tensor& weight, torch::Tensor a, torch::Tensor b,
                               torch::Tensor grad_a, torch::Tensor grad_b) const {
  torch::NoGradGuard no_grad;
  const Adapter& ad = adapters_.at(hf_name);
  if (!a.defined()) a = ad.a.detach();
  if (!b.defined()) b = ad.b.detach();
  if (!grad_a.defined()) grad_a = ad.a.grad().defined() ? ad.a.grad() : torch::zeros_like(a);
  if (!grad_b.defined()) grad_b = ad.b.grad().defined() ? ad.b.grad() : torch::zeros_like(b);
  // Eq. 9 with η = 1: ∂L/∂(BA) ≈ G_B·A + B·G_A − G_B·G_A, in the logical [out, in] layout.
  const torch::Tensor grad_ba = torch::matmul(grad_b, a) + torch::matmul(b, grad_a) - torch::matmul(grad_b, grad_a);
  const torch::Tensor w = (ad.out_dim == 0 ? weight : weight.t()).to(torch::kFloat);
  const torch::Tensor merged = w + torch::matmul(b, a) * scaling();
  const torch::Tensor imp = (grad_ba * merged).pow(2);  // eq. 10
  return ad.out_dim == 0 ? imp : imp.t();
}

}  // namespace secateur::methods
