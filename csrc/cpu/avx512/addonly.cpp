// AVX-512 add-only kernel for ternary and binary weights: no multiplication in the inner loop.
//
// Each block of 32 weights becomes 32-bit lane masks (AVX-512 mask registers); the activations
// are int16, 32 per zmm, one lane per code, and each block costs one masked add (binary) or a
// masked add plus a masked subtract (ternary) per (token, row):
//   ternary: sum = sum_{u=2} q - sum_{u=0} q          (u=1 is skipped)
//   binary:  sum = 2 * sum_{u=1} q - sum q            (sum q per group is staged once; the
//                                                      factor 2 is a shift)
// int16 lanes take at most 255 additions of |q| <= 128 before they are widened to int32.
//
// Few tokens (M < 16, GEMV): a fused kernel streams each row once and makes the masks in
// registers from the packed bytes: for ternary one vptestmb / vptestnmb per 2-bit field of a
// chunk of 4 blocks gives the +1 / -1 masks of 32 codes whose activations were staged in that
// order (see stage_chunks); binary blocks are masks as they are.
// 16-63 tokens (GEMM): masks are built once per task for its rows and reused for every token.
// 64 tokens and more, or any count when the caller passed the CPU layout (its index): per-token
// lookup tables of partial sums (addonly_lut.cpp), faster at every count measured.
#include <immintrin.h>

#include "cpu/avx512/gemv.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

constexpr int kMR = 4, kNR = 4;
constexpr int64_t kLutMinM = 64;  // from this many tokens: addonly_lut.cpp
constexpr int64_t kFlush = 255;  // blocks an int16 lane can absorb without overflow
inline int64_t rows_per_task(int64_t M) { return M >= 16 ? 64 : 16; }
inline int64_t rows_up(int64_t rows) { return (rows + kNR - 1) / kNR * kNR; }

// Ternary masks of rows [n0, n0+rows): plus[r][b] and minus[r][b] (rows past the end: no bits).
// Binary needs none: a packed binary block is one little-endian uint32 with bit i = code i,
// i.e. already the plus mask, so the kernel reads the weight rows in place.
void build_masks(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, uint32_t *plus,
                 uint32_t *minus, int64_t rows_alloc) {
  const int64_t rb = row_bytes(w.scheme, w.K);
  std::memset(plus, 0, static_cast<size_t>(rows_alloc * s.nb) * 4);
  std::memset(minus, 0, static_cast<size_t>(rows_alloc * s.nb) * 4);
  const int64_t nb = s.nb;
  const __m256i shifts = _mm256_setr_epi64x(0, 2, 4, 6);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *row = w.qweight + (n0 + r) * rb;
    for (int64_t b = 0; b < nb; ++b) {
      // Ternary: qword s of the broadcast block, shifted right by 2s, holds codes 8s..8s+7 in
      // its bytes; bit 1 set means u = 2 (+1), both bits clear means u = 0 (-1).
      uint64_t v;
      std::memcpy(&v, row + b * 8, 8);
      const __m256i c = _mm256_srlv_epi64(_mm256_set1_epi64x(static_cast<long long>(v)), shifts);
      plus[r * nb + b] = _cvtmask32_u32(_mm256_test_epi8_mask(c, _mm256_set1_epi8(2)));
      minus[r * nb + b] = _cvtmask32_u32(_mm256_testn_epi8_mask(c, _mm256_set1_epi8(3)));
    }
  }
}

// int16 lanes -> one int32 sum (widening adds only).
inline int32_t reduce16(__m512i v) {
  const __m512i lo = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(v));
  const __m512i hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(v, 1));
  return _mm512_reduce_add_epi32(_mm512_add_epi32(lo, hi));
}

