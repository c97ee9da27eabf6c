// AVX2 add-only kernel for ternary and binary weights: no multiplication anywhere.
//
// The reduction is vpsadbw, the sum of 8 unsigned bytes, here bytes that are an activation q,
// its negation or nothing, each plus a fixed bias that the group's epilogue takes off again:
// a weight only picks which (add, subtract or skip), and sums are exact in int32 (vpsadbw's
// |a - b| has one side 0 or 255: a plain or a complemented add). One sad and one add per 32
// weights of a (token, row), where the int16 mask kernel this replaced expanded every task's
// codes into 4 bytes of masks each and spent an AND and an add (ternary: two) per 16.
//
// Few tokens (GEMV, M <= kGemvMaxM): each row is streamed once, 4 rows at a time with a
// software prefetch ahead, and decoded in registers 32 weight bytes (128 ternary / 256 binary
// codes) at a time. Decoding is cheapest in the order the packed bits fall in, so the
// activations are staged once per call in that order instead (chunked per group, 0-padded):
//   ternary: 2-bit field t of byte p is code 32 (p/8) + p%8 + 8t. vpshufb maps a nibble (two
//            fields) to u - 1 of one of them, and vpsignb(q, u - 1) is +q, 0 or -q: vpsignb
//            only keeps, zeroes or negates, the add, skip or subtract of the weight; XOR 0x80
//            makes it 128 + that for the sad.
//   binary:  bit t of byte p is code 8p + t. vpblendvb reads bit 7 (doubling the byte brings
//            the next bit up) and picks the staged 128 + q or 128 - q. The lanes of bits t and
//            t - 1 are averaged (vpavgb) before one sad: a pair's sum is twice its average
//            minus its parity, and that parity is q's either way, counted at staging.
// A group whose length is no multiple of the chunk ends in a masked load (vpmaskmovd: nothing
// read past it) against zero activations. The GEMV needs |q| <= 127, all quantize_act gives;
// linear_q takes any int8, and a call with a -128 goes to the GEMM.
//
// More tokens (GEMM): each task decodes its rows once into byte masks in code order (binary:
// plus; ternary: nonzero and plus) and a tokens x rows tile sums A = 127 - q (for ternary
// A & nonzero) against them: sad(A, plus) adds |A - 255| = 128 + q for a weight +1,
// |A - 0| = 127 - q for -1 and 0 for 0, exact for every int8. Binary: sad + add per 32
// weights, token and row; ternary: AND + sad + add (vpsignb + XOR + sad + add measured 1.1-1.2x
// slower there).
//
// The CPU layout (w.cpu_layout: lookup-table indexes for AVX-512's vpermw) is not read: with
// vpshufb's 16 byte-wide entries, its int16 partial sums would need two lookups and a merge per
// entry (not tried). The float epilogue is IntEpilogue's (the reference's order), so results
// are bit-identical to the scalar kernel.
#include "cpu/avx2/unpack.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx2 {
namespace {

// Up to this many tokens: the GEMV. One thread, 4096x4096 and 576x1536, interleaved runs: the
// GEMV takes 0.81-0.96x the GEMM's time at M = 8, 0.92-1.12x at 12-16.
constexpr int64_t kGemvMaxM = 8;
constexpr int kGemvRows = 4;       // GEMV rows per tile (4 streams, activations loaded once)
// GEMV prefetch distance, in rows past the tile. 4096x4096 M=1, one thread, weights from DRAM:
// none ~0.91 ms, 8 rows ~0.51-0.61 ms (ternary); 4, 16, 32 rows and _MM_HINT_T1 / NTA were
// within this shared machine's noise of 8 (ad-hoc interleaved runs).
constexpr int64_t kPrefetchRows = 8;
constexpr int kGemmMR = 4, kGemmNR = 2;  // GEMM tile: tokens x rows
constexpr int64_t kGemmRows = 16;  // GEMM rows per task (decoded masks: 16 x Kp bytes a plane)

// ---- GEMV ---------------------------------------------------------------------------------

// Where a call's staged activations and weight chunks go: a chunk is 32 weight bytes (cb
// blocks, C codes); a group is per_group chunks (its last one may be partial), its
// activations `ab` bytes per chunk (ternary: 4 fields x 32 q; binary: 8 bits x (128 - q, 128 + q)).
struct Chunks {
  int64_t cb, C, ab;
  int64_t per_group;  // chunks of a full group (staging stride)
  int64_t stride;     // staged bytes per token
};

template <bool kBinary>
Chunks make_chunks(const Geometry &s) {
  Chunks c;
  c.cb = kBinary ? 8 : 4;
  c.C = c.cb * kBlock;
  c.ab = kBinary ? 8 * 64 : 4 * 32;
  c.per_group = (s.bpg + c.cb - 1) / c.cb;
  c.stride = s.G * c.per_group * c.ab;
  return c;
}

// Token m's activations into a + m * stride in the chunks' lane order (see the top of the file)
// and, binary, odd[m][g] = the lanes of group g whose pair of bits t, t - 1 sums to an odd q.
template <bool kBinary>
void stage_gemv(const Geometry &s, const Chunks &c, const int8_t *q, int64_t M, uint8_t *a, int32_t *odd) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t m = 0; m < M; ++m) {
    const int8_t *qm = q + m * s.K;
    for (int64_t g = 0; g < s.G; ++g) {
      const int64_t k0 = g * s.bpg * kBlock, k1 = std::min(s.K, k0 + s.bpg * kBlock);
      int32_t odd_lanes = 0;
      for (int64_t ch = 0; ch < c.per_group; ++ch) {
        uint8_t *out = a + m * c.stride + (g * c.per_group + ch) * c.ab;
        const int64_t kc = k0 + ch * c.C, n = std::max<int64_t>(0, std::min(c.C, k1 - kc));
        alignas(32) int8_t v[256];  // the chunk's activations in code order, 0 past the group
        std::memcpy(v, qm + std::min(kc, s.K), static_cast<size_t>(n));
        std::memset(v + n, 0, static_cast<size_t>(c.C - n));
        if (kBinary) {  // lane p of bit t is code 8p + t: a byte transpose, then 128 -+ q
          alignas(32) int8_t tr[8][32];
          for (int p = 0; p < 32; ++p)
            for (int t = 0; t < 8; ++t) tr[t][p] = v[8 * p + t];
          for (int t = 0; t < 8; ++t) {
            const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i *>(tr[t]));
            _mm256_storeu_si256(reinterpret_cast<__m256i *>(out + t * 64), _mm256_sub_epi8(flip, x));
            _mm256_storeu_si256(reinterpret_cast<__m256i *>(out + t * 64 + 32), _mm256_xor_si256(x, flip));
            if (t % 2)  // lanes where bits t - 1 and t sum to an odd number (see gemv_chunk)
              odd_lanes += _mm_popcnt_u32(static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(
                  _mm256_xor_si256(x, _mm256_load_si256(reinterpret_cast<const __m256i *>(tr[t - 1]))), 7))));
          }
        } else {  // lane 8b + j of field t is code 32b + 8t + j: runs of 8
          for (int b = 0; b < 4; ++b)
            for (int t = 0; t < 4; ++t) std::memcpy(out + t * 32 + 8 * b, v + 32 * b + 8 * t, 8);
        }
      }
      if (kBinary) odd[m * s.G + g] = odd_lanes;
    }
  }
}

