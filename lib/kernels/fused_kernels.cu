// The kernels behind fused_kernels.h: SwiGLU's silu(gate)·up, rotary embeddings, per-row
// cross-entropy and the residual add fused with the RMSNorm after it, each reading the strided views the model produces (slices of packed GEMM
// outputs, transposed heads, the causal shift of the logits) in place. Plain CUDA C++17: no torch
// headers, arithmetic in float, loads and stores of 16 bytes where sizes, strides and pointers
// allow it (else one element at a time), grid-stride loops with 64-bit indices.
#include "kernels/fused_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>
#include <cstring>

namespace secateur::kernels::cuda {

namespace {

constexpr int kThreads = 256;                      // threads per block, a multiple of 32
constexpr int kWarps = kThreads / 32;
static_assert(kThreads % 32 == 0 && kWarps <= 32, "the block reduction takes one warp of warp results");
constexpr int64_t kMaxBlocks = int64_t{1} << 20;   // grid-stride loops cover any further work

// ---- element types ------------------------------------------------------------------------------

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename scalar_t>
__device__ __forceinline__ scalar_t from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// N consecutive elements, loaded or stored as one access (N·sizeof(T) bytes, aligned to that).
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Packs of 16 bytes or a multiple go through uint4 (one 16-byte access each, whatever T is; the
// memcpy is register moves), smaller ones (N = 1) through T. kReadOnly: through the read-only
// cache (__ldg), for inputs; false: the coherent path, for data this kernel wrote (the read-only
// cache may not see a store of the same kernel).
template <typename T, int N, bool kReadOnly = true>
__device__ __forceinline__ Pack<T, N> load(const T* p) {
  Pack<T, N> out;
  if constexpr (sizeof(Pack<T, N>) % 16 == 0) {
    constexpr int kChunks = static_cast<int>(sizeof(Pack<T, N>) / 16);
    const uint4* chunks = reinterpret_cast<const uint4*>(p);
    uint4 raw[kChunks];
#pragma unroll
    for (int i = 0; i < kChunks; ++i) raw[i] = kReadOnly ? __ldg(chunks + i) : chunks[i];
    memcpy(&out, raw, sizeof(out));
  } else {
    out = *reinterpret_cast<const Pack<T, N>*>(p);
  }
  return out;
}

template <typename T, int N>
__device__ __forceinline__ void store(T* p, const Pack<T, N>& value) {
  if constexpr (sizeof(Pack<T, N>) % 16 == 0) {
    constexpr int kChunks = static_cast<int>(sizeof(Pack<T, N>) / 16);
    uint4 raw[kChunks];
    memcpy(raw, &value, sizeof(value));
#pragma unroll
    for (int i = 0; i < kChunks; ++i) reinterpret_cast<uint4*>(p)[i] = raw[i];
  } else {
    *reinterpret_cast<Pack<T, N>*>(p) = value;
  }
}

// Elements per 16-byte access.
template <typename scalar_t>
constexpr int vec_width() {
  return static_cast<int>(16 / sizeof(scalar_t));
}

bool aligned(const void* p, int64_t bytes) { return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0; }

// A stride along a dim of `size` keeps N-element accesses aligned (a dim of size 1 is never stepped).
bool stride_ok(int64_t size, int64_t stride, int n) { return size <= 1 || stride % n == 0; }

// Blocks for `work` items of one thread each, at least 1, at most kMaxBlocks.
unsigned int blocks_for(int64_t work) {
  int64_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return static_cast<unsigned int>(blocks);
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// ---- silu(gate) · up ------------------------------------------------------------------------------

// Thread item u: row r = u / (cols/N), columns [c, c+N) with c = (u mod (cols/N))·N. cols % N == 0.
template <typename scalar_t, int N>
__global__ void silu_mul_kernel(const scalar_t* __restrict__ gate, int64_t gate_row_stride,
                                const scalar_t* __restrict__ up, int64_t up_row_stride, scalar_t* __restrict__ out,
                                int64_t rows, int64_t cols) {
  const int64_t packs_per_row = cols / N;
  const int64_t total = rows * packs_per_row;
  for (int64_t u = first_index(); u < total; u += grid_step()) {
    const int64_t r = u / packs_per_row;
    const int64_t c = (u - r * packs_per_row) * N;
    const Pack<scalar_t, N> g = load<scalar_t, N>(gate + r * gate_row_stride + c);
    const Pack<scalar_t, N> w = load<scalar_t, N>(up + r * up_row_stride + c);
    Pack<scalar_t, N> o;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float x = to_float(g.v[k]);
      o.v[k] = from_float<scalar_t>(x / (1.0f + expf(-x)) * to_float(w.v[k]));  // ATen's silu: x / (1 + e^−x)
    }
    store<scalar_t, N>(out + r * cols + c, o);
  }
}

template <typename scalar_t>
int launch_silu_mul(const void* gate, int64_t gate_row_stride, const void* up, int64_t up_row_stride, void* out,
                    int64_t rows, int64_t cols, cudaStream_t stream) {
  constexpr int N = vec_width<scalar_t>();
  const auto* g = static_cast<const scalar_t*>(gate);
  const auto* u = static_cast<const scalar_t*>(up);
  auto* o = static_cast<scalar_t*>(out);
  const bool vectorised = cols % N == 0 && stride_ok(rows, gate_row_stride, N) && stride_ok(rows, up_row_stride, N) &&
                          aligned(gate, 16) && aligned(up, 16) && aligned(out, 16);
  if (vectorised) {
    silu_mul_kernel<scalar_t, N>
        <<<blocks_for(rows * (cols / N)), kThreads, 0, stream>>>(g, gate_row_stride, u, up_row_stride, o, rows, cols);
  } else {
    silu_mul_kernel<scalar_t, 1>
        <<<blocks_for(rows * cols), kThreads, 0, stream>>>(g, gate_row_stride, u, up_row_stride, o, rows, cols);
  }
  return static_cast<int>(cudaGetLastError());
}

// ---- rotary embedding ---------------------------------------------------------------------------

// Thread item u: row = (b·T + t)·H + h = u / (half/N), the element pairs (i, i + half) for i in
// [j, j+N), j = (u mod (half/N))·N. half % N == 0; x, out, cos and sin aligned to N elements.
template <typename scalar_t, typename table_t, int N>
__global__ void rope_kernel(const scalar_t* __restrict__ x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t sb,
                            int64_t st, int64_t sh, const table_t* __restrict__ cos,
                            const table_t* __restrict__ sin_signed, scalar_t* __restrict__ out) {
  const int64_t half = D / 2;
  const int64_t packs_per_row = half / N;
  const int64_t total = B * T * H * packs_per_row;
  for (int64_t u = first_index(); u < total; u += grid_step()) {
    const int64_t row = u / packs_per_row;
    const int64_t i = (u - row * packs_per_row) * N;
    const int64_t bt = row / H;
    const int64_t h = row - bt * H;
    const int64_t b = bt / T;
    const int64_t t = bt - b * T;
    const scalar_t* xr = x + b * sb + t * st + h * sh;
    const table_t* cr = cos + t * D;
    const table_t* sr = sin_signed + t * D;
    const Pack<scalar_t, N> x1 = load<scalar_t, N>(xr + i);          // first half: partner i + half
    const Pack<scalar_t, N> x2 = load<scalar_t, N>(xr + half + i);   // second half: partner i
    const Pack<table_t, N> c1 = load<table_t, N>(cr + i);
    const Pack<table_t, N> c2 = load<table_t, N>(cr + half + i);
    const Pack<table_t, N> s1 = load<table_t, N>(sr + i);
    const Pack<table_t, N> s2 = load<table_t, N>(sr + half + i);
    Pack<scalar_t, N> o1;
    Pack<scalar_t, N> o2;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float a = to_float(x1.v[k]);
      const float z = to_float(x2.v[k]);
      o1.v[k] = from_float<scalar_t>(a * to_float(c1.v[k]) + z * to_float(s1.v[k]));
      o2.v[k] = from_float<scalar_t>(z * to_float(c2.v[k]) + a * to_float(s2.v[k]));
    }
    scalar_t* orow = out + row * D;
    store<scalar_t, N>(orow + i, o1);
    store<scalar_t, N>(orow + half + i, o2);
  }
}

template <typename scalar_t, typename table_t>
int launch_rope(const void* x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t sb, int64_t st, int64_t sh,
                const void* cos, const void* sin_signed, void* out, cudaStream_t stream) {
  constexpr int N = vec_width<scalar_t>();
  const int64_t half = D / 2;
  const auto* xp = static_cast<const scalar_t*>(x);
  const auto* cp = static_cast<const table_t*>(cos);
  const auto* sp = static_cast<const table_t*>(sin_signed);
  auto* op = static_cast<scalar_t*>(out);
  const int64_t x_bytes = N * static_cast<int64_t>(sizeof(scalar_t));
  const int64_t table_bytes = N * static_cast<int64_t>(sizeof(table_t));
  const bool vectorised = half % N == 0 && stride_ok(B, sb, N) && stride_ok(T, st, N) && stride_ok(H, sh, N) &&
                          aligned(x, x_bytes) && aligned(out, x_bytes) && aligned(cos, table_bytes) &&
                          aligned(sin_signed, table_bytes);
  if (vectorised) {
    rope_kernel<scalar_t, table_t, N>
        <<<blocks_for(B * T * H * (half / N)), kThreads, 0, stream>>>(xp, B, T, H, D, sb, st, sh, cp, sp, op);
  } else {
    rope_kernel<scalar_t, table_t, 1>
        <<<blocks_for(B * T * H * half), kThreads, 0, stream>>>(xp, B, T, H, D, sb, st, sh, cp, sp, op);
  }
  return static_cast<int>(cudaGetLastError());
}

template <typename scalar_t>
int dispatch_rope_table(DType table_dtype, const void* x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t sb,
                        int64_t st, int64_t sh, const void* cos, const void* sin_signed, void* out,
                        cudaStream_t stream) {
  if (table_dtype == DType::f32)
    return launch_rope<scalar_t, float>(x, B, T, H, D, sb, st, sh, cos, sin_signed, out, stream);
  return static_cast<int>(cudaErrorInvalidValue);
}

// ---- cross-entropy ------------------------------------------------------------------------------

// Running (max m, Σ e^(x−m)) of a softmax denominator. While every value seen is −inf the max is
// −inf and the exponentials are taken relative to 0 instead (each e^−inf = 0), so that no −inf − −inf
// makes a NaN; NaN logits make the sum NaN, +inf ones make it NaN (as log_softmax does).
__device__ __forceinline__ void combine(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  const float ref = mn == -CUDART_INF_F ? 0.0f : mn;
  s = s * expf(m - ref) + s2 * expf(m2 - ref);
  m = mn;
}

__device__ __forceinline__ void warp_combine(float& m, float& s) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
    combine(m, s, m2, s2);
  }
}

