// AVX2 kernel for the integer schemes (w8a8, w4a8, w4a4, w3a3).
//
// Codes are unpacked once per task to unsigned bytes u (padded-group layout, common/tiling.h)
// and dotted with int8 activations; the offset is corrected once per group,
// sum q * (u - off) = sum q * u - off * sum q. For u <= 15, vpmaddubsw (u8 x s8 -> pairs summed
// into int16) cannot saturate (2 * 15 * 127 < 32767) and vpmaddwd by ones widens to int32. For
// w8a8 (u up to 255) it could, so its codes are unpacked straight to int16 q = u - 128 and its
// activations staged as int16, and vpmaddwd does the multiply (widening both operands in the
// inner loop instead cost 4 more instructions per 32 codes: 0.97x torch fp32 at 4096x4096,
// M = 512). A 4 x 4 (tokens x rows) microkernel reuses every load four times.
//
// Few tokens of a 4-bit scheme (w4a8, w4a4): a fused GEMV streams each row once instead (the
// unpack-then-multiply path above writes and re-reads every code, which at one token costs
// more than the DRAM read: 4096x4096 w4a8 took 0.77 ms, 11 GB/s, on the 2-core Zen 3). 4 rows
// side by side; a chunk of 4 blocks is two 32-byte loads per row, split into nibbles by an
// AND and a shift, with the activations staged once per call in the lane order that leaves
// (stage_chunks). 4 vpmaddubsw results are added in int16 (4 * 2 * 15 * 127 < 2^15) before
// vpmaddwd widens them; one horizontal sum per row and group.
#include "cpu/avx2/unpack.h"
#include "cpu/common/tiling.h"

namespace lowbit::avx2 {
namespace {

constexpr int kMR = 4, kNR = 4;
inline int64_t rows_per_task(int64_t M) { return M >= 16 ? 64 : 16; }

// Rows [n0, n0+rows) -> codes in the padded-group layout: unsigned bytes u (T = uint8_t) or
// int16 q = u - 128 (T = int16_t, w8a8).
template <typename T>
void unpack_rows(const lowbit_weight &w, const Geometry &s, int64_t n0, int64_t rows, T *u) {
  const SchemeInfo &si = scheme_info(w.scheme);
  const int64_t rb = row_bytes(w.scheme, w.K);
  const int64_t rows_up = (rows + kNR - 1) / kNR * kNR;
  // Zero what the blocks do not cover: group padding (if any) and the rows past N.
  const bool dense = s.gp == s.bpg * kBlock && s.nb % s.bpg == 0;
  const int64_t from = dense ? rows : 0;
  std::memset(u + from * s.L, 0, sizeof(T) * static_cast<size_t>((rows_up - from) * s.L));
  const __m256i off = _mm256_set1_epi16(static_cast<short>(si.code_offset));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *row = w.qweight + (n0 + r) * rb;
    for (int64_t g = 0; g < s.G; ++g)  // group by group: no division per block
      for (int64_t b = g * s.bpg, e = b + s.group_blocks(g), o = r * s.L + g * s.gp; b < e; ++b, o += kBlock) {
        const __m256i v = unpack_block(row + b * si.block_bytes, si.wbits);
        if (sizeof(T) == 1) {
          _mm256_storeu_si256(reinterpret_cast<__m256i *>(u + o), v);
        } else {
          const __m256i lo = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(v)), off);
          const __m256i hi = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(v, 1)), off);
          _mm256_storeu_si256(reinterpret_cast<__m256i *>(u + o), lo);
          _mm256_storeu_si256(reinterpret_cast<__m256i *>(u + o + 16), hi);
        }
      }
  }
}

// 32 bytes of u (unsigned) times 32 int8 activations -> 8 int32 partial sums added to acc;
// or (int16 operands, w8a8) 16 q times 16 activations.
template <typename T>
inline __m256i dot(__m256i acc, __m256i u, __m256i a) {
  if (sizeof(T) == 2) return _mm256_add_epi32(acc, _mm256_madd_epi16(u, a));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)));
}

