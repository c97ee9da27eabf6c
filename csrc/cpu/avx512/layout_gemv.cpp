// AVX-512 VNNI GEMV (few tokens) on the CPU layout (lowbit_prepack_cpu, docs/formats.md):
// w4a16 / w3a16 through exact integer digit planes of the float activations, and the integer
// schemes w3a3, w4a8 and w4a4 on their int8 activation codes (w4a8/w4a4: 1.18-1.31x their
// canonical GEMV at 1-3 tokens, bench/results/cpu_layout_avx512_w4.md; an earlier try, before
// the tile-ahead prefetch below, had not paid).
//
// Lanes are rows (the layout interleaves 16 rows word by word): one vector is 4 consecutive
// codes of 16 rows, the 4 matching activation bytes are broadcast (an embedded {1to16}
// memory operand of vpdpbusd), so group scales and zero points are per lane and no
// horizontal sum is needed, and each tile of 16 rows is one sequential stream.
//
// Why integers for float activations (w4a16/w3a16): the float kernel (weight_only.cpp) spends
// a shift, a table lookup and an FMA on every 16 weights, 23 (4-bit) and 39 (3-bit) cycles per
// 128 weights of a row on Zen 4 — slower than memory. vpdpbusd does 64 multiply-adds in one
// instruction. So each token's activations become exact fixed point, X[k] = x[k] * 2^(30-e)
// rounded to an integer (max |x| < 2^e; |X| <= 2^30, the rounding 2^-31 of max |x|, far below
// float32's own rounding of the reference's products), written as four signed int8 digit
// planes X = d0 + 2^8 d1 + 2^16 d2 + 2^24 d3. Per plane and group the dot products with the
// unsigned codes u are exact int32 sums; the zero point is taken off exactly in integers,
// sum u d - zero * sum d, and only then do the four planes meet in float:
//   y[n] = 2^(e-30) * sum_g scale[n,g] * sum_p 2^(8p) * (sum_k u[n,k] d_p[k] - zero[n,g] sum_k d_p[k]).
// Tokens with a NaN or Inf activation have no fixed point: the call falls back to the float
// kernel. Per 32 codes and 16 rows: 32 vpdpbusd plus 12 (4-bit) or 17 (3-bit) instructions to
// turn the words into bytes.
//
// The integer schemes (w3a3, w4a8, w4a4) need one plane, its int8 codes: dot = sum u q - offset * sum q,
// exact, and the float epilogue is the scalar reference's, operation for operation
// (acc += wscale * dot per group; y = acc * xscale + bias), so the results are bit-identical.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/avx512/gemv.h"  // dpbusd_bcast
#include "cpu/common/digit_planes.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

// false if x has a NaN or an Inf.
bool make_digits(const float *x, int64_t K, int64_t Kp, int64_t gs, int64_t G, TokenPlanes &t) {
  int sh;
  if (!begin_digits(x, K, Kp, G, t, sh)) return false;  // sums per group (span = gs)
  int64_t k = 0;
  if (sh <= 126) {  // 2^sh is a float: scale 16 at a time (exact: a power of two)
    const __m512 m = _mm512_set1_ps(std::ldexp(1.0f, sh));
    for (; k + 16 <= K; k += 16) {
      __m512i X = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + k), m));  // round to nearest even
      int32_t *gsum = t.gsum + (k / gs) * kDigitPlanes;  // gs is a multiple of 32: one group
      for (int p = 0; p < kDigitPlanes; ++p) {
        const __m512i d = _mm512_srai_epi32(_mm512_slli_epi32(X, 24), 24);  // low byte, signed
        X = _mm512_srai_epi32(_mm512_sub_epi32(X, d), 8);
        _mm_storeu_si128(reinterpret_cast<__m128i *>(t.d + p * Kp + k), _mm512_cvtepi32_epi8(d));
        gsum[p] += _mm512_reduce_add_epi32(d);
      }
    }
  }
  digits_scalar(x, k, K, sh, Kp, Spans{gs, gs}, t);
  return true;
}

