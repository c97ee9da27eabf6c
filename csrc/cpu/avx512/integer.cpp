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

// ---- fused GEMV ----------------------------------------------------------------------------

constexpr int64_t kGemvMaxM = 16;     // below this many tokens the fused kernel wins

// Lane order of a chunk's decoded codes (see stage_chunks):
//   8 bits: natural (two 64-byte loads of 2 blocks each);
//   4 bits: lane v*64 + i*16 + j <- code 16v + j of block i (v = 0: low nibbles, 1: high);
//   3 bits: lane t*32 + i*8 + j  <- code 8t + j of block i (t: the 2-bit field of the low
//           plane's byte j, as in the packed layout).
const uint8_t *chunk_perm(int bits) {
  static const auto make = [](int b) {
    std::vector<uint8_t> perm(kChunk);
    for (int p = 0; p < kChunk; ++p) {
      if (b == 8) perm[p] = static_cast<uint8_t>(p);
      else if (b == 4) perm[p] = static_cast<uint8_t>((p / 16) % 4 * 32 + p / 64 * 16 + p % 16);
      else perm[p] = static_cast<uint8_t>((p / 8) % 4 * 32 + p / 32 * 8 + p % 8);
    }
    return perm;
  };
  static const std::vector<uint8_t> p8 = make(8), p4 = make(4), p3 = make(3);
  return bits == 8 ? p8.data() : bits == 4 ? p4.data() : p3.data();
}

// Constants of the 3-bit decode. In u0 (u1), 128-bit lane q holds fields t = q / 2 (2 + q / 2)
// of blocks 2(q % 2) and 2(q % 2) + 1; byte i*8 + j of the lane is code 8t + j of its block i,
// whose high bit is bit j of byte t of that block's high-plane word.
struct Dec3 {
  __m512i hsel0, hsel1, bit;
  Dec3() {
    alignas(64) int8_t s0[64], s1[64], b[64];
    for (int q = 0; q < 4; ++q)
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 8; ++j) {
          const int x = q * 16 + i * 8 + j;
          s0[x] = static_cast<int8_t>(i * 4 + q / 2);
          s1[x] = static_cast<int8_t>(i * 4 + 2 + q / 2);
          b[x] = static_cast<int8_t>(1 << j);
        }
    hsel0 = _mm512_load_si512(s0);
    hsel1 = _mm512_load_si512(s1);
    bit = _mm512_load_si512(b);
  }
};

// One chunk of nblk (1..4) blocks -> 128 unsigned codes in u0, u1 (lane order above). Bytes
// past the chunk are not loaded (masked loads do not fault); their lanes meet zero activations.
template <int kBits>
inline void decode_chunk(const uint8_t *p, int64_t nblk, const Dec3 &d3, __m512i &u0, __m512i &u1) {
  if (kBits == 8) {
    if (nblk == 4) {
      u0 = _mm512_loadu_si512(p);
      u1 = _mm512_loadu_si512(p + 64);
    } else {
      u0 = _mm512_maskz_loadu_epi8(first_bytes(nblk * 32), p);
      u1 = _mm512_maskz_loadu_epi8(first_bytes(nblk > 2 ? nblk * 32 - 64 : 0), p + 64);
    }
  } else if (kBits == 4) {
    const __m512i v = nblk == 4 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(first_bytes(nblk * 16), p);
    const __m512i m = _mm512_set1_epi8(0x0F);
    u0 = _mm512_and_si512(v, m);
    u1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), m);
  } else {
    // Block i is 12 bytes: dwords 3i, 3i+1 the low plane, dword 3i+2 the high plane.
    const __m512i v = _mm512_maskz_loadu_epi8(first_bytes(nblk * 12), p);
    const __m512i lo = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 1, 3, 4, 6, 7, 9, 10, 0, 1, 3, 4, 6, 7, 9, 10), v);
    const __m512i three = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    u0 = _mm512_and_si512(_mm512_srlv_epi64(lo, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2)), three);
    u1 = _mm512_and_si512(_mm512_srlv_epi64(lo, _mm512_setr_epi64(4, 4, 4, 4, 6, 6, 6, 6)), three);
    const __m512i hi = _mm512_permutexvar_epi32(_mm512_setr_epi32(2, 5, 2, 5, 8, 11, 8, 11, 2, 5, 2, 5, 8, 11, 8, 11), v);
    u0 = _mm512_mask_add_epi8(u0, _mm512_test_epi8_mask(_mm512_shuffle_epi8(hi, d3.hsel0), d3.bit), u0, four);
    u1 = _mm512_mask_add_epi8(u1, _mm512_test_epi8_mask(_mm512_shuffle_epi8(hi, d3.hsel1), d3.bit), u1, four);
  }
}

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
  stage_chunks(s, q, M, chunk_perm(kBits), a, asum);
  static const Dec3 d3;
  run_row_ranges(w.N, [&](int64_t n0, int64_t rows) {
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

void integer(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
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