// T: uint8_t codes u and int8 activations (offset corrected per group), or int16_t for both
// (w8a8: q = u - 128 already, no correction).
template <int MR, typename T>
void tile(const lowbit_weight &w, const Geometry &s, const IntEpilogue &ep, const T *a, const int32_t *asum,
          const float *scale, const T *u, int64_t n0, int64_t r0, int64_t rows, int64_t m0, float *y) {
  const int off = sizeof(T) == 2 ? 0 : scheme_info(w.scheme).code_offset;
  const int nr = static_cast<int>(std::min<int64_t>(kNR, rows - r0));
  float accf[MR][kNR] = {};
  for (int64_t g = 0; g < s.G; ++g) {
    __m256i acc[MR][kNR];
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < kNR; ++j) acc[i][j] = _mm256_setzero_si256();
    const int64_t base = g * s.gp;
    for (int64_t c = 0; c < s.gp; c += 32 / sizeof(T)) {
      __m256i wv[kNR];
      LOWBIT_UNROLL
      for (int j = 0; j < kNR; ++j)
        wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(u + (r0 + j) * s.L + base + c));
      LOWBIT_UNROLL
      for (int i = 0; i < MR; ++i) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a + (m0 + i) * s.L + base + c));
        LOWBIT_UNROLL
        for (int j = 0; j < kNR; ++j) acc[i][j] = dot<T>(acc[i][j], wv[j], av);
      }
    }
    LOWBIT_UNROLL
    for (int i = 0; i < MR; ++i)
      LOWBIT_UNROLL
      for (int j = 0; j < nr; ++j) {
        const int32_t dot = hsum_epi32(acc[i][j]) - off * asum[(m0 + i) * s.G + g];
        accf[i][j] = ep.group(n0 + r0 + j, g, accf[i][j], dot);
      }
  }
  LOWBIT_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_UNROLL
    for (int j = 0; j < nr; ++j)
      y[(m0 + i) * w.N + n0 + r0 + j] = ep.finish(n0 + r0 + j, accf[i][j], scale[m0 + i]);
}

// ---- GEMV (few tokens, 4-bit codes) ---------------------------------------------------------
// Up to 4 tokens: 4096x4096 w4a8 on the 2-core Zen 3, M = 4: 1.13 ms here, 1.16 ms by the
// GEMM path (ad-hoc A/B); past that, decoding every chunk once per token stops paying.
constexpr int64_t kGemvMaxM = 4;
constexpr int kGemvRows = 4;

// Lane p of nibble vector v (0..3) of a chunk holds code perm[32 v + p] of the chunk: load
// v / 2 covers blocks 2 (v / 2) and 2 (v / 2) + 1 (16 bytes each), v % 2 picks the low
// (codes 0..15) or high (16..31) nibbles.
const uint8_t *nibble_chunk_perm() {
  static const auto perm = [] {
    std::vector<uint8_t> p(kChunk);
    for (int i = 0; i < kChunk; ++i) {
      const int v = i / 32, lane = i % 32;
      p[i] = static_cast<uint8_t>((2 * (v / 2) + lane / 16) * 32 + (v % 2) * 16 + lane % 16);
    }
    return p;
  }();
  return perm.data();
}

// The nblk (1..4) blocks of a 4-bit chunk: 64 bytes, of which only the first nblk * 16 are
// loaded (masked loads do not fault past the end of the weights).
inline void load_chunk4(const uint8_t *p, int64_t nblk, __m256i &v0, __m256i &v1) {
  if (nblk == 4) {
    v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
    v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + 32));
    return;
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i dw = _mm256_set1_epi32(static_cast<int>(nblk * 4));  // dwords to load
  v0 = _mm256_maskload_epi32(reinterpret_cast<const int *>(p), _mm256_cmpgt_epi32(dw, lane));
  v1 = _mm256_maskload_epi32(reinterpret_cast<const int *>(p + 32),
                             _mm256_cmpgt_epi32(dw, _mm256_add_epi32(lane, _mm256_set1_epi32(8))));
}