// One block of kThreads threads per row (grid-stride over rows): each thread folds every
// blockDim.x-th pack of N logits into its running (max, sum), the block combines them, thread 0
// writes logsumexp − x[target]. V % N == 0 and the row starts aligned to N elements.
template <typename scalar_t, int N>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(const scalar_t* __restrict__ logits, int64_t B, int64_t T, int64_t V, int64_t sb, int64_t st,
                         const int64_t* __restrict__ targets, int64_t tsb, int64_t tst, int64_t ignore_index,
                         float* __restrict__ losses) {
  __shared__ float shared_m[kWarps];
  __shared__ float shared_s[kWarps];
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int64_t rows = B * T;
  const int64_t packs = V / N;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = r / T;
    const int64_t t = r - b * T;
    const int64_t target = targets[b * tsb + t * tst];  // the same for every thread: uniform branches
    if (target == ignore_index) {
      if (threadIdx.x == 0) losses[r] = 0.0f;
      continue;
    }
    if (target < 0 || target >= V) {
      if (threadIdx.x == 0) losses[r] = CUDART_NAN_F;
      continue;
    }
    const scalar_t* row = logits + b * sb + t * st;
    float m = -CUDART_INF_F;
    float s = 0.0f;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<scalar_t, N> v = load<scalar_t, N>(row + p * N);
      float pm = to_float(v.v[0]);
#pragma unroll
      for (int k = 1; k < N; ++k) pm = fmaxf(pm, to_float(v.v[k]));
      const float mn = fmaxf(m, pm);
      const float ref = mn == -CUDART_INF_F ? 0.0f : mn;
      float acc = 0.0f;
#pragma unroll
      for (int k = 0; k < N; ++k) acc += expf(to_float(v.v[k]) - ref);
      s = s * expf(m - ref) + acc;
      m = mn;
    }
    warp_combine(m, s);
    if (lane == 0) {
      shared_m[warp] = m;
      shared_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
      m = lane < kWarps ? shared_m[lane] : -CUDART_INF_F;
      s = lane < kWarps ? shared_s[lane] : 0.0f;
      warp_combine(m, s);
      if (lane == 0) losses[r] = (m + logf(s)) - to_float(row[target]);
    }
    __syncthreads();  // shared_m / shared_s are rewritten for the next row
  }
}

