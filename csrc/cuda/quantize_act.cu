// Per-token dynamic activation quantization on the GPU, the reference's arithmetic exactly
// (csrc/cpu/scalar/quantize_act.cpp): scale = absmax / qmax (1 for an all-zero row),
// q = clamp(round_half_even(x / scale)), with an IEEE division (nvcc's default -prec-div=true).
// One CTA per token; the rows it writes are padded with zeros to ldq (a multiple of 32), the
// padded K the tensor-core kernel reads whole blocks of.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/common.cuh"
#include "cuda/kernels.cuh"

namespace lowbit::cuda {

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_act_kernel(const T *x, int64_t K, int bits, int8_t *q,
                                                                int64_t ldq, float *scale) {
  const int64_t m = blockIdx.x;
  const T *xm = x + m * K;
  float amax = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += kThreads) amax = fmaxf(amax, fabsf(to_float(xm[k])));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  __shared__ float warp_max[kThreads / 32];
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = amax;
  __syncthreads();
  amax = warp_max[0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; ++w) amax = fmaxf(amax, warp_max[w]);
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  const float s = amax > 0.f ? __fdiv_rn(amax, qmax) : 1.f;
  if (threadIdx.x == 0) scale[m] = s;
  int8_t *qm = q + m * ldq;
  for (int64_t k = threadIdx.x; k < ldq; k += kThreads) {
    float v = 0.f;
    if (k < K) v = fminf(fmaxf(rintf(__fdiv_rn(to_float(xm[k]), s)), -qmax), qmax);
    qm[k] = static_cast<int8_t>(v);
  }
}

}  // namespace

cudaError_t quantize_act(const void *x, lowbit_dtype x_dtype, int64_t M, int64_t K, int bits, int8_t *q,
                         int64_t ldq, float *scale, cudaStream_t st) {
  const dim3 grid(static_cast<unsigned>(M));
  switch (x_dtype) {
    case LOWBIT_F32:
      quantize_act_kernel<<<grid, kThreads, 0, st>>>(static_cast<const float *>(x), K, bits, q, ldq, scale);
      break;
    case LOWBIT_F16:
      quantize_act_kernel<<<grid, kThreads, 0, st>>>(static_cast<const __half *>(x), K, bits, q, ldq, scale);
      break;
    default:
      quantize_act_kernel<<<grid, kThreads, 0, st>>>(static_cast<const __nv_bfloat16 *>(x), K, bits, q, ldq,
                                                     scale);
  }
  return cudaGetLastError();
}

}  // namespace lowbit::cuda
