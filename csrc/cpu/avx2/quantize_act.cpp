// AVX2 per-token activation quantization, bit-identical to the scalar reference: see
// cpu/avx512/quantize_act.cpp for why (float32 division, round half to even, NaN order).
// The last K % 32 values of a row take the reference's scalar code.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace lowbit::avx2 {

void quantize_act(const float *x, int64_t M, int64_t K, int bits, int8_t *q, float *scale) {
  const int qmax = (1 << (bits - 1)) - 1;
  const __m256 lo = _mm256_set1_ps(static_cast<float>(-qmax)), hi = _mm256_set1_ps(static_cast<float>(qmax));
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const int64_t K32 = K / 32 * 32, K8 = K / 8 * 8;
  for (int64_t m = 0; m < M; ++m) {
    const float *xm = x + m * K;
    int8_t *qm = q + m * K;
    __m256 vmax = _mm256_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8) vmax = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xm + k)), vmax);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, vmax);
    float amax = 0.0f;
    for (float l : lanes) amax = std::fmax(amax, l);  // max is exact: any order gives the same
    for (int64_t k = K8; k < K; ++k) amax = std::fmax(amax, std::fabs(xm[k]));
    const float s = amax > 0.0f ? amax / static_cast<float>(qmax) : 1.0f;
    scale[m] = s;
    const __m256 vs = _mm256_set1_ps(s);
    auto quant8 = [&](int64_t k) {
      __m256 v = _mm256_div_ps(_mm256_loadu_ps(xm + k), vs);
      v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
    };
    for (int64_t k = 0; k < K32; k += 32) {
      // packs interleave the 128-bit lanes; the permute puts the 32 bytes back in order.
      const __m256i ab = _mm256_packs_epi32(quant8(k), quant8(k + 8));
      const __m256i cd = _mm256_packs_epi32(quant8(k + 16), quant8(k + 24));
      const __m256i v = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(qm + k), v);
    }
    for (int64_t k = K32; k < K; ++k) {  // the reference's code
      float v = std::nearbyint(xm[k] / s);
      v = std::fmin(std::fmax(v, static_cast<float>(-qmax)), static_cast<float>(qmax));
      qm[k] = static_cast<int8_t>(v);
    }
  }
}

}  // namespace lowbit::avx2