template <int MR, bool kBinary>
void tile(const lowbit_weight &w, const Geometry &s, const IntEpilogue &ep, const int16_t *a,
          const int32_t *tsum, const float *scale, const uint32_t *plus, const uint32_t *minus,
          int64_t n0, int64_t r0, int64_t rows, int64_t m0, float *y) {
  const int nr = static_cast<int>(std::min<int64_t>(kNR, rows - r0));
  float accf[MR][kNR] = {};
  for (int64_t g = 0; g < s.G; ++g) {
    int32_t dot[MR][kNR] = {};
    const int64_t b_end = g * s.bpg + s.group_blocks(g);
    for (int64_t b0 = g * s.bpg; b0 < b_end; b0 += kFlush) {
      __m512i acc[MR][kNR];
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i)
        LOWBIT_UNROLL
        for (int j = 0; j < kNR; ++j) acc[i][j] = _mm512_setzero_si512();
      for (int64_t b = b0; b < std::min(b_end, b0 + kFlush); ++b) {
        __m512i x[MR];
        LOWBIT_UNROLL
        for (int i = 0; i < MR; ++i) x[i] = _mm512_loadu_si512(a + (m0 + i) * s.Kp + b * kBlock);
        LOWBIT_UNROLL
        for (int j = 0; j < kNR; ++j) {
          const __mmask32 p = _cvtu32_mask32(plus[(r0 + j) * s.nb + b]);
          LOWBIT_UNROLL
          for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_mask_add_epi16(acc[i][j], p, acc[i][j], x[i]);
          if (!kBinary) {
            const __mmask32 mn = _cvtu32_mask32(minus[(r0 + j) * s.nb + b]);
            LOWBIT_UNROLL
            for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_mask_sub_epi16(acc[i][j], mn, acc[i][j], x[i]);
          }
        }
      }
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i)
        LOWBIT_UNROLL
        for (int j = 0; j < kNR; ++j) dot[i][j] += reduce16(acc[i][j]);
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < nr; ++j) {
        const int32_t d = kBinary ? 2 * dot[i][j] - tsum[(m0 + i) * s.G + g] : dot[i][j];
        accf[i][j] = ep.group(n0 + r0 + j, g, accf[i][j], d);
      }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < nr; ++j)
      y[(m0 + i) * w.N + n0 + r0 + j] = ep.finish(n0 + r0 + j, accf[i][j], scale[m0 + i]);
}

template <bool kBinary>
void run(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kBlock);
  std::vector<int16_t> a(static_cast<size_t>(M * s.Kp));
  stage_int16(s, q, M, a.data());
  std::vector<int32_t> tsum(static_cast<size_t>(M * s.G));  // binary: sum q per group
  group_sums16(s, a.data(), M, tsum.data());
  const IntEpilogue ep{w, s.G};
  const int64_t task_rows = rows_per_task(M);
  run_tiles(w.N, M, task_rows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<uint32_t> mbuf;
    const uint32_t *plus, *minus;
    if (kBinary) {
      // Rows past N never reach the output; they read row 0 rather than past the end. The
      // 4-byte-aligned words of the packed row (row bytes are a multiple of 4) are the masks.
      if (n0 + rows_up(rows) > w.N) {
        uint32_t *buf = scratch(mbuf, static_cast<size_t>(task_rows * s.nb));
        std::memset(buf, 0, static_cast<size_t>(task_rows * s.nb) * 4);
        std::memcpy(buf, w.qweight + n0 * s.nb * 4, static_cast<size_t>(rows * s.nb) * 4);
        plus = buf;
      } else {
        plus = reinterpret_cast<const uint32_t *>(w.qweight + n0 * s.nb * 4);
      }
      minus = plus;
    } else {
      uint32_t *buf = scratch(mbuf, static_cast<size_t>(2 * task_rows * s.nb));
      build_masks(w, s, n0, rows, buf, buf + task_rows * s.nb, task_rows);
      plus = buf;
      minus = buf + task_rows * s.nb;
    }
    for (int64_t m = m0; m < m0 + mc; m += kMR)
      for (int64_t r0 = 0; r0 < rows; r0 += kNR) {
        const int16_t *ap = a.data();
        switch (std::min<int64_t>(kMR, m0 + mc - m)) {
          case 4: tile<4, kBinary>(w, s, ep, ap, tsum.data(), scale, plus, minus, n0, r0, rows, m, y); break;
          case 3: tile<3, kBinary>(w, s, ep, ap, tsum.data(), scale, plus, minus, n0, r0, rows, m, y); break;
          case 2: tile<2, kBinary>(w, s, ep, ap, tsum.data(), scale, plus, minus, n0, r0, rows, m, y); break;
          default: tile<1, kBinary>(w, s, ep, ap, tsum.data(), scale, plus, minus, n0, r0, rows, m, y); break;
        }
      }
  });
}