// Whether q[0..n) holds a -128.
bool has_int8_min(const int8_t *q, int64_t n) {
  const __m256i min = _mm256_set1_epi8(-128);
  __m256i any = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    any = _mm256_or_si256(any, _mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(q + i)), min));
  bool found = !_mm256_testz_si256(any, any);
  for (; i < n; ++i) found |= q[i] == -128;
  return found;
}

// acc[i][r] += the biased sums of one chunk: v[r] = its 32 weight bytes of row r, a = the
// chunk's staged activations of token 0 (token i at a + i * stride).
template <bool kBinary, int T>
inline void gemv_chunk(__m256i (&acc)[T][kGemvRows], __m256i (&v)[kGemvRows], const uint8_t *a, int64_t stride) {
  const __m256i zero = _mm256_setzero_si256();
  if (kBinary) {
    // Bits t, t - 1 in pairs: v[r]'s bit 7 is bit t of the packed bytes, twice v[r]'s bit t - 1.
    LOWBIT_UNROLL
    for (int t = 7; t > 0; t -= 2) {
      __m256i v2[kGemvRows];
      LOWBIT_UNROLL
      for (int r = 0; r < kGemvRows; ++r) v2[r] = _mm256_add_epi8(v[r], v[r]);
      LOWBIT_UNROLL
      for (int i = 0; i < T; ++i) {
        const __m256i *ai = reinterpret_cast<const __m256i *>(a + i * stride + (t - 1) * 64);
        const __m256i neg0 = _mm256_loadu_si256(ai), pos0 = _mm256_loadu_si256(ai + 1);
        const __m256i neg1 = _mm256_loadu_si256(ai + 2), pos1 = _mm256_loadu_si256(ai + 3);
        LOWBIT_UNROLL
        for (int r = 0; r < kGemvRows; ++r) {
          const __m256i z = _mm256_avg_epu8(_mm256_blendv_epi8(neg1, pos1, v[r]), _mm256_blendv_epi8(neg0, pos0, v2[r]));
          acc[i][r] = _mm256_add_epi64(acc[i][r], _mm256_sad_epu8(z, zero));
        }
      }
      LOWBIT_UNROLL
      for (int r = 0; r < kGemvRows; ++r) v[r] = _mm256_add_epi8(v2[r], v2[r]);
    }
  } else {
    // A nibble holds fields 0-1 (low) or 2-3 (high); vpshufb maps it to u - 1 of either field.
    const __m256i lo_field = _mm256_setr_epi8(-1, 0, 1, 0, -1, 0, 1, 0, -1, 0, 1, 0, -1, 0, 1, 0,
                                              -1, 0, 1, 0, -1, 0, 1, 0, -1, 0, 1, 0, -1, 0, 1, 0);
    const __m256i hi_field = _mm256_setr_epi8(-1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0,
                                              -1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m256i nib = _mm256_set1_epi8(0x0F), bias = _mm256_set1_epi8(static_cast<char>(0x80));
    __m256i n[2][kGemvRows];
    LOWBIT_UNROLL
    for (int r = 0; r < kGemvRows; ++r) {
      n[0][r] = _mm256_and_si256(v[r], nib);
      n[1][r] = _mm256_and_si256(_mm256_srli_epi16(v[r], 4), nib);
    }
    LOWBIT_UNROLL
    for (int t = 0; t < 4; ++t) {
      __m256i sg[kGemvRows];
      LOWBIT_UNROLL
      for (int r = 0; r < kGemvRows; ++r) sg[r] = _mm256_shuffle_epi8(t % 2 ? hi_field : lo_field, n[t / 2][r]);
      LOWBIT_UNROLL
      for (int i = 0; i < T; ++i) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a + i * stride + t * 32));
        LOWBIT_UNROLL
        for (int r = 0; r < kGemvRows; ++r)
          acc[i][r] = _mm256_add_epi64(acc[i][r], _mm256_sad_epu8(_mm256_xor_si256(_mm256_sign_epi8(x, sg[r]), bias), zero));
      }
    }
  }
}

