// Static per-cluster activation quantization (RPTQ, lowbit_linear_static) on a SIMD table.
//
// The scalar reference (cpu/scalar/static_act.cpp) quantizes x to codes u per channel segment,
// u = clamp(round(x / s_c) + z_c, 0, 2^abits - 1), and sums (u - z_c) * q_w exactly in int32
// per (segment, weight group) piece. Segments are arbitrary (KMeans clusters after the
// reorder, 576 / 32 = 18 channels on average), so a piece rarely fills a vector; instead this
// path dequantizes the activations, xd = (u - z_c) * s_c (the same codes, so the same values
// up to one float rounding), and runs the fast fused-dequant kernel of the same table on them:
// the 4-bit (3-bit) integer schemes store exactly the w4a16 (w3a16) packing, with a constant
// zero point equal to the scheme's code offset (8 or 4), so the weights need no conversion.
// The result differs from the reference only by float rounding (exact wherever the reference's
// sums are exact in float, e.g. unit scales); w8a8 (no 8-bit weight-only kernel) stays scalar.
//
// Internal linkage: compiled once per ISA, like tiling.h.
#ifndef LOWBIT_CPU_COMMON_STATIC_ACT_H
#define LOWBIT_CPU_COMMON_STATIC_ACT_H

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/kernels.h"
#include "lowbit/formats.h"

namespace lowbit {
namespace {

template <void (*WeightOnly)(const lowbit_weight &, const float *, int64_t, float *),
          bool (*WeightOnlyLayout)(const lowbit_weight &, const float *, int64_t, float *)>
void static_act_via_weight_only(const lowbit_weight &w, const float *x, int64_t M, const float *act_scale,
                                const int32_t *act_zero, const int32_t *seg_end, int64_t C, int abits, float *y) {
  const SchemeInfo &si = scheme_info(w.scheme);
  if (si.wbits == 8) return scalar_kernels().static_act(w, x, M, act_scale, act_zero, seg_end, C, abits, y);
  const int64_t K = w.K;
  // 1. The reference's codes, dequantized: the same float ops (x / s, round half even, clamp).
  const float umax = static_cast<float>((1 << abits) - 1);
  std::vector<float> xd(static_cast<size_t>(M * K));
  for (int64_t m = 0; m < M; ++m) {
    int64_t k = 0;
    for (int64_t c = 0; c < C; ++c) {
      const float s = act_scale[c], z = static_cast<float>(act_zero[c]);
      for (; k < seg_end[c]; ++k) {
        const float u = std::fmin(std::fmax(std::nearbyint(x[m * K + k] / s) + z, 0.0f), umax);
        xd[m * K + k] = (u - z) * s;
      }
    }
  }
  // 2. With a CPU layout (a few tokens), the layout GEMV reads it as its weight-only twin's:
  //    the same bytes, zero = the code offset (avx*/layout_gemv.cpp, weight_only_layout).
  if (WeightOnlyLayout(w, xd.data(), M, y)) return;
  // 3. Otherwise the weight as its weight-only twin: same bytes and scales, zero = the code offset.
  const int64_t G = num_groups(K, w.group_size);
  std::vector<uint8_t> zeros(static_cast<size_t>(w.N * G), static_cast<uint8_t>(si.code_offset));
  lowbit_weight twin = w;
  twin.scheme = si.wbits == 4 ? LOWBIT_W4A16 : LOWBIT_W3A16;
  twin.zeros = zeros.data();
  twin.cpu_layout = nullptr;  // w's layout (if any) was declined above (too many tokens, Inf/NaN)
  WeightOnly(twin, xd.data(), M, y);
}

}  // namespace
}  // namespace lowbit
#endif
