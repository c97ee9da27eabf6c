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
// Tried and measured slower (2026-11-22, Zen 4): turning the float activations into 31-bit
// fixed point (4 int8 digit planes) to use VNNI. Per 128 codes and row it took 12 cycles
// per channel but 26 at group size 128 (the per-group float epilogue of 4 planes), against
// 17-18 for the lookup-table FMA loop here, so the float loop stays.
//
// More tokens: see the GEMM section below (a dequantized, transposed panel of 32 rows and an
// outer-product microkernel).
#include <immintrin.h>

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

// ---- fused GEMV ----------------------------------------------------------------------------

constexpr int64_t kGemvMaxM = 16;
constexpr int kTileRows = 4;

// Lane order of a chunk, vector t (16 lanes l) <- code perm[16t + l] of the chunk's 128.
//   4 bits: lane l is dword l of the chunk (block l/4, bytes 4(l%4)..+3) and vector t its
//           nibble t: byte 4(l%4) + t/2, low nibble (t even: code = byte) or high (byte + 16).
//   3 bits: lane l is low-plane dword d = l%2 of block i = (l%8)/2; vector t, half h = l/8
//           takes field f = k/4 of byte b = k%4 of it (k = 2t + h): code 8f + 4d + b.
struct W3Shifts {
  alignas(64) int32_t lo[8][16], hi[8][16];  // low-plane right shifts; high-plane right rotates
  W3Shifts() {
    for (int t = 0; t < 8; ++t)
      for (int l = 0; l < 16; ++l) {
        const int k = 2 * t + l / 8, b = k % 4, f = k / 4, d = l % 2;
        lo[t][l] = 8 * b + 2 * f;
        hi[t][l] = (8 * f + 4 * d + b - 2) & 31;  // bit (code) of the high word -> bit 2
      }
  }
};

const uint8_t *chunk_perm(int bits) {
  static const auto make = [](int b) {
    std::vector<uint8_t> perm(kChunk);
    for (int t = 0; t < 8; ++t)
      for (int l = 0; l < 16; ++l) {
        int code;
        if (b == 4) {
          code = (l / 4) * 32 + 4 * (l % 4) + t / 2 + 16 * (t % 2);
        } else {
          const int k = 2 * t + l / 8;
          code = ((l % 8) / 2) * 32 + 8 * (k / 4) + 4 * (l % 2) + k % 4;
        }
        perm[16 * t + l] = static_cast<uint8_t>(code);
      }
    return perm;
  };
  static const std::vector<uint8_t> p4 = make(4), p3 = make(3);
  return bits == 4 ? p4.data() : p3.data();
}

// The 16-entry table of a 3-bit row/group: scale * ((u & 7) - zero), bit 3 of the index ignored.
inline __m512 make_table3(const lowbit_weight &w, int64_t G, int64_t n, int64_t g) {
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m512 z = _mm512_set1_ps(static_cast<float>(w.zeros[n * G + g]));
  return _mm512_mul_ps(_mm512_sub_ps(iota, z), _mm512_set1_ps(_cvtsh_ss(w.scales[n * G + g])));
}

