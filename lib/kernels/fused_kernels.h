#pragma once
// Launchers of the hand-written CUDA kernels of fused_kernels.cu: plain pointers, sizes and element
// strides, no torch and no CUDA headers (fused.cpp, the torch-facing side, includes this; only
// CUDA builds compile and link fused_kernels.cu, and only they declare SECATEUR_CUDA_KERNELS).
//
// Every launcher enqueues its kernel on `stream` (a cudaStream_t passed as void*) and returns the
// cudaError_t of the launch as an int: 0 on success (cudaSuccess), else the error, which
// error_string() names. An unsupported dtype combination returns cudaErrorInvalidValue without
// launching. Sizes of zero launch nothing. Arithmetic is in float whatever the storage dtype;
// results are rounded once to the output dtype (round to nearest even).
#include <cstdint>

namespace secateur::kernels::cuda {

enum class DType : int { f32 = 0, f16 = 1, bf16 = 2 };

// out[r, c] = silu(gate[r, c]) · up[r, c] = gate / (1 + exp(−gate)) · up for r < rows, c < cols.
// gate and up: element r·row_stride + c (last dim contiguous); out: contiguous [rows, cols].
// All three share `dtype`.
int silu_mul(DType dtype, const void* gate, int64_t gate_row_stride, const void* up, int64_t up_row_stride,
             void* out, int64_t rows, int64_t cols, void* stream);

// Rotary embedding of x viewed as [B, T, H, D]: element (b, t, h, i) at b·sb + t·st + h·sh + i (D
// contiguous, D even). cos and sin_signed: contiguous [T, D] tables, of x's dtype or float
// (`table_dtype`), where sin_signed = cat(−sin[:, :D/2], sin[:, D/2:]). out: contiguous [B, T, H, D],
// dtype of x:
//   out[b, t, h, i] = x[i]·cos[t, i] + x[partner(i)]·sin_signed[t, i],
//   partner(i) = i + D/2 for i < D/2, i − D/2 otherwise,
// which is HF's x·cos + rotate_half(x)·sin.
int rope(DType dtype, DType table_dtype, const void* x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t sb,
         int64_t st, int64_t sh, const void* cos, const void* sin_signed, void* out, void* stream);

// Per-row cross-entropy of logits viewed as [B, T, V]: row (b, t) at b·sb + t·st, V contiguous
// (so the causal shift logits[:, :−1] is read in place). targets: int64, element (b, t) at
// b·tsb + t·tst. losses: contiguous float [B·T], row b·T + t receives
//   logsumexp(row) − row[target]   (max and sum of exponentials in float, one pass, online),
//   0                              where target == ignore_index,
//   NaN                            where target is neither ignore_index nor in [0, V).
int cross_entropy_rows(DType dtype, const void* logits, int64_t B, int64_t T, int64_t V, int64_t sb, int64_t st,
                       const int64_t* targets, int64_t tsb, int64_t tst, int64_t ignore_index, float* losses,
                       void* stream);

// Residual add and RMSNorm in one pass over rows of `cols` elements (x, branch, sum and normed:
// contiguous [rows, cols] of `dtype`; weight: [cols] of `dtype`):
//   sum[r, c]    = round(x[r, c] + branch[r, c])
//   normed[r, c] = round(sum[r, c] · rstd_r · weight[c]),  rstd_r = 1 / sqrt(mean_c sum[r, c]² + eps)
// with the rounded sum in the statistics, as a separate add followed by an RMSNorm computes them.
int add_rms_norm(DType dtype, const void* x, const void* branch, const void* weight, void* sum, void* normed,
                 int64_t rows, int64_t cols, float eps, void* stream);

// cudaGetErrorString of a launcher's return value.
const char* error_string(int code);

}  // namespace secateur::kernels::cuda
