// Packed weights -> dense matrices for the cuBLAS fallbacks of python/lowbit/ops.py (many
// tokens, where cuBLAS's GEMM beats the tensor-core kernel of mma_linear.cu), and the int32
// epilogue that follows an int8 cuBLAS GEMM. When K is a multiple of 8, one thread writes 8
// consecutive outputs with one 16-byte (int8: 8-byte) store, consecutive threads consecutive
// outputs: these kernels run at the speed of their writes. A ragged K takes one thread per block.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/error.h"
#include "cuda/common.cuh"
#include "cuda/kernels.cuh"
#include "lowbit/formats.h"

#include <type_traits>

namespace lowbit::cuda {

namespace {

struct DequantDesc {
  int wbits, block_bytes, code_offset;
  bool binary, weight_only, int8;
};

// The subtrahend of a code: the group's zero point (weight-only) or the scheme's offset
// (binary ignores it: q = 2u - 1).
__device__ __forceinline__ int zero_of(const lowbit_weight &w, const DequantDesc &d, int64_t group_index) {
  return d.weight_only ? w.zeros[group_index] : d.code_offset;
}

// One output from code u: the signed code q (T = int8_t, or d.int8), else scale * q, the
// reference's float weight (weight-only: q = u - zero).
template <typename T>
__device__ __forceinline__ void put_code(const DequantDesc &d, int u, int zero, float s, T *o) {
  const float q = static_cast<float>(d.binary ? 2 * u - 1 : u - zero);
  if constexpr (std::is_same_v<T, int8_t>) *o = static_cast<int8_t>(q);
  else store_as(o, d.int8 ? q : s * q);
}

// Ragged K: one thread per block of 32 codes, T = int8_t for the signed codes.
template <typename T>
__global__ void dequantize_kernel(lowbit_weight w, DequantDesc d, T *out) {
  const int64_t nb = (w.K + 31) / 32;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= w.N * nb) return;
  const int64_t n = i / nb, blk = i % nb;
  const uint8_t *b = w.qweight + n * nb * d.block_bytes + blk * d.block_bytes;
  const int64_t G = (w.K + w.group_size - 1) / w.group_size;
  const int64_t k0 = blk * 32;
  for (int j = 0; j < 32 && k0 + j < w.K; ++j) {
    const int64_t g = (k0 + j) / w.group_size;
    put_code(d, block_code(b, d.wbits, j), zero_of(w, d, n * G + g), half_bits_to_float(w.scales[n * G + g]),
             out + n * w.K + k0 + j);
  }
}

template <typename T>
__global__ void scale_int32_kernel(const int32_t *acc, int64_t M, int64_t N, const uint16_t *wscale,
                                   const float *ascale, const float *bias, T *y) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= M * N) return;
  const int64_t m = i / N, n = i % N;
  float f = __fmul_rn(__fmul_rn(half_bits_to_float(wscale[n]), static_cast<float>(acc[i])), ascale[m]);
  if (bias) f = __fadd_rn(f, bias[n]);
  store_as(y + i, f);
}

// Eight consecutive outputs k0..k0+7 (k0 a multiple of 8) of row n: one block, one group.
template <typename T>
__device__ __forceinline__ void dequant8(const lowbit_weight &w, const DequantDesc &d, int64_t n, int64_t k0, T *o) {
  const int64_t nb = (w.K + 31) / 32, G = (w.K + w.group_size - 1) / w.group_size, g = k0 / w.group_size;
  const uint8_t *b = w.qweight + (n * nb + k0 / 32) * d.block_bytes;
  const float s = half_bits_to_float(w.scales[n * G + g]);
  const int zero = zero_of(w, d, n * G + g);
#pragma unroll
  for (int j = 0; j < 8; ++j) put_code(d, block_code(b, d.wbits, static_cast<int>(k0 % 32) + j), zero, s, o + j);
}

template <typename T>
__global__ void dequantize8_kernel(lowbit_weight w, DequantDesc d, T *out) {
  const int64_t K8 = w.K / 8;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= w.N * K8) return;
  const int64_t n = i / K8, k0 = (i % K8) * 8;
  __align__(16) T v[8];
  dequant8(w, d, n, k0, v);
  constexpr int kVec = static_cast<int>(sizeof(T)) * 8 / 16;  // 16-byte stores: fp32 2, fp16/bf16 1
  if constexpr (kVec >= 1) {
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      reinterpret_cast<uint4 *>(out + n * w.K + k0)[j] = reinterpret_cast<const uint4 *>(v)[j];
  } else {
    *reinterpret_cast<uint2 *>(out + n * w.K + k0) = *reinterpret_cast<const uint2 *>(v);
  }
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + 255) / 256); }

}  // namespace

cudaError_t dequantize(const lowbit_weight &w, void *out, lowbit_dtype out_dtype, bool int8, cudaStream_t st) {
  const SchemeInfo &si = kSchemes[w.scheme];
  const DequantDesc d{si.wbits, si.block_bytes, si.code_offset, w.scheme == LOWBIT_BINARY,
                      si.compute == Compute::WeightOnly, int8};
  if (w.K % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0) {
    const unsigned grid = blocks_for(w.N * (w.K / 8));
    if (int8) dequantize8_kernel<<<grid, 256, 0, st>>>(w, d, static_cast<int8_t *>(out));
    else if (out_dtype == LOWBIT_F32) dequantize8_kernel<<<grid, 256, 0, st>>>(w, d, static_cast<float *>(out));
    else if (out_dtype == LOWBIT_F16) dequantize8_kernel<<<grid, 256, 0, st>>>(w, d, static_cast<__half *>(out));
    else dequantize8_kernel<<<grid, 256, 0, st>>>(w, d, static_cast<__nv_bfloat16 *>(out));
    return cudaGetLastError();
  }
  const int64_t work = w.N * ((w.K + 31) / 32);
  if (int8) dequantize_kernel<<<blocks_for(work), 256, 0, st>>>(w, d, static_cast<int8_t *>(out));
  else if (out_dtype == LOWBIT_F32) dequantize_kernel<<<blocks_for(work), 256, 0, st>>>(w, d, static_cast<float *>(out));
  else if (out_dtype == LOWBIT_F16) dequantize_kernel<<<blocks_for(work), 256, 0, st>>>(w, d, static_cast<__half *>(out));
  else dequantize_kernel<<<blocks_for(work), 256, 0, st>>>(w, d, static_cast<__nv_bfloat16 *>(out));
  return cudaGetLastError();
}

cudaError_t scale_int32(const int32_t *acc, int64_t M, int64_t N, const uint16_t *wscale, const float *ascale,
                        const float *bias, void *y, lowbit_dtype y_dtype, cudaStream_t st) {
  if (y_dtype == LOWBIT_F32)
    scale_int32_kernel<<<blocks_for(M * N), 256, 0, st>>>(acc, M, N, wscale, ascale, bias, static_cast<float *>(y));
  else if (y_dtype == LOWBIT_F16)
    scale_int32_kernel<<<blocks_for(M * N), 256, 0, st>>>(acc, M, N, wscale, ascale, bias, static_cast<__half *>(y));
  else
    scale_int32_kernel<<<blocks_for(M * N), 256, 0, st>>>(acc, M, N, wscale, ascale, bias,
                                                          static_cast<__nv_bfloat16 *>(y));
  return cudaGetLastError();
}

}  // namespace lowbit::cuda
