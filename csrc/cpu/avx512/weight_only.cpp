// AVX-512 fused-dequant kernel for w4a16 / w3a16 (float activations, float accumulation).
//
// Dequantization is a table lookup: per (row, group) a zmm holds the 16 possible weights
// scale * (u - zero), and vpermps uses the low 4 bits of each int32 lane as the index. For
// 4-bit codes one zero-extended byte holds code j (low nibble) and code j+16 (high nibble), so
// a block costs one vpmovzxbd, one shift and two vpermps for 32 weights.
//
// Few tokens (M < 16): fused GEMV (gemv_chunk_tile), 4 rows at a time, each row read once in
// chunks of 4 blocks and decoded in registers straight into FMAs for every token. The decode
// leaves codes in the lane order the packed bits fall in and the activations are staged once
// per call in that order (see stage_chunks): for 4 bits, vpermps reads only the low 4 bits of
// each index lane, so a 32-bit lane shifted right by 4t is already the index of its nibble t
// (no unpacking at all); for 3 bits, a shift of the low plane and a rotate of the high plane,
// merged by one vpternlogd, make the index.
//
// More tokens: see the GEMM section below (a dequantized, transposed panel of 32 rows and an
// outer-product microkernel).
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "cpu/avx512/gemv.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

constexpr int kNR = 4;

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

// ---- GEMM (many tokens) ---------------------------------------------------------------------
//
// A task dequantizes a panel of 32 rows once and transposes it to wt[k][32], so that one
// k-step is two zmm of weights (32 rows) times one broadcast activation per token: an
// outer-product microkernel of 12 tokens x 32 rows keeps 24 accumulators in registers, needs
// no horizontal reductions, and loads 2 weight vectors per 24 FMAs (the broadcasts are FMA
// memory operands). The panel (Kp x 128 bytes) stays in L2 while all the task's tokens pass.
constexpr int64_t kPanel = 32;
constexpr int kGemmMR = 12;

// In-register transpose of 16 x 16 floats (rows r[i] -> columns r[c]): 32-bit, then 64-bit
// interleaves within 128-bit lanes, then two rounds of 128-bit lane shuffles.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16], v[16];
  LOWBIT_UNROLL
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  LOWBIT_UNROLL
  for (int q = 0; q < 4; ++q) {  // rows 4q..4q+3; u[4q + c] holds columns c, c+4, c+8, c+12
    const __m512d a0 = _mm512_castps_pd(t[4 * q]), a1 = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d a2 = _mm512_castps_pd(t[4 * q + 2]), a3 = _mm512_castps_pd(t[4 * q + 3]);
    u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  LOWBIT_UNROLL
  for (int c = 0; c < 4; ++c) {  // v[c] / v[c + 4]: columns c, c+8 / c+4, c+12 of rows 0..7;
    v[c] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);       // v[c + 8] / v[c + 12]: rows 8..15
    v[c + 4] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
    v[c + 8] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    v[c + 12] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
  }
  LOWBIT_UNROLL
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(v[c], v[c + 8], 0x88);
    r[c + 8] = _mm512_shuffle_f32x4(v[c], v[c + 8], 0xDD);
    r[c + 4] = _mm512_shuffle_f32x4(v[c + 4], v[c + 12], 0x88);
    r[c + 12] = _mm512_shuffle_f32x4(v[c + 4], v[c + 12], 0xDD);
  }
}

template <int kBits>
void dequant_panel(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, float *tmp, float *wt) {
  dequant_rows<kBits>(w, s, n0, rows, tmp);
  std::fill(tmp + (rows + kNR - 1) / kNR * kNR * s.Kp, tmp + kPanel * s.Kp, 0.0f);
  // 16 x 16 register transposes: a scalar copy would cost more than the FMAs at M ~ 64.
  for (int64_t h = 0; h < kPanel; h += 16)
    for (int64_t k0 = 0; k0 < s.Kp; k0 += 16) {
      __m512 r[16];
      LOWBIT_UNROLL
      for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(tmp + (h + i) * s.Kp + k0);
      transpose16(r);
      LOWBIT_UNROLL
      for (int c = 0; c < 16; ++c) _mm512_storeu_ps(wt + (k0 + c) * kPanel + h, r[c]);
    }
}

