// AVX2 GEMV (few tokens) on the CPU layout (lowbit_prepack_cpu, docs/formats.md): w4a16 / w3a16
// through exact integer digit planes of the float activations, and w3a3 on its int8 codes. The
// 256-bit twin of avx512/layout_gemv.cpp (read its top comment for the digit planes and the
// exactness argument); what differs without VNNI:
//
// - A tile is 16 rows, a word row of the layout 64 bytes, so one ymm holds 4 consecutive codes
//   of 8 rows: a tile is two halves of 8 rows, run side by side so that each broadcast
//   activation quad serves both. Lanes are still rows: scales and zero points are per lane, no
//   horizontal sums.
// - vpmaddubsw (u8 x s8, adjacent pairs summed into int16) replaces vpdpbusd. Two of its
//   results (two quads) are added in int16 (|pair| <= 2 * 15 * 128 = 3840: no saturation)
//   before vpmaddwd widens them to int32.
// - 16 ymm registers cannot hold 2 halves x 4 planes of int32 accumulators next to the codes,
//   so planes are paired: vpmaddwd by 1 (plane 2i) or by 256 (plane 2i+1) into one int32 sum
//   per pair, S = sum u (d_2i + 256 d_2i+1). |S| <= 257 * 1920 per code, so a pair settles
//   its sum (zero point taken off exactly, then to float) at least every 64 blocks (2048
//   codes): the activation sums come per span of at most 64 blocks (common/digit_planes.h).
//   The float rounding of the settled sums is far below the contract's (the same argument as
//   for the AVX-512 kernel's per-group planes).
// - The 4 activation bytes of a quad are broadcast with vpbroadcastd from memory.
//
// Why this path exists: the float kernel (weight_only.cpp) decodes every weight to float32
// (4 instructions per 8 weights plus an FMA); on the 2-core Zen 3 development machine it read
// 4096x4096 w4a16 at 2.7 GB/s (3.3 ms, no faster than torch fp32). This kernel's block of
// 16 rows x 32 codes is ~220 instructions (64 vpmaddubsw for the 4 planes), measured at
// ~26 ns a block on one Zen 3 core with its data in L1 (an ad-hoc microbenchmark): compute,
// not DRAM, bounds it at one token (bench/results/cpu_avx2_zen3.md: 4096x4096 w4a16 0.62 ms).
//
// Tried and measured no faster (2026-12-02, ad hoc, one Zen 3 core, weights in L2/L3): decoding
// each code of a layout word straight to a float lane, (word & (15 << p)) converted is u 2^p
// exactly, against activations staged times 2^-p, with the zero point taken off in the integer
// lane first ((u - z) 2^p, so every product is x (u - z) as in the reference): vpand, vpsubd,
// vcvtdq2ps and an FMA per 8 rows and code ran at 17-20 G multiply-adds/s, the same as these
// digit planes (~20-22). Without the per-code zero point (z * sum x taken off once per group) it
// was 20-22 in this file (25-29 in a standalone loop) and failed the 1e4-outlier test (1.1e-5
// of the terms' size against 1e-5): the rounding of x u does not shrink with u - z.
#include <immintrin.h>

#include <cmath>
#include <vector>