template <typename scalar_t>
int launch_cross_entropy(const void* logits, int64_t B, int64_t T, int64_t V, int64_t sb, int64_t st,
                         const int64_t* targets, int64_t tsb, int64_t tst, int64_t ignore_index, float* losses,
                         cudaStream_t stream) {
  constexpr int N = vec_width<scalar_t>();
  const auto* lp = static_cast<const scalar_t*>(logits);
  const int64_t rows = B * T;
  const unsigned int blocks = static_cast<unsigned int>(rows < kMaxBlocks ? rows : kMaxBlocks);
  const bool vectorised = V % N == 0 && stride_ok(B, sb, N) && stride_ok(T, st, N) && aligned(logits, 16);
  if (vectorised) {
    cross_entropy_kernel<scalar_t, N>
        <<<blocks, kThreads, 0, stream>>>(lp, B, T, V, sb, st, targets, tsb, tst, ignore_index, losses);
  } else {
    cross_entropy_kernel<scalar_t, 1>
        <<<blocks, kThreads, 0, stream>>>(lp, B, T, V, sb, st, targets, tsb, tst, ignore_index, losses);
  }
  return static_cast<int>(cudaGetLastError());
}

// ---- residual add + RMSNorm ----------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The sum of v over the block's kThreads threads, returned to every thread; `shared` holds kWarps
// floats and is free again on return.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = warp_sum(lane < kWarps ? shared[lane] : 0.0f);
  __syncthreads();
  return v;
}