// ---- fused GEMV ----------------------------------------------------------------------------


// Lane order of a chunk: binary natural; ternary lane t*32 + i*8 + j <- code 8t + j of block i
// (t: the 2-bit field of byte j of the packed block).
const uint8_t *chunk_perm(bool binary) {
  static const auto make = [](bool b) {
    std::vector<uint8_t> perm(kChunk);
    for (int p = 0; p < kChunk; ++p)
      perm[p] = static_cast<uint8_t>(b ? p : (p / 8) % 4 * 32 + p / 32 * 8 + p % 8);
    return perm;
  };
  static const std::vector<uint8_t> pb = make(true), pt = make(false);
  return binary ? pb.data() : pt.data();
}

template <bool kBinary, int MR>
void gemv_tile(const lowbit_weight &w, const Geometry &s, const int16_t *a, const int32_t *tsum, const float *scale,
               int64_t n0, int64_t m0, float *y) {
  const Rows4 r(w, n0);
  const int64_t rb = row_bytes(w.scheme, w.K);
  const int64_t bb = kBinary ? 4 : 8;
  __m128 accf[MR];
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i) accf[i] = _mm_setzero_ps();
  for (int64_t g = 0; g < s.G; ++g) {
    __m512i acc[MR][kRows], dot[MR][kRows];
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < kRows; ++j) acc[i][j] = dot[i][j] = _mm512_setzero_si512();
    const int64_t b0 = g * s.bpg, nbg = s.group_blocks(g);
    const int16_t *ag = a + m0 * s.L + g * s.gp;
    int64_t load = 0;  // additions per int16 lane since the last widening
    for (int64_t c = 0; c < nbg; c += 4) {
      const int64_t nblk = std::min<int64_t>(4, nbg - c), boff = (b0 + c) * bb;
      const int64_t adds = kBinary ? nblk : 1;  // per lane: binary lanes see every block
      if (load + adds > kFlush) {
        LOWBIT_UNROLL
        for (int i = 0; i < MR; ++i)
          LOWBIT_UNROLL
          for (int j = 0; j < kRows; ++j) {
            dot[i][j] = _mm512_add_epi32(dot[i][j], widen16(acc[i][j]));
            acc[i][j] = _mm512_setzero_si512();
          }
        load = 0;
      }
      load += adds;
      LOWBIT_UNROLL
      for (int j = 0; j < kRows; ++j) prefetch_next_tile(r.p[j], rb, boff, 4 * bb);
      LOWBIT_UNROLL
      for (int j = 0; j < kRows; ++j) {
        if (kBinary) {
          for (int64_t k = 0; k < nblk; ++k) {
            uint32_t bits;
            std::memcpy(&bits, r.p[j] + boff + 4 * k, 4);
            const __mmask32 p = _cvtu32_mask32(bits);
            LOWBIT_UNROLL
            for (int i = 0; i < MR; ++i)
              acc[i][j] = _mm512_mask_add_epi16(acc[i][j], p, acc[i][j], _mm512_loadu_si512(ag + i * s.L + (c + k) * kBlock));
          }
        } else {
          const uint8_t *src = r.p[j] + boff;
          const __m256i v = nblk == 4 ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(src))
                                      : _mm256_maskz_loadu_epi8(static_cast<__mmask32>(first_bytes(nblk * 8)), src);
          LOWBIT_UNROLL
          for (int t = 0; t < 4; ++t) {
            const __mmask32 p = _mm256_test_epi8_mask(v, _mm256_set1_epi8(static_cast<char>(2 << (2 * t))));
            const __mmask32 n = _mm256_testn_epi8_mask(v, _mm256_set1_epi8(static_cast<char>(3 << (2 * t))));
            LOWBIT_UNROLL
            for (int i = 0; i < MR; ++i) {
              const __m512i x = _mm512_loadu_si512(ag + i * s.L + c * kBlock + t * 32);
              acc[i][j] = _mm512_mask_add_epi16(acc[i][j], p, acc[i][j], x);
              acc[i][j] = _mm512_mask_sub_epi16(acc[i][j], n, acc[i][j], x);
            }
          }
        }
      }
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i) {
      LOWBIT_UNROLL
      for (int j = 0; j < kRows; ++j) dot[i][j] = _mm512_add_epi32(dot[i][j], widen16(acc[i][j]));
      __m128i d = reduce4(dot[i][0], dot[i][1], dot[i][2], dot[i][3]);
      if (kBinary) d = _mm_sub_epi32(_mm_add_epi32(d, d), _mm_set1_epi32(tsum[(m0 + i) * s.G + g]));
      accf[i] = group4(w, s.G, r, g, accf[i], d);
    }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i) finish4(w, r, accf[i], scale[m0 + i], y + (m0 + i) * w.N + n0);
}