// y[m, n0..n0+4) for one token; rows past N repeat row N-1 (computed, never stored).
void gemv_rows4(const lowbit_weight &w, const Geometry &s, const IntEpilogue &ep, const int8_t *a,
                const int32_t *asum, float token_scale, int64_t n0, float *y) {
  const int64_t rb = row_bytes(w.scheme, w.K);
  const int off = scheme_info(w.scheme).code_offset;
  const int nr = static_cast<int>(std::min<int64_t>(kGemvRows, w.N - n0));
  const uint8_t *row[kGemvRows];
  int64_t n[kGemvRows];
  for (int r = 0; r < kGemvRows; ++r) {
    n[r] = std::min(n0 + r, w.N - 1);
    row[r] = w.qweight + n[r] * rb;
  }
  const __m256i m15 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  float accf[kGemvRows] = {};
  for (int64_t g = 0; g < s.G; ++g) {
    __m256i acc[kGemvRows];
    LOWBIT_UNROLL
    for (int r = 0; r < kGemvRows; ++r) acc[r] = _mm256_setzero_si256();
    const int64_t nblocks = s.group_blocks(g);
    for (int64_t c = 0; c * 4 < nblocks; ++c) {
      const int8_t *ac = a + g * s.gp + c * kChunk;
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ac));
      const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ac + 32));
      const __m256i a2 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ac + 64));
      const __m256i a3 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ac + 96));
      const int64_t b = g * s.bpg + 4 * c, nblk = std::min<int64_t>(4, nblocks - 4 * c);
      LOWBIT_UNROLL
      for (int r = 0; r < kGemvRows; ++r) {
        // The same bytes of the next 4 rows, into L2: 4 short row streams do not train the
        // hardware prefetchers (4096x4096 w4a8, one token: 0.46-0.50 ms with, 0.76-0.80 without;
        // prefetching into L1, or 8 rows ahead, measured no better).
        _mm_prefetch(reinterpret_cast<const char *>(row[r] + kGemvRows * rb + b * 16), _MM_HINT_T1);
        __m256i v0, v1;
        load_chunk4(row[r] + b * 16, nblk, v0, v1);
        __m256i s16 = _mm256_maddubs_epi16(_mm256_and_si256(v0, m15), a0);
        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m15), a1));
        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(_mm256_and_si256(v1, m15), a2));
        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), m15), a3));
        acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(s16, ones));
      }
    }
    LOWBIT_UNROLL
    for (int r = 0; r < kGemvRows; ++r)
      accf[r] = ep.group(n[r], g, accf[r], hsum_epi32(acc[r]) - off * asum[g]);
  }
  for (int r = 0; r < nr; ++r) y[n0 + r] = ep.finish(n0 + r, accf[r], token_scale);
}

void gemv4(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, kChunk);  // groups padded to whole chunks
  static thread_local std::vector<int8_t> abuf;
  static thread_local std::vector<int32_t> sbuf;
  int8_t *a = scratch(abuf, static_cast<size_t>(M * s.L));
  int32_t *asum = scratch(sbuf, static_cast<size_t>(M * s.G));
  stage_chunks(s, q, M, nibble_chunk_perm(), a, asum);
  const IntEpilogue ep{w, s.G};
  run_row_ranges(w.N, M * w.K, [&](int64_t r0, int64_t rows) {
    for (int64_t n0 = r0; n0 < r0 + rows; n0 += kGemvRows)
      for (int64_t m = 0; m < M; ++m)  // tokens after the first find the 4 rows in L1
        gemv_rows4(w, s, ep, a + m * s.L, asum + m * s.G, scale[m], n0, y + m * w.N);
  });
}

// ---- GEMM ----------------------------------------------------------------------------------
template <typename T>
void run(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const Geometry s = make_geometry(w, 32);
  std::vector<int8_t> a8(static_cast<size_t>(M * s.L));
  std::vector<int32_t> asum(static_cast<size_t>(M * s.G));
  stage_int8(s, q, M, a8.data(), asum.data());
  std::vector<T> a16;  // w8a8: the activations as int16
  if (sizeof(T) == 2) a16.assign(a8.begin(), a8.end());
  const T *ap = sizeof(T) == 2 ? a16.data() : reinterpret_cast<const T *>(a8.data());
  const IntEpilogue ep{w, s.G};
  const int64_t task_rows = rows_per_task(M);
  run_tiles(w.N, M, task_rows, [&](int64_t n0, int64_t rows, int64_t m0, int64_t mc) {
    static thread_local std::vector<T> ubuf;
    T *u = scratch(ubuf, static_cast<size_t>(task_rows * s.L));
    unpack_rows(w, s, n0, rows, u);
    for (int64_t m = m0; m < m0 + mc; m += kMR)
      for (int64_t r0 = 0; r0 < rows; r0 += kNR) {
        const int32_t *sp = asum.data();
        switch (std::min<int64_t>(kMR, m0 + mc - m)) {
          case 4: tile<4>(w, s, ep, ap, sp, scale, u, n0, r0, rows, m, y); break;
          case 3: tile<3>(w, s, ep, ap, sp, scale, u, n0, r0, rows, m, y); break;
          case 2: tile<2>(w, s, ep, ap, sp, scale, u, n0, r0, rows, m, y); break;
          default: tile<1>(w, s, ep, ap, sp, scale, u, n0, r0, rows, m, y); break;
        }
      }
  });
}

}  // namespace

bool integer_layout(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y);  // layout_gemv.cpp

void integer(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  if (integer_layout(w, q, scale, M, y)) return;  // few tokens and a CPU layout (w3a3; w4a8/w4a4: one token)
  if (M <= kGemvMaxM && scheme_info(w.scheme).wbits == 4) return gemv4(w, q, scale, M, y);
  if (w.scheme == LOWBIT_W8A8) run<int16_t>(w, q, scale, M, y);
  else run<uint8_t>(w, q, scale, M, y);
}

}  // namespace lowbit::avx2