#include "cpu/avx2/unpack.h"  // hsum_epi32
#include "cpu/common/digit_planes.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx2 {
namespace {

constexpr int64_t kHalf = kLayoutRows / 2;  // rows per ymm lane set
// Paired digit planes settle their int32 sums at least every 64 blocks (see the top); integer
// codes (one plane) once per group.
constexpr int64_t kSpanBlocks = 64;

inline Spans spans(const Geometry &s, int planes) {
  return Spans{s.bpg * kBlock, (planes == 1 ? s.bpg : std::min(s.bpg, kSpanBlocks)) * kBlock};
}

// false if x has a NaN or an Inf. Sums per span (kSpanBlocks, see tile_gemv).
bool make_digits(const float *x, int64_t K, int64_t Kp, const Spans &sp, int64_t n_sums, TokenPlanes &t) {
  int sh;
  if (!begin_digits(x, K, Kp, n_sums, t, sh)) return false;
  int64_t k = 0;
  if (sh <= 126) {  // 2^sh is a float: scale 32 at a time (exact: a power of two)
    const __m256 m = _mm256_set1_ps(std::ldexp(1.0f, sh));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undo the packs' lane interleave
    for (; k + 32 <= K; k += 32) {
      __m256i X[4];
      LOWBIT_UNROLL
      for (int i = 0; i < 4; ++i) X[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * i), m));
      int32_t *gsum = t.gsum + sp.index(k) * kDigitPlanes;  // spans are multiples of 32
      for (int p = 0; p < kDigitPlanes; ++p) {
        __m256i d[4];
        LOWBIT_UNROLL
        for (int i = 0; i < 4; ++i) {
          d[i] = _mm256_srai_epi32(_mm256_slli_epi32(X[i], 24), 24);  // low byte, signed
          X[i] = _mm256_srai_epi32(_mm256_sub_epi32(X[i], d[i]), 8);
        }
        // Digits are in [-128, 127]: the saturating packs keep them as they are.
        const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(d[0], d[1]), _mm256_packs_epi32(d[2], d[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(t.d + p * Kp + k), _mm256_permutevar8x32_epi32(b, order));
        gsum[p] += hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(d[0], d[1]), _mm256_add_epi32(d[2], d[3])));
      }
    }
  }
  digits_scalar(x, k, K, sh, Kp, sp, t);
  return true;
}

// Codes 4q..4q+3 (q = 2j + e) of block blk for the 8 rows of half h, as bytes.
template <int kBits>
struct Words {
  __m256i P[2], Q[2], R[2];  // 3 bits: the block's words for both halves
  const uint8_t *blk;
  explicit Words(const uint8_t *b) : blk(b) {
    if (kBits == 3)
      for (int h = 0; h < 2; ++h) {
        P[h] = load(0, h);
        Q[h] = load(1, h);
        R[h] = load(2, h);
      }
  }
  __m256i load(int word, int h) const { return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(blk + 64 * word + 32 * h)); }
  // The two quads of word j (4 bits) or quad pair j (3 bits) of half h.
  inline void quads(int j, int h, __m256i &u0, __m256i &u1) const {
    const __m256i m7 = _mm256_set1_epi8(7);
    if (kBits == 4) {
      const __m256i m15 = _mm256_set1_epi8(0x0F), v = load(j, h);
      u0 = _mm256_and_si256(v, m15);
      u1 = _mm256_and_si256(_mm256_srli_epi32(v, 4), m15);
    } else if (j < 3) {
      const __m256i v = j == 0 ? P[h] : j == 1 ? Q[h] : R[h];
      u0 = _mm256_and_si256(v, m7);
      u1 = _mm256_and_si256(_mm256_srli_epi32(v, 3), m7);
    } else {
      // codes 24..27: bits 0-1 from P's bits 6-7, bit 2 from Q's bit 6; 28..31: R's 6-7, Q's 7.
      const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
      u0 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(P[h], 6), m3), _mm256_and_si256(_mm256_srli_epi32(Q[h], 4), m4));
      u1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(R[h], 6), m3), _mm256_and_si256(_mm256_srli_epi32(Q[h], 5), m4));
    }
  }
};