template <int kBits, int MR>
void gemv_chunk_tile(const lowbit_weight &w, const Geometry &s, const W3Shifts &sh, const float *x, int64_t n0,
                     int64_t m0, float *y) {
  const int64_t bb = kBits * 4, rb = row_bytes(w.scheme, w.K);
  const int nr = static_cast<int>(std::min<int64_t>(kTileRows, w.N - n0));
  const uint8_t *row[kTileRows];
  int64_t rn[kTileRows];
  for (int j = 0; j < kTileRows; ++j) {
    rn[j] = std::min(n0 + j, w.N - 1);  // rows past N repeat the last one (never stored)
    row[j] = w.qweight + rn[j] * rb;
  }
  __m512 acc[MR][kTileRows];
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < kTileRows; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < s.G; ++g) {
    __m512 tab[kTileRows];
    LOWBIT_UNROLL
    for (int j = 0; j < kTileRows; ++j) tab[j] = kBits == 4 ? make_table(w, s.G, rn[j], g) : make_table3(w, s.G, rn[j], g);
    const int64_t b0 = g * s.bpg, nbg = s.group_blocks(g);
    const float *xg = x + m0 * s.L + g * s.gp;
    for (int64_t c = 0; c < nbg; c += 4) {
      const int64_t nblk = std::min<int64_t>(4, nbg - c), boff = (b0 + c) * bb;
      const float *xc = xg + c * kBlock;
      LOWBIT_UNROLL
      for (int j = 0; j < kTileRows; ++j)  // the next tile's rows: see prefetch_next_tile in gemv.h
        _mm_prefetch(reinterpret_cast<const char *>(row[j] + kTileRows * rb + boff), _MM_HINT_T1);
      LOWBIT_UNROLL
      for (int j = 0; j < kTileRows; ++j) {
        const uint8_t *p = row[j] + boff;
        if (kBits == 4) {
          const __m512i v = nblk == 4 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(nblk == 4 ? ~0ULL : (1ULL << (nblk * 16)) - 1, p);
          LOWBIT_UNROLL
          for (int t = 0; t < 8; ++t) {
            const __m512 wv = _mm512_permutexvar_ps(t == 0 ? v : _mm512_srli_epi32(v, 4 * t), tab[j]);
            LOWBIT_UNROLL
            for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(xc + i * s.L + 16 * t), wv, acc[i][j]);
          }
        } else {
          const __m512i v = _mm512_maskz_loadu_epi8((1ULL << (nblk * 12)) - 1, p);
          const __m512i lo = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 1, 3, 4, 6, 7, 9, 10, 0, 1, 3, 4, 6, 7, 9, 10), v);
          const __m512i hi = _mm512_permutexvar_epi32(_mm512_setr_epi32(2, 2, 5, 5, 8, 8, 11, 11, 2, 2, 5, 5, 8, 8, 11, 11), v);
          LOWBIT_UNROLL
          for (int t = 0; t < 8; ++t) {
            // (lo >> shift) & 3 | (hi rotated) & ~3: bits 0-1 the low plane, bit 2 the high bit.
            const __m512i idx = _mm512_ternarylogic_epi32(_mm512_srlv_epi32(lo, _mm512_load_si512(sh.lo[t])),
                                                          _mm512_rorv_epi32(hi, _mm512_load_si512(sh.hi[t])),
                                                          _mm512_set1_epi32(3), 0xE4);
            const __m512 wv = _mm512_permutexvar_ps(idx, tab[j]);
            LOWBIT_UNROLL
            for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(xc + i * s.L + 16 * t), wv, acc[i][j]);
          }
        }
      }
    }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < kTileRows; ++j)
      if (j < nr) y[(m0 + i) * w.N + n0 + j] = _mm512_reduce_add_ps(acc[i][j]) + (w.bias ? w.bias[n0 + j] : 0.0f);
}

template <int kBits>
void gemv(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kChunk);
  static thread_local std::vector<float> abuf;
  float *a = scratch(abuf, static_cast<size_t>(M * s.L));
  stage_chunks<float, float>(s, x, M, chunk_perm(kBits), a, nullptr);
  static const W3Shifts sh;
  run_row_ranges(w.N, M * w.K, [&](int64_t n0, int64_t rows) {
    for (int64_t n = n0; n < n0 + rows; n += kTileRows)
      for (int64_t m = 0; m < M; m += 4) switch (std::min<int64_t>(4, M - m)) {
          case 4: gemv_chunk_tile<kBits, 4>(w, s, sh, a, n, m, y); break;
          case 3: gemv_chunk_tile<kBits, 3>(w, s, sh, a, n, m, y); break;
          case 2: gemv_chunk_tile<kBits, 2>(w, s, sh, a, n, m, y); break;
          default: gemv_chunk_tile<kBits, 1>(w, s, sh, a, n, m, y); break;
        }
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
  // Staged by all threads (one task per 12-token block, the rest in a last task), not by the
  // caller alone while the others wait.
  parallel_for(nfull + 1, [&](int64_t mb) {
    if (mb < nfull) {
      for (int64_t k = 0; k < s.Kp; ++k)
        for (int i = 0; i < kGemmMR; ++i)
          xt[(mb * s.Kp + k) * kGemmMR + i] = k < s.K ? x[(mb * kGemmMR + i) * s.K + k] : 0.0f;
      return;
    }
    for (int64_t m = nfull * kGemmMR; m < M; ++m)
      for (int64_t k = 0; k < ld; ++k) xr[(m - nfull * kGemmMR) * ld + k] = k < s.K ? x[m * s.K + k] : 0.0f;
  });
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

bool weight_only_layout(const lowbit_weight &w, const float *x, int64_t M, float *y);  // layout_gemv.cpp

void weight_only(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  if (weight_only_layout(w, x, M, y)) return;  // few tokens and a CPU layout
  if (w.scheme == LOWBIT_W4A16) run<4>(w, x, M, y);
  else run<3>(w, x, M, y);
}

}  // namespace lowbit::avx512
