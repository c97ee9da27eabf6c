// The CUDA oracle: one thread per output element, the scalar reference's arithmetic
// (csrc/cpu/scalar) transcribed for the GPU. Not fast; lowbit_cuda_linear uses it only for
// float32 activations of the weight-only schemes (the tensor-core kernel takes fp16/bf16), and
// lowbit_cuda_reference_linear exposes it so tests can check the fast kernels on the device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "lowbit/formats.h"
#include "cuda/common.cuh"
#include "cuda/kernels.cuh"

namespace lowbit::cuda {

namespace {

struct Desc {  // the parts of SchemeInfo a kernel needs, passed by value
  int wbits, block_bytes, code_offset, abits;
  bool binary;
  Compute compute;
};

__device__ inline float load(const void *p, lowbit_dtype dt, int64_t i) {
  if (dt == LOWBIT_F32) return static_cast<const float *>(p)[i];
  if (dt == LOWBIT_F16) return __half2float(static_cast<const __half *>(p)[i]);
  return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
}

__global__ void reference_kernel(Desc d, lowbit_weight w, const void *x, lowbit_dtype x_dt, const int8_t *q,
                       const float *ascale, int64_t M, void *y, lowbit_dtype y_dt) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= M * w.N) return;
  const int64_t m = idx / w.N, n = idx % w.N;
  const int64_t G = (w.K + w.group_size - 1) / w.group_size;
  const int64_t rb = (w.K + 31) / 32 * d.block_bytes;
  const uint8_t *row = w.qweight + n * rb;
  float acc = 0.f;
  for (int64_t g = 0; g < G; ++g) {
    const float s = half_bits_to_float(w.scales[n * G + g]);
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
  store_dtype(y, y_dt, idx, acc + (w.bias ? w.bias[n] : 0.f));
}

}  // namespace

cudaError_t reference_linear(const lowbit_weight &w, const void *x, lowbit_dtype x_dtype, const int8_t *q,
                             const float *ascale, int64_t M, void *y, lowbit_dtype y_dtype, cudaStream_t st) {
  const SchemeInfo &si = kSchemes[w.scheme];
  const Desc d{si.wbits, si.block_bytes, si.code_offset, si.abits, w.scheme == LOWBIT_BINARY, si.compute};
  const int64_t total = M * w.N;
  reference_kernel<<<static_cast<unsigned>((total + 255) / 256), 256, 0, st>>>(d, w, x, x_dtype, q, ascale, M, y,
                                                                                y_dtype);
  return cudaGetLastError();
}

}  // namespace lowbit::cuda
