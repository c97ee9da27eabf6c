// AVX-512 add-only matmul for ternary and binary weights by per-token lookup tables of partial
// sums (the T-MAC / bitnet.cpp "TL" idea), exact in integers.
//
// Why: the masked-add kernels (addonly.cpp) spend two masked 16-bit adds per 32 weights, token
// and row for ternary, and masked adds ran at ~0.6 per cycle on Zen 4 (below torch's fp32
// GEMM at M = 512). Here a token's activations get tables of the sums of their subsets, built
// with adds, and one vpermw looks up 32 rows at once. Still add-only: no multiplication
// anywhere (tables, lookups and sums are adds and subtracts).
//
// Two index forms (formats.h):
// - Nibbles (binary always; ternary when the caller gave no CPU layout, since they are cheap to
//   build per call): every 4 consecutive activations get a table of the 16 sums of their
//   subsets, and a nibble per row picks one: ternary sum = T[plus] - T[minus], binary sum =
//   2 (T[plus of 4 codes] + T[plus of the next 4]) - sum x (the group sum of x, staged once).
//   The table is repeated in entries 16-31 so that vpermw, which reads the low 5 bits of an
//   index word, can take the low nibble without masking. A vpermw plus an add or subtract
//   covers 32 rows x 2 weights (ternary) or x 4 (binary).
// - Base 3 (ternary's CPU layout): every triple of activations gets a table of its 27 signed
//   sums and a 5-bit field per row picks one, three fields per 16-bit word: a vpermw plus an add
//   covers 32 rows x 3 weights, and the index is 1.78 bits a weight instead of 2: 2/3 the
//   lookups and 8/9 the bytes of the nibbles. Against prepacked nibbles (ad-hoc A/B of two
//   builds, 2026-11-23, not in bench/results): ~12% faster with the weights in L3, ~13% from
//   DRAM at 11008x4096, within noise at 4096x4096; layout vs per-call nibbles is in
//   bench/results/cpu_layout.md.
//
// Index rows are in panels of kLutRows = 128 (one sequential stream per panel), read in place
// when the caller prepacked them, built per call otherwise. Tables: tab[token][table][32] int16.
// int16 lanes absorb 64 (ternary nibbles) / 32 (binary) index bytes or 28 base-3 words (< 2^15
// / (lookup bound x lookups per unit)) before they are widened to int32. The float epilogue is
// the reference's (IntEpilogue's operations, 16 rows at a time), so results are bit-identical to
// the scalar kernel.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

// Which index a call reads (see the top of the file).
enum class Index { TernaryNibbles, BinaryNibbles, TernaryBase3 };

constexpr int kSub = kLutRows / 32;    // 32-row vectors per panel column (vpermw: 32 words)
constexpr int kMT = 4;                 // tokens per kernel call
constexpr int64_t kChunkTokens = 64;   // tokens whose tables are built at a time (bounded memory)