template <bool kBinary>
void gemv(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kChunk);
  static thread_local std::vector<int16_t> abuf;
  static thread_local std::vector<int32_t> sbuf;
  int16_t *a = scratch(abuf, static_cast<size_t>(M * s.L));
  int32_t *tsum = scratch(sbuf, static_cast<size_t>(M * s.G));
  stage_chunks(s, q, M, chunk_perm(kBinary), a, tsum);
  run_row_ranges(w.N, M * w.K, [&](int64_t n0, int64_t rows) {
    for (int64_t n = n0; n < n0 + rows; n += kRows)
      for (int64_t m = 0; m < M; m += 4) switch (std::min<int64_t>(4, M - m)) {
          case 4: gemv_tile<kBinary, 4>(w, s, a, tsum, scale, n, m, y); break;
          case 3: gemv_tile<kBinary, 3>(w, s, a, tsum, scale, n, m, y); break;
          case 2: gemv_tile<kBinary, 2>(w, s, a, tsum, scale, n, m, y); break;
          default: gemv_tile<kBinary, 1>(w, s, a, tsum, scale, n, m, y); break;
        }
  });
}

}  // namespace

void addonly_lut(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y);  // addonly_lut.cpp

void addonly(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  // With the index prepacked, the lookup tables won at every token count measured
  // (bench/results/cpu_layout.md, 4096x4096: ternary 1.7-3.9x, binary 1.6-3.2x at M = 1-8).
  // Building the index per call pays from 64 tokens (4096x4096, M = 512: ternary 59 vs 96 ms,
  // binary 25 vs 53; 576x576: 2.2 vs 3.8 ms); at 16-32 tokens the masks were as fast or
  // faster (2026-11-22, Zen 4).
  if (M >= kLutMinM || w.cpu_layout) return addonly_lut(w, q, scale, M, y);
  if (M < kGemvMaxM) {
    if (w.scheme == LOWBIT_BINARY) gemv<true>(w, q, scale, M, y);
    else gemv<false>(w, q, scale, M, y);
    return;
  }
  if (w.scheme == LOWBIT_BINARY) run<true>(w, q, scale, M, y);
  else run<false>(w, q, scale, M, y);
}

}  // namespace lowbit::avx512
