// AVX2 fused-dequant kernel for w4a16 / w3a16: the GEMM (and the GEMV when no CPU layout is
// given; few tokens with a layout go to layout_gemv.cpp).
//
// Each task takes 32 rows as 2 panels of 16, dequantizes them once, w = scale * (u - zero),
// into transposed float32 panels wT[k][16] (8 rows x 8 codes at a time, transposed in
// registers), and runs all of its tokens over them with a 5 x 16 register tile: per k, two
// panel vectors (the 16 rows) and five broadcast activations feed 10 FMAs into accumulators
// whose lanes are rows, so outputs need no horizontal sums and the loads stay below the FMA
// rate. (The kernel before it, a 4 x 2 tile along K with 6 loads per 8 FMAs and a horizontal
// sum per output, ran 4096x4096 M = 512 at 0.66x torch fp32 on the 2-core Zen 3:
// bench/results/cpu_avx2_before.md.) The tokens are staged interleaved, xp[M / 5][Kp][5], so
// each tile reads one sequential stream of them.
#include "cpu/avx2/unpack.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx2 {
namespace {

constexpr int kMR = 5;            // tokens per register tile
constexpr int64_t kRows = 16;     // rows per panel: two ymm of lanes
constexpr int64_t kTaskRows = 32; // rows per task: 2 panels

// In-register transpose of an 8 x 8 float matrix: r[i] lane j <-> r[j] lane i.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
    r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
  }
}

// Blocks [b0, b1) of rows [n0, n0+rows) -> wT[(b1 - b0) * 32][16] (rows past the end: zero).
// Codes past K dequantize to whatever their zero point gives; their activations are zeros.
void dequant_panel(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, int64_t b0, int64_t b1,
                   float *wT) {
  const SchemeInfo &si = scheme_info(w.scheme);
  const int64_t rb = row_bytes(w.scheme, w.K);
  for (int h = 0; h < 2; ++h)  // 8 rows at a time: lanes 8h..8h+7 of the panel
    for (int64_t g = b0 / s.bpg; g * s.bpg < b1; ++g) {
      __m256 z[8], sc[8];
      for (int i = 0; i < 8; ++i) {
        const int64_t r = 8 * h + i;
        const bool live = r < rows;
        z[i] = _mm256_set1_ps(live ? static_cast<float>(w.zeros[(n0 + r) * s.G + g]) : 0.0f);
        sc[i] = _mm256_set1_ps(live ? _cvtsh_ss(w.scales[(n0 + r) * s.G + g]) : 0.0f);
      }
      for (int64_t b = std::max(b0, g * s.bpg), b_end = std::min(b1, g * s.bpg + s.group_blocks(g)); b < b_end; ++b) {
        __m256i u[8];
        for (int i = 0; i < 8; ++i) {
          const int64_t r = std::min<int64_t>(8 * h + i, rows - 1);  // past the end: any row, scale 0
          u[i] = unpack_block(w.qweight + (n0 + r) * rb + b * si.block_bytes, si.wbits);
        }
        for (int e = 0; e < 4; ++e) {  // codes 8e..8e+7 of the block
          __m256 v[8];
          for (int i = 0; i < 8; ++i) {
            const __m128i half = e < 2 ? _mm256_castsi256_si128(u[i]) : _mm256_extracti128_si256(u[i], 1);
            const __m128i bytes = e % 2 ? _mm_srli_si128(half, 8) : half;
            v[i] = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)), z[i]), sc[i]);
          }
          transpose8(v);  // v[j] = code 8e + j of the 8 rows
          float *out = wT + ((b - b0) * kBlock + 8 * e) * kRows + 8 * h;
          for (int j = 0; j < 8; ++j) _mm256_storeu_ps(out + j * kRows, v[j]);
        }
      }
    }
}

// x[M][K] -> xp[ceil(M / 5)][Kp][5], zeros past K and past M; token blocks spread over the
// threads (serial, it was ~10% of a 576x576 M = 512 call).
void stage_interleaved(const Geometry &s, const float *x, int64_t M, float *xp) {
  parallel_for((M + kMR - 1) / kMR, [&](int64_t blk_i) {
    const int64_t m0 = blk_i * kMR;
    float *blk = xp + blk_i * s.Kp * kMR;
    std::fill(blk, blk + s.Kp * kMR, 0.0f);
    for (int64_t i = 0; i < std::min<int64_t>(kMR, M - m0); ++i)
      for (int64_t k = 0; k < s.K; ++k) blk[k * kMR + i] = x[(m0 + i) * s.K + k];
  });
}

