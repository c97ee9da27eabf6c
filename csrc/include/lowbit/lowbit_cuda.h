/* lowbit — CUDA entry points (present when the library was built with nvcc).
 * Same contracts as lowbit.h, but every pointer is device memory and the work is queued on
 * `stream` (a cudaStream_t; NULL = the legacy default stream). No host synchronization, and
 * scratch memory comes from cudaMallocAsync on that stream, so all of them can be captured in
 * a CUDA graph. Kernels: sm_80 and later (mma.sync). */
#ifndef LOWBIT_LOWBIT_CUDA_H
#define LOWBIT_LOWBIT_CUDA_H

#include "lowbit/lowbit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y [M, N] = x [M, K] @ dequant(w)^T + bias with lowbit's own kernels at every M: the tensor-core
 * kernel (csrc/cuda/mma_linear.cu) for fp16/bf16 activations of w4a16/w3a16 and for every
 * integer and add-only scheme (any activation dtype, quantized per token first); the reference
 * kernel for float32 activations of w4a16/w3a16. Where cuBLAS is faster (many tokens),
 * python/lowbit/ops.py calls the pieces below around it instead. */
lowbit_status lowbit_cuda_linear(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype, int64_t M,
                                 void *y, lowbit_dtype y_dtype, void *stream);

/* The same result from the one-thread-per-output reference kernel (a check, not a path). */
lowbit_status lowbit_cuda_reference_linear(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype,
                                           int64_t M, void *y, lowbit_dtype y_dtype, void *stream);

/* lowbit_quantize_act on the device; q rows are ldq >= K bytes apart, zero from K to ldq. */
lowbit_status lowbit_cuda_quantize_act(const void *x, lowbit_dtype x_dtype, int64_t M, int64_t K, int bits,
                                       int8_t *q, int64_t ldq, float *scale, void *stream);

/* out [N, K] row-major: int8 = 0: the float weights (out_dtype) the scheme multiplies by,
 * scale * (u - zero) or scale * q; int8 = 1: the signed integer codes q as int8 (scales not
 * applied; integer and add-only schemes). */
lowbit_status lowbit_cuda_dequantize(const lowbit_weight *w, void *out, lowbit_dtype out_dtype, int int8,
                                     void *stream);

/* y [M, N] = (wscale[n] * float(acc[m, n])) * ascale[m] + bias[n] (bias may be NULL): the
 * reference's epilogue for one group per row, after an int32 GEMM of the quantized operands. */
lowbit_status lowbit_cuda_scale_int32(const int32_t *acc, int64_t M, int64_t N, const uint16_t *wscale,
                                      const float *ascale, const float *bias, void *y, lowbit_dtype y_dtype,
                                      void *stream);

#ifdef __cplusplus
}
#endif
#endif