// Index of panel p (rows kLutRows*p ...; rows past N: 0) into out[row_bytes][kLutRows] (per
// call, when the caller gave no CPU layout; the same bytes as lowbit_prepack_cpu).
void build_index(const lowbit_weight &w, int64_t p, uint8_t *out) {
  const bool binary = w.scheme == LOWBIT_BINARY;
  const int64_t rb = row_bytes(w.scheme, w.K), bb = scheme_info(w.scheme).block_bytes;
  for (int64_t r = 0; r < kLutRows; ++r) {
    const int64_t n = p * kLutRows + r;
    for (int64_t b = 0; b < rb / bb; ++b) {
      uint64_t bytes = 0;
      if (n < w.N) {
        const uint8_t *blk = w.qweight + n * rb + b * bb;
        if (binary) {  // the block is the plus mask of its 32 codes; nibble t -> byte t/2, half t%2
          uint32_t plus;
          std::memcpy(&plus, blk, 4);
          bytes = _pdep_u64(plus, 0x00000000FFFFFFFFULL);
        } else {
          // qword s of the broadcast block, shifted right by 2s, holds codes 8s..8s+7 in its
          // bytes; bit 1 set means u = 2 (+1), both bits clear means u = 0 (-1).
          uint64_t v;
          std::memcpy(&v, blk, 8);
          const __m256i c = _mm256_srlv_epi64(_mm256_set1_epi64x(static_cast<long long>(v)), _mm256_setr_epi64x(0, 2, 4, 6));
          const uint32_t plus = _cvtmask32_u32(_mm256_test_epi8_mask(c, _mm256_set1_epi8(2)));
          const uint32_t minus = _cvtmask32_u32(_mm256_testn_epi8_mask(c, _mm256_set1_epi8(3)));
          bytes = _pdep_u64(plus, 0x0F0F0F0F0F0F0F0FULL) | _pdep_u64(minus, 0x0F0F0F0F0F0F0F0FULL) << 4;
        }
      }
      for (int64_t j = 0; j < bb; ++j) out[(b * bb + j) * kLutRows + r] = static_cast<uint8_t>(bytes >> (8 * j));
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

// The masks of the base-3 tables: entry e < 27 of a triple's table is sum_i (d_i - 1) x_i with
// digits e = 9 d_0 + 3 d_1 + d_2; plus[i] / minus[i] have bit e set where d_i is 2 / 0.
struct Base3Masks {
  __mmask32 plus[3] = {}, minus[3] = {};
  Base3Masks() {
    for (unsigned e = 0; e < 27; ++e) {
      const unsigned d[3] = {e / 9, e / 3 % 3, e % 3};
      for (int i = 0; i < 3; ++i) {
        if (d[i] == 2) plus[i] |= 1u << e;
        if (d[i] == 0) minus[i] |= 1u << e;
      }
    }
  }
};

// Base-3 tables of one token: tab[3 W][32], table 3j + f for field f of word j (formats.h:
// word j of the row is word j - g wpg of group g = j / wpg, its field f the triple starting at
// 9 (j - g wpg) + 3 f of the group; places past the group's end hold weight 0: their x is not read).
void build_tables_base3(const int8_t *x, int64_t K, int64_t gs, int64_t W, int16_t *tab) {
  static const Base3Masks m;
  const int64_t wpg = ternary_words_per_group(gs);
  for (int64_t j = 0; j < W; ++j) {
    const int64_t g = j / wpg, k_end = std::min(K, (g + 1) * gs), kb = g * gs + 9 * (j - g * wpg);
    for (int f = 0; f < 3; ++f) {
      __m512i t = _mm512_setzero_si512();
      for (int i = 0; i < 3; ++i) {
        const int64_t k = kb + 3 * f + i;
        if (k >= k_end) break;
        const __m512i v = _mm512_set1_epi16(x[k]);
        t = _mm512_mask_add_epi16(t, m.plus[i], t, v);
        t = _mm512_mask_sub_epi16(t, m.minus[i], t, v);
      }
      _mm512_storeu_si512(tab + (3 * j + f) * 32, t);
    }
  }
}

// Software prefetch distance along a panel's index stream (into L2). On the development VM
// (ternary / binary 4096x4096, one token, two threads; four alternating runs each, ad-hoc
// timings): none ~15 / ~11 GB/s, 4 KiB ~20 / ~16, 16 KiB ~21.5 / ~17.5, 64 KiB ~20 / ~16.
constexpr int64_t kPrefetchBytes = 16384;

// dot[i][r * 32 + l] += the sums over index columns [j0, j1) of one panel, for MT tokens and
// its first R 32-row vectors (R < kSub only in the last panel).
// The index is read as raw words, not zero-extended: vpermw takes the low 5 bits of a word, so
// on 64 index bytes as 32 words, w, w >> 4, w >> 8 and w >> 12 index the low and high nibbles
// of the even and of the odd bytes (bit 4 of each index is the neighbouring nibble's, which the
// table's second copy in entries 16-31 ignores). Even and odd rows accumulate apart and are
// interleaved once per span. Against zero-extending 32 bytes at a time (vpmovzxbw, a 512-bit
// shuffle on the port vpermw needs): ternary 4096x4096, one token, weights in L3, three
// alternating runs: 23-29 -> 31-32 GB/s; from DRAM (300 MiB rotated, six runs) median 16.8 ->
// 18.6 GB/s, within this VM's noise (ad-hoc timings).
template <bool kBinary, int MT, int R>
void lut_span(const uint8_t *idx, const int16_t *tab, int64_t tab_stride, int64_t j0, int64_t j1, int32_t *dot) {
  constexpr int P = (R + 1) / 2;  // 64-row halves of the panel column (rows past N are zero bytes)
  __m512i ev[MT][P], od[MT][P];
  LOWBIT_UNROLL
  for (int i = 0; i < MT; ++i)
    LOWBIT_UNROLL
    for (int h = 0; h < P; ++h) ev[i][h] = od[i][h] = _mm512_setzero_si512();
  for (int64_t j = j0; j < j1; ++j) {
    const uint8_t *col = idx + j * kLutRows;
    LOWBIT_UNROLL
    for (int l = 0; l < kLutRows; l += 64) _mm_prefetch(reinterpret_cast<const char *>(col + kPrefetchBytes + l), _MM_HINT_T1);
    __m512i w0[P], w4[P], w8[P], w12[P];
    LOWBIT_UNROLL
    for (int h = 0; h < P; ++h) {
      w0[h] = _mm512_loadu_si512(col + 64 * h);
      w4[h] = _mm512_srli_epi16(w0[h], 4);
      w8[h] = _mm512_srli_epi16(w0[h], 8);
      w12[h] = _mm512_srli_epi16(w0[h], 12);
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MT; ++i) {
      const int16_t *ti = tab + i * tab_stride;
      if (kBinary) {
        const __m512i t0 = _mm512_loadu_si512(ti + 2 * j * 32), t1 = _mm512_loadu_si512(ti + (2 * j + 1) * 32);
        LOWBIT_UNROLL
        for (int h = 0; h < P; ++h) {
          ev[i][h] = _mm512_add_epi16(ev[i][h], _mm512_add_epi16(_mm512_permutexvar_epi16(w0[h], t0),
                                                                 _mm512_permutexvar_epi16(w4[h], t1)));
          od[i][h] = _mm512_add_epi16(od[i][h], _mm512_add_epi16(_mm512_permutexvar_epi16(w8[h], t0),
                                                                 _mm512_permutexvar_epi16(w12[h], t1)));
        }
      } else {
        const __m512i t = _mm512_loadu_si512(ti + j * 32);
        LOWBIT_UNROLL
        for (int h = 0; h < P; ++h) {
          ev[i][h] = _mm512_add_epi16(ev[i][h], _mm512_sub_epi16(_mm512_permutexvar_epi16(w0[h], t),
                                                                 _mm512_permutexvar_epi16(w4[h], t)));
          od[i][h] = _mm512_add_epi16(od[i][h], _mm512_sub_epi16(_mm512_permutexvar_epi16(w8[h], t),
                                                                 _mm512_permutexvar_epi16(w12[h], t)));
        }
      }
    }
  }
  // unpacklo/hi interleave within 128-bit lanes: lo = rows 0-7, 16-23, 32-39, 48-55 of the half,
  // hi = rows 8-15, 24-31, ...; two qword permutes put them in order.
  const __m512i first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), second = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
  LOWBIT_UNROLL
  for (int i = 0; i < MT; ++i)
    LOWBIT_UNROLL
    for (int h = 0; h < P; ++h) {
      const __m512i lo = _mm512_unpacklo_epi16(ev[i][h], od[i][h]), hi = _mm512_unpackhi_epi16(ev[i][h], od[i][h]);
      const __m512i rows[2] = {_mm512_permutex2var_epi64(lo, first, hi), _mm512_permutex2var_epi64(lo, second, hi)};
      LOWBIT_UNROLL
      for (int v = 0; v < 2; ++v) {
        if (2 * h + v >= R) break;
        int32_t *d = dot + i * kLutRows + (2 * h + v) * 32;
        const __m512i a = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(rows[v]));
        const __m512i b = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(rows[v], 1));
        _mm512_storeu_si512(d, _mm512_add_epi32(_mm512_loadu_si512(d), a));
        _mm512_storeu_si512(d + 16, _mm512_add_epi32(_mm512_loadu_si512(d + 16), b));
      }
    }
}