// The 8 byte vectors of one block of a tile: u[q] = codes 4q..4q+3 of the block for 16 rows.
template <int kBits>
inline void decode_block(const uint8_t *blk, __m512i u[8]) {
  const __m512i m3 = _mm512_set1_epi32(0x03030303), m7 = _mm512_set1_epi32(0x07070707);
  if (kBits == 4) {
    const __m512i m15 = _mm512_set1_epi32(0x0F0F0F0F);
    LOWBIT_UNROLL
    for (int j = 0; j < 4; ++j) {
      const __m512i v = _mm512_loadu_si512(blk + 64 * j);
      u[2 * j] = _mm512_and_si512(v, m15);
      u[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi32(v, 4), m15);
    }
  } else {
    const __m512i P = _mm512_loadu_si512(blk), Q = _mm512_loadu_si512(blk + 64), R = _mm512_loadu_si512(blk + 128);
    u[0] = _mm512_and_si512(P, m7);
    u[1] = _mm512_and_si512(_mm512_srli_epi32(P, 3), m7);
    u[2] = _mm512_and_si512(Q, m7);
    u[3] = _mm512_and_si512(_mm512_srli_epi32(Q, 3), m7);
    u[4] = _mm512_and_si512(R, m7);
    u[5] = _mm512_and_si512(_mm512_srli_epi32(R, 3), m7);
    // codes 24..27: bits 0-1 from P's bits 6-7, bit 2 from Q's bit 6; 28..31: R's 6-7, Q's 7.
    // vpternlogd 0xE4 = (A & C) | (B & ~C) with C = 0x03 per byte; the AND clears bits 3-7.
    u[6] = _mm512_and_si512(_mm512_ternarylogic_epi32(_mm512_srli_epi32(P, 6), _mm512_srli_epi32(Q, 4), m3, 0xE4), m7);
    u[7] = _mm512_and_si512(_mm512_ternarylogic_epi32(_mm512_srli_epi32(R, 6), _mm512_srli_epi32(Q, 5), m3, 0xE4), m7);
  }
}

