#include "kernels/fused.h"

#include <optional>
#include <vector>

#ifdef SECATEUR_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/fused_kernels.h"
#endif

namespace secateur::kernels {

namespace {

// cat(x₂, x₁) for x = cat(x₁, x₂) along the last dim: one flip of the [..., 2, D/2] view (the same
// swap as model::apply_rope's).
torch::Tensor swap_halves(const torch::Tensor& x) {
  std::vector<int64_t> pairs = x.sizes().vec();
  pairs.back() /= 2;
  pairs.insert(pairs.end() - 1, 2);
  return torch::flip(x.reshape(pairs), {-2}).reshape(x.sizes());
}

torch::Tensor silu_mul_aten(const torch::Tensor& gate, const torch::Tensor& up) { return torch::silu(gate) * up; }

torch::Tensor rope_aten(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin_signed) {
  const torch::Tensor c = cos.unsqueeze(1);  // [T, 1, D] against [B, T, H, D]
  const torch::Tensor s = sin_signed.unsqueeze(1);
  if (cos.scalar_type() == x.scalar_type()) {
    // x·cos is a fresh tensor autograd does not save, so the in-place add is safe with gradients.
    torch::Tensor out = x * c;
    return out.addcmul_(swap_halves(x), s);
  }
  // fp32 tables for a narrower x: in fp32, rounded once to x's dtype, as the kernel does.
  torch::Tensor out = x.to(torch::kFloat) * c;
  return out.addcmul_(swap_halves(x).to(torch::kFloat), s).to(x.scalar_type());
}

CrossEntropySum cross_entropy_aten(const torch::Tensor& logits, const torch::Tensor& targets, int64_t ignore_index) {
  const torch::Tensor log_probs = torch::log_softmax(logits.reshape({-1, logits.size(-1)}), -1, torch::kFloat);
  torch::Tensor sum = torch::nll_loss(log_probs, targets.reshape({-1}), {}, at::Reduction::Sum, ignore_index);
  return {sum, (targets != ignore_index).sum()};
}

AddRmsNorm add_rms_norm_aten(const torch::Tensor& x, const torch::Tensor& branch, const torch::Tensor& weight,
                             double eps) {
  torch::Tensor sum = x + branch;
  const torch::Tensor s = sum.to(torch::kFloat);
  const torch::Tensor rstd = torch::rsqrt(s.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return {sum, (s * rstd * weight.to(torch::kFloat)).to(x.scalar_type())};
}

#ifdef SECATEUR_CUDA_KERNELS

std::optional<cuda::DType> kernel_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return cuda::DType::f32;
    case torch::kHalf: return cuda::DType::f16;
    case torch::kBFloat16: return cuda::DType::bf16;
    default: return std::nullopt;
  }
}

void check_launch(int code, const char* what) {
  TORCH_CHECK(code == 0, "secateur::kernels::", what, ": CUDA kernel failed to launch: ", cuda::error_string(code));
}

void* current_stream(const torch::Tensor& t) {
  return static_cast<void*>(c10::cuda::getCurrentCUDAStream(t.device().index()).stream());
}

// The element stride from one row to the next of t viewed as [numel / cols, cols] with the last dim
// contiguous, or −1 when its leading dims do not collapse into one (then the caller copies it).
int64_t row_stride(const torch::Tensor& t) {
  const int64_t last = t.dim() - 1;
  if (t.size(last) > 1 && t.stride(last) != 1) return -1;
  int64_t stride = -1;  // fixed by the innermost leading dim of size > 1
  int64_t rows = 1;     // rows one step of the current dim spans
  for (int64_t i = last - 1; i >= 0; --i) {
    const int64_t n = t.size(i);
    if (n == 1) continue;
    if (stride < 0) {
      stride = t.stride(i);
    } else if (t.stride(i) != stride * rows) {
      return -1;
    }
    rows *= n;
  }
  return stride < 0 ? t.size(last) : stride;  // a single row: any stride does
}

torch::Tensor silu_mul_kernel(const torch::Tensor& gate_in, const torch::Tensor& up_in, cuda::DType dtype) {
  torch::Tensor gate = gate_in;
  torch::Tensor up = up_in;
  int64_t gate_stride = row_stride(gate);
  if (gate_stride < 0) {
    gate = gate.contiguous();
    gate_stride = gate.size(-1);
  }
  int64_t up_stride = row_stride(up);
  if (up_stride < 0) {
    up = up.contiguous();
    up_stride = up.size(-1);
  }
  torch::Tensor out = torch::empty(gate.sizes(), gate.options());
  const int64_t cols = gate.size(-1);
  if (out.numel() == 0) return out;
  const int64_t rows = gate.numel() / cols;
  const c10::cuda::CUDAGuard guard(gate.device());
  check_launch(cuda::silu_mul(dtype, gate.data_ptr(), gate_stride, up.data_ptr(), up_stride, out.data_ptr(), rows,
                              cols, current_stream(gate)),
               "silu_mul");
  return out;
}

torch::Tensor rope_kernel(const torch::Tensor& x_in, const torch::Tensor& cos_in, const torch::Tensor& sin_in,
                          cuda::DType dtype, cuda::DType table_dtype) {
  const torch::Tensor x = x_in.size(3) > 1 && x_in.stride(3) != 1 ? x_in.contiguous() : x_in;
  const torch::Tensor cos = cos_in.contiguous();
  const torch::Tensor sin_signed = sin_in.contiguous();
  torch::Tensor out = torch::empty(x.sizes(), x.options());
  if (out.numel() == 0) return out;
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(cuda::rope(dtype, table_dtype, x.data_ptr(), x.size(0), x.size(1), x.size(2), x.size(3), x.stride(0),
                          x.stride(1), x.stride(2), cos.data_ptr(), sin_signed.data_ptr(), out.data_ptr(),
                          current_stream(x)),
               "rope");
  return out;
}

CrossEntropySum cross_entropy_kernel(const torch::Tensor& logits_in, const torch::Tensor& targets_in,
                                     int64_t ignore_index, cuda::DType dtype) {
  // As [B, T, V] and [B, T]; only more than two leading dims may need a copy to get there.
  const int64_t V = logits_in.size(-1);
  torch::Tensor logits = logits_in;
  torch::Tensor targets = targets_in;
  if (logits.dim() == 1) {
    logits = logits.view({1, 1, V});
    targets = targets.view({1, 1});
  } else if (logits.dim() == 2) {
    logits = logits.unsqueeze(0);
    targets = targets.unsqueeze(0);
  } else if (logits.dim() > 3) {
    logits = logits.reshape({-1, logits.size(-2), V});
    targets = targets.reshape({-1, targets.size(-1)});
  }
  if (V > 1 && logits.stride(2) != 1) logits = logits.contiguous();
  const int64_t B = logits.size(0);
  const int64_t T = logits.size(1);
  const c10::cuda::CUDAGuard guard(logits.device());
  const torch::Tensor losses = torch::empty({B * T}, logits.options().dtype(torch::kFloat));
  check_launch(cuda::cross_entropy_rows(dtype, logits.data_ptr(), B, T, V, logits.stride(0), logits.stride(1),
                                        targets.data_ptr<int64_t>(), targets.stride(0), targets.stride(1),
                                        ignore_index, losses.data_ptr<float>(), current_stream(logits)),
               "token_cross_entropy");
  return {losses.sum(torch::kDouble).to(torch::kFloat), (targets_in != ignore_index).sum()};
}

AddRmsNorm add_rms_norm_kernel(const torch::Tensor& x_in, const torch::Tensor& branch_in, const torch::Tensor& weight_in,
                               double eps, cuda::DType dtype) {
  const torch::Tensor x = x_in.contiguous();
  const torch::Tensor branch = branch_in.contiguous();
  const torch::Tensor weight = weight_in.contiguous();
  AddRmsNorm out{torch::empty(x.sizes(), x.options()), torch::empty(x.sizes(), x.options())};
  const int64_t cols = x.size(-1);
  if (x.numel() == 0) return out;
  const c10::cuda::CUDAGuard guard(x.device());
  check_launch(cuda::add_rms_norm(dtype, x.data_ptr(), branch.data_ptr(), weight.data_ptr(), out.sum.data_ptr(),
                                  out.normed.data_ptr(), x.numel() / cols, cols, static_cast<float>(eps),
                                  current_stream(x)),
               "add_rms_norm");
  return out;
}

#endif  // SECATEUR_CUDA_KERNELS

}  // namespace