// The base-3 form of lut_span: words [j0, j1) of one panel (16-bit, idx[j][128 rows]); lane l of
// vector v is row 32 v + l, and vpermw reads bits 0-4 of w, w >> 5 and w >> 10 (the higher bits
// are ignored), so a word's three fields need two shifts.
template <int MT, int R>
void lut_span_base3(const uint16_t *idx, const int16_t *tab, int64_t tab_stride, int64_t j0, int64_t j1, int32_t *dot) {
  __m512i acc[MT][R];
  LOWBIT_UNROLL
  for (int i = 0; i < MT; ++i)
    LOWBIT_UNROLL
    for (int v = 0; v < R; ++v) acc[i][v] = _mm512_setzero_si512();
  for (int64_t j = j0; j < j1; ++j) {
    const uint16_t *col = idx + j * kLutRows;
    LOWBIT_UNROLL
    for (int l = 0; l < 2 * kLutRows; l += 64) _mm_prefetch(reinterpret_cast<const char *>(col) + kPrefetchBytes + l, _MM_HINT_T1);
    __m512i f0[R], f1[R], f2[R];
    LOWBIT_UNROLL
    for (int v = 0; v < R; ++v) {
      f0[v] = _mm512_loadu_si512(col + 32 * v);
      f1[v] = _mm512_srli_epi16(f0[v], 5);
      f2[v] = _mm512_srli_epi16(f0[v], 10);
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MT; ++i) {
      const int16_t *t = tab + i * tab_stride + 3 * j * 32;
      const __m512i t0 = _mm512_loadu_si512(t), t1 = _mm512_loadu_si512(t + 32), t2 = _mm512_loadu_si512(t + 64);
      LOWBIT_UNROLL
      for (int v = 0; v < R; ++v)
        acc[i][v] = _mm512_add_epi16(acc[i][v], _mm512_add_epi16(_mm512_permutexvar_epi16(f0[v], t0),
                                                                  _mm512_add_epi16(_mm512_permutexvar_epi16(f1[v], t1),
                                                                                   _mm512_permutexvar_epi16(f2[v], t2))));
    }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MT; ++i)
    LOWBIT_UNROLL
    for (int v = 0; v < R; ++v) {
      int32_t *d = dot + i * kLutRows + v * 32;
      const __m512i a = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(acc[i][v]));
      const __m512i b = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(acc[i][v], 1));
      _mm512_storeu_si512(d, _mm512_add_epi32(_mm512_loadu_si512(d), a));
      _mm512_storeu_si512(d + 16, _mm512_add_epi32(_mm512_loadu_si512(d + 16), b));
    }
}