// One block of kThreads threads per row (grid-stride over rows). First pass: each thread adds its
// packs of N elements, stores the rounded sum and accumulates its squares; the block sums them;
// second pass: each thread reads back the packs it stored (L2-resident: the row was just written)
// and writes them normalised. The hidden state is read twice from HBM and written twice, against
// three reads and three writes for an add followed by an RMSNorm. cols % N == 0, rows aligned.
template <typename scalar_t, int N>
__global__ void __launch_bounds__(kThreads)
    add_rms_norm_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ branch,
                        const scalar_t* __restrict__ weight, scalar_t* __restrict__ sum, scalar_t* __restrict__ normed,
                        int64_t rows, int64_t cols, float eps) {
  __shared__ float shared[kWarps];
  const int64_t packs = cols / N;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t row = r * cols;
    float squares = 0.0f;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<scalar_t, N> a = load<scalar_t, N>(x + row + p * N);
      const Pack<scalar_t, N> b = load<scalar_t, N>(branch + row + p * N);
      Pack<scalar_t, N> s;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        s.v[k] = from_float<scalar_t>(to_float(a.v[k]) + to_float(b.v[k]));
        const float v = to_float(s.v[k]);  // the rounded sum, as the separate RMSNorm would read it
        squares += v * v;
      }
      store<scalar_t, N>(sum + row + p * N, s);
    }
    const float rstd = rsqrtf(block_sum(squares, shared) / static_cast<float>(cols) + eps);
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      const Pack<scalar_t, N> s = load<scalar_t, N, /*kReadOnly=*/false>(sum + row + p * N);
      const Pack<scalar_t, N> w = load<scalar_t, N>(weight + p * N);
      Pack<scalar_t, N> o;
#pragma unroll
      for (int k = 0; k < N; ++k) o.v[k] = from_float<scalar_t>(to_float(s.v[k]) * rstd * to_float(w.v[k]));
      store<scalar_t, N>(normed + row + p * N, o);
    }
  }
}

