// CUDA reference kernels: one thread per output element, the scalar reference's arithmetic
// (csrc/cpu/scalar) transcribed for the GPU so that every scheme runs on a CUDA tensor.
// They are the correctness baseline for the tensor-core kernels of issue 4, not fast.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "lowbit/formats.h"
#include "lowbit/lowbit_cuda.h"

namespace lowbit::cuda_ref {

struct Desc {  // the parts of SchemeInfo a kernel needs, passed by value
  int wbits, block_bytes, code_offset, abits;
  bool binary;
  Compute compute;
};

__device__ inline int block_code(const uint8_t *b, int bits, int i) {
  switch (bits) {
    case 8: return b[i];
    case 4: return (b[i & 15] >> ((i >> 4) * 4)) & 0xF;
    case 2: return (b[i & 7] >> ((i >> 3) * 2)) & 0x3;
    case 1: return (b[i >> 3] >> (i & 7)) & 0x1;
    default: return ((b[i & 7] >> ((i >> 3) * 2)) & 0x3) | (((b[8 + (i >> 3)] >> (i & 7)) & 1) << 2);
  }
}

__device__ inline float load(const void *p, lowbit_dtype dt, int64_t i) {
  if (dt == LOWBIT_F32) return static_cast<const float *>(p)[i];
  if (dt == LOWBIT_F16) return __half2float(static_cast<const __half *>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
}

__device__ inline void store(void *p, lowbit_dtype dt, int64_t i, float v) {
  if (dt == LOWBIT_F32) static_cast<float *>(p)[i] = v;
  else if (dt == LOWBIT_F16) static_cast<__half *>(p)[i] = __float2half_rn(v);
  else static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v);
}

// One block per token: absmax reduction, then symmetric rounding (rintf = half to even).
__global__ void quantize_act(const void *x, lowbit_dtype dt, int64_t K, int bits, int8_t *q, float *scale) {
  const int64_t m = blockIdx.x;
  __shared__ float red[256];
  float amax = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) amax = fmaxf(amax, fabsf(load(x, dt, m * K + k)));
  red[threadIdx.x] = amax;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  const float s = red[0] > 0.f ? red[0] / qmax : 1.f;
  if (threadIdx.x == 0) scale[m] = s;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x)
    q[m * K + k] = static_cast<int8_t>(fminf(fmaxf(rintf(load(x, dt, m * K + k) / s), -qmax), qmax));
}

__global__ void linear(Desc d, lowbit_weight w, const void *x, lowbit_dtype x_dt, const int8_t *q,
                       const float *ascale, int64_t M, void *y, lowbit_dtype y_dt) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= M * w.N) return;
  const int64_t m = idx / w.N, n = idx % w.N;
  const int64_t G = (w.K + w.group_size - 1) / w.group_size;
  const int64_t rb = (w.K + 31) / 32 * d.block_bytes;
  const uint8_t *row = w.qweight + n * rb;
  float acc = 0.f;
  for (int64_t g = 0; g < G; ++g) {
    const float s = __half2float(__ushort_as_half(w.scales[n * G + g]));
    const int64_t k_end = min((g + 1) * w.group_size, w.K);
    if (d.compute == Compute::WeightOnly) {
      const int zero = w.zeros[n * G + g];
      float part = 0.f;
      for (int64_t k = g * w.group_size; k < k_end; ++k)
        part += load(x, x_dt, m * w.K + k) *
                static_cast<float>(block_code(row + (k / 32) * d.block_bytes, d.wbits, k % 32) - zero);
      acc += s * part;
    } else {
      int32_t dot = 0;
      for (int64_t k = g * w.group_size; k < k_end; ++k) {
        const int u = block_code(row + (k / 32) * d.block_bytes, d.wbits, k % 32);
        dot += q[m * w.K + k] * (d.binary ? 2 * u - 1 : u - d.code_offset);
      }
      acc += s * static_cast<float>(dot);
    }
  }
  if (d.compute != Compute::WeightOnly) acc *= ascale[m];
  store(y, y_dt, idx, acc + (w.bias ? w.bias[n] : 0.f));
}

}  // namespace lowbit::cuda_ref

extern "C" lowbit_status lowbit_cuda_linear(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype, int64_t M,
                                            void *y, lowbit_dtype y_dtype, void *stream) {
  using namespace lowbit;
  if (!w || !w->qweight || !w->scales || (M > 0 && (!x || !y)))
    return fail(LOWBIT_ERR_NULL, "lowbit_cuda_linear: a required pointer is NULL");
  if (w->scheme < 0 || w->scheme >= LOWBIT_NUM_SCHEMES) return fail(LOWBIT_ERR_SCHEME, "unknown scheme");
  if (w->N <= 0 || w->K <= 0 || M < 0 || w->group_size <= 0) return fail(LOWBIT_ERR_SIZE, "bad sizes");
  if (M == 0) return LOWBIT_OK;
  const SchemeInfo &si = kSchemes[w->scheme];
  if (si.has_zeros && !w->zeros) return fail(LOWBIT_ERR_NULL, "zeros is NULL");
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const cuda_ref::Desc d{si.wbits, si.block_bytes, si.code_offset, si.abits, w->scheme == LOWBIT_BINARY, si.compute};
  int8_t *q = nullptr;
  float *ascale = nullptr;
  if (si.compute != Compute::WeightOnly) {
    // Stream-ordered scratch: no device-wide sync, safe under CUDA graphs' memory nodes.
    if (cudaMallocAsync(&q, M * w->K, st) != cudaSuccess || cudaMallocAsync(&ascale, M * sizeof(float), st) != cudaSuccess)
      return fail(LOWBIT_ERR_CUDA, "cudaMallocAsync failed: %s", cudaGetErrorString(cudaGetLastError()));
    cuda_ref::quantize_act<<<static_cast<unsigned>(M), 256, 0, st>>>(x, x_dtype, w->K, si.abits, q, ascale);
  }
  const int64_t total = M * w->N;
  cuda_ref::linear<<<static_cast<unsigned>((total + 255) / 256), 256, 0, st>>>(d, *w, x, x_dtype, q, ascale, M, y, y_dtype);
  if (q) {
    cudaFreeAsync(q, st);
    cudaFreeAsync(ascale, st);
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return fail(LOWBIT_ERR_CUDA, "CUDA launch failed: %s", cudaGetErrorString(err));
  return LOWBIT_OK;
}
