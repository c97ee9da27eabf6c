// The CPU dispatch table: one entry per kernel family, filled by the scalar reference and
// overridden by whatever a faster ISA implements. The core API (api.cpp) validates arguments,
// converts fp16/bf16 to float32 at the edges, and calls through the table.
#ifndef LOWBIT_CORE_KERNELS_H
#define LOWBIT_CORE_KERNELS_H

#include <cstdint>

#include "lowbit/formats.h"
#include "lowbit/lowbit.h"

namespace lowbit {

struct KernelTable {
  const char *isa;
  // y[M,N] (float32) = x[M,K] @ dequant(w)^T + bias, w4a16 / w3a16.
  void (*weight_only)(const lowbit_weight &w, const float *x, int64_t M, float *y);
  // y[M,N] = scale[m] * sum_g wscale[n,g] * int_dot_g(q[m,:], w[n,:]) + bias, for the
  // integer schemes (w8a8, w4a8, w4a4, w3a3); q holds signed codes in int8.
  void (*integer)(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y);
  // The same for ternary and binary, computed without multiplications in the inner loop.
  void (*addonly)(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y);
  // Per-token symmetric activation quantization (see lowbit_quantize_act).
  void (*quantize_act)(const float *x, int64_t M, int64_t K, int bits, int8_t *q, float *scale);
  // Static per-cluster asymmetric activation quantization fused with the integer matmul (RPTQ;
  // see lowbit_linear_static). seg_end[C]: exclusive end channel of each segment. nullptr in a
  // table that does not implement it (the dispatcher then falls back to the scalar one).
  void (*static_act)(const lowbit_weight &w, const float *x, int64_t M, const float *act_scale,
                     const int32_t *act_zero, const int32_t *seg_end, int64_t C, int abits, float *y);
  // Bit s set: these kernels read the CPU layout of scheme s (for some token counts); callers
  // that keep a layout only for speed build it only then (lowbit_cpu_layout_used).
  uint32_t layout_schemes;
};

constexpr uint32_t layout_bit(lowbit_scheme s) { return 1u << s; }

// The scalar reference: the oracle every other kernel is tested against.
const KernelTable &scalar_kernels();
// Tables of the SIMD builds; nullptr when this build has none (see cpu/avx2, cpu/avx512).
const KernelTable *avx2_kernels();
const KernelTable *avx512_kernels();

// The table in use (CPUID + xgetbv + LOWBIT_ISA; see dispatch.cpp).
const KernelTable &active_kernels();

}  // namespace lowbit
#endif