// x(i, k) = x[k * ld_k + i * ld_i]: token-interleaved blocks of 12 (ld_k = 12, ld_i = 1) or
// plain rows with a padded stride for the last tokens.
template <int MR>
void panel_tile(const lowbit_weight &w, const Geometry &s, const float *x, int64_t ld_k, int64_t ld_i,
                const float *wt, int64_t n0, int nr, int64_t m0, float *y) {
  __m512 acc[MR][2];
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < s.Kp; ++k) {
    const __m512 w0 = _mm512_loadu_ps(wt + k * kPanel), w1 = _mm512_loadu_ps(wt + k * kPanel + 16);
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m512 b = _mm512_set1_ps(x[k * ld_k + i * ld_i]);
      acc[i][0] = _mm512_fmadd_ps(b, w0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(b, w1, acc[i][1]);
    }
  }
  const __mmask16 k0 = static_cast<__mmask16>(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
  const __mmask16 k1 = static_cast<__mmask16>(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
  const __m512 b0 = w.bias ? _mm512_maskz_loadu_ps(k0, w.bias + n0) : _mm512_setzero_ps();
  const __m512 b1 = w.bias ? _mm512_maskz_loadu_ps(k1, w.bias + n0 + 16) : _mm512_setzero_ps();
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i) {
    _mm512_mask_storeu_ps(y + (m0 + i) * w.N + n0, k0, _mm512_add_ps(acc[i][0], b0));
    _mm512_mask_storeu_ps(y + (m0 + i) * w.N + n0 + 16, k1, _mm512_add_ps(acc[i][1], b1));
  }
}

// ---- fused GEMV: float activations as fixed-point digits, integer dot products ---------------
//
// A float dot product costs one FMA per weight plus a table lookup per 16 weights; VNNI does
// 64 byte products per instruction. So the GEMV turns the float activations into integers
// once per call and runs the integer GEMV's machinery (decode_chunk, byte_chunk_perm):
//
//   * per (token, group), x = m * unit with unit = 2^(e - 30) and |x| < 2^e: m = round(x / unit)
//     is a 31-bit integer (|m| <= 2^30), so |x - m * unit| <= 2^-31 * max|x| of the group: far
//     below fp32's rounding even next to a 10^4 outlier (23 bits, 3 planes, were not: with
//     such an outlier in the group, the small activations kept too few bits);
//   * m = sum_p d_p 256^p over kPlanes = 4 balanced digits d_p in [-128, 127] (d_3 in [-65, 65]);
//   * the weight is centred per element, w = u - zero in [-15, 15] (signed), and vpdpbusd
//     takes the digit + 128 as its unsigned operand: sum (d + 128) * w - 128 * sum w =
//     sum d * w exactly, where sum w comes from one more vpdpbusd against ones. Lanes that the
//     chunk does not cover (group padding, masked loads) have d = 0 and cancel the same way;
//   * per group and lane the three int32 plane sums are exact; they meet in float:
//     acc += scale * unit * sum_p 256^p P_p, one horizontal sum per row at the end.
// The result differs from the float reference only by fp32 rounding (tests: 1e-5).
//
// One token at a time (4 rows x 4 planes = 16 int32 accumulators, 4 weight sums, 4 float
// accumulators; the activation vectors are reloaded from L1 per row, loads are cheap next to
// the 10 vpdpbusd per row and chunk); M < 16 re-reads the tile's rows from L1.

constexpr int kPlanes = 4;

