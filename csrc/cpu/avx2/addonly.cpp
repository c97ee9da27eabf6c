// AVX2 add-only kernel for ternary and binary weights: no multiplication in the inner loop.
//
// AVX2 has no mask registers, so each task first expands its rows' codes into int16 lane masks
// (0 or -1): plus (u = 2 ternary, u = 1 binary) and minus (u = 0, ternary only). The inner loop
// is then AND + add (+ AND + subtract) on int16 activations, 16 lanes per ymm:
//   ternary: sum = sum_{u=2} q - sum_{u=0} q;   binary: sum = 2 * sum_{u=1} q - sum q.
// A block is two ymm of 16 lanes, so a lane takes two activations per block: int16 lanes are
// widened to int32 every 127 blocks (254 * 127 < 32767), before they could overflow.
#include "cpu/avx2/unpack.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx2 {
namespace {

constexpr int kMR = 4, kNR = 2;
constexpr int64_t kRows = 16, kFlush = 127;

// Rows [n0, n0+rows) -> int16 masks plus/minus [kRows][Kp] (rows past the end: all zero).
void build_masks(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, int16_t *plus,
                 int16_t *minus) {
  const int64_t rb = row_bytes(w.scheme, w.K);
  const bool binary = w.scheme == LOWBIT_BINARY;
  std::memset(plus, 0, static_cast<size_t>(kRows * s.Kp) * 2);
  std::memset(minus, 0, static_cast<size_t>(kRows * s.Kp) * 2);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *row = w.qweight + (n0 + r) * rb;
    for (int64_t b = 0; b < s.nb; ++b) {
      __m256i p, mn = _mm256_setzero_si256();
      if (binary) {
        uint32_t bits;
        std::memcpy(&bits, row + b * 4, 4);
        p = bits_to_bytes(bits);
      } else {
        const __m256i c = _mm256_and_si256(plane2(row + b * 8), _mm256_set1_epi8(3));
        p = _mm256_cmpeq_epi8(c, _mm256_set1_epi8(2));
        mn = _mm256_cmpeq_epi8(c, _mm256_setzero_si256());
      }
      int16_t *pp = plus + r * s.Kp + b * kBlock, *mp = minus + r * s.Kp + b * kBlock;
      // Sign-extending a 0 / -1 byte gives a 0 / -1 int16 lane.
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(pp), _mm256_cvtepi8_epi16(_mm256_castsi256_si128(p)));
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(pp + 16), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(p, 1)));
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(mp), _mm256_cvtepi8_epi16(_mm256_castsi256_si128(mn)));
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(mp + 16), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(mn, 1)));
    }
  }
}

inline int32_t reduce16(__m256i v) {
  const __m256i lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v));
  const __m256i hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(v, 1));
  return hsum_epi32(_mm256_add_epi32(lo, hi));
}

template <int MR, bool kBinary>
void tile(const lowbit_weight &w, const Geometry &s, const IntEpilogue &ep, const int16_t *a,
          const int32_t *tsum, const float *scale, const int16_t *plus, const int16_t *minus,
          int64_t n0, int64_t r0, int64_t rows, int64_t m0, float *y) {
  const int nr = static_cast<int>(std::min<int64_t>(kNR, rows - r0));
  float accf[MR][kNR] = {};
  for (int64_t g = 0; g < s.G; ++g) {
    int32_t dot[MR][kNR] = {};
    const int64_t b_end = g * s.bpg + s.group_blocks(g);
    for (int64_t b0 = g * s.bpg; b0 < b_end; b0 += kFlush) {
      __m256i acc[MR][kNR];
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i)
        LOWBIT_UNROLL
        for (int j = 0; j < kNR; ++j) acc[i][j] = _mm256_setzero_si256();
      const int64_t k1 = std::min(b_end, b0 + kFlush) * kBlock;
      for (int64_t k = b0 * kBlock; k < k1; k += 16) {
        __m256i x[MR];
        LOWBIT_UNROLL
        for (int i = 0; i < MR; ++i) x[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a + (m0 + i) * s.Kp + k));
        LOWBIT_UNROLL
        for (int j = 0; j < kNR; ++j) {
          const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(plus + (r0 + j) * s.Kp + k));
          LOWBIT_UNROLL
          for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_add_epi16(acc[i][j], _mm256_and_si256(x[i], p));
          if (!kBinary) {
            const __m256i mn = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(minus + (r0 + j) * s.Kp + k));
            LOWBIT_UNROLL
            for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_sub_epi16(acc[i][j], _mm256_and_si256(x[i], mn));
          }
        }
      }
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i)
        LOWBIT_UNROLL
        for (int j = 0; j < kNR; ++j) dot[i][j] += reduce16(acc[i][j]);
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < nr; ++j) {
        const int32_t d = kBinary ? 2 * dot[i][j] - tsum[(m0 + i) * s.G + g] : dot[i][j];
        accf[i][j] = ep.group(n0 + r0 + j, g, accf[i][j], d);
      }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < nr; ++j)
      y[(m0 + i) * w.N + n0 + r0 + j] = ep.finish(n0 + r0 + j, accf[i][j], scale[m0 + i]);
}

template <bool kBinary>
void run(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kBlock);
  std::vector<int16_t> a(static_cast<size_t>(M * s.Kp));
  stage_int16(s, q, M, a.data());
  std::vector<int32_t> tsum(static_cast<size_t>(M * s.G));  // binary: sum q per group
  group_sums16(s, a.data(), M, tsum.data());
  const IntEpilogue ep{w, s.G};
  run_tiles(w.N, M, kRows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<int16_t> mbuf;
    int16_t *plus = scratch(mbuf, static_cast<size_t>(2 * kRows * s.Kp));
    int16_t *minus = plus + kRows * s.Kp;
    build_masks(w, s, n0, rows, plus, minus);
    for (int64_t m = m0; m < m0 + mc; m += kMR)
      for (int64_t r0 = 0; r0 < rows; r0 += kNR) {
        const int16_t *ap = a.data();
        const int32_t *tp = tsum.data();
        switch (std::min<int64_t>(kMR, m0 + mc - m)) {
          case 4: tile<4, kBinary>(w, s, ep, ap, tp, scale, plus, minus, n0, r0, rows, m, y); break;
          case 3: tile<3, kBinary>(w, s, ep, ap, tp, scale, plus, minus, n0, r0, rows, m, y); break;
          case 2: tile<2, kBinary>(w, s, ep, ap, tp, scale, plus, minus, n0, r0, rows, m, y); break;
          default: tile<1, kBinary>(w, s, ep, ap, tp, scale, plus, minus, n0, r0, rows, m, y); break;
        }
      }
  });
}

}  // namespace

void addonly(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  if (w.scheme == LOWBIT_BINARY) run<true>(w, q, scale, M, y);
  else run<false>(w, q, scale, M, y);
}

}  // namespace lowbit::avx2
