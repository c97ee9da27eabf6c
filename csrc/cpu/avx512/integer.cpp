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
// More tokens (GEMM): each task unpacks its 64 rows of N once into panels of 16 rows, where one
// 64-byte vector holds 4 consecutive codes of each of the 16 rows, and reuses them for all of
// its tokens. vpdpbusd multiplies such a vector by 4 activation bytes of one token broadcast to
// every lane, so each lane accumulates its own row: no horizontal sums, and the group epilogue
// runs on 16 rows at once. An 8 x 2 (tokens x panels) microkernel keeps 16 accumulators in
// registers and issues 16 vpdpbusd per 2 vector loads and 8 broadcasts (each broadcast loaded
// into a register once for both panels: as vpdpbusd's {1to16} memory operand it was one load
// per vpdpbusd, 18 loads per 16, and on the Zen 5 that this ran on 2026-12-03 (two 512-bit
// vpdpbusd a cycle) the loads were the limit: 4096 x 4096 x 512 tokens, linear_q, 12.0 -> 9.5
// ms, ad-hoc timing; the sweep in bench/results/cpu.md ran the new form).
#include <immintrin.h>

#include <array>
#include <utility>

#include "cpu/avx512/gemv.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

// ---- GEMM (M >= kGemvMaxM) -----------------------------------------------------------------
//
// Measured ad hoc on the development machine's Zen 4 (one thread, L2-resident operands, 512
// tokens x 64 rows x K = 4096; not kept in bench/results): this microkernel ran at 200-225 GMAC/s of the ~230 that vpdpbusd peaks
// at (bench/results/vnni_width.md); the kernel it replaced (a 4 x 4 tile over row-major codes,
// one horizontal sum per output) at 130-155, or 100 with GCC's accumulator copies.
constexpr int kMR = 8;                  // tokens per microkernel
constexpr int kNP = 2;                  // panels per microkernel
constexpr int64_t kPanel = 16;          // rows per panel: one per int32 lane
constexpr int64_t kGemmTaskRows = 64;   // 4 panels per task: 256 KiB of codes at K = 4096 (L2)

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

// In-register transpose of a 16 x 16 matrix of int32: r[i] lane j <-> r[j] lane i.
// 32-bit then 64-bit unpacks transpose the 4 x 4 blocks inside each 128-bit lane; two rounds of
// 128-bit shuffles then move the blocks into place.
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // Now r[4i + j], 128-bit lane l, holds column 4l + j of rows 4i..4i+3.
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  // Column 4l + j = 128-bit lane l of r[j], r[4 + j], r[8 + j], r[12 + j], in that order.
  for (int j = 0; j < 4; ++j) {
    const __m512i x02 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88), x13 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xDD);
    const __m512i y02 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88), y13 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xDD);
    t[j] = _mm512_shuffle_i32x4(x02, y02, 0x88);       // lane 0
    t[8 + j] = _mm512_shuffle_i32x4(x02, y02, 0xDD);   // lane 2
    t[4 + j] = _mm512_shuffle_i32x4(x13, y13, 0x88);   // lane 1
    t[12 + j] = _mm512_shuffle_i32x4(x13, y13, 0xDD);  // lane 3
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Rows [n0, n0+rows) -> ceil(rows / 16) panels of s.L / 4 vectors; vector k/4 of a panel holds
// codes k..k+3 of its row r in lane r (byte 4r + i: code k + i). s.gp == bpg * 32 (geometry
// aligned to blocks), so block b's codes sit at k = 32b in every group. Also the rows' group
// scales as float, sc[panel][g][16]. Rows past the end get zero codes and scales (never stored).
void unpack_panels(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, uint8_t *u, float *sc) {
  const SchemeInfo &si = scheme_info(w.scheme);
  const int64_t rb = row_bytes(w.scheme, w.K);
  for (int64_t p = 0; p * kPanel < rows; ++p) {
    const int64_t nr = std::min(kPanel, rows - p * kPanel);
    const uint8_t *row0 = w.qweight + (n0 + p * kPanel) * rb;
    uint8_t *panel = u + p * kPanel * s.L;
    for (int64_t b = 0; b < s.nb; b += 2) {  // two blocks (16 quads of codes) per transpose
      const bool two = b + 1 < s.nb;
      __m512i r[16];
      for (int64_t i = 0; i < kPanel; ++i) {
        if (i >= nr) {
          r[i] = _mm512_setzero_si512();
          continue;
        }
        const uint8_t *blk = row0 + i * rb + b * si.block_bytes;
        const __m256i hi = two ? unpack_block(blk + si.block_bytes, si.wbits) : _mm256_setzero_si256();
        r[i] = _mm512_inserti64x4(_mm512_castsi256_si512(unpack_block(blk, si.wbits)), hi, 1);
      }
      transpose16(r);
      for (int q = 0; q < (two ? 16 : 8); ++q) _mm512_storeu_si512(panel + (b * 8 + q) * 64, r[q]);
    }
    for (int64_t g = 0; g < s.G; ++g)
      for (int64_t i = 0; i < kPanel; ++i)
        sc[(p * s.G + g) * kPanel + i] = i < nr ? _cvtsh_ss(w.scales[(n0 + p * kPanel + i) * s.G + g]) : 0.0f;
  }
}

