// AVX-512 fused-dequant kernel for w4a16 / w3a16 (float activations, float accumulation).
//
// Dequantization is a table lookup: per (row, group) a zmm holds the 16 possible weights
// scale * (u - zero), and vpermps uses the low 4 bits of each int32 lane as the index. For
// 4-bit codes one zero-extended byte holds code j (low nibble) and code j+16 (high nibble), so
// a block costs one vpmovzxbd, one shift and two vpermps for 32 weights.
//
// Few tokens (M <= 4): fused GEMV, the codes are decoded in registers and fed straight into
// FMAs for every token. More tokens: each task dequantizes its rows to a float32 buffer once
// and runs a 4 x 4 (tokens x rows) FMA microkernel over it, reusing every weight for M tokens.
// The accumulators run along K (16 partial sums per zmm) and are reduced once per output.
#include <immintrin.h>

#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

constexpr int kMR = 4, kNR = 4;
constexpr int64_t kGemvRows = 16, kGemmRows = 16;

// The 16-entry lookup table of row n, group g: scale * (u - zero) for u = 0..15.
inline __m512 make_table(const lowbit_weight &w, int64_t G, int64_t n, int64_t g) {
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 z = _mm512_set1_ps(static_cast<float>(w.zeros[n * G + g]));
  return _mm512_mul_ps(_mm512_sub_ps(iota, z), _mm512_set1_ps(_cvtsh_ss(w.scales[n * G + g])));
}

// One packed block -> weights of codes 0..15 (lo) and 16..31 (hi).
template <int kBits>
inline void decode(const uint8_t *p, __m512 tab, __m512 &lo, __m512 &hi) {
  if (kBits == 4) {
    const __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    lo = _mm512_permutexvar_ps(d, tab);
    hi = _mm512_permutexvar_ps(_mm512_srli_epi32(d, 4), tab);
  } else {
    // 3-bit: dword lane l holds byte l%8 of the low plane; shifting it by 2*(code/8) puts the
    // code's 2 low bits at the bottom; the high plane (one bit per code) sets bit 2 by mask.
    uint64_t lo8;
    uint32_t hi32;
    std::memcpy(&lo8, p, 8);
    std::memcpy(&hi32, p + 8, 4);
    const __m512i v = _mm512_cvtepu8_epi32(_mm_set1_epi64x(static_cast<long long>(lo8)));
    const __m512i three = _mm512_set1_epi32(3), four = _mm512_set1_epi32(4);
    const __m512i s01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i s23 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
    __m512i i0 = _mm512_and_si512(_mm512_srlv_epi32(v, s01), three);
    __m512i i1 = _mm512_and_si512(_mm512_srlv_epi32(v, s23), three);
    i0 = _mm512_mask_or_epi32(i0, _cvtu32_mask16(hi32 & 0xFFFF), i0, four);
    i1 = _mm512_mask_or_epi32(i1, _cvtu32_mask16(hi32 >> 16), i1, four);
    lo = _mm512_permutexvar_ps(i0, tab);
    hi = _mm512_permutexvar_ps(i1, tab);
  }
}

// Fused GEMV tile: MR tokens x up to 4 rows, decoding each block once for all MR tokens.
template <int kBits, int MR>
void gemv_tile(const lowbit_weight &w, const Geometry &s, const float *x, int64_t n0, int nr,
               int64_t m0, float *y) {
  const int64_t bb = scheme_info(w.scheme).block_bytes, rb = row_bytes(w.scheme, w.K);
  __m512 acc[MR][kNR];
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < kNR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < s.G; ++g) {
    __m512 tab[kNR];
    LOWBIT_UNROLL
    for (int j = 0; j < kNR; ++j) tab[j] = j < nr ? make_table(w, s.G, n0 + j, g) : _mm512_setzero_ps();
    const int64_t b_end = g * s.bpg + s.group_blocks(g);
    for (int64_t b = g * s.bpg; b < b_end; ++b) {
      __m512 xl[MR], xh[MR];
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i) {
        xl[i] = _mm512_loadu_ps(x + (m0 + i) * s.Kp + b * kBlock);
        xh[i] = _mm512_loadu_ps(x + (m0 + i) * s.Kp + b * kBlock + 16);
      }
      LOWBIT_UNROLL
      for (int j = 0; j < kNR; ++j) {
        if (j >= nr) break;
        __m512 lo, hi;
        decode<kBits>(w.qweight + (n0 + j) * rb + b * bb, tab[j], lo, hi);
        LOWBIT_UNROLL
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = _mm512_fmadd_ps(xl[i], lo, acc[i][j]);
          acc[i][j] = _mm512_fmadd_ps(xh[i], hi, acc[i][j]);
        }
      }
    }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < nr; ++j)
      y[(m0 + i) * w.N + n0 + j] = _mm512_reduce_add_ps(acc[i][j]) + (w.bias ? w.bias[n0 + j] : 0.0f);
}