bool compiled() {
#ifdef SECATEUR_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

bool launches(at::TensorList inputs) {
  if (!compiled() || inputs.empty()) return false;
  const bool grad = torch::GradMode::is_enabled();
  for (const torch::Tensor& t : inputs) {
    if (!t.defined()) continue;
    if (!t.is_cuda() || (grad && t.requires_grad())) return false;
  }
  return true;
}

bool supports(torch::ScalarType dtype) {
  return dtype == torch::kFloat || dtype == torch::kHalf || dtype == torch::kBFloat16;
}

torch::Tensor silu_mul(const torch::Tensor& gate, const torch::Tensor& up) {
  TORCH_CHECK(gate.defined() && up.defined(), "kernels::silu_mul: gate and up must be defined");
  TORCH_CHECK(gate.dim() >= 1, "kernels::silu_mul: gate and up need at least one dim, got a scalar");
  TORCH_CHECK(gate.sizes() == up.sizes(), "kernels::silu_mul: gate ", gate.sizes(), " and up ", up.sizes(),
              " differ in shape");
  TORCH_CHECK(gate.scalar_type() == up.scalar_type(), "kernels::silu_mul: gate (", gate.scalar_type(), ") and up (",
              up.scalar_type(), ") differ in dtype");
  TORCH_CHECK(gate.device() == up.device(), "kernels::silu_mul: gate on ", gate.device(), " and up on ", up.device());
#ifdef SECATEUR_CUDA_KERNELS
  if (const auto dtype = kernel_dtype(gate.scalar_type()); dtype && launches({gate, up}))
    return silu_mul_kernel(gate, up, *dtype);
#endif
  return silu_mul_aten(gate, up);
}

torch::Tensor rope(const torch::Tensor& x_bthd, const torch::Tensor& cos, const torch::Tensor& sin_signed) {
  TORCH_CHECK(x_bthd.defined() && cos.defined() && sin_signed.defined(), "kernels::rope: undefined input");
  TORCH_CHECK(x_bthd.dim() == 4, "kernels::rope: x must be [B, T, H, D], got ", x_bthd.sizes());
  const int64_t T = x_bthd.size(1);
  const int64_t D = x_bthd.size(3);
  TORCH_CHECK(D % 2 == 0, "kernels::rope: head dim D = ", D, " must be even");
  TORCH_CHECK(cos.dim() == 2 && cos.size(0) == T && cos.size(1) == D, "kernels::rope: cos must be [T, D] = [", T,
              ", ", D, "] for x ", x_bthd.sizes(), ", got ", cos.sizes());
  TORCH_CHECK(sin_signed.sizes() == cos.sizes(), "kernels::rope: sin_signed ", sin_signed.sizes(),
              " and cos ", cos.sizes(), " differ in shape");
  TORCH_CHECK(cos.scalar_type() == sin_signed.scalar_type(), "kernels::rope: cos (", cos.scalar_type(),
              ") and sin_signed (", sin_signed.scalar_type(), ") differ in dtype");
  TORCH_CHECK(cos.scalar_type() == x_bthd.scalar_type() || cos.scalar_type() == torch::kFloat,
              "kernels::rope: the tables must have x's dtype (", x_bthd.scalar_type(), ") or be fp32, got ",
              cos.scalar_type());
  TORCH_CHECK(cos.device() == x_bthd.device() && sin_signed.device() == x_bthd.device(),
              "kernels::rope: x on ", x_bthd.device(), ", cos on ", cos.device(), ", sin_signed on ",
              sin_signed.device());
#ifdef SECATEUR_CUDA_KERNELS
  const auto dtype = kernel_dtype(x_bthd.scalar_type());
  const auto table_dtype = kernel_dtype(cos.scalar_type());
  if (dtype && table_dtype && launches({x_bthd, cos, sin_signed}))
    return rope_kernel(x_bthd, cos, sin_signed, *dtype, *table_dtype);
#endif
  return rope_aten(x_bthd, cos, sin_signed);
}

CrossEntropySum token_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, int64_t ignore_index) {
  TORCH_CHECK(logits.defined() && targets.defined(), "kernels::token_cross_entropy: undefined input");
  TORCH_CHECK(logits.dim() >= 1 && logits.size(-1) > 0,
              "kernels::token_cross_entropy: logits must be [..., V] with V > 0, got ", logits.sizes());
  TORCH_CHECK(targets.sizes() == logits.sizes().slice(0, logits.dim() - 1), "kernels::token_cross_entropy: targets ",
              targets.sizes(), " must have the logits' shape without the last dim (logits ", logits.sizes(), ")");
  TORCH_CHECK(targets.scalar_type() == torch::kLong, "kernels::token_cross_entropy: targets must be int64, got ",
              targets.scalar_type());
  TORCH_CHECK(targets.device() == logits.device(), "kernels::token_cross_entropy: logits on ", logits.device(),
              " and targets on ", targets.device());
#ifdef SECATEUR_CUDA_KERNELS
  if (const auto dtype = kernel_dtype(logits.scalar_type()); dtype && launches({logits, targets}))
    return cross_entropy_kernel(logits, targets, ignore_index, *dtype);
#endif
  return cross_entropy_aten(logits, targets, ignore_index);
}