// Rows n0 .. n0+nr (nr <= kGemvRows) for tokens m .. m+T.
template <bool kBinary, int T>
void gemv_tile(const lowbit_weight &w, const Geometry &s, const Chunks &c, const IntEpilogue &ep, const uint8_t *a,
               const int32_t *odd, const float *scale, int64_t n0, int nr, int64_t m, float *y) {
  const int64_t rb = row_bytes(w.scheme, w.K), bb = kBinary ? 4 : 8;
  const uint8_t *row[kGemvRows];
  LOWBIT_UNROLL
  for (int r = 0; r < kGemvRows; ++r) row[r] = w.qweight + (n0 + std::min(r, nr - 1)) * rb;  // past nr: not stored
  const uint8_t *at = a + m * c.stride;
  // The tile's rows are contiguous; software prefetch walks the rows kPrefetchRows further on
  // at the pace this tile consumes its own (one 64-byte line per row and chunk).
  const uint8_t *pf = w.qweight + (n0 + kPrefetchRows) * rb;
  float accf[T][kGemvRows] = {};
  for (int64_t g = 0; g < s.G; ++g) {
    __m256i acc[T][kGemvRows];
    LOWBIT_UNROLL
    for (int i = 0; i < T; ++i)
      LOWBIT_UNROLL
      for (int r = 0; r < kGemvRows; ++r) acc[i][r] = _mm256_setzero_si256();
    const int64_t blocks = s.group_blocks(g), full = blocks / c.cb, rest = blocks % c.cb;
    const int64_t w0 = g * s.bpg * bb;
    const uint8_t *ag = at + g * c.per_group * c.ab;
    for (int64_t ch = 0; ch < full; ++ch, pf += kGemvRows * 32) {
      LOWBIT_UNROLL
      for (int l = 0; l < kGemvRows * 32; l += 64) _mm_prefetch(reinterpret_cast<const char *>(pf + l), _MM_HINT_T0);
      __m256i v[kGemvRows];
      LOWBIT_UNROLL
      for (int r = 0; r < kGemvRows; ++r) v[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(row[r] + w0 + ch * 32));
      gemv_chunk<kBinary, T>(acc, v, ag + ch * c.ab, c.stride);
    }
    if (rest) {
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest * bb / 4)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      __m256i v[kGemvRows];
      LOWBIT_UNROLL
      for (int r = 0; r < kGemvRows; ++r)
        v[r] = _mm256_maskload_epi32(reinterpret_cast<const int *>(row[r] + w0 + full * 32), mask);
      gemv_chunk<kBinary, T>(acc, v, ag + full * c.ab, c.stride);
    }
    // Every lane went in as 128 + its value; binary summed pairs of lanes as their average.
    const int64_t bias = 128 * (full + (rest ? 1 : 0)) * c.C;
    LOWBIT_UNROLL
    for (int i = 0; i < T; ++i)
      LOWBIT_UNROLL
      for (int r = 0; r < kGemvRows; ++r)
        if (r < nr) {
          const int64_t sum = hsum_epi32(acc[i][r]), total = kBinary ? 2 * sum - odd[(m + i) * s.G + g] : sum;
          accf[i][r] = ep.group(n0 + r, g, accf[i][r], static_cast<int32_t>(total - bias));
        }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < T; ++i)
    LOWBIT_UNROLL
    for (int r = 0; r < kGemvRows; ++r)
      if (r < nr) y[(m + i) * w.N + n0 + r] = ep.finish(n0 + r, accf[i][r], scale[m + i]);
}

