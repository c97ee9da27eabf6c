// The CUDA kernels' host-side entry points, one file each (linear.cu validates and dispatches):
//   mma_linear.cu    tensor-core matmul of every scheme (weights straight from packed blocks)
//   quantize_act.cu  per-token absmax activation quantization into padded int8 rows
//   dequant.cu       packed weights -> dense fp16/bf16/fp32 or int8 (the cuBLAS fallbacks)
//   reference.cu     one thread per output, the scalar reference's arithmetic (the oracle)
// Every function queues work on `st` and returns the launch status; none synchronizes.
#ifndef LOWBIT_CUDA_KERNELS_CUH
#define LOWBIT_CUDA_KERNELS_CUH

#include <cuda_runtime.h>

#include <cstdint>

#include "lowbit/lowbit.h"

namespace lowbit::cuda {

enum class MmaMode : int {
  WeightOnly,     // fp16/bf16 activations, float partial sums
  IntPerChannel,  // int8 activations, one group per row: int32 partial sums to the end
  IntGrouped      // int8 activations, several groups: float partial sums of scaled groups
};

struct MmaParams {
  MmaMode mode;
  const uint8_t *qweight;  // [N, row_bytes] canonical packed blocks
  int64_t row_bytes, nblocks;
  const uint16_t *scales;  // [N, G] fp16 bits
  const uint8_t *zeros;    // [N, G] (weight-only)
  const float *bias;       // [N] or null
  int64_t N, G, blocks_per_group;
  int code_offset;         // integer schemes: q = u - code_offset (binary: 2u - 1, offset 1)
  bool binary;
  const void *x;           // weight-only: fp16/bf16 [M, ldx]; integer: int8 [M, ldx]; ldx >= 32 * nblocks,
  int64_t ldx;             //   zero past K, rows 8-byte (fp) / 4-byte (int8) aligned
  const float *ascale;     // integer: [M] token scales
  int64_t M;
  void *y;                 // [M, N]
  lowbit_dtype y_dtype;
  uint32_t *partial;       // [KS, M, N] when KS > 1
};

// Token tile (in 8s) for M tokens, and how many CTAs split K (1: no workspace needed).
int mma_tokens_per_tile(int64_t M);
int mma_splits(const MmaParams &p, int num_sms);
cudaError_t mma_linear(const MmaParams &p, int wbits, lowbit_dtype x_dtype, int KS, cudaStream_t st);

// q [M, ldq] int8 (zero-filled from K to ldq), scale [M]: the reference's arithmetic exactly.
cudaError_t quantize_act(const void *x, lowbit_dtype x_dtype, int64_t M, int64_t K, int bits, int8_t *q,
                         int64_t ldq, float *scale, cudaStream_t st);

// out [N, K] (row-major, dtype out_dtype): weight-only schemes scale * (u - zero) rounded once;
// with int8 = true, an integer or add-only scheme's signed code q (scales not applied).
cudaError_t dequantize(const lowbit_weight &w, void *out, lowbit_dtype out_dtype, bool int8, cudaStream_t st);

// y [M, N] = (wscale[n] * float(acc[m, n])) * ascale[m] + bias[n], the reference's epilogue for
// one group per row, after an int32 matmul done elsewhere (cuBLAS).
cudaError_t scale_int32(const int32_t *acc, int64_t M, int64_t N, const uint16_t *wscale, const float *ascale,
                        const float *bias, void *y, lowbit_dtype y_dtype, cudaStream_t st);

// The oracle: the scalar reference kernel's arithmetic, one thread per output.
cudaError_t reference_linear(const lowbit_weight &w, const void *x, lowbit_dtype x_dtype, const int8_t *q,
                             const float *ascale, int64_t M, void *y, lowbit_dtype y_dtype, cudaStream_t st);

}  // namespace lowbit::cuda
#endif