AddRmsNorm add_rms_norm(const torch::Tensor& x, const torch::Tensor& branch, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(x.defined() && branch.defined() && weight.defined(), "kernels::add_rms_norm: undefined input");
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) > 0, "kernels::add_rms_norm: x must be [..., H] with H > 0, got ", x.sizes());
  TORCH_CHECK(branch.sizes() == x.sizes(), "kernels::add_rms_norm: x ", x.sizes(), " and branch ", branch.sizes(),
              " differ in shape");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1), "kernels::add_rms_norm: weight must be [",
              x.size(-1), "], got ", weight.sizes());
  TORCH_CHECK(branch.scalar_type() == x.scalar_type() && weight.scalar_type() == x.scalar_type(),
              "kernels::add_rms_norm: x (", x.scalar_type(), "), branch (", branch.scalar_type(), ") and weight (",
              weight.scalar_type(), ") differ in dtype");
  TORCH_CHECK(branch.device() == x.device() && weight.device() == x.device(), "kernels::add_rms_norm: x on ",
              x.device(), ", branch on ", branch.device(), ", weight on ", weight.device());
#ifdef SECATEUR_CUDA_KERNELS
  if (const auto dtype = kernel_dtype(x.scalar_type()); dtype && launches({x, branch, weight}))
    return add_rms_norm_kernel(x, branch, weight, eps, *dtype);
#endif
  return add_rms_norm_aten(x, branch, weight, eps);
}

}  // namespace secateur::kernels
