// Plain-C++ helpers shared by the SIMD kernels (avx2/, avx512/): block/group geometry,
// activation staging buffers and the task split. Everything here has internal linkage
// (anonymous namespace) on purpose: this header is compiled once per ISA with that ISA's
// flags, and an inline function with external linkage would let the linker keep the AVX-512
// copy for the AVX2 kernels too (an illegal instruction on an AVX2-only CPU).
#ifndef LOWBIT_CPU_COMMON_TILING_H
#define LOWBIT_CPU_COMMON_TILING_H

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "core/kernels.h"
#include "core/threads.h"
#include "lowbit/formats.h"

// Fully unroll a short register-tile loop. GCC only keeps arrays of vector accumulators in
// registers when their loops are unrolled early; otherwise every update goes through the stack.
#define LOWBIT_UNROLL _Pragma("GCC unroll 16")

namespace lowbit {
namespace {

// Where the blocks of 32 codes of a row go. Kernels work group by group; a group is bpg
// consecutive blocks (the last one may be shorter). The integer kernels lay each group out in
// `gp` bytes, gp = bpg*32 rounded up to the vector width, so a vector never straddles two
// groups (the padding holds zero activations, so whatever weight sits there adds nothing).
struct Geometry {
  int64_t K, Kp;   // K and K padded to a multiple of 32
  int64_t nb;      // blocks per row
  int64_t bpg;     // blocks per group
  int64_t G;       // groups per row (= num_groups(K, group_size))
  int64_t gp;      // elements per padded group
  int64_t L;       // elements per padded row: G * gp
  int64_t group_blocks(int64_t g) const { return std::min(bpg, nb - g * bpg); }
};

inline Geometry make_geometry(const lowbit_weight &w, int64_t align) {
  Geometry s;
  s.K = w.K;
  s.Kp = padded_k(w.K);
  s.nb = s.Kp / kBlock;
  s.bpg = w.group_size >= w.K ? s.nb : w.group_size / kBlock;  // group_size == K: one group
  s.G = (s.nb + s.bpg - 1) / s.bpg;
  s.gp = (s.bpg * kBlock + align - 1) / align * align;
  s.L = s.G * s.gp;
  return s;
}

// Int8 activations in the padded-group layout (zeros in the padding) plus, per group, the sum
// of the activations: the integer kernels multiply by unsigned codes u and subtract
// offset * sum(q) once per group instead of re-centring every code.
inline void stage_int8(const Geometry &s, const int8_t *q, int64_t M, int8_t *a, int32_t *asum) {
  for (int64_t m = 0; m < M; ++m) {
    int8_t *am = a + m * s.L;
    std::memset(am, 0, static_cast<size_t>(s.L));
    const int8_t *qm = q + m * s.K;
    for (int64_t g = 0; g < s.G; ++g) {
      const int64_t k0 = g * s.bpg * kBlock, k1 = std::min(s.K, k0 + s.bpg * kBlock);
      int32_t sum = 0;
      for (int64_t k = k0; k < k1; ++k) sum += qm[k];
      if (k1 > k0) std::memcpy(am + g * s.gp, qm + k0, static_cast<size_t>(k1 - k0));
      asum[m * s.G + g] = sum;
    }
  }
}

// Int16 activations padded to Kp with zeros: the add-only kernels add 32 of them per block
// under a 32-bit mask (one lane per code), and int16 lanes cannot overflow within 256 blocks.
inline void stage_int16(const Geometry &s, const int8_t *q, int64_t M, int16_t *a) {
  for (int64_t m = 0; m < M; ++m) {
    int16_t *am = a + m * s.Kp;
    const int8_t *qm = q + m * s.K;
    for (int64_t k = 0; k < s.K; ++k) am[k] = qm[k];
    for (int64_t k = s.K; k < s.Kp; ++k) am[k] = 0;
  }
}

// Per (token, group) sum of the int16 activations (binary: sum = 2 * sum_{u=1} q - sum q).
inline void group_sums16(const Geometry &s, const int16_t *a, int64_t M, int32_t *tsum) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t g = 0; g < s.G; ++g) {
      int32_t sum = 0;
      for (int64_t k = g * s.bpg * kBlock, e = std::min(s.Kp, k + s.bpg * kBlock); k < e; ++k) sum += a[m * s.Kp + k];
      tsum[m * s.G + g] = sum;
    }
}

// Float activations padded to Kp with zeros.
inline void stage_f32(const Geometry &s, const float *x, int64_t M, float *a) {
  for (int64_t m = 0; m < M; ++m) {
    std::memcpy(a + m * s.Kp, x + m * s.K, static_cast<size_t>(s.K) * sizeof(float));
    std::fill(a + m * s.Kp + s.K, a + (m + 1) * s.Kp, 0.0f);
  }
}

