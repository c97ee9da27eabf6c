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
// Internal linkage: compiled once per ISA (AVX2 or AVX-512 flags, both with AVX), like tiling.h.
#ifndef LOWBIT_CPU_COMMON_STATIC_ACT_H
#define LOWBIT_CPU_COMMON_STATIC_ACT_H

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/kernels.h"
#include "core/threads.h"
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
  // 1. The reference's codes, dequantized: the same float ops (x / s, round half even, clamp),
  //    8 at a time (a scalar loop was as slow as the GEMM after it: 576x576, 256 tokens, ~0.5 of
  //    0.9 ms), tokens spread over the threads. max_ps(v, 0) returns 0 for a NaN v and
  //    min_ps(v, umax) returns v otherwise, as fmax / fmin do in the reference.
  const float umax = static_cast<float>((1 << abits) - 1);
  std::vector<float> xd(static_cast<size_t>(M * K));
  float *xdp = xd.data();
  auto codes = [&](int64_t m) {
    const float *xm = x + m * K;
    float *out = xdp + m * K;
    int64_t k = 0;
    for (int64_t c = 0; c < C; ++c) {
      const float s = act_scale[c], z = static_cast<float>(act_zero[c]);
      const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(z), lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(umax);
      for (; k + 8 <= seg_end[c]; k += 8) {
        __m256 u = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(xm + k), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        u = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(u, vz), lo), hi);
        _mm256_storeu_ps(out + k, _mm256_mul_ps(_mm256_sub_ps(u, vz), vs));
      }
      for (; k < seg_end[c]; ++k) {
        const float u = std::fmin(std::fmax(std::nearbyint(xm[k] / s) + z, 0.0f), umax);
        out[k] = (u - z) * s;
      }
    }
  };
  if (M * K < (int64_t{1} << 16)) {
    for (int64_t m = 0; m < M; ++m) codes(m);
  } else {
    parallel_for(M, codes);
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