inline __m256i bcast4(const int8_t *p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Tile t (16 rows) for one token; P activation planes (4 digit planes for w4a16/w3a16, 1 for
// w3a3). Both halves of 8 rows at once, so each broadcast activation quad serves two
// vpmaddubsw. `prefetch`: fetch the same bytes of the next tile into L2 (the first pass over a
// tile's bytes; the AVX-512 kernel's reason: the hardware prefetchers alone do not keep up
// with one stream per tile).
template <int kBits, int P>
void tile_gemv(const lowbit_weight &w, const CpuLayout &L, const Geometry &s, const TokenPlanes &tok, int64_t t,
               bool prefetch, float *y) {
  const int64_t bpb = kBits * 64;  // bytes of one block of a tile
  const uint8_t *tile = w.cpu_layout + t * L.tile_bytes();
  const uint8_t *next = tile + L.tile_bytes();
  const int32_t offset = scheme_info(w.scheme).code_offset;  // integer schemes: q = u - offset
  const __m256i ones = _mm256_set1_epi16(1), c256 = _mm256_set1_epi16(256);
  constexpr int A = P == 1 ? 1 : 2;  // int32 accumulators per half (planes paired, see the top)
  const Spans sp = spans(s, P);
  const int32_t *dsum = tok.gsum;  // [span][P], spans in order
  __m256 yacc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t g = 0; g < s.G; ++g) {
    const uint8_t *sc_p = tile + L.code_bytes() + g * kLayoutRows * 2;
    const __m256 sc[2] = {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(sc_p))),
                          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(sc_p + kHalf * 2)))};
    __m256i z[2];
    if (P > 1 && scheme_info(w.scheme).has_zeros) {
      const uint8_t *z_p = tile + L.code_bytes() + L.G * kLayoutRows * 2 + g * kLayoutRows;
      z[0] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(z_p)));
      z[1] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(z_p + kHalf)));
    } else if (P > 1) {  // an integer scheme with float activations (weight_only_layout): zero = code offset
      z[0] = z[1] = _mm256_set1_epi32(offset);
    }
    const int64_t g_end = g * s.bpg + s.group_blocks(g);
    for (int64_t b0 = g * s.bpg; b0 < g_end; b0 += sp.span / kBlock, dsum += P) {
      __m256i acc[2][A];
      LOWBIT_UNROLL
      for (int h = 0; h < 2; ++h)
        LOWBIT_UNROLL
        for (int a = 0; a < A; ++a) acc[h][a] = _mm256_setzero_si256();
      for (int64_t b = b0; b < std::min(g_end, b0 + sp.span / kBlock); ++b) {
        if (prefetch) {
          LOWBIT_UNROLL
          for (int l = 0; l < bpb; l += 64) _mm_prefetch(reinterpret_cast<const char *>(next + b * bpb + l), _MM_HINT_T1);
        }
        const Words<kBits> words(tile + b * bpb);
        LOWBIT_UNROLL
        for (int j = 0; j < 4; ++j) {
          __m256i u[2][2];
          words.quads(j, 0, u[0][0], u[0][1]);
          words.quads(j, 1, u[1][0], u[1][1]);
          LOWBIT_UNROLL
          for (int p = 0; p < P; ++p) {
            const int8_t *d = tok.d + p * s.Kp + b * kBlock + 8 * j;
            const __m256i a0 = bcast4(d), a1 = bcast4(d + 4);
            LOWBIT_UNROLL
            for (int h = 0; h < 2; ++h) {  // |pair| <= 2 * 15 * 128: two of them fit int16
              const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(u[h][0], a0), _mm256_maddubs_epi16(u[h][1], a1));
              acc[h][p / 2] = _mm256_add_epi32(acc[h][p / 2], _mm256_madd_epi16(s16, p % 2 ? c256 : ones));
            }
          }
        }
      }
      LOWBIT_UNROLL
      for (int h = 0; h < 2; ++h) {
        if (P == 1) {  // the reference: acc += wscale * (float)dot, dot = sum u q - offset * sum q
          const __m256i dot = _mm256_sub_epi32(acc[h][0], _mm256_set1_epi32(offset * dsum[0]));
          yacc[h] = _mm256_add_ps(yacc[h], _mm256_mul_ps(sc[h], _mm256_cvtepi32_ps(dot)));
        } else {
          // Per pair: sum u (d_p + 256 d_p+1) - zero * (sum d_p + 256 sum d_p+1), exact in int32.
          auto pair = [&](int a) {
            const int32_t ds = dsum[2 * a] + 256 * dsum[2 * a + 1];
            return _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[h][a], _mm256_mullo_epi32(z[h], _mm256_set1_epi32(ds))));
          };
          const __m256 f = _mm256_fmadd_ps(pair(1), _mm256_set1_ps(65536.0f), pair(0));
          yacc[h] = _mm256_fmadd_ps(f, sc[h], yacc[h]);
        }
      }
    }
  }
  LOWBIT_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int64_t n0 = t * kLayoutRows + h * kHalf;
    const int64_t nr = std::min<int64_t>(kHalf, w.N - n0);
    if (nr <= 0) break;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nr)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 bias = w.bias ? _mm256_maskload_ps(w.bias + n0, mask) : _mm256_setzero_ps();
    __m256 v = _mm256_mul_ps(yacc[h], _mm256_set1_ps(tok.f0));
    if (P > 1) v = _mm256_mul_ps(v, _mm256_set1_ps(tok.f1));
    _mm256_maskstore_ps(y + n0, mask, _mm256_add_ps(v, bias));
  }
}