// y for tokens m0..m0+MR-1 and the rows of panels p0..p0+NP-1 of the task at row n0 (rows of
// the task in all). a: staged activations, row stride la. Float operations in the reference's
// order (IntEpilogue): acc += scale * float(dot) per group, then acc * token_scale + bias.
template <int MR, int NP>
void gemm_tile(const lowbit_weight &w, const Geometry &s, int64_t la, const int8_t *a, const int32_t *asum,
               const float *scale, const uint8_t *u, const float *sc, int64_t n0, int64_t rows, int64_t p0,
               int64_t m0, float *y) {
  const int off = scheme_info(w.scheme).code_offset;
  const int8_t *am[MR];
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i) am[i] = a + (m0 + i) * la;
  const uint8_t *up = u + p0 * kPanel * s.L;
  // Float accumulators live in L1 (32 zmm would not fit beside the integer ones); they are
  // touched once per group.
  alignas(64) float accf[MR][NP][kPanel] = {};
  for (int64_t g = 0; g < s.G; ++g) {
    __m512i acc[MR][NP];
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_si512();
    for (int64_t k = g * s.gp, e = k + s.gp; k < e; k += 4) {
      __m512i wv[NP];
      LOWBIT_UNROLL
      for (int j = 0; j < NP; ++j) wv[j] = _mm512_loadu_si512(up + j * kPanel * s.L + k * kPanel);
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i) {
        const __m512i b = bcast4(am[i] + k);
        LOWBIT_UNROLL
        for (int j = 0; j < NP; ++j) acc[i][j] = dpbusd_reg(acc[i][j], wv[j], b);
      }
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m512i o = _mm512_set1_epi32(off * asum[(m0 + i) * s.G + g]);
      LOWBIT_UNROLL
      for (int j = 0; j < NP; ++j) {
        const __m512 dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], o));
        const __m512 sg = _mm512_loadu_ps(sc + ((p0 + j) * s.G + g) * kPanel);
        _mm512_store_ps(accf[i][j], _mm512_add_ps(_mm512_load_ps(accf[i][j]), _mm512_mul_ps(sg, dot)));
      }
    }
  }
  LOWBIT_UNROLL
  for (int j = 0; j < NP; ++j) {
    const int64_t r0 = (p0 + j) * kPanel, nr = std::min(kPanel, rows - r0);
    const __mmask16 mk = static_cast<__mmask16>((1u << nr) - 1);
    const __m512 bias = w.bias ? _mm512_maskz_loadu_ps(mk, w.bias + n0 + r0) : _mm512_setzero_ps();
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      _mm512_mask_storeu_ps(y + (m0 + i) * w.N + n0 + r0, mk,
                            _mm512_add_ps(_mm512_mul_ps(_mm512_load_ps(accf[i][j]), _mm512_set1_ps(scale[m0 + i])), bias));
  }
}

// gemm_tile for mr (1..kMR) tokens and np (1..kNP) panels.
using GemmTile = void (*)(const lowbit_weight &, const Geometry &, int64_t, const int8_t *, const int32_t *,
                          const float *, const uint8_t *, const float *, int64_t, int64_t, int64_t, int64_t, float *);
template <int... I>
constexpr std::array<GemmTile, kMR * kNP> gemm_tiles(std::integer_sequence<int, I...>) {
  return {gemm_tile<I % kMR + 1, I / kMR + 1>...};
}
constexpr auto kGemmTiles = gemm_tiles(std::make_integer_sequence<int, kMR * kNP>());

void gemm(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kBlock);
  // Activation rows one line longer than s.L: with a stride that is a multiple of 4 KiB (K =
  // 4096) the 8 tokens' lines of the microkernel would all fall into one L1 set (8 ways).
  Geometry sa = s;
  sa.L += 64;
  std::vector<int8_t> a(static_cast<size_t>(M * sa.L));
  std::vector<int32_t> asum(static_cast<size_t>(M * s.G));
  stage_int8(sa, q, M, a.data(), asum.data());
  run_tiles(w.N, M, kGemmTaskRows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<uint8_t> ubuf;
    static thread_local std::vector<float> sbuf;
    uint8_t *u = scratch(ubuf, static_cast<size_t>(kGemmTaskRows * s.L));
    float *sc = scratch(sbuf, static_cast<size_t>(kGemmTaskRows * s.G));
    unpack_panels(w, s, n0, rows, u, sc);
    const int64_t np = (rows + kPanel - 1) / kPanel;
    // Tokens outer: the 8 tokens' activations stay in L1/L2 while the task's panels (L2) stream past.
    for (int64_t m = m0; m < m0 + mc; m += kMR)
      for (int64_t p = 0; p < np; p += kNP) {
        const int64_t mr = std::min<int64_t>(kMR, m0 + mc - m), npp = std::min<int64_t>(kNP, np - p);
        kGemmTiles[(npp - 1) * kMR + mr - 1](w, s, sa.L, a.data(), asum.data(), scale, u, sc, n0, rows, p, m, y);
      }
  });
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
  gemm(w, q, scale, M, y);
}

}  // namespace lowbit::avx512
