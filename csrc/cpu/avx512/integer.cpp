// AVX-512 VNNI kernel for the integer schemes (w8a8, w4a8, w4a4, w3a3).
//
// vpdpbusd multiplies unsigned bytes by signed bytes, four at a time, into int32 lanes, with no
// saturation. The weight codes u are unsigned (0..255 / 0..15 / 0..7) and the activations q are
// signed int8, so we feed u as the unsigned operand and correct the offset once per group:
//     sum q * (u - off) = sum q * u - off * sum q,
// with sum q per (token, group) computed once when the activations are staged. Exact in int32.
//
// Few tokens (M < 16, GEMV): the fused kernel streams each weight row once, decodes a chunk of
// 4 blocks in registers (an AND and a shift for nibbles) and feeds it straight to vpdpbusd,
// 4 rows at a time against activations staged once in the chunk's lane order.
//
// More tokens (GEMM): each task unpacks its rows of N once into a small u8 buffer in the
// padded-group layout (see common/tiling.h) and reuses them for all of its tokens; a 4 x 4
// (tokens x rows) microkernel keeps 16 accumulators in registers, so every loaded vector feeds
// four dot products.
#include <immintrin.h>

#include "cpu/avx512/gemv.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

// Rows of N per task: few for GEMV (many tasks to balance), more for GEMM so that each
// 4-token slice of activations is loaded once per 64 rows while the unpacked rows stay in L2.
inline int64_t rows_per_task(int64_t M) { return M >= 16 ? 64 : 16; }
constexpr int kMR = 4, kNR = 4;

// One packed block of 32 codes -> 32 unsigned bytes in code order.
inline __m256i unpack_block(const uint8_t *p, int bits) {
  if (bits == 8) return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
  if (bits == 4) {  // low nibbles are codes 0..15, high nibbles 16..31
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m), _mm_and_si128(x, m));
  }
  // 3-bit: qword s of the broadcast low plane, shifted by 2s, holds codes 8s..8s+7 in its
  // bytes; the high plane is a 32-bit mask that sets bit 2 of code i.
  uint64_t lo;
  uint32_t hi;
  std::memcpy(&lo, p, 8);
  std::memcpy(&hi, p + 8, 4);
  __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x(static_cast<long long>(lo)), _mm256_setr_epi64x(0, 2, 4, 6));
  v = _mm256_and_si256(v, _mm256_set1_epi8(3));
  return _mm256_or_si256(v, _mm256_maskz_mov_epi8(_cvtu32_mask32(hi), _mm256_set1_epi8(4)));
}

// Rows [n0, n0+rows) -> u8 codes [rows rounded up to kNR][s.L] (rows past the end are zero).
void unpack_rows(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, uint8_t *u) {
  const SchemeInfo &si = scheme_info(w.scheme);
  const int64_t rb = row_bytes(w.scheme, w.K);
  const int64_t rows_up = (rows + kNR - 1) / kNR * kNR;
  // Zero what the blocks do not cover: group padding (if any) and the rows past N.
  const bool dense = s.gp == s.bpg * kBlock && s.nb % s.bpg == 0;
  const int64_t from = dense ? rows : 0;
  std::memset(u + from * s.L, 0, static_cast<size_t>((rows_up - from) * s.L));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *row = w.qweight + (n0 + r) * rb;
    for (int64_t g = 0; g < s.G; ++g)  // group by group: no division per block
      for (int64_t b = g * s.bpg, e = b + s.group_blocks(g), o = r * s.L + g * s.gp; b < e; ++b, o += kBlock)
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(u + o), unpack_block(row + b * si.block_bytes, si.wbits));
  }
}

// acc[i][j] over tokens m0+i (MR of them) and rows j of the unpacked tile starting at row r0.
template <int MR>
void tile(const lowbit_weight &w, const Geometry &s, const IntEpilogue &ep, const int8_t *a,
          const int32_t *asum, const float *scale, const uint8_t *u, int64_t n0, int64_t r0,
          int64_t rows, int64_t m0, float *y) {
  const int off = scheme_info(w.scheme).code_offset;
  const int nr = static_cast<int>(std::min<int64_t>(kNR, rows - r0));  // valid rows here
  float accf[MR][kNR] = {};
  for (int64_t g = 0; g < s.G; ++g) {
    __m512i acc[MR][kNR];
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < kNR; ++j) acc[i][j] = _mm512_setzero_si512();
    const int64_t base = g * s.gp;
    for (int64_t c = 0; c < s.gp; c += 64) {
      __m512i wv[kNR];
      LOWBIT_UNROLL
      for (int j = 0; j < kNR; ++j) wv[j] = _mm512_loadu_si512(u + (r0 + j) * s.L + base + c);
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i) {
        const __m512i av = _mm512_loadu_si512(a + (m0 + i) * s.L + base + c);
        LOWBIT_UNROLL
        for (int j = 0; j < kNR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], wv[j], av);
      }
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < nr; ++j) {
        const int32_t dot = _mm512_reduce_add_epi32(acc[i][j]) - off * asum[(m0 + i) * s.G + g];
        accf[i][j] = ep.group(n0 + r0 + j, g, accf[i][j], dot);
      }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < nr; ++j)
      y[(m0 + i) * w.N + n0 + r0 + j] = ep.finish(n0 + r0 + j, accf[i][j], scale[m0 + i]);
}

// ---- fused GEMV (decode_chunk, byte_chunk_perm: gemv.h) ------------------------------------