// Rows n0 + 8j .. n0 + 8j + 7 of y (or bias), the first nr - 8j of them: plain moves for a full
// panel, masked ones only for a ragged last panel (vmaskmovps is microcoded on AMD: tens of
// cycles a store).
inline __m256i row_mask(int64_t nr, int j) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nr - 8 * j)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256 load_rows(const float *p, int64_t nr, int j) {
  return nr == kRows ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, row_mask(nr, j));
}
inline void store_rows(float *p, int64_t nr, int j, __m256 v) {
  if (nr == kRows) _mm256_storeu_ps(p, v);
  else _mm256_maskstore_ps(p, row_mask(nr, j), v);
}

// y[m0..m0+MR, n0..n0+nr) = x . wT + bias: 2 x MR accumulators, lanes = rows. m0 is a
// multiple of kMR: the tokens are the first MR of their interleaved block.
template <int MR>
void tile(const lowbit_weight &w, const Geometry &s, const float *xp, const float *wT, int64_t n0, int64_t nr,
          int64_t m0, float *y) {
  // 10 accumulators + 2 panel vectors + 1 broadcast: with 6 tokens (12 accumulators) GCC
  // spilled one, and the loop became a store-forwarding chain (0.5x torch fp32).
  __m256 acc[MR][2];
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  const float *xb_p = xp + (m0 / kMR) * s.Kp * kMR;
  const float *wk = wT;
  for (int64_t k = 0; k < s.Kp; ++k, wk += kRows, xb_p += kMR) {
    const __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8);
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m256 xb = _mm256_broadcast_ss(xb_p + i);
      acc[i][0] = _mm256_fmadd_ps(xb, w0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(xb, w1, acc[i][1]);
    }
  }
  LOWBIT_UNROLL
  for (int j = 0; j < 2; ++j) {
    const __m256 bias = w.bias ? load_rows(w.bias + n0 + 8 * j, nr, j) : _mm256_setzero_ps();
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i) store_rows(y + (m0 + i) * w.N + n0 + 8 * j, nr, j, _mm256_add_ps(acc[i][j], bias));
  }
}

}  // namespace

bool weight_only_layout(const lowbit_weight &w, const float *x, int64_t M, float *y);  // layout_gemv.cpp

void weight_only(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  if (weight_only_layout(w, x, M, y)) return;  // few tokens and a CPU layout
  const Geometry s = make_geometry(w, kBlock);
  std::vector<float> xp(static_cast<size_t>((M + kMR - 1) / kMR * kMR * s.Kp));
  stage_interleaved(s, x, M, xp.data());
  const float *xs = xp.data();
  // Tasks of 2 panels (32 rows) x a range of tokens starting on a block of xp (split as
  // run_tiles does when there are too few row tasks for the threads). Measured ad hoc at
  // 4096x4096 / 576x1536, M = 512 (x torch fp32): 16-row tasks 1.22 / 0.93, 32 rows 1.32 / 0.97,
  // 64 rows 1.20-1.34 / 0.82-0.93; blocking K by 256 (y accumulated across blocks) 0.82 / 0.78.
  const int64_t n_tasks = (w.N + kTaskRows - 1) / kTaskRows;
  int64_t mb = M;
  if (M >= 64 && n_tasks < 4 * num_threads()) mb = (std::max<int64_t>(32, (M + 3) / 4) + kMR - 1) / kMR * kMR;
  const int64_t m_tiles = (M + mb - 1) / mb;
  parallel_for(n_tasks * m_tiles, [&](int64_t t) {
    const int64_t t0 = (t / m_tiles) * kTaskRows, m0 = (t % m_tiles) * mb;
    const int64_t task_rows = std::min(kTaskRows, w.N - t0), mc = std::min(mb, M - m0);
    const int64_t panels = (task_rows + kRows - 1) / kRows;
    static thread_local std::vector<float> wbuf;
    float *wT = scratch(wbuf, static_cast<size_t>(kTaskRows * s.Kp));
    for (int64_t p = 0; p < panels; ++p)
      dequant_panel(w, s, t0 + p * kRows, std::min(kRows, task_rows - p * kRows), 0, s.nb, wT + p * kRows * s.Kp);
    for (int64_t m = m0; m < m0 + mc; m += kMR)
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t n0 = t0 + p * kRows, nr = std::min(kRows, w.N - n0);
        const float *wp = wT + p * kRows * s.Kp;
        switch (std::min<int64_t>(kMR, m0 + mc - m)) {
          case 5: tile<5>(w, s, xs, wp, n0, nr, m, y); break;
          case 4: tile<4>(w, s, xs, wp, n0, nr, m, y); break;
          case 3: tile<3>(w, s, xs, wp, n0, nr, m, y); break;
          case 2: tile<2>(w, s, xs, wp, n0, nr, m, y); break;
          default: tile<1>(w, s, xs, wp, n0, nr, m, y); break;
        }
      }
  });
}

}  // namespace lowbit::avx2