template <bool kBinary>
void gemv(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kBlock);
  const Chunks c = make_chunks<kBinary>(s);
  std::vector<uint8_t> a(static_cast<size_t>(M * c.stride));
  std::vector<int32_t> odd(kBinary ? static_cast<size_t>(M * s.G) : 0);
  stage_gemv<kBinary>(s, c, q, M, a.data(), odd.data());
  const IntEpilogue ep{w, s.G};
  run_row_ranges(w.N, M * w.K, [&](int64_t n0, int64_t rows) {
    for (int64_t r = n0; r < n0 + rows; r += kGemvRows) {
      const int nr = static_cast<int>(std::min<int64_t>(kGemvRows, n0 + rows - r));
      for (int64_t m = 0; m < M; m += 2) {
        if (M - m >= 2) gemv_tile<kBinary, 2>(w, s, c, ep, a.data(), odd.data(), scale, r, nr, m, y);
        else gemv_tile<kBinary, 1>(w, s, c, ep, a.data(), odd.data(), scale, r, nr, m, y);
      }
    }
  }, kGemvRows);
}

// ---- GEMM ---------------------------------------------------------------------------------

// Rows [n0, n0+rows) decoded into byte masks d[r][nb][planes][32] in code order: binary one
// plane, 0xFF for u = 1; ternary two, 0xFF for u != 1 (weight nonzero) and 0xFF for u = 2. With
// A = 127 - q as an unsigned byte (0..255, -128 included), sad(A & nonzero, plus) adds
// |A - 255| = 128 + q for a weight +1, |A - 0| = 127 - q for -1 and 0 for 0. bias[r][g] is
// what that adds to the group's dot product: 128 per +1 and 127 per -1 (padding codes are
// u = 0, -1 against q = 0: their 127 is counted too).
template <bool kBinary>
void decode_rows(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, uint8_t *d, int32_t *bias) {
  constexpr int P = kBinary ? 1 : 2;
  const int64_t rb = row_bytes(w.scheme, w.K);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *row = w.qweight + (n0 + r) * rb;
    for (int64_t g = 0; g < s.G; ++g) {
      int32_t plus = 0, zero = 0;
      for (int64_t b = g * s.bpg, e = b + s.group_blocks(g); b < e; ++b) {
        __m256i *out = reinterpret_cast<__m256i *>(d + (r * s.nb + b) * P * kBlock);
        if (kBinary) {
          uint32_t bits;
          std::memcpy(&bits, row + b * 4, 4);
          plus += _mm_popcnt_u32(bits);
          _mm256_storeu_si256(out, bits_to_bytes(bits));
        } else {
          uint64_t bits;  // u = 1: low bit of a 2-bit field; u = 2: high bit
          std::memcpy(&bits, row + b * 8, 8);
          zero += static_cast<int32_t>(_mm_popcnt_u64(bits & 0x5555555555555555ULL));
          plus += static_cast<int32_t>(_mm_popcnt_u64(bits & 0xAAAAAAAAAAAAAAAAULL));
          const __m256i c = _mm256_and_si256(plane2(row + b * 8), _mm256_set1_epi8(3));
          _mm256_storeu_si256(out, _mm256_xor_si256(_mm256_cmpeq_epi8(c, _mm256_set1_epi8(1)), _mm256_set1_epi8(-1)));
          _mm256_storeu_si256(out + 1, _mm256_cmpeq_epi8(c, _mm256_set1_epi8(2)));
        }
      }
      const int32_t lanes = static_cast<int32_t>(s.group_blocks(g) * kBlock);
      bias[r * s.G + g] = 128 * plus + 127 * (lanes - plus - zero);
    }
  }
}

