// AVX2 kernel for the integer schemes (w8a8, w4a8, w4a4, w3a3).
//
// Codes are unpacked once per task to unsigned bytes u (padded-group layout, common/tiling.h)
// and dotted with int8 activations; the offset is corrected once per group,
// sum q * (u - off) = sum q * u - off * sum q. For u <= 15, vpmaddubsw (u8 x s8 -> pairs summed
// into int16) cannot saturate (2 * 15 * 127 < 32767) and vpmaddwd by ones widens to int32. For
// w8a8 (u up to 255) it could, so both operands are widened to int16 first and vpmaddwd does
// the multiply. A 4 x 4 (tokens x rows) microkernel reuses every load four times.
#include "cpu/avx2/unpack.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx2 {
namespace {

constexpr int kMR = 4, kNR = 4;
inline int64_t rows_per_task(int64_t M) { return M >= 16 ? 64 : 16; }

void unpack_rows(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, uint8_t *u) {
  const SchemeInfo &si = scheme_info(w.scheme);
  const int64_t rb = row_bytes(w.scheme, w.K);
  const int64_t rows_up = (rows + kNR - 1) / kNR * kNR;
  // Zero what the blocks do not cover: group padding (if any) and the rows past N.
  const bool dense = s.gp == s.bpg * kBlock && s.nb % s.bpg == 0;
  const int64_t from = dense ? rows : 0;
  std::memset(u + from * s.L, 0, static_cast<size_t>((rows_up - from) * s.L));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *row = w.qweight + (n0 + r) * rb;
    for (int64_t g = 0; g < s.G; ++g)  // group by group: no division per block
      for (int64_t b = g * s.bpg, e = b + s.group_blocks(g), o = r * s.L + g * s.gp; b < e; ++b, o += kBlock)
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(u + o), unpack_block(row + b * si.block_bytes, si.wbits));
  }
}

// 32 bytes of u (unsigned) times 32 int8 activations -> 8 int32 partial sums added to acc.
template <bool kWide>
inline __m256i dot32(__m256i acc, __m256i u, __m256i a) {
  const __m256i ones = _mm256_set1_epi16(1);
  if (!kWide) return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), ones));
  const __m256i ulo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(u));
  const __m256i uhi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(u, 1));
  const __m256i alo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(a));
  const __m256i ahi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(a, 1));
  acc = _mm256_add_epi32(acc, _mm256_madd_epi16(ulo, alo));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(uhi, ahi));
}

template <int MR, bool kWide>
void tile(const lowbit_weight &w, const Geometry &s, const IntEpilogue &ep, const int8_t *a,
          const int32_t *asum, const float *scale, const uint8_t *u, int64_t n0, int64_t r0,
          int64_t rows, int64_t m0, float *y) {
  const int off = scheme_info(w.scheme).code_offset;
  const int nr = static_cast<int>(std::min<int64_t>(kNR, rows - r0));
  float accf[MR][kNR] = {};
  for (int64_t g = 0; g < s.G; ++g) {
    __m256i acc[MR][kNR];
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < kNR; ++j) acc[i][j] = _mm256_setzero_si256();
    const int64_t base = g * s.gp;
    for (int64_t c = 0; c < s.gp; c += 32) {
      __m256i wv[kNR];
      LOWBIT_UNROLL
      for (int j = 0; j < kNR; ++j)
        wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(u + (r0 + j) * s.L + base + c));
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a + (m0 + i) * s.L + base + c));
        LOWBIT_UNROLL
        for (int j = 0; j < kNR; ++j) acc[i][j] = dot32<kWide>(acc[i][j], wv[j], av);
      }
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < nr; ++j) {
        const int32_t dot = hsum_epi32(acc[i][j]) - off * asum[(m0 + i) * s.G + g];
        accf[i][j] = ep.group(n0 + r0 + j, g, accf[i][j], dot);
      }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < nr; ++j)
      y[(m0 + i) * w.N + n0 + r0 + j] = ep.finish(n0 + r0 + j, accf[i][j], scale[m0 + i]);
}

template <bool kWide>
void run(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, 32);
  std::vector<int8_t> a(static_cast<size_t>(M * s.L));
  std::vector<int32_t> asum(static_cast<size_t>(M * s.G));
  stage_int8(s, q, M, a.data(), asum.data());
  const IntEpilogue ep{w, s.G};
  const int64_t task_rows = rows_per_task(M);
  run_tiles(w.N, M, task_rows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<uint8_t> ubuf;
    uint8_t *u = scratch(ubuf, static_cast<size_t>(task_rows * s.L));
    unpack_rows(w, s, n0, rows, u);
    for (int64_t m = m0; m < m0 + mc; m += kMR)
      for (int64_t r0 = 0; r0 < rows; r0 += kNR) {
        const int8_t *ap = a.data();
        const int32_t *sp = asum.data();
        switch (std::min<int64_t>(kMR, m0 + mc - m)) {
          case 4: tile<4, kWide>(w, s, ep, ap, sp, scale, u, n0, r0, rows, m, y); break;
          case 3: tile<3, kWide>(w, s, ep, ap, sp, scale, u, n0, r0, rows, m, y); break;
          case 2: tile<2, kWide>(w, s, ep, ap, sp, scale, u, n0, r0, rows, m, y); break;
          default: tile<1, kWide>(w, s, ep, ap, sp, scale, u, n0, r0, rows, m, y); break;
        }
      }
  });
}

}  // namespace

void integer(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  if (w.scheme == LOWBIT_W8A8) run<true>(w, q, scale, M, y);
  else run<false>(w, q, scale, M, y);
}

}  // namespace lowbit::avx2
