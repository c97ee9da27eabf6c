// AVX2 fused-dequant kernel for w4a16 / w3a16.
//
// Each task dequantizes its rows once to a float32 buffer, w = scale * (u - zero) (codes
// unpacked to bytes, widened with vpmovzxbd), then a 4 x 2 (tokens x rows) FMA microkernel runs
// over it with 8 accumulators along K, reduced once per output. For M = 1 the buffer is a
// 16-row slice that stays in L1/L2, so the extra store and load are cheap next to DRAM.
#include "cpu/avx2/unpack.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx2 {
namespace {

constexpr int kMR = 4, kNR = 2;
constexpr int64_t kRows = 16;

void dequant_rows(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, float *wf) {
  const SchemeInfo &si = scheme_info(w.scheme);
  const int64_t rb = row_bytes(w.scheme, w.K);
  std::fill(wf + rows * s.Kp, wf + kRows * s.Kp, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < s.G; ++g) {
      const __m256 z = _mm256_set1_ps(static_cast<float>(w.zeros[(n0 + r) * s.G + g]));
      const __m256 sc = _mm256_set1_ps(_cvtsh_ss(w.scales[(n0 + r) * s.G + g]));
      const int64_t b_end = g * s.bpg + s.group_blocks(g);
      for (int64_t b = g * s.bpg; b < b_end; ++b) {
        const __m256i u = unpack_block(w.qweight + (n0 + r) * rb + b * si.block_bytes, si.wbits);
        const __m128i halves[2] = {_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)};
        float *out = wf + r * s.Kp + b * kBlock;
        LOWBIT_UNROLL
        for (int h = 0; h < 2; ++h)
          LOWBIT_UNROLL
          for (int e = 0; e < 2; ++e) {
            const __m128i bytes = e ? _mm_srli_si128(halves[h], 8) : halves[h];
            const __m256 uf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
            _mm256_storeu_ps(out + h * 16 + e * 8, _mm256_mul_ps(_mm256_sub_ps(uf, z), sc));
          }
      }
    }
}

template <int MR>
void tile(const lowbit_weight &w, const Geometry &s, const float *x, const float *wf, int64_t n0,
          int64_t r0, int nr, int64_t m0, float *y) {
  __m256 acc[MR][kNR];
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < kNR; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < s.Kp; k += 8) {
    __m256 wv[kNR];
    LOWBIT_UNROLL
    for (int j = 0; j < kNR; ++j) wv[j] = _mm256_loadu_ps(wf + (r0 + j) * s.Kp + k);
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + (m0 + i) * s.Kp + k);
      LOWBIT_UNROLL
      for (int j = 0; j < kNR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < nr; ++j) {
      const int64_t n = n0 + r0 + j;
      y[(m0 + i) * w.N + n] = hsum_ps(acc[i][j]) + (w.bias ? w.bias[n] : 0.0f);
    }
}

}  // namespace

bool weight_only_layout(const lowbit_weight &w, const float *x, int64_t M, float *y);  // layout_gemv.cpp

void weight_only(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  if (weight_only_layout(w, x, M, y)) return;  // few tokens and a CPU layout
  const Geometry s = make_geometry(w, kBlock);
  std::vector<float> xp(static_cast<size_t>(M * s.Kp));
  stage_f32(s, x, M, xp.data());
  const float *xs = xp.data();
  run_tiles(w.N, M, kRows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<float> wbuf;
    float *wf = scratch(wbuf, static_cast<size_t>(kRows * s.Kp));
    dequant_rows(w, s, n0, rows, wf);
    for (int64_t m = m0; m < m0 + mc; m += kMR)
      for (int64_t r0 = 0; r0 < rows; r0 += kNR) {
        const int nr = static_cast<int>(std::min<int64_t>(kNR, rows - r0));
        switch (std::min<int64_t>(kMR, m0 + mc - m)) {
          case 4: tile<4>(w, s, xs, wf, n0, r0, nr, m, y); break;
          case 3: tile<3>(w, s, xs, wf, n0, r0, nr, m, y); break;
          case 2: tile<2>(w, s, xs, wf, n0, r0, nr, m, y); break;
          default: tile<1>(w, s, xs, wf, n0, r0, nr, m, y); break;
        }
      }
  });
}

}  // namespace lowbit::avx2
