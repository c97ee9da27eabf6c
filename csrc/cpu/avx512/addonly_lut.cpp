// AVX-512 add-only GEMM (many tokens) for ternary and binary weights by per-token lookup
// tables of partial sums (the T-MAC / bitnet.cpp "TL" idea), exact in integers.
//
// Why: the masked-add kernel (addonly.cpp) spends two masked 16-bit adds per 32 weights, token
// and row for ternary, and masked adds ran at ~0.6 per cycle on Zen 4, below torch's fp32 GEMM
// at M = 512. Here every 4 consecutive activations of a token get a table of the 16 sums of
// their subsets (T[j] = sum of x[i] over the bits i of j; built with adds), and one vpermw
// looks up 32 rows at once: a row's 4 weights are a "plus" and a "minus" nibble
// (ternary: sum = T[plus] - T[minus]; binary: sum = 2 T[plus] - sum x, the group sum of x
// staged once), so a vpermw plus an add covers 32 rows x 4 weights. Still add-only: no
// multiplication anywhere (tables, lookups and sums are adds and subtracts).
//
// Layout per call: idx[panel of 32 rows][k-group of 4][32 rows] bytes, plus | minus << 4,
// built from the canonical codes (both nibbles of a byte serve vpermw: the plus lookup reads
// the low 5 bits, and the table is repeated in entries 16-31 so bit 4 does not matter).
// Tables: tab[token][k-group][32] int16. int16 lanes absorb 64 k-groups (64 * 4 * 127 < 2^15)
// before they are widened to int32. The float epilogue is the reference's (IntEpilogue).
#include <immintrin.h>

#include <vector>

#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

constexpr int64_t kPanel = 32;        // rows per vector of 16-bit lanes
constexpr int kR = 4;                 // panels per kernel call (128 rows)
constexpr int kMT = 4;                // tokens per kernel call
constexpr int64_t kWiden = 64;        // k-groups an int16 lane absorbs
constexpr int64_t kChunkTokens = 64;  // tokens whose tables are built at a time (bounded memory)

// Plus/minus masks of one packed block (bit i: code i is +1 / -1).
inline void block_masks(bool binary, const uint8_t *blk, uint32_t &plus, uint32_t &minus) {
  if (binary) {
    std::memcpy(&plus, blk, 4);
    minus = 0;
    return;
  }
  // Ternary: qword s of the broadcast block, shifted right by 2s, holds codes 8s..8s+7 in its
  // bytes; bit 1 set means u = 2 (+1), both bits clear means u = 0 (-1).
  uint64_t v;
  std::memcpy(&v, blk, 8);
  const __m256i c = _mm256_srlv_epi64(_mm256_set1_epi64x(static_cast<long long>(v)), _mm256_setr_epi64x(0, 2, 4, 6));
  plus = _cvtmask32_u32(_mm256_test_epi8_mask(c, _mm256_set1_epi8(2)));
  minus = _cvtmask32_u32(_mm256_testn_epi8_mask(c, _mm256_set1_epi8(3)));
}

// Index bytes of panel p (rows 32p..32p+31; rows past N: 0) into out[nkg][32].
void build_index(const lowbit_weight &w, const Geometry &s, int64_t p, uint8_t *out) {
  const bool binary = w.scheme == LOWBIT_BINARY;
  const int64_t rb = row_bytes(w.scheme, w.K), bb = scheme_info(w.scheme).block_bytes;
  for (int64_t r = 0; r < kPanel; ++r) {
    const int64_t n = p * kPanel + r;
    for (int64_t b = 0; b < s.nb; ++b) {
      uint64_t nib = 0;
      if (n < w.N) {
        uint32_t plus, minus;
        block_masks(binary, w.qweight + n * rb + b * bb, plus, minus);
        nib = _pdep_u64(plus, 0x0F0F0F0F0F0F0F0FULL) | _pdep_u64(minus, 0x0F0F0F0F0F0F0F0FULL) << 4;
      }
      for (int t = 0; t < 8; ++t) out[(8 * b + t) * kPanel + r] = static_cast<uint8_t>(nib >> (8 * t));
    }
  }
}

// Tables of one token: tab[kg][32], entry j = sum of x[4kg + i] over the bits i of (j & 15).
void build_tables(const int8_t *x, int64_t K, int64_t nkg, int16_t *tab) {
  const __mmask32 bit[4] = {0xAAAAAAAAu, 0xCCCCCCCCu, 0xF0F0F0F0u, 0xFF00FF00u};
  for (int64_t kg = 0; kg < nkg; ++kg) {
    __m512i t = _mm512_setzero_si512();
    for (int i = 0; i < 4; ++i) {
      const int64_t k = 4 * kg + i;
      if (k < K) t = _mm512_mask_add_epi16(t, bit[i], t, _mm512_set1_epi16(x[k]));
    }
    _mm512_storeu_si512(tab + kg * 32, t);
  }
}