// Tokens m .. m+MR x decoded rows r0 .. r0+nr (nr <= kGemmNR) of the task at n0; x holds the
// tokens' 127 - q as unsigned bytes (Kp per token; 127 in the padding).
template <bool kBinary, int MR>
void gemm_tile(const lowbit_weight &w, const Geometry &s, const IntEpilogue &ep, const uint8_t *x, const uint8_t *d,
               const int32_t *bias, const float *scale, int64_t n0, int64_t r0, int nr, int64_t m, float *y) {
  constexpr int P = kBinary ? 1 : 2;
  const uint8_t *dr[kGemmNR];
  LOWBIT_UNROLL
  for (int j = 0; j < kGemmNR; ++j) dr[j] = d + (r0 + std::min(j, nr - 1)) * s.nb * P * kBlock;
  float accf[MR][kGemmNR] = {};
  for (int64_t g = 0; g < s.G; ++g) {
    __m256i acc[MR][kGemmNR];
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < kGemmNR; ++j) acc[i][j] = _mm256_setzero_si256();
    for (int64_t b = g * s.bpg, e = b + s.group_blocks(g); b < e; ++b) {
      __m256i a[MR];
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i) a[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x + (m + i) * s.Kp + b * kBlock));
      LOWBIT_UNROLL
      for (int j = 0; j < kGemmNR; ++j) {
        const __m256i *mk = reinterpret_cast<const __m256i *>(dr[j] + b * P * kBlock);
        const __m256i plus = _mm256_loadu_si256(mk + P - 1);
        const __m256i nonzero = kBinary ? plus : _mm256_loadu_si256(mk);
        LOWBIT_UNROLL
        for (int i = 0; i < MR; ++i)
          acc[i][j] = _mm256_add_epi64(acc[i][j], _mm256_sad_epu8(kBinary ? a[i] : _mm256_and_si256(a[i], nonzero), plus));
      }
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < kGemmNR; ++j)
        if (j < nr) {
          const int32_t dot = hsum_epi32(acc[i][j]) - bias[(r0 + j) * s.G + g];
          accf[i][j] = ep.group(n0 + r0 + j, g, accf[i][j], dot);
        }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < kGemmNR; ++j)
      if (j < nr) y[(m + i) * w.N + n0 + r0 + j] = ep.finish(n0 + r0 + j, accf[i][j], scale[m + i]);
}

