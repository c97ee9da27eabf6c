// Shared pieces of the AVX-512 fused GEMV kernels (integer.cpp, addonly.cpp): 4 weight rows
// are streamed side by side with independent accumulators (hides the dot-product latency and
// reuses every activation vector 4 times), and their per-group epilogues run together in one
// xmm of 4 floats, in the scalar reference's order of float operations (bit-identical).
// Included only by files compiled with the AVX-512 flags; internal linkage on purpose (see
// common/tiling.h).
#ifndef LOWBIT_CPU_AVX512_GEMV_H
#define LOWBIT_CPU_AVX512_GEMV_H

#include <immintrin.h>

#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

constexpr int kRows = 4;  // weight rows per GEMV micro-tile

// The 4 rows n0..n0+3; rows past N repeat row N-1 (computed, never stored).
struct Rows4 {
  const uint8_t *p[kRows];
  int64_t n[kRows];
  int nr;
  Rows4(const lowbit_weight &w, int64_t n0) {
    const int64_t rb = row_bytes(w.scheme, w.K);
    nr = static_cast<int>(std::min<int64_t>(kRows, w.N - n0));
    for (int j = 0; j < kRows; ++j) {
      n[j] = std::min(n0 + j, w.N - 1);
      p[j] = w.qweight + n[j] * rb;
    }
  }
};

// Horizontal sums of four int32 vectors -> lanes 0..3 (integer adds: exact in any order).
inline __m128i reduce4(__m512i a, __m512i b, __m512i c, __m512i d) {
  auto half = [](__m512i v) {
    const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  };
  return _mm_hadd_epi32(_mm_hadd_epi32(half(a), half(b)), _mm_hadd_epi32(half(c), half(d)));
}

// int16 lanes -> int32 (sign-extending adds only: the add-only kernels stay multiply-free).
inline __m512i widen16(__m512i v) {
  return _mm512_add_epi32(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(v)),
                          _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(v, 1)));
}

// acc[j] += fp16 scale[n_j, g] * float(dot[j]) for the 4 rows: the reference's
// `acc + scale * float(dot)`, two roundings (the build has -ffp-contract=off: no FMA).
inline __m128 group4(const lowbit_weight &w, int64_t G, const Rows4 &r, int64_t g, __m128 acc, __m128i dot) {
  const __m128i h = _mm_setr_epi16(static_cast<short>(w.scales[r.n[0] * G + g]), static_cast<short>(w.scales[r.n[1] * G + g]),
                                   static_cast<short>(w.scales[r.n[2] * G + g]), static_cast<short>(w.scales[r.n[3] * G + g]),
                                   0, 0, 0, 0);
  return _mm_add_ps(acc, _mm_mul_ps(_mm_cvtph_ps(h), _mm_cvtepi32_ps(dot)));
}

// y[n0..n0+nr) = acc * token_scale + bias.
inline void finish4(const lowbit_weight &w, const Rows4 &r, __m128 acc, float token_scale, float *y) {
  __m128 v = _mm_mul_ps(acc, _mm_set1_ps(token_scale));
  const __m128 b = w.bias ? _mm_setr_ps(w.bias[r.n[0]], w.bias[r.n[1]], w.bias[r.n[2]], w.bias[r.n[3]])
                          : _mm_setzero_ps();
  v = _mm_add_ps(v, b);
  _mm_mask_storeu_ps(y, static_cast<__mmask8>((1u << r.nr) - 1), v);
}

// Software prefetch for the row streams. A row of a 4096-wide GEMV is only 0.5-4 KiB, too
// short for the hardware prefetchers to train on each of the 4 streams, so each chunk asks
// for the same bytes of the next 4-row tile (the rows that follow in memory): one tile ahead,
// several DRAM latencies of work. Prefetches past the end of the weights do not fault.
inline void prefetch_next_tile(const uint8_t *row, int64_t row_bytes, int64_t off, int64_t bytes) {
  const char *p = reinterpret_cast<const char *>(row + kRows * row_bytes + off);
  for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(p + b, _MM_HINT_T1);
}

// Byte mask of the first n bytes of a 64-byte load (n <= 64).
inline __mmask64 first_bytes(int64_t n) { return n >= 64 ? ~0ULL : (1ULL << n) - 1; }

}  // namespace
}  // namespace lowbit::avx512
#endif