// The rows of panel p (its first R 32-row vectors) for MT tokens from m (their tables at tab).
template <Index I, int MT, int R>
void lut_tile(const lowbit_weight &w, const Geometry &s, const uint8_t *idx, const int16_t *tab, int64_t tab_stride,
              const int32_t *tsum, const float *scale, int64_t p, int64_t m, float *y) {
  constexpr bool kBinary = I == Index::BinaryNibbles;
  constexpr int64_t bb = kBinary ? 4 : 8;           // nibbles: index bytes per block of 32 codes
  // Index units (bytes; base 3: words) an int16 lane absorbs: 64 x 2 x 4 x 128 (ternary
  // nibbles), 32 x 4 x 2 x 128 (binary, before its doubling), 28 x 3 x 3 x 128 (base 3) < 2^15.
  constexpr int64_t widen = I == Index::TernaryBase3 ? 28 : kBinary ? 32 : 64;
  const int64_t wpg = ternary_words_per_group(w.group_size);
  alignas(64) int32_t dot[MT * kLutRows];
  alignas(64) float accf[MT][kLutRows] = {};
  alignas(64) float sc[kLutRows];
  const int64_t n0 = p * kLutRows, rows = std::min<int64_t>(R * 32, w.N - n0);
  // The epilogue 16 rows at a time, with the reference's operations in its order (IntEpilogue:
  // acc += scale * (float)dot per group, then acc * token scale + bias): bit-identical, and
  // a scalar loop per row had cost ~10% of a 4096x4096 GEMV.
  for (int64_t g = 0; g < s.G; ++g) {
    std::memset(dot, 0, sizeof dot);
    if constexpr (I == Index::TernaryBase3) {
      const int64_t j0 = g * wpg, j_end = j0 + ternary_words_per_group(std::min(w.K, (g + 1) * w.group_size) - g * w.group_size);
      for (int64_t j = j0; j < j_end; j += widen)
        lut_span_base3<MT, R>(reinterpret_cast<const uint16_t *>(idx), tab, tab_stride, j, std::min(j_end, j + widen), dot);
    } else {
      const int64_t j_end = (g * s.bpg + s.group_blocks(g)) * bb;
      for (int64_t j = g * s.bpg * bb; j < j_end; j += widen)
        lut_span<kBinary, MT, R>(idx, tab, tab_stride, j, std::min(j_end, j + widen), dot);
    }
    for (int64_t r = 0; r < (rows + 15) / 16 * 16; ++r) sc[r] = r < rows ? _cvtsh_ss(w.scales[(n0 + r) * s.G + g]) : 0.0f;
    for (int i = 0; i < MT; ++i) {
      const __m512i ts = _mm512_set1_epi32(kBinary ? tsum[(m + i) * s.G + g] : 0);
      for (int64_t r = 0; r < rows; r += 16) {
        __m512i d = _mm512_loadu_si512(dot + i * kLutRows + r);
        if (kBinary) d = _mm512_sub_epi32(_mm512_add_epi32(d, d), ts);
        const __m512 a = _mm512_add_ps(_mm512_load_ps(&accf[i][r]), _mm512_mul_ps(_mm512_load_ps(sc + r), _mm512_cvtepi32_ps(d)));
        _mm512_store_ps(&accf[i][r], a);
      }
    }
  }
  for (int i = 0; i < MT; ++i) {
    const __m512 ts = _mm512_set1_ps(scale[m + i]);
    for (int64_t r = 0; r < rows; r += 16) {
      const __mmask16 k = static_cast<__mmask16>(rows - r >= 16 ? 0xFFFF : (1u << (rows - r)) - 1);
      const __m512 b = w.bias ? _mm512_maskz_loadu_ps(k, w.bias + n0 + r) : _mm512_setzero_ps();
      _mm512_mask_storeu_ps(y + (m + i) * w.N + n0 + r, k, _mm512_add_ps(_mm512_mul_ps(_mm512_load_ps(&accf[i][r]), ts), b));
    }
  }
}