// All tiles for M tokens, threads over tiles. A tile is 32 KiB at 4 bits and K = 4096: the
// tokens after the first read it from L1/L2, so only the first streams it from DRAM.
template <int kBits, int P>
void run_tiles_layout(const lowbit_weight &w, const Geometry &s, const TokenPlanes *tok, int64_t M, float *y) {
  const CpuLayout L(w.scheme, w.N, w.K, w.group_size);
  run_row_ranges(L.tiles, M * w.K * kLayoutRows * P, [&](int64_t t0, int64_t count) {
    for (int64_t t = t0; t < t0 + count; ++t)
      for (int64_t m = 0; m < M; ++m)
        tile_gemv<kBits, P>(w, L, s, tok[m], t, m == 0, y + m * w.N);
  }, /*unit=*/1);
}

// Up to this many tokens the layout kernel wins (4096x4096 on the 2-core Zen 3, ad-hoc A/B
// against the canonical kernels, cold weights): w4a16 1.2 / 4.4 ms against 3.1 / 4.9 at M = 2 / 8,
// w3a16 1.3 / 5.1 against 3.1 / 5.5; w3a3 1.10 against 1.22 ms at M = 4, even at M = 8.
constexpr int64_t kMaxTokensW = 8, kMaxTokensInt = 4;
// w4a8 / w4a4 (one plane of int8 activations, like w3a3): one token. There the layout's one
// stream per tile read 4096x4096 1.11-1.14x faster than the canonical 4-row GEMV (integer.cpp)
// on the 2-core Zen 3 (bench/results/cpu_layout_avx2.md, whose M > 1 rows run the canonical
// kernel on both sides; 1.13-1.14x in an earlier ad-hoc run of the same bench); at 2-4 tokens
// the two were within ~10% either way in that earlier run, so the canonical kernel keeps them.
constexpr int64_t kMaxTokensInt4 = 1;

template <int kBits>
bool weight_only_gemv(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kBlock);
  static thread_local std::vector<int8_t> dbuf;
  static thread_local std::vector<int32_t> sbuf;
  const Spans sp = spans(s, kDigitPlanes);
  const int64_t n_sums = s.G * sp.per_group();
  int8_t *d = scratch(dbuf, static_cast<size_t>(M * kDigitPlanes * s.Kp));
  int32_t *sums = scratch(sbuf, static_cast<size_t>(M * n_sums * kDigitPlanes));
  TokenPlanes tok[kMaxTokensW];
  for (int64_t m = 0; m < M; ++m) {
    tok[m].d = d + m * kDigitPlanes * s.Kp;
    tok[m].gsum = sums + m * n_sums * kDigitPlanes;
    if (!make_digits(x + m * w.K, w.K, s.Kp, sp, n_sums, tok[m])) return false;
  }
  run_tiles_layout<kBits, kDigitPlanes>(w, s, tok, M, y);
  return true;
}

}  // namespace

// Both return false (and write nothing) when they do not apply: no layout, too many tokens,
// or (weight-only) non-finite activations; the caller then runs its own kernel.
// weight_only_layout also takes the 4- and 3-bit integer schemes' weights (w4a8, w4a4, w3a3)
// with float activations, zero point = code offset (the RPTQ static path: see the AVX-512 twin).
bool weight_only_layout(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  if (!w.cpu_layout || M > kMaxTokensW || w.scheme == LOWBIT_W8A8 || scheme_info(w.scheme).compute == Compute::AddOnly)
    return false;
  return scheme_info(w.scheme).wbits == 4 ? weight_only_gemv<4>(w, x, M, y) : weight_only_gemv<3>(w, x, M, y);
}

bool integer_layout(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  if (!w.cpu_layout || M > (scheme_info(w.scheme).wbits == 4 ? kMaxTokensInt4 : kMaxTokensInt)) return false;
  const Geometry s = make_geometry(w, kBlock);
  TokenPlanes tok[kMaxTokensInt];
  stage_code_planes(w, s, q, scale, M, tok);
  if (scheme_info(w.scheme).wbits == 4) run_tiles_layout<4, 1>(w, s, tok, M, y);  // w4a8, w4a4
  else run_tiles_layout<3, 1>(w, s, tok, M, y);                                   // w3a3
  return true;
}

}  // namespace lowbit::avx2