// MR tokens x 4 rows starting at row n0: int32 dot products per group, epilogue per group.
template <int kBits, int MR>
void gemv_tile(const lowbit_weight &w, const Geometry &s, const Dec3 &d3, const int8_t *a, const int32_t *asum,
               const float *scale, int64_t n0, int64_t m0, float *y) {
  const Rows4 r(w, n0);
  const int64_t rb = row_bytes(w.scheme, w.K);
  const int64_t bb = scheme_info(w.scheme).block_bytes;
  const int off = scheme_info(w.scheme).code_offset;
  __m128 accf[MR];
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i) accf[i] = _mm_setzero_ps();
  for (int64_t g = 0; g < s.G; ++g) {
    __m512i acc[MR][kRows];
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < kRows; ++j) acc[i][j] = _mm512_setzero_si512();
    const int64_t b0 = g * s.bpg, nbg = s.group_blocks(g);
    const int8_t *ag = a + m0 * s.L + g * s.gp;
    for (int64_t c = 0; c < nbg; c += 4) {
      const int64_t nblk = std::min<int64_t>(4, nbg - c), boff = (b0 + c) * bb;
      LOWBIT_UNROLL
      for (int j = 0; j < kRows; ++j) prefetch_next_tile(r.p[j], rb, boff, 4 * bb);
      LOWBIT_UNROLL
      for (int j = 0; j < kRows; ++j) {
        __m512i u0, u1;
        decode_chunk<kBits>(r.p[j] + boff, nblk, d3, u0, u1);
        LOWBIT_UNROLL
        for (int i = 0; i < MR; ++i) {
          const int8_t *ai = ag + i * s.L + c * kBlock;
          acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], u0, _mm512_loadu_si512(ai));
          acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], u1, _mm512_loadu_si512(ai + 64));
        }
      }
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m128i dot = _mm_sub_epi32(reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]),
                                        _mm_set1_epi32(off * asum[(m0 + i) * s.G + g]));
      accf[i] = group4(w, s.G, r, g, accf[i], dot);
    }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i) finish4(w, r, accf[i], scale[m0 + i], y + (m0 + i) * w.N + n0);
}

template <int kBits>
void gemv(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kChunk);
  static thread_local std::vector<int8_t> abuf;
  static thread_local std::vector<int32_t> sbuf;
  int8_t *a = scratch(abuf, static_cast<size_t>(M * s.L));
  int32_t *asum = scratch(sbuf, static_cast<size_t>(M * s.G));
  stage_chunks(s, q, M, byte_chunk_perm(kBits), a, asum);
  static const Dec3 d3;
  run_row_ranges(w.N, M * w.K, [&](int64_t n0, int64_t rows) {
    for (int64_t n = n0; n < n0 + rows; n += kRows)
      for (int64_t m = 0; m < M; m += 4) switch (std::min<int64_t>(4, M - m)) {
          case 4: gemv_tile<kBits, 4>(w, s, d3, a, asum, scale, n, m, y); break;
          case 3: gemv_tile<kBits, 3>(w, s, d3, a, asum, scale, n, m, y); break;
          case 2: gemv_tile<kBits, 2>(w, s, d3, a, asum, scale, n, m, y); break;
          default: gemv_tile<kBits, 1>(w, s, d3, a, asum, scale, n, m, y); break;
        }
  });
}

}  // namespace

bool integer_layout(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y);  // layout_gemv.cpp

void integer(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  if (integer_layout(w, q, scale, M, y)) return;  // few tokens and a CPU layout
  if (M < kGemvMaxM) {
    const int bits = scheme_info(w.scheme).wbits;
    if (bits == 8) gemv<8>(w, q, scale, M, y);
    else if (bits == 4) gemv<4>(w, q, scale, M, y);
    else gemv<3>(w, q, scale, M, y);
    return;
  }
  Geometry s = make_geometry(w, 64);
  // Row stride of the staged activations and unpacked rows: a multiple of 4 KiB (K = 4096)
  // would put the 4 tokens' and 4 rows' lines of the microkernel into one L1 set (8 ways);
  // 64 bytes of padding per row spread them (the tile never reads the padding).
  s.L += 64;
  std::vector<int8_t> a(static_cast<size_t>(M * s.L));
  std::vector<int32_t> asum(static_cast<size_t>(M * s.G));
  stage_int8(s, q, M, a.data(), asum.data());
  const IntEpilogue ep{w, s.G};
  const int64_t task_rows = rows_per_task(M);
  run_tiles(w.N, M, task_rows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<uint8_t> ubuf;
    uint8_t *u = scratch(ubuf, static_cast<size_t>(task_rows * s.L));
    unpack_rows(w, s, n0, rows, u);
    // Tokens outer: a 4-token slice of activations stays in L1 while the task's rows (L2)
    // stream past it.
    for (int64_t m = m0; m < m0 + mc; m += kMR)
      for (int64_t r0 = 0; r0 < rows; r0 += kNR) {
        switch (std::min<int64_t>(kMR, m0 + mc - m)) {
          case 4: tile<4>(w, s, ep, a.data(), asum.data(), scale, u, n0, r0, rows, m, y); break;
          case 3: tile<3>(w, s, ep, a.data(), asum.data(), scale, u, n0, r0, rows, m, y); break;
          case 2: tile<2>(w, s, ep, a.data(), asum.data(), scale, u, n0, r0, rows, m, y); break;
          default: tile<1>(w, s, ep, a.data(), asum.data(), scale, u, n0, r0, rows, m, y); break;
        }
      }
  });
}

}  // namespace lowbit::avx512