// Activations of M tokens as digit planes: plane p of token m at a + (kPlanes m + p) * s.L, in
// byte_chunk_perm order, stored as d + 128; unit[m * G + g] = 2^(e - 30) (NaN if the group
// holds an Inf or NaN, so that the output is NaN as in float arithmetic).
void stage_digits(const Geometry &s, const float *x, int64_t M, const uint8_t *perm, uint8_t *a, float *unit) {
  std::memset(a, 128, static_cast<size_t>(kPlanes * M * s.L));
  for (int64_t m = 0; m < M; ++m) {
    const float *xm = x + m * s.K;
    for (int64_t g = 0; g < s.G; ++g) {
      const int64_t k0 = g * s.bpg * kBlock, k1 = std::min(s.K, k0 + s.bpg * kBlock);
      float mx = 0.0f;
      bool finite = true;  // (std::max would skip a NaN)
      for (int64_t k = k0; k < k1; ++k) {
        mx = std::max(mx, std::fabs(xm[k]));
        finite = finite && std::isfinite(xm[k]);
      }
      if (!finite) {
        unit[m * s.G + g] = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      int e = 0;
      std::frexp(mx, &e);  // mx < 2^e
      unit[m * s.G + g] = std::ldexp(1.0f, e - 30);
      uint8_t *ag = a + kPlanes * m * s.L + g * s.gp;
      for (int64_t c = 0; c < s.gp; c += kChunk)
        for (int p = 0; p < kChunk; ++p) {
          const int64_t k = k0 + c + perm[p];
          if (k >= k1) continue;
          int32_t v = static_cast<int32_t>(std::lrint(std::ldexp(static_cast<double>(xm[k]), 30 - e)));
          for (int q = 0; q < kPlanes; ++q) {  // balanced base-256 digits; the last takes the rest
            const int32_t d = q + 1 < kPlanes ? static_cast<int8_t>(v & 0xFF) : v;
            ag[q * s.L + c + p] = static_cast<uint8_t>(d + 128);
            v = (v - d) >> 8;
          }
        }
    }
  }
}

// Token m, rows n0..n0+3.
template <int kBits>
void gemv_tile(const lowbit_weight &w, const Geometry &s, const Dec3 &d3, const uint8_t *a, const float *unit,
               int64_t n0, int64_t m, float *y) {
  const Rows4 r(w, n0);
  const int64_t rb = row_bytes(w.scheme, w.K), bb = scheme_info(w.scheme).block_bytes;
  const __m512i ones = _mm512_set1_epi8(1);
  __m512 facc[kRows];
  LOWBIT_UNROLL
  for (int j = 0; j < kRows; ++j) facc[j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < s.G; ++g) {
    __m512i acc[kPlanes][kRows], wsum[kRows];
    uint8_t zero[kRows];
    LOWBIT_UNROLL
    for (int j = 0; j < kRows; ++j) {
      wsum[j] = _mm512_setzero_si512();
      LOWBIT_UNROLL
      for (int p = 0; p < kPlanes; ++p) acc[p][j] = _mm512_setzero_si512();
      zero[j] = w.zeros[r.n[j] * s.G + g];
    }
    const int64_t b0 = g * s.bpg, nbg = s.group_blocks(g);
    const uint8_t *ag = a + kPlanes * m * s.L + g * s.gp;
    for (int64_t c = 0; c < nbg; c += 4) {
      const int64_t nblk = std::min<int64_t>(4, nbg - c), boff = (b0 + c) * bb;
      LOWBIT_UNROLL
      for (int j = 0; j < kRows; ++j) prefetch_next_tile(r.p[j], rb, boff, 4 * bb);
      const uint8_t *xc = ag + c * kBlock;
      LOWBIT_UNROLL
      for (int j = 0; j < kRows; ++j) {
        __m512i u0, u1;
        decode_chunk<kBits>(r.p[j] + boff, nblk, d3, u0, u1);
        const __m512i z = _mm512_set1_epi8(static_cast<char>(zero[j]));
        u0 = _mm512_sub_epi8(u0, z);  // signed u - zero
        u1 = _mm512_sub_epi8(u1, z);
        wsum[j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(wsum[j], ones, u0), ones, u1);
        LOWBIT_UNROLL
        for (int p = 0; p < kPlanes; ++p)
          acc[p][j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[p][j], _mm512_loadu_si512(xc + p * s.L), u0),
                                          _mm512_loadu_si512(xc + p * s.L + 64), u1);
      }
    }
    const float um = unit[m * s.G + g];
    LOWBIT_UNROLL
    for (int j = 0; j < kRows; ++j) {
      const __m512i off = _mm512_slli_epi32(wsum[j], 7);  // 128 * sum w, for every plane
      __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[kPlanes - 1][j], off));
      LOWBIT_UNROLL
      for (int p = kPlanes - 2; p >= 0; --p)  // Horner: v = v * 256 + P_p
        v = _mm512_fmadd_ps(v, _mm512_set1_ps(256.0f), _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[p][j], off)));
      facc[j] = _mm512_fmadd_ps(v, _mm512_set1_ps(_cvtsh_ss(w.scales[r.n[j] * s.G + g]) * um), facc[j]);
    }
  }
  LOWBIT_UNROLL
  for (int j = 0; j < kRows; ++j)
    if (j < r.nr) y[m * w.N + n0 + j] = _mm512_reduce_add_ps(facc[j]) + (w.bias ? w.bias[n0 + j] : 0.0f);
}

