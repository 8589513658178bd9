#pragma once
// Fused element-wise operations of a transformer forward: SwiGLU's silu(gate)·up, rotary position
// embeddings, the summed token cross-entropy of a batch of logits, and a residual add with the
// RMSNorm that follows it. Each reads the strided views
// the model produces (slices of a packed GEMM output, transposed heads, the causal shift of the
// logits) without copying them first.
//
// Each function runs a hand-written CUDA kernel (lib/kernels/fused_kernels.cu) when this build
// compiled them (compiled(); CMake turns them on when it finds nvcc and a CUDA LibTorch), its inputs
// are CUDA tensors of a supported dtype (bf16, fp16, fp32) and no gradient is needed (grad mode off,
// or no input requires grad): launches() says so. Otherwise it computes the ATen expression written
// beside it, with autograd where gradients are needed, so callers never branch on the device.
// Kernels compute in float and round once to the output dtype, so on CUDA they agree with the ATen
// expressions to the rounding of the storage dtype, not bit for bit.
#include <torch/torch.h>

namespace secateur::kernels {

// Whether this build compiled the CUDA kernels (SECATEUR_CUDA_KERNELS).
bool compiled();

// Whether a call with these inputs runs a kernel: compiled(), every defined input on CUDA, and no
// gradient needed (grad mode off, or none of them requires grad). The dtype is checked apart.
bool launches(at::TensorList inputs);

// Whether the kernels take this storage dtype (bf16, fp16, fp32); others always take the fallback.
bool supports(torch::ScalarType dtype);

// silu(gate)·up for gate and up of the same shape, dtype and device, e.g. the two halves of a packed
// gate/up projection [B, T, 2F] sliced along the last dim (gate = [..., :F], up = [..., F:]).
// Kernel: out = gate / (1 + e^−gate) · up in float, one rounding; a contiguous result of gate's
// shape. Leading dims must collapse into rows of the last dim (as slices of one buffer do), else the
// input is copied first. Fallback: torch::silu(gate) * up.
torch::Tensor silu_mul(const torch::Tensor& gate, const torch::Tensor& up);

// Rotary embedding of x_bthd [B, T, H, D] (any strides; D even), e.g. q of a packed q/k/v
// projection viewed as heads, before the transpose to [B, H, T, D]:
//   out[b, t, h, i] = x[i]·cos[t, i] + x[partner(i)]·sin_signed[t, i],
//   partner(i) = i + D/2 for i < D/2, i − D/2 otherwise,
// for tables cos and sin_signed [T, D] (model::rope_tables: sin_signed = cat(−sin, sin) over the
// halves), which is HF's x·cos + rotate_half(x)·sin. The tables have x's dtype, or are fp32 (then
// computed in fp32 and rounded once to x's dtype on either path). The result is [B, T, H, D], of x's
// dtype, contiguous from the kernel (the caller transposes it to [B, H, T, D]).
// Fallback (tables of x's dtype): out = x·cos; out.addcmul_(swap_halves(x), sin_signed), as
// model::apply_rope computes it.
torch::Tensor rope(const torch::Tensor& x_bthd, const torch::Tensor& cos, const torch::Tensor& sin_signed);

// Σ −log softmax(logits)[target] over the targets that are not ignore_index, and their count, for
// logits [..., V] and int64 targets [...] (the logits' shape without V), e.g. the causal shift
// logits[:, :−1] and labels[:, 1:] of [B, T, V] logits, read in place.
struct CrossEntropySum {
  torch::Tensor sum;    // scalar fp32
  torch::Tensor count;  // scalar int64: targets that are not ignore_index
};
inline constexpr int64_t kIgnoreIndex = -100;
// Kernel: one block per row, max and Σ exp in float in one pass over the row, loss = logsumexp −
// logit[target] per row in fp32, summed in fp64 and returned as fp32. A target outside [0, V) that
// is not ignore_index makes the sum NaN (the fallback raises instead). No gradient.
// Fallback: nll_loss(log_softmax(logits.reshape(−1, V), −1, fp32), targets, sum, ignore_index), with
// autograd.
CrossEntropySum token_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                    int64_t ignore_index = kIgnoreIndex);

// A pre-norm block's residual add and the next block's RMSNorm, x + branch and its norm, for x and
// branch [..., H] and weight [H] of one dtype and device:
//   sum    = x + branch                                       (rounded to the dtype)
//   normed = sum · rsqrt(mean(sum², −1) + eps) · weight        (fp32 statistics, one rounding)
// the formula of LibTorch's fused rms_norm (model::fn::rms_norm on a GPU), fed the rounded sum as an
// add followed by an RMSNorm feeds it. Kernel: one pass that reads x and branch and writes both
// results (an add and a norm apart read the hidden state three times and write it twice). Results
// are contiguous. Fallback: the same formula in ATen ops, with autograd.
struct AddRmsNorm {
  torch::Tensor sum;     // the residual stream after the block
  torch::Tensor normed;  // the next block's input
};
AddRmsNorm add_rms_norm(const torch::Tensor& x, const torch::Tensor& branch, const torch::Tensor& weight, double eps);

}  // namespace secateur::kernels
