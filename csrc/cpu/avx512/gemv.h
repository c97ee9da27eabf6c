// Shared pieces of the AVX-512 fused GEMV kernels (integer.cpp, addonly.cpp, weight_only.cpp): 4 weight rows
// are streamed side by side with independent accumulators (hides the dot-product latency and
// reuses every activation vector 4 times), and their per-group epilogues run together in one
// xmm of 4 floats, in the scalar reference's order of float operations (bit-identical).
// Included only by files compiled with the AVX-512 flags; internal linkage on purpose (see
// common/tiling.h).
#ifndef LOWBIT_CPU_AVX512_GEMV_H
#define LOWBIT_CPU_AVX512_GEMV_H

#include <immintrin.h>

#include <vector>

#include "cpu/common/tiling.h"

namespace lowbit::avx512 {
namespace {

constexpr int kRows = 4;  // weight rows per GEMV micro-tile
constexpr int64_t kGemvMaxM = 16;  // below this many tokens the fused GEMV wins

// The 4 rows n0..n0+3; rows past N repeat row N-1 (computed, never stored).
struct Rows4 {
  const uint8_t *p[kRows];
  int64_t n[kRows];
  int nr;
  Rows4(const lowbit_weight &w, int64_t n0) {
    const int64_t rb = row_bytes(w.scheme, w.K);
    nr = static_cast<int>(std::min<int64_t>(kRows, w.N - n0));
    for (int j = 0; j < kRows; ++j) {
      n[j] = std::min(n0 + j, w.N - 1);
      p[j] = w.qweight + n[j] * rb;
    }
  }
};

// Horizontal sums of four int32 vectors -> lanes 0..3 (integer adds: exact in any order).
inline __m128i reduce4(__m512i a, __m512i b, __m512i c, __m512i d) {
  auto half = [](__m512i v) {
    const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  };
  return _mm_hadd_epi32(_mm_hadd_epi32(half(a), half(b)), _mm_hadd_epi32(half(c), half(d)));
}

// int16 lanes -> int32 (sign-extending adds only: the add-only kernels stay multiply-free).
inline __m512i widen16(__m512i v) {
  return _mm512_add_epi32(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(v)),
                          _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(v, 1)));
}

// acc[j] += fp16 scale[n_j, g] * float(dot[j]) for the 4 rows: the reference's
// `acc + scale * float(dot)`, two roundings (the build has -ffp-contract=off: no FMA).
inline __m128 group4(const lowbit_weight &w, int64_t G, const Rows4 &r, int64_t g, __m128 acc, __m128i dot) {
  const __m128i h = _mm_setr_epi16(static_cast<short>(w.scales[r.n[0] * G + g]), static_cast<short>(w.scales[r.n[1] * G + g]),
                                   static_cast<short>(w.scales[r.n[2] * G + g]), static_cast<short>(w.scales[r.n[3] * G + g]),
                                   0, 0, 0, 0);
  return _mm_add_ps(acc, _mm_mul_ps(_mm_cvtph_ps(h), _mm_cvtepi32_ps(dot)));
}

// y[n0..n0+nr) = acc * token_scale + bias.
inline void finish4(const lowbit_weight &w, const Rows4 &r, __m128 acc, float token_scale, float *y) {
  __m128 v = _mm_mul_ps(acc, _mm_set1_ps(token_scale));
  const __m128 b = w.bias ? _mm_setr_ps(w.bias[r.n[0]], w.bias[r.n[1]], w.bias[r.n[2]], w.bias[r.n[3]])
                          : _mm_setzero_ps();
  v = _mm_add_ps(v, b);
  _mm_mask_storeu_ps(y, static_cast<__mmask8>((1u << r.nr) - 1), v);
}

// Software prefetch for the row streams. A row of a 4096-wide GEMV is only 0.5-4 KiB, too
// short for the hardware prefetchers to train on each of the 4 streams, so each chunk asks
// for the same bytes of the next 4-row tile (the rows that follow in memory): one tile ahead,
// several DRAM latencies of work. Prefetches past the end of the weights do not fault.
inline void prefetch_next_tile(const uint8_t *row, int64_t row_bytes, int64_t off, int64_t bytes) {
  const char *p = reinterpret_cast<const char *>(row + kRows * row_bytes + off);
  for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(p + b, _MM_HINT_T1);
}

// acc += u . broadcast(4 bytes at p), with the broadcast as vpdpbusd's {1to16} memory operand
// (layout_gemv.cpp, where each broadcast serves one vpdpbusd): GCC does not fold _mm512_set1_epi32 into it, and a
// separate vpbroadcastd costs a vector-pipe slot on Zen 4 (one per vpdpbusd in the layout GEMV:
// it measured 12 instead of ~9 cycles per 128 codes). Inline asm also keeps the accumulator in
// place: GCC's _mm512_dpbusd_epi32 copies it to another register before every vpdpbusd.
inline __m512i dpbusd_bcast(__m512i acc, __m512i u, const int8_t *p) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*reinterpret_cast<const int32_t *>(p)));
  return acc;
}

// The 4 bytes at p in every int32 lane: vpbroadcastd from memory, a load with no vector-pipe
// work, for a broadcast that several vpdpbusd share (the integer GEMM), and vpdpbusd on
// registers with the accumulator kept in place (see dpbusd_bcast).
inline __m512i bcast4(const int8_t *p) {
  __m512i b;
  __asm__("vpbroadcastd %1, %0" : "=v"(b) : "m"(*reinterpret_cast<const int32_t *>(p)));
  return b;
}
inline __m512i dpbusd_reg(__m512i acc, __m512i u, __m512i b) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(b));
  return acc;
}

// Byte mask of the first n bytes of a 64-byte load (n <= 64).
inline __mmask64 first_bytes(int64_t n) { return n >= 64 ? ~0ULL : (1ULL << n) - 1; }

// Lane order of a chunk's codes decoded to bytes by decode_chunk (see stage_chunks):
//   8 bits: natural (two 64-byte loads of 2 blocks each);
//   4 bits: lane v*64 + i*16 + j <- code 16v + j of block i (v = 0: low nibbles, 1: high);
//   3 bits: lane t*32 + i*8 + j  <- code 8t + j of block i (t: the 2-bit field of the low
//           plane's byte j, as in the packed layout).
const uint8_t *byte_chunk_perm(int bits) {
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


}  // namespace
}  // namespace lowbit::avx512
#endif