// Rows [n0, n0+rows) dequantized to float32 [rows rounded up to 4][Kp] (padding rows zero).
template <int kBits>
void dequant_rows(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, float *wf) {
  const int64_t bb = scheme_info(w.scheme).block_bytes, rb = row_bytes(w.scheme, w.K);
  const int64_t rows_up = (rows + kNR - 1) / kNR * kNR;
  std::fill(wf + rows * s.Kp, wf + rows_up * s.Kp, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < s.G; ++g) {
      const __m512 tab = make_table(w, s.G, n0 + r, g);
      const int64_t b_end = g * s.bpg + s.group_blocks(g);
      for (int64_t b = g * s.bpg; b < b_end; ++b) {
        __m512 lo, hi;
        decode<kBits>(w.qweight + (n0 + r) * rb + b * bb, tab, lo, hi);
        _mm512_storeu_ps(wf + r * s.Kp + b * kBlock, lo);
        _mm512_storeu_ps(wf + r * s.Kp + b * kBlock + 16, hi);
      }
    }
}

// GEMM microkernel on dequantized rows: MR tokens x 4 rows, 16 accumulators along K.
template <int MR>
void gemm_tile(const lowbit_weight &w, const Geometry &s, const float *x, const float *wf, int64_t n0,
               int64_t r0, int nr, int64_t m0, float *y) {
  __m512 acc[MR][kNR];
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < kNR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < s.Kp; k += 16) {
    __m512 wv[kNR];
    LOWBIT_UNROLL
    for (int j = 0; j < kNR; ++j) wv[j] = _mm512_loadu_ps(wf + (r0 + j) * s.Kp + k);
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + (m0 + i) * s.Kp + k);
      LOWBIT_UNROLL
      for (int j = 0; j < kNR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < nr; ++j) {
      const int64_t n = n0 + r0 + j;
      y[(m0 + i) * w.N + n] = _mm512_reduce_add_ps(acc[i][j]) + (w.bias ? w.bias[n] : 0.0f);
    }
}

template <int kBits>
void run(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kBlock);
  std::vector<float> xp(static_cast<size_t>(M * s.Kp));
  stage_f32(s, x, M, xp.data());
  const float *xs = xp.data();
  if (M <= kMR) {
    run_tiles(w.N, M, kGemvRows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
      for (int64_t r0 = 0; r0 < rows; r0 += kNR) {
        const int nr = static_cast<int>(std::min<int64_t>(kNR, rows - r0));
        switch (mc) {
          case 4: gemv_tile<kBits, 4>(w, s, xs, n0 + r0, nr, m0, y); break;
          case 3: gemv_tile<kBits, 3>(w, s, xs, n0 + r0, nr, m0, y); break;
          case 2: gemv_tile<kBits, 2>(w, s, xs, n0 + r0, nr, m0, y); break;
          default: gemv_tile<kBits, 1>(w, s, xs, n0 + r0, nr, m0, y); break;
        }
      }
    });
    return;
  }
  run_tiles(w.N, M, kGemmRows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<float> wbuf;
    float *wf = scratch(wbuf, static_cast<size_t>(kGemmRows * s.Kp));
    dequant_rows<kBits>(w, s, n0, rows, wf);
    for (int64_t m = m0; m < m0 + mc; m += kMR)
      for (int64_t r0 = 0; r0 < rows; r0 += kNR) {
        const int nr = static_cast<int>(std::min<int64_t>(kNR, rows - r0));
        switch (std::min<int64_t>(kMR, m0 + mc - m)) {
          case 4: gemm_tile<4>(w, s, xs, wf, n0, r0, nr, m, y); break;
          case 3: gemm_tile<3>(w, s, xs, wf, n0, r0, nr, m, y); break;
          case 2: gemm_tile<2>(w, s, xs, wf, n0, r0, nr, m, y); break;
          default: gemm_tile<1>(w, s, xs, wf, n0, r0, nr, m, y); break;
        }
      }
  });
}

}  // namespace

void weight_only(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  if (w.scheme == LOWBIT_W4A16) run<4>(w, x, M, y);
  else run<3>(w, x, M, y);
}

}  // namespace lowbit::avx512
