/* lowbit — CUDA entry points (present when the library was built with nvcc).
 * Same contract as lowbit_linear in lowbit.h, but every pointer is device memory and the work
 * is queued on `stream` (a cudaStream_t; NULL = the legacy default stream). No host sync. */
#ifndef LOWBIT_LOWBIT_CUDA_H
#define LOWBIT_LOWBIT_CUDA_H

#include "lowbit/lowbit.h"

#ifdef __cplusplus
extern "C" {
#endif

lowbit_status lowbit_cuda_linear(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype, int64_t M,
                                 void *y, lowbit_dtype y_dtype, void *stream);

#ifdef __cplusplus
}
#endif
#endif