// dot[i][r * 32 + l] += sum over k-groups [kg0, kg1) (at most kWiden) for MT tokens, kR panels.
template <bool kBinary, int MT>
void lut_span(const uint8_t *idx, int64_t idx_stride, const int16_t *tab, int64_t tab_stride, int64_t kg0,
              int64_t kg1, int32_t *dot) {
  __m512i acc[MT][kR];
  LOWBIT_UNROLL
  for (int i = 0; i < MT; ++i)
    LOWBIT_UNROLL
    for (int r = 0; r < kR; ++r) acc[i][r] = _mm512_setzero_si512();
  for (int64_t kg = kg0; kg < kg1; ++kg) {
    __m512i plus[kR], minus[kR];
    LOWBIT_UNROLL
    for (int r = 0; r < kR; ++r) {
      plus[r] = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(idx + r * idx_stride + kg * kPanel)));
      if (!kBinary) minus[r] = _mm512_srli_epi16(plus[r], 4);
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MT; ++i) {
      const __m512i t = _mm512_loadu_si512(tab + i * tab_stride + kg * 32);
      LOWBIT_UNROLL
      for (int r = 0; r < kR; ++r) {
        acc[i][r] = _mm512_add_epi16(acc[i][r], _mm512_permutexvar_epi16(plus[r], t));
        if (!kBinary) acc[i][r] = _mm512_sub_epi16(acc[i][r], _mm512_permutexvar_epi16(minus[r], t));
      }
    }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MT; ++i)
    LOWBIT_UNROLL
    for (int r = 0; r < kR; ++r) {
      int32_t *d = dot + i * kR * kPanel + r * kPanel;
      const __m512i lo = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(acc[i][r]));
      const __m512i hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(acc[i][r], 1));
      _mm512_storeu_si512(d, _mm512_add_epi32(_mm512_loadu_si512(d), lo));
      _mm512_storeu_si512(d + 16, _mm512_add_epi32(_mm512_loadu_si512(d + 16), hi));
    }
}

// Rows of panels [p0, p0 + kR) for MT tokens from m (tables of token m at tab).
template <bool kBinary, int MT>
void lut_tile(const lowbit_weight &w, const Geometry &s, const IntEpilogue &ep, const uint8_t *idx,
              int64_t idx_stride, const int16_t *tab, int64_t tab_stride, const int32_t *tsum, const float *scale,
              int64_t p0, int64_t m, float *y) {
  alignas(64) int32_t dot[MT * kR * kPanel];
  float accf[MT][kR * kPanel] = {};
  const int64_t n0 = p0 * kPanel, rows = std::min<int64_t>(kR * kPanel, w.N - n0);
  for (int64_t g = 0; g < s.G; ++g) {
    std::memset(dot, 0, sizeof dot);
    const int64_t kg_end = (g * s.bpg + s.group_blocks(g)) * 8;
    for (int64_t kg = g * s.bpg * 8; kg < kg_end; kg += kWiden)
      lut_span<kBinary, MT>(idx, idx_stride, tab, tab_stride, kg, std::min(kg_end, kg + kWiden), dot);
    for (int i = 0; i < MT; ++i)
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t d = dot[i * kR * kPanel + r];
        accf[i][r] = ep.group(n0 + r, g, accf[i][r], kBinary ? 2 * d - tsum[(m + i) * s.G + g] : d);
      }
  }
  for (int i = 0; i < MT; ++i)
    for (int64_t r = 0; r < rows; ++r) y[(m + i) * w.N + n0 + r] = ep.finish(n0 + r, accf[i][r], scale[m + i]);
}

template <bool kBinary>
void lut_gemm(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kBlock);
  const int64_t nkg = s.Kp / 4, panels = (w.N + kPanel - 1) / kPanel;
  const int64_t groups = (panels + kR - 1) / kR;  // of kR panels; the index is padded to whole groups
  const int64_t idx_stride = nkg * kPanel, tab_stride = nkg * 32;
  std::vector<uint8_t> idx(static_cast<size_t>(groups * kR * idx_stride));
  parallel_for(groups * kR, [&](int64_t p) { build_index(w, s, p, idx.data() + p * idx_stride); });
  std::vector<int32_t> tsum(static_cast<size_t>(kBinary ? M * s.G : 0));  // binary: sum q per group
  for (int64_t m = 0; kBinary && m < M; ++m)
    for (int64_t g = 0; g < s.G; ++g) {
      int32_t sum = 0;
      for (int64_t k = g * s.bpg * kBlock; k < std::min(w.K, (g * s.bpg + s.group_blocks(g)) * kBlock); ++k)
        sum += q[m * w.K + k];
      tsum[m * s.G + g] = sum;
    }
  const IntEpilogue ep{w, s.G};
  std::vector<int16_t> tab(static_cast<size_t>(std::min(M, kChunkTokens) * tab_stride));
  for (int64_t c0 = 0; c0 < M; c0 += kChunkTokens) {
    const int64_t mc = std::min(kChunkTokens, M - c0);
    parallel_for(mc, [&](int64_t i) { build_tables(q + (c0 + i) * w.K, w.K, nkg, tab.data() + i * tab_stride); });
    parallel_for(groups, [&](int64_t pg) {
      const uint8_t *ix = idx.data() + pg * kR * idx_stride;
      for (int64_t i = 0; i < mc; i += kMT) {
        const int16_t *tb = tab.data() + i * tab_stride;
        const int64_t m = c0 + i;
        switch (std::min<int64_t>(kMT, mc - i)) {
          case 4: lut_tile<kBinary, 4>(w, s, ep, ix, idx_stride, tb, tab_stride, tsum.data(), scale, pg * kR, m, y); break;
          case 3: lut_tile<kBinary, 3>(w, s, ep, ix, idx_stride, tb, tab_stride, tsum.data(), scale, pg * kR, m, y); break;
          case 2: lut_tile<kBinary, 2>(w, s, ep, ix, idx_stride, tb, tab_stride, tsum.data(), scale, pg * kR, m, y); break;
          default: lut_tile<kBinary, 1>(w, s, ep, ix, idx_stride, tb, tab_stride, tsum.data(), scale, pg * kR, m, y); break;
        }
      }
    });
  }
}

}  // namespace

void addonly_lut(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  if (w.scheme == LOWBIT_BINARY) lut_gemm<true>(w, q, scale, M, y);
  else lut_gemm<false>(w, q, scale, M, y);
}

}  // namespace lowbit::avx512