// T tiles (16 rows each) from t, MT tokens from m0; P activation planes (4 digit planes for
// w4a16/w3a16, 1 for the integer schemes). kSplit accumulator sets (units q % kSplit) keep
// enough independent vpdpbusd chains in flight when MT * P * T is small. With T = 2 (one
// token, digit planes) each activation broadcast is loaded once into a register for both tiles:
// as vpdpbusd's memory operand it is one load per vpdpbusd, and on a CPU that issues two
// 512-bit vpdpbusd a cycle (Zen 5: bench/results/vnni_width.md) they are as many as the
// vpdpbusd themselves (the integer GEMM was bound by such loads, integer.cpp). On that machine
// (ad-hoc timings, 2026-12-03, one token, 4096x4096): weights in cache w4a16 0.110 -> 0.098-0.104
// ms, w3a16 0.110-0.123 -> 0.097-0.098; from DRAM only 0.235 -> 0.230 and 0.182-0.204 -> 0.182-0.189
// (a read of as many bytes by torch: 0.20 / 0.15 ms). Prefetching two pairs ahead: no change.
template <int kBits, int P, int MT, int kSplit, int T = 1>
void tile_gemv(const lowbit_weight &w, const CpuLayout &L, const Geometry &s, const TokenPlanes *tok, int64_t t,
               int64_t m0, float *y) {
  const int64_t bpb = kBits * 64;  // bytes of one block of a tile
  const uint8_t *tile[T];
  LOWBIT_UNROLL
  for (int j = 0; j < T; ++j) tile[j] = w.cpu_layout + (t + j) * L.tile_bytes();
  const int64_t ahead = T * L.tile_bytes();  // the same bytes of the next tile(s) this thread reads, see below
  const int32_t offset = scheme_info(w.scheme).code_offset;  // integer schemes: q = u - offset
  __m512 yacc[T][MT];
  LOWBIT_UNROLL
  for (int j = 0; j < T; ++j)
    LOWBIT_UNROLL
    for (int i = 0; i < MT; ++i) yacc[j][i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < s.G; ++g) {
    __m512i acc[kSplit][MT][P][T];
    LOWBIT_UNROLL
    for (int h = 0; h < kSplit; ++h)
      LOWBIT_UNROLL
      for (int i = 0; i < MT; ++i)
        LOWBIT_UNROLL
        for (int p = 0; p < P; ++p)
          LOWBIT_UNROLL
          for (int j = 0; j < T; ++j) acc[h][i][p][j] = _mm512_setzero_si512();
    const int64_t b_end = g * s.bpg + s.group_blocks(g);
    for (int64_t b = g * s.bpg; b < b_end; ++b) {
      // The hardware prefetchers alone streamed these tiles at ~13 GB/s of 29 (Zen 4 VM, ad-hoc
      // timings during development, not kept in bench/results);
      // fetching the same block of the next tile into L2 brought it to ~21 (prefetching 1-16
      // KiB ahead into L1/L2 did not; two or four tiles ahead measured slower than one).
      LOWBIT_UNROLL
      for (int j = 0; j < T; ++j)
        LOWBIT_UNROLL
        for (int l = 0; l < bpb; l += 64)
          _mm_prefetch(reinterpret_cast<const char *>(tile[j] + ahead + b * bpb + l), _MM_HINT_T1);
      __m512i u[T][8];
      LOWBIT_UNROLL
      for (int j = 0; j < T; ++j) decode_block<kBits>(tile[j] + b * bpb, u[j]);
      LOWBIT_UNROLL
      for (int q = 0; q < 8; ++q)
        LOWBIT_UNROLL
        for (int i = 0; i < MT; ++i)
          LOWBIT_UNROLL
          for (int p = 0; p < P; ++p) {
            const int8_t *a = tok[m0 + i].d + p * s.Kp + b * kBlock + 4 * q;
            if (T == 1) {
              acc[q % kSplit][i][p][0] = dpbusd_bcast(acc[q % kSplit][i][p][0], u[0][q], a);
            } else {
              const __m512i av = bcast4(a);
              LOWBIT_UNROLL
              for (int j = 0; j < T; ++j) acc[q % kSplit][i][p][j] = dpbusd_reg(acc[q % kSplit][i][p][j], u[j][q], av);
            }
          }
    }
    LOWBIT_UNROLL
    for (int j = 0; j < T; ++j) {
      const uint8_t *sc_p = tile[j] + L.code_bytes() + g * kLayoutRows * 2;
      const __m512 sc = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(sc_p)));
      LOWBIT_UNROLL
      for (int i = 0; i < MT; ++i) {
        const int32_t *dsum = tok[m0 + i].gsum + g * P;
        auto sum = [&](int p) {
          __m512i a = acc[0][i][p][j];
          LOWBIT_UNROLL
          for (int h = 1; h < kSplit; ++h) a = _mm512_add_epi32(a, acc[h][i][p][j]);
          return a;
        };
        if (P == 1) {  // the reference: acc += wscale * (float)dot, dot = sum u q - offset * sum q
          const __m512i dot = _mm512_sub_epi32(sum(0), _mm512_set1_epi32(offset * dsum[0]));
          yacc[j][i] = _mm512_add_ps(yacc[j][i], _mm512_mul_ps(sc, _mm512_cvtepi32_ps(dot)));
        } else {
          // Zero points from the tile; an integer scheme's weight read with float activations (the
          // RPTQ static path, see weight_only_layout) has none stored: its zero is the code offset.
          const uint8_t *z_p = tile[j] + L.code_bytes() + L.G * kLayoutRows * 2 + g * kLayoutRows;
          const __m512i z = scheme_info(w.scheme).has_zeros
                                ? _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(z_p)))
                                : _mm512_set1_epi32(offset);
          auto plane = [&](int p) {  // sum u d_p - zero * sum d_p: exact, |.| <= 128 * 15 * K < 2^31
            return _mm512_cvtepi32_ps(_mm512_sub_epi32(sum(p), _mm512_mullo_epi32(z, _mm512_set1_epi32(dsum[p]))));
          };
          const __m512 c256 = _mm512_set1_ps(256.0f);
          __m512 f = plane(3);
          f = _mm512_fmadd_ps(f, c256, plane(2));
          f = _mm512_fmadd_ps(f, c256, plane(1));
          f = _mm512_fmadd_ps(f, c256, plane(0));
          yacc[j][i] = _mm512_fmadd_ps(f, sc, yacc[j][i]);
        }
      }
    }
  }
  LOWBIT_UNROLL
  for (int j = 0; j < T; ++j) {
    const int64_t n0 = (t + j) * kLayoutRows;
    const int nr = static_cast<int>(std::min<int64_t>(kLayoutRows, w.N - n0));
    const __mmask16 mask = static_cast<__mmask16>((1u << nr) - 1);
    const __m512 bias = w.bias ? _mm512_maskz_loadu_ps(mask, w.bias + n0) : _mm512_setzero_ps();
    LOWBIT_UNROLL
    for (int i = 0; i < MT; ++i) {
      const TokenPlanes &tp = tok[m0 + i];
      __m512 v = _mm512_mul_ps(yacc[j][i], _mm512_set1_ps(tp.f0));
      if (P > 1) v = _mm512_mul_ps(v, _mm512_set1_ps(tp.f1));
      _mm512_mask_storeu_ps(y + (m0 + i) * w.N + n0, mask, _mm512_add_ps(v, bias));
    }
  }
}