template <int kBits>
void gemv(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kChunk);
  static thread_local std::vector<uint8_t> abuf;
  static thread_local std::vector<float> ubuf;
  uint8_t *a = scratch(abuf, static_cast<size_t>(kPlanes * M * s.L));
  float *unit = scratch(ubuf, static_cast<size_t>(M * s.G));
  stage_digits(s, x, M, byte_chunk_perm(kBits), a, unit);
  static const Dec3 d3;
  run_row_ranges(w.N, [&](int64_t n0, int64_t rows) {
    for (int64_t n = n0; n < n0 + rows; n += kRows)
      for (int64_t m = 0; m < M; ++m) gemv_tile<kBits>(w, s, d3, a, unit, n, m, y);
  });
}

template <int kBits>
void run(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  if (M < kGemvMaxM) return gemv<kBits>(w, x, M, y);
  const Geometry s = make_geometry(w, kBlock);
  // Activations of full blocks of 12 tokens interleaved (xt[block][k][12]: one 48-byte line
  // segment per k-step instead of 12 rows 16 KiB apart, which alias in L1), the remaining
  // tokens as rows with a padded stride.
  const int64_t nfull = M / kGemmMR, ld = s.Kp + 16;
  static thread_local std::vector<float> xtbuf, xrbuf;
  float *xt = scratch(xtbuf, static_cast<size_t>(std::max<int64_t>(1, nfull * s.Kp * kGemmMR)));
  float *xr = scratch(xrbuf, static_cast<size_t>(std::max<int64_t>(1, (M - nfull * kGemmMR) * ld)));
  for (int64_t mb = 0; mb < nfull; ++mb)
    for (int64_t k = 0; k < s.Kp; ++k)
      for (int i = 0; i < kGemmMR; ++i)
        xt[(mb * s.Kp + k) * kGemmMR + i] = k < s.K ? x[(mb * kGemmMR + i) * s.K + k] : 0.0f;
  for (int64_t m = nfull * kGemmMR; m < M; ++m)
    for (int64_t k = 0; k < ld; ++k) xr[(m - nfull * kGemmMR) * ld + k] = k < s.K ? x[m * s.K + k] : 0.0f;
  run_tiles(w.N, M, kPanel, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<float> tbuf, wbuf;
    float *tmp = scratch(tbuf, static_cast<size_t>(kPanel * s.Kp));
    float *wt = scratch(wbuf, static_cast<size_t>(kPanel * s.Kp));
    dequant_panel<kBits>(w, s, n0, rows, tmp, wt);
    const int nr = static_cast<int>(rows);
    // Tokens in whole 12-blocks take the 12 x 32 kernel; the rest (the last M % 12, and the
    // edges of an M split by run_tiles, which need not fall on a block) one at a time.
    auto one = [&](int64_t m) {
      if (m < nfull * kGemmMR)
        panel_tile<1>(w, s, xt + (m / kGemmMR) * s.Kp * kGemmMR + m % kGemmMR, kGemmMR, 0, wt, n0, nr, m, y);
      else
        panel_tile<1>(w, s, xr + (m - nfull * kGemmMR) * ld, 1, 0, wt, n0, nr, m, y);
    };
    int64_t m = m0;
    const int64_t end = m0 + mc;
    while (m < end && m % kGemmMR != 0) one(m++);
    for (; m + kGemmMR <= end; m += kGemmMR)
      panel_tile<kGemmMR>(w, s, xt + (m / kGemmMR) * s.Kp * kGemmMR, kGemmMR, 1, wt, n0, nr, m, y);
    while (m < end) one(m++);
  });
}

}  // namespace

void weight_only(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  if (w.scheme == LOWBIT_W4A16) run<4>(w, x, M, y);
  else run<3>(w, x, M, y);
}

}  // namespace lowbit::avx512