template <typename scalar_t>
int launch_add_rms_norm(const void* x, const void* branch, const void* weight, void* sum, void* normed, int64_t rows,
                        int64_t cols, float eps, cudaStream_t stream) {
  constexpr int N = vec_width<scalar_t>();
  const auto* xp = static_cast<const scalar_t*>(x);
  const auto* bp = static_cast<const scalar_t*>(branch);
  const auto* wp = static_cast<const scalar_t*>(weight);
  auto* sp = static_cast<scalar_t*>(sum);
  auto* np = static_cast<scalar_t*>(normed);
  const unsigned int blocks = static_cast<unsigned int>(rows < kMaxBlocks ? rows : kMaxBlocks);
  const bool vectorised = cols % N == 0 && aligned(x, 16) && aligned(branch, 16) && aligned(weight, 16) &&
                          aligned(sum, 16) && aligned(normed, 16);
  if (vectorised) {
    add_rms_norm_kernel<scalar_t, N><<<blocks, kThreads, 0, stream>>>(xp, bp, wp, sp, np, rows, cols, eps);
  } else {
    add_rms_norm_kernel<scalar_t, 1><<<blocks, kThreads, 0, stream>>>(xp, bp, wp, sp, np, rows, cols, eps);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int silu_mul(DType dtype, const void* gate, int64_t gate_row_stride, const void* up, int64_t up_row_stride,
             void* out, int64_t rows, int64_t cols, void* stream) {
  if (rows <= 0 || cols <= 0) return static_cast<int>(cudaSuccess);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_silu_mul<float>(gate, gate_row_stride, up, up_row_stride, out, rows, cols, s);
    case DType::f16:
      return launch_silu_mul<__half>(gate, gate_row_stride, up, up_row_stride, out, rows, cols, s);
    case DType::bf16:
      return launch_silu_mul<__nv_bfloat16>(gate, gate_row_stride, up, up_row_stride, out, rows, cols, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int rope(DType dtype, DType table_dtype, const void* x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t sb,
         int64_t st, int64_t sh, const void* cos, const void* sin_signed, void* out, void* stream) {
  if (D % 2 != 0) return static_cast<int>(cudaErrorInvalidValue);
  if (B <= 0 || T <= 0 || H <= 0 || D <= 0) return static_cast<int>(cudaSuccess);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      if (table_dtype == DType::f32)
        return launch_rope<float, float>(x, B, T, H, D, sb, st, sh, cos, sin_signed, out, s);
      break;
    case DType::f16:
      if (table_dtype == DType::f16)
        return launch_rope<__half, __half>(x, B, T, H, D, sb, st, sh, cos, sin_signed, out, s);
      return dispatch_rope_table<__half>(table_dtype, x, B, T, H, D, sb, st, sh, cos, sin_signed, out, s);
    case DType::bf16:
      if (table_dtype == DType::bf16)
        return launch_rope<__nv_bfloat16, __nv_bfloat16>(x, B, T, H, D, sb, st, sh, cos, sin_signed, out, s);
      return dispatch_rope_table<__nv_bfloat16>(table_dtype, x, B, T, H, D, sb, st, sh, cos, sin_signed, out, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int cross_entropy_rows(DType dtype, const void* logits, int64_t B, int64_t T, int64_t V, int64_t sb, int64_t st,
                       const int64_t* targets, int64_t tsb, int64_t tst, int64_t ignore_index, float* losses,
                       void* stream) {
  if (B <= 0 || T <= 0) return static_cast<int>(cudaSuccess);
  if (V <= 0) return static_cast<int>(cudaErrorInvalidValue);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_cross_entropy<float>(logits, B, T, V, sb, st, targets, tsb, tst, ignore_index, losses, s);
    case DType::f16:
      return launch_cross_entropy<__half>(logits, B, T, V, sb, st, targets, tsb, tst, ignore_index, losses, s);
    case DType::bf16:
      return launch_cross_entropy<__nv_bfloat16>(logits, B, T, V, sb, st, targets, tsb, tst, ignore_index, losses, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int add_rms_norm(DType dtype, const void* x, const void* branch, const void* weight, void* sum, void* normed,
                 int64_t rows, int64_t cols, float eps, void* stream) {
  if (rows <= 0) return static_cast<int>(cudaSuccess);
  if (cols <= 0) return static_cast<int>(cudaErrorInvalidValue);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32: return launch_add_rms_norm<float>(x, branch, weight, sum, normed, rows, cols, eps, s);
    case DType::f16: return launch_add_rms_norm<__half>(x, branch, weight, sum, normed, rows, cols, eps, s);
    case DType::bf16: return launch_add_rms_norm<__nv_bfloat16>(x, branch, weight, sum, normed, rows, cols, eps, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace secateur::kernels::cuda