template <Index I, int R>
void lut_tokens(const lowbit_weight &w, const Geometry &s, const uint8_t *idx, const int16_t *tab, int64_t tab_stride,
                const int32_t *tsum, const float *scale, int64_t p, int64_t m0, int64_t mc, float *y) {
  for (int64_t i = 0; i < mc; i += kMT) {
    const int16_t *tb = tab + i * tab_stride;
    switch (std::min<int64_t>(kMT, mc - i)) {
      case 4: lut_tile<I, 4, R>(w, s, idx, tb, tab_stride, tsum, scale, p, m0 + i, y); break;
      case 3: lut_tile<I, 3, R>(w, s, idx, tb, tab_stride, tsum, scale, p, m0 + i, y); break;
      case 2: lut_tile<I, 2, R>(w, s, idx, tb, tab_stride, tsum, scale, p, m0 + i, y); break;
      default: lut_tile<I, 1, R>(w, s, idx, tb, tab_stride, tsum, scale, p, m0 + i, y); break;
    }
  }
}

template <Index I>
void lut_matmul(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  constexpr bool kBinary = I == Index::BinaryNibbles;
  const Geometry s = make_geometry(w, kBlock);
  const int64_t panels = (w.N + kLutRows - 1) / kLutRows;
  const int64_t W = ternary_words(w.K, w.group_size);  // base 3: words per row
  const int64_t idx_stride = I == Index::TernaryBase3 ? kLutRows * W * 2 : kLutRows * row_bytes(w.scheme, w.K);
  const int64_t tab_stride = (I == Index::TernaryBase3 ? 3 * W : s.Kp / 4) * 32;
  const uint8_t *idx = w.cpu_layout;
  std::vector<uint8_t> built;
  if (!idx) {  // nibbles only (lowbit::avx512::addonly_lut picks base 3 only with a layout)
    built.resize(static_cast<size_t>(panels * idx_stride));
    parallel_for(panels, [&](int64_t p) { build_index(w, p, built.data() + p * idx_stride); });
    idx = built.data();
  }
  static thread_local std::vector<int32_t> sbuf;
  int32_t *tsum = scratch(sbuf, static_cast<size_t>(M * s.G));  // binary: sum q per group
  for (int64_t m = 0; kBinary && m < M; ++m)
    for (int64_t g = 0; g < s.G; ++g) {
      int32_t sum = 0;
      for (int64_t k = g * s.bpg * kBlock; k < std::min(w.K, (g * s.bpg + s.group_blocks(g)) * kBlock); ++k)
        sum += q[m * w.K + k];
      tsum[m * s.G + g] = sum;
    }
  static thread_local std::vector<int16_t> tbuf;
  int16_t *tab = scratch(tbuf, static_cast<size_t>(std::min(M, kChunkTokens) * tab_stride));
  auto tables = [&](int64_t m, int16_t *t) {
    if constexpr (I == Index::TernaryBase3) build_tables_base3(q + m * w.K, w.K, w.group_size, W, t);
    else build_tables(q + m * w.K, w.K, s.Kp / 4, t);
  };
  for (int64_t c0 = 0; c0 < M; c0 += kChunkTokens) {
    const int64_t mc = std::min(kChunkTokens, M - c0);
    if (mc == 1) tables(c0, tab);
    else parallel_for(mc, [&](int64_t i) { tables(c0 + i, tab + i * tab_stride); });
    // Tokens i0..i0+n of the chunk (their tables from tab + i0 * tab_stride) against panel p.
    auto panel = [&](int64_t p, int64_t i0, int64_t n) {
      const uint8_t *ix = idx + p * idx_stride;
      const int16_t *tb = tab + i0 * tab_stride;
      switch (std::min<int64_t>(kSub, (w.N - p * kLutRows + 31) / 32)) {
        case 4: lut_tokens<I, 4>(w, s, ix, tb, tab_stride, tsum, scale, p, c0 + i0, n, y); break;
        case 3: lut_tokens<I, 3>(w, s, ix, tb, tab_stride, tsum, scale, p, c0 + i0, n, y); break;
        case 2: lut_tokens<I, 2>(w, s, ix, tb, tab_stride, tsum, scale, p, c0 + i0, n, y); break;
        default: lut_tokens<I, 1>(w, s, ix, tb, tab_stride, tsum, scale, p, c0 + i0, n, y); break;
      }
    };
    if (mc <= kMT) {
      // Few tokens (decode): ranges of panels per task; a panel (128 rows) is one sequential
      // stream, and each table load serves its 4 vectors.
      run_row_ranges(panels, mc * w.K * kLutRows, [&](int64_t p0, int64_t count) {
        for (int64_t p = p0; p < p0 + count; ++p) panel(p, 0, mc);
      }, /*unit=*/1);
    } else {
      // More: one task per panel and group of kMT tokens, so that few panels (N = 576: 5) still
      // keep every thread busy; a panel's index is re-read from L2 for each group either way.
      const int64_t groups = (mc + kMT - 1) / kMT;
      parallel_for(panels * groups, [&](int64_t t) {
        const int64_t i0 = t % groups * kMT;
        panel(t / groups, i0, std::min<int64_t>(kMT, mc - i0));
      });
    }
  }
}

}  // namespace

void addonly_lut(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  if (w.scheme == LOWBIT_BINARY) lut_matmul<Index::BinaryNibbles>(w, q, scale, M, y);
  else if (w.cpu_layout) lut_matmul<Index::TernaryBase3>(w, q, scale, M, y);
  else lut_matmul<Index::TernaryNibbles>(w, q, scale, M, y);
}

}  // namespace lowbit::avx512