// All tiles for M <= 3 tokens, threads over tiles (one token of digit planes: pairs of tiles).
template <int kBits, int P>
void run_tiles_layout(const lowbit_weight &w, const Geometry &s, const TokenPlanes *tok, int64_t M, float *y) {
  const CpuLayout L(w.scheme, w.N, w.K, w.group_size);
  constexpr bool kPairs = P > 1;
  run_row_ranges(L.tiles, M * w.K * kLayoutRows * P, [&](int64_t t0, int64_t count) {
    int64_t t = t0;
    if (kPairs && M == 1)
      for (; t + 1 < t0 + count; t += 2) tile_gemv<kBits, P, 1, 1, 2>(w, L, s, tok, t, 0, y);
    for (; t < t0 + count; ++t) switch (M) {
        case 1: tile_gemv<kBits, P, 1, P == 1 ? 8 : 2>(w, L, s, tok, t, 0, y); break;
        case 2: tile_gemv<kBits, P, 2, P == 1 ? 4 : 1>(w, L, s, tok, t, 0, y); break;
        default: tile_gemv<kBits, P, 3, P == 1 ? 2 : 1>(w, L, s, tok, t, 0, y); break;
      }
  }, /*unit=*/kPairs ? 2 : 1);
}

// Up to this many tokens the digit planes win: their cost grows with every token (4 planes
// x 64 MACs per vpdpbusd = one vpdpbusd per 16 weights and token, like the float kernel's FMA),
// while the float kernel decodes a weight once for all tokens. bench/results/cpu_layout.md
// (4096x4096): w4a16 1.27x / 1.15x the canonical kernel at M = 1 / 2 (M = 3: 0.94x, left to the
// float kernel; earlier runs: 1.39x / 1.23x / 1.04x, 1.34x / 1.09x), w3a16 2.20x / 1.97x / 1.15x
// at M = 1 / 2 / 3 (earlier: 2.42x / 1.80x / 1.36x).
constexpr int64_t kMaxTokensW4 = 2, kMaxTokensW3 = 3;
// w3a3: one vpdpbusd per 64 weights and token; 1.42x / 1.40x / 1.78x the canonical GEMV (its
// bit planes cost more to unpack) at M = 1 / 2 / 3, same file; w4a8/w4a4 1.18-1.31x at M = 1..3
// (at M = 4 the canonical kernel was as fast), bench/results/cpu_layout_avx512_w4.md.
constexpr int64_t kMaxTokensInt = 3;

template <int kBits>
bool weight_only_gemv(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kBlock);
  const int64_t gs = s.bpg * kBlock;
  static thread_local std::vector<int8_t> dbuf;
  static thread_local std::vector<int32_t> sbuf;
  int8_t *d = scratch(dbuf, static_cast<size_t>(M * kDigitPlanes * s.Kp));
  int32_t *sums = scratch(sbuf, static_cast<size_t>(M * s.G * kDigitPlanes));
  TokenPlanes tok[kMaxTokensW3];
  for (int64_t m = 0; m < M; ++m) {
    tok[m].d = d + m * kDigitPlanes * s.Kp;
    tok[m].gsum = sums + m * s.G * kDigitPlanes;
    if (!make_digits(x + m * w.K, w.K, s.Kp, gs, s.G, tok[m])) return false;
  }
  run_tiles_layout<kBits, kDigitPlanes>(w, s, tok, M, y);
  return true;
}

}  // namespace

// Both return false (and write nothing) when they do not apply: no layout, too many tokens,
// or (weight-only) non-finite activations; the caller then runs its own kernel.
// weight_only_layout also takes the 4- and 3-bit integer schemes' weights (w4a8, w4a4, w3a3)
// with float activations: their layout is w4a16's / w3a16's without the zero points, which are
// the code offset (common/static_act.h, the RPTQ static path, dequantizes its activation codes
// and runs them through here).
bool weight_only_layout(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  if (!w.cpu_layout || w.scheme == LOWBIT_W8A8 || scheme_info(w.scheme).compute == Compute::AddOnly) return false;
  if (scheme_info(w.scheme).wbits == 4) return M <= kMaxTokensW4 && weight_only_gemv<4>(w, x, M, y);
  return M <= kMaxTokensW3 && weight_only_gemv<3>(w, x, M, y);
}

bool integer_layout(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  if (!w.cpu_layout || M > kMaxTokensInt) return false;
  const Geometry s = make_geometry(w, kBlock);
  TokenPlanes tok[kMaxTokensInt];
  stage_code_planes(w, s, q, scale, M, tok);
  if (scheme_info(w.scheme).wbits == 4) run_tiles_layout<4, 1>(w, s, tok, M, y);
  else run_tiles_layout<3, 1>(w, s, tok, M, y);
  return true;
}

}  // namespace lowbit::avx512
