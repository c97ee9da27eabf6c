// AVX-512 per-token activation quantization, bit-identical to the scalar reference
// (cpu/scalar/quantize_act.cpp): the same absmax, the same s = amax / qmax, then x / s as a
// float32 division (not a multiply by 1/s, which rounds differently), round half to even,
// clamp to [-qmax, qmax], int8. For a GEMV this pass is as long as the weights are short:
// 4096 activations against 4096 x 4096 weights, so it must not stay scalar.
//
// NaN: max_ps(a, b) returns b when a is NaN, which is what std::fmax(amax, NaN) = amax and
// std::fmax(NaN, -qmax) = -qmax do in the reference.
#include <immintrin.h>

#include <cstdint>

namespace lowbit::avx512 {

void quantize_act(const float *x, int64_t M, int64_t K, int bits, int8_t *q, float *scale) {
  const int qmax = (1 << (bits - 1)) - 1;
  const __m512 lo = _mm512_set1_ps(static_cast<float>(-qmax)), hi = _mm512_set1_ps(static_cast<float>(qmax));
  for (int64_t m = 0; m < M; ++m) {
    const float *xm = x + m * K;
    int8_t *qm = q + m * K;
    __m512 vmax = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 16) {
      const __mmask16 t = K - k >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (K - k)) - 1);
      vmax = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(t, xm + k)), vmax);
    }
    const float amax = _mm512_reduce_max_ps(vmax);
    const float s = amax > 0.0f ? amax / static_cast<float>(qmax) : 1.0f;
    scale[m] = s;
    const __m512 vs = _mm512_set1_ps(s);
    for (int64_t k = 0; k < K; k += 16) {
      const __mmask16 t = K - k >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (K - k)) - 1);
      __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(t, xm + k), vs);
      v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      _mm512_mask_cvtepi32_storeu_epi8(qm + k, t, _mm512_cvtps_epi32(v));
    }
  }
}

}  // namespace lowbit::avx512