// The epilogue of the integer and add-only schemes, in the reference's order of float
// operations (acc over groups, then * scale[m] + bias) so results match it bit for bit.
struct IntEpilogue {
  const lowbit_weight &w;
  int64_t G;
  float group(int64_t n, int64_t g, float acc, int32_t dot) const {
    return acc + _cvtsh_ss(w.scales[n * G + g]) * static_cast<float>(dot);  // F16C: exact
  }
  float finish(int64_t n, float acc, float token_scale) const {
    return acc * token_scale + (w.bias ? w.bias[n] : 0.0f);
  }
};

// A thread's scratch buffer, grown on demand and kept between calls.
template <typename T>
T *scratch(std::vector<T> &v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Split the output into tasks of nb_rows rows of N times mb tokens of M. Rows are the outer
// split (each task unpacks its weight rows once and reuses them for all of its tokens); M is
// split only when there are too few row blocks to keep every thread busy.
template <typename F>
void run_tiles(int64_t N, int64_t M, int64_t nb_rows, F &&fn) {
  const int64_t n_tiles = (N + nb_rows - 1) / nb_rows;
  const int threads = num_threads();
  int64_t mb = M;
  if (M >= 64 && n_tiles < 4 * threads) mb = std::max<int64_t>(32, (M + 3) / 4);
  const int64_t m_tiles = (M + mb - 1) / mb;
  parallel_for(n_tiles * m_tiles, [&](int64_t t) {
    const int64_t n0 = (t / m_tiles) * nb_rows, m0 = (t % m_tiles) * mb;
    fn(n0, std::min(nb_rows, N - n0), m0, std::min(mb, M - m0));
  });
}

// ---- GEMV (few tokens): fused decode, weights streamed once -------------------------------
//
// The fused GEMV kernels read a row in chunks of 4 blocks (128 codes, 16..128 bytes), decode
// the chunk in registers and feed it straight to the dot products. Decoding is cheapest when
// it leaves the codes in whatever lane order the packed bits fall in (nibbles split by an AND
// and a shift, 2-bit fields by shifts), so instead of reordering the codes of every row we
// reorder the activations once per call to match: `perm[p]` is the code (0..127, within the
// chunk) whose activation sits at lane p. Groups start on a chunk boundary (a group's padded
// length gp is a multiple of 128; the padding holds zero activations and the weight bytes
// past a group's end are never loaded), so every chunk belongs to exactly one group.
constexpr int64_t kChunk = 4 * kBlock;

// Stage x[M][K] into a[M][s.L] in chunk order `perm`, zeros in the padding; sum[m][g] = sum of
// the token's values in group g (exact for integers) when `sum` is not null.
template <typename T, typename S>
void stage_chunks(const Geometry &s, const S *x, int64_t M, const uint8_t *perm, T *a, int32_t *sum) {
  for (int64_t m = 0; m < M; ++m) {
    const S *xm = x + m * s.K;
    for (int64_t g = 0; g < s.G; ++g) {
      const int64_t k0 = g * s.bpg * kBlock, k1 = std::min(s.K, k0 + s.bpg * kBlock);
      T *ag = a + m * s.L + g * s.gp;
      int32_t total = 0;
      for (int64_t c = 0; c < s.gp; c += kChunk)
        for (int p = 0; p < kChunk; ++p) {
          const int64_t k = k0 + c + perm[p];
          const T v = k < k1 ? static_cast<T>(xm[k]) : T(0);
          ag[c + p] = v;
          if (sum) total += static_cast<int32_t>(v);
        }
      if (sum) sum[m * s.G + g] = total;
    }
  }
}

// The fused GEMV's thread split: each task is a contiguous range of rows (a multiple of
// `unit`: 4-row tiles; the layout kernels pass their tiles or panels as rows, unit 1), a few
// per thread, so every thread streams long sequential runs of each row and a thread slowed
// down by other load can be covered by the others. Below kSerialMacs multiply-adds in
// all (a 576 x 576 GEMV: ~10 us on one core) the caller does it alone: waking the pool costs
// as much (576x576 M=1: 27-130 us through the pool, 15-54 us without, in the git history of
// bench/results/cpu.md).
constexpr int64_t kSerialMacs = int64_t{1} << 19;
template <typename F>
void run_row_ranges(int64_t N, int64_t macs_per_row, F &&fn, int64_t unit = 4) {
  const int threads = num_threads();
  const int64_t tasks = threads == 1 || N * macs_per_row < kSerialMacs ? 1 : 4 * threads;
  const int64_t rows = std::max<int64_t>(unit, ((N + tasks - 1) / tasks + unit - 1) / unit * unit);
  parallel_for((N + rows - 1) / rows, [&](int64_t t) {
    const int64_t n0 = t * rows;
    fn(n0, std::min(rows, N - n0));
  });
}

}  // namespace
}  // namespace lowbit
#endif