template <bool kBinary>
void gemm(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kBlock);
  std::vector<uint8_t> x(static_cast<size_t>(M * s.Kp));
  for (int64_t m = 0; m < M; ++m) {  // 127 - q = q ^ 0x7F
    const int8_t *qm = q + m * s.K;
    uint8_t *xm = x.data() + m * s.Kp;
    int64_t k = 0;
    for (; k + 32 <= s.K; k += 32)
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(xm + k),
                          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(qm + k)), _mm256_set1_epi8(0x7F)));
    for (; k < s.Kp; ++k) xm[k] = static_cast<uint8_t>(127 - (k < s.K ? qm[k] : 0));
  }
  const IntEpilogue ep{w, s.G};
  run_tiles(w.N, M, kGemmRows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<uint8_t> dbuf;
    static thread_local std::vector<int32_t> bbuf;
    uint8_t *d = scratch(dbuf, static_cast<size_t>(kGemmRows * s.Kp * (kBinary ? 1 : 2)));
    int32_t *bias = scratch(bbuf, static_cast<size_t>(kGemmRows * s.G));
    decode_rows<kBinary>(w, s, n0, rows, d, bias);
    for (int64_t m = m0; m < m0 + mc; m += kGemmMR)
      for (int64_t r0 = 0; r0 < rows; r0 += kGemmNR) {
        const int nr = static_cast<int>(std::min<int64_t>(kGemmNR, rows - r0));
        switch (std::min<int64_t>(kGemmMR, m0 + mc - m)) {
          case 4: gemm_tile<kBinary, 4>(w, s, ep, x.data(), d, bias, scale, n0, r0, nr, m, y); break;
          case 3: gemm_tile<kBinary, 3>(w, s, ep, x.data(), d, bias, scale, n0, r0, nr, m, y); break;
          case 2: gemm_tile<kBinary, 2>(w, s, ep, x.data(), d, bias, scale, n0, r0, nr, m, y); break;
          default: gemm_tile<kBinary, 1>(w, s, ep, x.data(), d, bias, scale, n0, r0, nr, m, y); break;
        }
      }
  });
}

template <bool kBinary>
void run(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  // The GEMV needs |q| <= 127 (quantize_act's range); linear_q may also pass a -128.
  if (M <= kGemvMaxM && !has_int8_min(q, M * w.K)) gemv<kBinary>(w, q, scale, M, y);
  else gemm<kBinary>(w, q, scale, M, y);
}

}  // namespace

void addonly(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  if (w.scheme == LOWBIT_BINARY) run<true>(w, q, scale, M, y);
  else run<false>(w, q, scale, M, y);
}

}  // namespace lowbit::avx2
