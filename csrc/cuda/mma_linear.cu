// The tensor-core matmul of every scheme, for few tokens (decode) and, below the cuBLAS
// crossover, for more (python/lowbit/ops.py picks; bench/results/h100.md shows where).
//
//   y[m, n] = sum_k x[m, k] * w[n, k]   computed as  Y^T = W X^T  on mma.sync:
//   the weight rows are the MMA's 16 rows (A, read straight from the canonical packed blocks,
//   see common.cuh), the tokens its 8 columns (B), so one token wastes only B's width and the
//   weight stream, the only large read, goes through registers once.
//
// Weight-only (w4a16/w3a16, fp16/bf16 activations): codes become exact numbers with one byte
// permute (magic exponent) and one subtraction of the zero point, times the group scale;
// m16n8k16 sums in fp32.
// Integer and add-only schemes: activations quantized per token beforehand (quantize_act.cu),
// weights turned into int8 with three byte-wise operations, m16n8k32 sums int32 per group:
// bit-exact integer dot products; the group scale, the token scale and the bias follow in fp32
// in the reference's order (no fused multiply-add), so per-channel weights (one group, the
// default) give the reference's result to the bit.
//
// Loads: thread q of a quad reads a whole block of its two rows (16 bytes for 4-bit, one
// vector load), the quad four consecutive blocks, 64 contiguous bytes of the row; each k-step
// of the MMA then takes its 4 (8) codes from each of the four blocks, and the activations are
// read in the same order. The next chunks' loads are issued before this one's MMAs (registers
// as a two-deep pipeline), so each warp keeps 2 x 4 blocks of both rows in flight.
// Weight-only: the group scale multiplies the fp16/bf16 weight (u - zero) before the MMA
// (one more rounding, as in Marlin); since a thread's block is in one group, any group size
// works. Integer: a k-step sums four blocks, so they must be in one group: every group size
// that is a multiple of 128, or one group per row; smaller groups take a slower path that
// reads one block per k-step (warp_blocks).
//
// Work split: a CTA of 8 warps owns 16 weight rows x (8 * TN) tokens; its warps, and KS CTAs
// along grid.y, split K, so that even one 16-row tile per SM's worth of rows keeps every SM
// streaming. Partial sums meet in shared memory (within the CTA) and in a workspace reduced by
// a second kernel (across CTAs). Integer partials stay int32 until the very end when a row is
// one group, so splitting K never changes a bit; with several groups the split falls on group
// boundaries and only the float sum over groups is re-associated.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/kernels.cuh"

namespace lowbit::cuda {

namespace {

constexpr int kWarps = 8;    // warps per CTA, all on one 16-row tile, splitting K
constexpr int kUnroll = 4;   // warp_blocks: blocks loaded before their MMAs (loads in flight)
constexpr int kChunk = 4;    // warp_chunks: blocks per k-step set, one per thread of a quad

__device__ __forceinline__ float epilogue(const MmaParams &p, uint32_t v, int64_t n, int64_t m) {
  float f;
  if (p.mode == MmaMode::IntPerChannel) {
    const float s = half_bits_to_float(p.scales[n]);
    f = __fmul_rn(__fmul_rn(s, static_cast<float>(static_cast<int32_t>(v))), p.ascale[m]);
  } else if (p.mode == MmaMode::IntGrouped) {
    f = __fmul_rn(__uint_as_float(v), p.ascale[m]);
  } else {
    f = __uint_as_float(v);
  }
  if (p.bias) f = __fadd_rn(f, p.bias[n]);
  return f;
}

__device__ __forceinline__ void store_y(const MmaParams &p, int64_t m, int64_t n, float v) {
  store_dtype(p.y, p.y_dtype, m * p.N + n, v);
}

__device__ __forceinline__ uint32_t add32(const MmaParams &p, uint32_t a, uint32_t b) {
  return p.mode == MmaMode::IntPerChannel ? a + b : __float_as_uint(__uint_as_float(a) + __uint_as_float(b));
}

// Whether a weight takes the chunked path: every scheme, but grouped integer weights only when a
// group is whole chunks (four consecutive blocks share one group).
__host__ __device__ __forceinline__ bool chunked(const MmaParams &p) {
  return p.mode != MmaMode::IntGrouped || p.blocks_per_group % kChunk == 0;
}

// The blocks [b_begin, b_end) of split s of S: whole chunks of 4 blocks (the chunked path), or
// whole groups for grouped integer weights (each group's int32 sum complete before its scale).
__device__ __forceinline__ void split_range(const MmaParams &p, int s, int S, int64_t &b_begin, int64_t &b_end) {
  const int64_t unit = p.mode == MmaMode::IntGrouped ? p.blocks_per_group : kChunk;
  const int64_t units = (p.nblocks + unit - 1) / unit;
  b_begin = units * s / S * unit;
  b_end = min(units * (s + 1) / S * unit, p.nblocks);
}

// Two codes (bytes sel & 0xF and sel >> 8 & 0xF of `codes`, sel = 0x4140 or 0x4342) minus the
// zero point, times the scale, as an fp16/bf16 pair: the byte permute writes [code, magic] per
// half, which reads as magic + u; subtracting zero_pair(z) leaves u - z exactly.
// fp16: 1024 + z is exact for every byte z, one subtraction. bf16 has 8 significant bits, so
// 128 + z is not exact past z = 128: subtract 128, then z (u - z is exact, |u - z| < 256).
template <typename T>
__device__ __forceinline__ typename Act<T>::T2 zero_pair(uint8_t z) {
  using A = Act<T>;
  const float v = std::is_same_v<T, __half> ? A::kMagicValue + z : static_cast<float>(z);
  return A::from_float2(v, v);
}
template <typename T>
__device__ __forceinline__ uint32_t dequant_pair(uint32_t codes, uint32_t sel, typename Act<T>::T2 zz,
                                                 typename Act<T>::T2 ss) {
  using A = Act<T>;
  using T2 = typename A::T2;
  T2 v = as_t2<T2>(__byte_perm(codes, A::kMagicByte * 0x01010101u, sel));
  if constexpr (!std::is_same_v<T, __half>) v = __hsub2(v, A::from_float2(A::kMagicValue, A::kMagicValue));
  return as_u32(__hmul2(__hsub2(v, zz), ss));
}

// This lane's token of each 8-token tile (B's column lane / 4); tokens past M read nothing.
template <int TN>
__device__ __forceinline__ void lane_tokens(const MmaParams &p, int64_t m0, int r, int64_t (&tok)[TN],
                                            bool (&tok_ok)[TN]) {
#pragma unroll
  for (int t = 0; t < TN; ++t) {
    tok[t] = m0 + t * 8 + r;
    tok_ok[t] = tok[t] < p.M;
  }
}

// The int8 A fragment of m16n8k32 from the codes of rows r (lo0, hi0) and r + 8 (lo1, hi1).
template <int WBITS>
__device__ __forceinline__ void int8_fragment(const MmaParams &p, uint32_t lo0, uint32_t lo1, uint32_t hi0,
                                              uint32_t hi1, uint32_t (&a)[4]) {
  a[0] = to_signed<WBITS>(lo0, p.code_offset, p.binary);
  a[1] = to_signed<WBITS>(lo1, p.code_offset, p.binary);
  a[2] = to_signed<WBITS>(hi0, p.code_offset, p.binary);
  a[3] = to_signed<WBITS>(hi1, p.code_offset, p.binary);
}

// What one thread holds of one chunk: its block of rows r and r + 8, and (weight-only) their
// group's zero point and scale as pairs.
template <int WBITS, typename T>
struct ChunkRegs {
  uint32_t w0[WBITS], w1[WBITS];
  uint16_t s0, s1;
  uint8_t z0, z1;
};

template <int WBITS, typename T>
__device__ __forceinline__ void load_chunk(const MmaParams &p, const uint8_t *row0, const uint8_t *row1,
                                           int64_t i0, int64_t i1, int64_t b, ChunkRegs<WBITS, T> &c) {
  if (b < p.nblocks) {
    load_block<WBITS>(row0 + b * (4 * WBITS), c.w0);
    load_block<WBITS>(row1 + b * (4 * WBITS), c.w1);
  } else {  // past the last block: codes 0, activations 0 (see x_pair / x_word)
#pragma unroll
    for (int i = 0; i < WBITS; ++i) c.w0[i] = c.w1[i] = 0u;
  }
  if constexpr (!std::is_same_v<T, void>) {
    const int64_t g = min(b, p.nblocks - 1) / p.blocks_per_group;
    c.s0 = __ldg(p.scales + i0 * p.G + g), c.s1 = __ldg(p.scales + i1 * p.G + g);
    c.z0 = __ldg(p.zeros + i0 * p.G + g), c.z1 = __ldg(p.zeros + i1 * p.G + g);
  }
}

// One warp, chunked path: rows n0 + lane/4 and n0 + lane/4 + 8, tokens m0 + [0, 8 TN), blocks
// [b_begin, b_end) (whole chunks; the last chunk of a row may run past nblocks).
// Leaves its 32-bit partial sums (int32 or float, see add32) in out[t][4], C-fragment order.
template <int WBITS, typename T, int TN>
__device__ __forceinline__ void warp_chunks(const MmaParams &p, int64_t n0, int64_t m0, int64_t b_begin,
                                            int64_t b_end, uint32_t (&out)[TN][4]) {
  constexpr bool kInt = std::is_same_v<T, void>;
  const int lane = threadIdx.x & 31, r = lane >> 2, q = lane & 3;
  const int64_t i0 = min(n0 + r, p.N - 1), i1 = min(n0 + r + 8, p.N - 1);  // clamped: read, never stored
  const uint8_t *row0 = p.qweight + i0 * p.row_bytes, *row1 = p.qweight + i1 * p.row_bytes;
  int64_t tok[TN];
  bool tok_ok[TN];
  lane_tokens<TN>(p, m0, r, tok, tok_ok);
  float facc[TN][4] = {};
  int32_t iacc[TN][4] = {};  // integer: the current group's (per-channel: the whole range's) sums

  // One chunk: for each word-set i, thread q gives codes 4i..4i+3 and 16+4i..16+4i+3 of its
  // block b = first + q, and reads the activations of those same k.
  auto compute = [&](const ChunkRegs<WBITS, T> &c, int64_t b) {
    const bool b_ok = b < p.nblocks;
    if constexpr (kInt) {
      const int8_t *xq = static_cast<const int8_t *>(p.x);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        uint32_t lo0, hi0, lo1, hi1;
        word_codes<WBITS>(c.w0, i, lo0, hi0);
        word_codes<WBITS>(c.w1, i, lo1, hi1);
        uint32_t a[4];
        int8_fragment<WBITS>(p, lo0, lo1, hi0, hi1, a);
#pragma unroll
        for (int t = 0; t < TN; ++t) {
          const int8_t *xr = xq + tok[t] * p.ldx + b * 32 + 4 * i;
          const bool ok = tok_ok[t] && b_ok;
          const uint32_t b0 = ok ? __ldg(reinterpret_cast<const unsigned int *>(xr)) : 0u;
          const uint32_t b1 = ok ? __ldg(reinterpret_cast<const unsigned int *>(xr + 16)) : 0u;
          mma_s8(iacc[t], a, b0, b1);
        }
      }
    } else {
      using A = Act<T>;
      using T2 = typename A::T2;
      const T *x = static_cast<const T *>(p.x);
      const T2 zz0 = zero_pair<T>(c.z0), zz1 = zero_pair<T>(c.z1);
      const float s0 = half_bits_to_float(c.s0), s1 = half_bits_to_float(c.s1);
      const T2 ss0 = A::from_float2(s0, s0), ss1 = A::from_float2(s1, s1);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        uint32_t lo0, hi0, lo1, hi1;
        word_codes<WBITS>(c.w0, i, lo0, hi0);
        word_codes<WBITS>(c.w1, i, lo1, hi1);
        // m16n8k16: a0/a2 = row r, k-slots (2q, 2q+1) / (2q+8, 2q+9), a1/a3 the same of row
        // r + 8: codes (4i, 4i+1) and (4i+2, 4i+3), matching x[4i..4i+3] as (b0, b1).
        const uint32_t a_lo[4] = {dequant_pair<T>(lo0, 0x4140, zz0, ss0), dequant_pair<T>(lo1, 0x4140, zz1, ss1),
                                  dequant_pair<T>(lo0, 0x4342, zz0, ss0), dequant_pair<T>(lo1, 0x4342, zz1, ss1)};
        const uint32_t a_hi[4] = {dequant_pair<T>(hi0, 0x4140, zz0, ss0), dequant_pair<T>(hi1, 0x4140, zz1, ss1),
                                  dequant_pair<T>(hi0, 0x4342, zz0, ss0), dequant_pair<T>(hi1, 0x4342, zz1, ss1)};
#pragma unroll
        for (int t = 0; t < TN; ++t) {
          const T *xr = x + tok[t] * p.ldx + b * 32 + 4 * i;
          uint2 v0 = make_uint2(0u, 0u), v1 = make_uint2(0u, 0u);
          if (tok_ok[t] && b_ok) {
            v0 = __ldg(reinterpret_cast<const uint2 *>(xr));
            v1 = __ldg(reinterpret_cast<const uint2 *>(xr + 16));
          }
          mma_f16<T>(facc[t], a_lo, v0.x, v0.y);
          mma_f16<T>(facc[t], a_hi, v1.x, v1.y);
        }
      }
    }
  };
  // Grouped integer weights: fold the finished group's int32 sums into float, scaled.
  auto flush_group = [&](int64_t g) {
    if constexpr (kInt) {
      if (p.mode == MmaMode::IntGrouped) {
        const float s0 = half_bits_to_float(p.scales[i0 * p.G + g]), s1 = half_bits_to_float(p.scales[i1 * p.G + g]);
#pragma unroll
        for (int t = 0; t < TN; ++t)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            facc[t][e] = __fadd_rn(facc[t][e], __fmul_rn(e < 2 ? s0 : s1, static_cast<float>(iacc[t][e])));
            iacc[t][e] = 0;
          }
      }
    }
  };

  // Two chunks in flight: chunk c + 2 is loaded into the registers chunk c has just used.
  ChunkRegs<WBITS, T> ca, cb;
  const int64_t step = kChunk;
  if (b_begin < b_end) load_chunk(p, row0, row1, i0, i1, b_begin + q, ca);
  if (b_begin + step < b_end) load_chunk(p, row0, row1, i0, i1, b_begin + step + q, cb);
  for (int64_t b = b_begin; b < b_end; b += 2 * step) {
    compute(ca, b + q);
    if (b + 2 * step < b_end) load_chunk(p, row0, row1, i0, i1, b + 2 * step + q, ca);
    if (kInt && p.mode == MmaMode::IntGrouped && (b + step) % p.blocks_per_group == 0) flush_group(b / p.blocks_per_group);
    if (b + step < b_end) {
      compute(cb, b + step + q);
      if (b + 3 * step < b_end) load_chunk(p, row0, row1, i0, i1, b + 3 * step + q, cb);
      if (kInt && p.mode == MmaMode::IntGrouped && (b + 2 * step) % p.blocks_per_group == 0)
        flush_group((b + step) / p.blocks_per_group);
    }
  }
#pragma unroll
  for (int t = 0; t < TN; ++t)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      out[t][e] = kInt && p.mode == MmaMode::IntPerChannel ? static_cast<uint32_t>(iacc[t][e]) : __float_as_uint(facc[t][e]);
}

// One warp, block path (grouped integer weights with groups of 32 or 64): one block per k-step,
// thread q reading its own words of each block. Same contract as warp_chunks.
template <int WBITS, int TN>
__device__ __forceinline__ void warp_blocks(const MmaParams &p, int64_t n0, int64_t m0, int64_t b_begin,
                                            int64_t b_end, uint32_t (&out)[TN][4]) {
  const int lane = threadIdx.x & 31, r = lane >> 2, q = lane & 3;
  const int64_t row0 = min(n0 + r, p.N - 1), row1 = min(n0 + r + 8, p.N - 1);  // clamped: read, never stored
  const uint8_t *w0 = p.qweight + row0 * p.row_bytes, *w1 = p.qweight + row1 * p.row_bytes;
  constexpr int kBlockBytes = WBITS * 4;
  int64_t tok[TN];
  bool tok_ok[TN];
  lane_tokens<TN>(p, m0, r, tok, tok_ok);
  const int8_t *xq = static_cast<const int8_t *>(p.x);
  float facc[TN][4] = {};
  for (int64_t b = b_begin; b < b_end;) {
    const int64_t g = b / p.blocks_per_group;
    const int64_t g_end = min(b_end, (g + 1) * p.blocks_per_group);
    int32_t gacc[TN][4] = {};
#pragma unroll kUnroll
    for (; b < g_end; ++b) {
      uint32_t lo0, hi0, lo1, hi1;
      block_codes<WBITS>(w0 + b * kBlockBytes, q, lo0, hi0);
      block_codes<WBITS>(w1 + b * kBlockBytes, q, lo1, hi1);
      uint32_t a[4];
      int8_fragment<WBITS>(p, lo0, lo1, hi0, hi1, a);
#pragma unroll
      for (int t = 0; t < TN; ++t) {
        const int8_t *xr = xq + tok[t] * p.ldx + b * 32 + 4 * q;
        const uint32_t b0 = tok_ok[t] ? __ldg(reinterpret_cast<const unsigned int *>(xr)) : 0u;
        const uint32_t b1 = tok_ok[t] ? __ldg(reinterpret_cast<const unsigned int *>(xr + 16)) : 0u;
        mma_s8(gacc[t], a, b0, b1);
      }
    }
    const float s0 = half_bits_to_float(p.scales[row0 * p.G + g]);
    const float s1 = half_bits_to_float(p.scales[row1 * p.G + g]);
#pragma unroll
    for (int t = 0; t < TN; ++t)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        facc[t][i] = __fadd_rn(facc[t][i], __fmul_rn(i < 2 ? s0 : s1, static_cast<float>(gacc[t][i])));
  }
#pragma unroll
  for (int t = 0; t < TN; ++t)
#pragma unroll
    for (int i = 0; i < 4; ++i) out[t][i] = __float_as_uint(facc[t][i]);
}

template <int WBITS, typename T, int TN, bool kChunked>
__global__ void __launch_bounds__(kWarps * 32) mma_linear_kernel(MmaParams p) {
  __shared__ uint32_t red[kWarps][16][8 * TN];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 2, q = lane & 3;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.z) * 8 * TN;
  int64_t b_begin, b_end;
  split_range(p, blockIdx.y * kWarps + warp, gridDim.y * kWarps, b_begin, b_end);
  uint32_t out[TN][4];
  if constexpr (kChunked) warp_chunks<WBITS, T, TN>(p, n0, m0, b_begin, b_end, out);
  else warp_blocks<WBITS, TN>(p, n0, m0, b_begin, b_end, out);
#pragma unroll
  for (int t = 0; t < TN; ++t) {  // C fragment: c0, c1 = row r, tokens 2q, 2q+1; c2, c3 = row r+8
    red[warp][r][t * 8 + 2 * q] = out[t][0];
    red[warp][r][t * 8 + 2 * q + 1] = out[t][1];
    red[warp][r + 8][t * 8 + 2 * q] = out[t][2];
    red[warp][r + 8][t * 8 + 2 * q + 1] = out[t][3];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < 16 * 8 * TN; e += kWarps * 32) {
    const int row = e / (8 * TN), col = e % (8 * TN);
    const int64_t n = n0 + row, m = m0 + col;
    if (n >= p.N || m >= p.M) continue;
    uint32_t v = red[0][row][col];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) v = add32(p, v, red[w][row][col]);
    if (gridDim.y == 1) store_y(p, m, n, epilogue(p, v, n, m));
    else p.partial[(static_cast<int64_t>(blockIdx.y) * p.M + m) * p.N + n] = v;
  }
}

// Sums the KS partials of each output (in split order, so the result does not depend on timing)
// and applies the epilogue.
__global__ void reduce_splits_kernel(MmaParams p, int KS) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.M * p.N) return;
  uint32_t v = p.partial[i];
  for (int s = 1; s < KS; ++s) v = add32(p, v, p.partial[static_cast<int64_t>(s) * p.M * p.N + i]);
  store_y(p, i / p.N, i % p.N, epilogue(p, v, i % p.N, i / p.N));
}

template <int WBITS, typename T, bool kChunked>
cudaError_t launch_tn(const MmaParams &p, int TN, dim3 grid, cudaStream_t st) {
  switch (TN) {
    case 1: mma_linear_kernel<WBITS, T, 1, kChunked><<<grid, kWarps * 32, 0, st>>>(p); break;
    case 2: mma_linear_kernel<WBITS, T, 2, kChunked><<<grid, kWarps * 32, 0, st>>>(p); break;
    case 4: mma_linear_kernel<WBITS, T, 4, kChunked><<<grid, kWarps * 32, 0, st>>>(p); break;
    default: mma_linear_kernel<WBITS, T, 8, kChunked><<<grid, kWarps * 32, 0, st>>>(p); break;
  }
  return cudaGetLastError();
}

template <int WBITS>
cudaError_t launch_int(const MmaParams &p, int TN, dim3 grid, cudaStream_t st) {
  return chunked(p) ? launch_tn<WBITS, void, true>(p, TN, grid, st) : launch_tn<WBITS, void, false>(p, TN, grid, st);
}

// Integer kernels exist for every stored width, weight-only ones for 4 and 3 bits.
template <typename T>
cudaError_t launch_bits(const MmaParams &p, int wbits, int TN, dim3 grid, cudaStream_t st) {
  if constexpr (std::is_same_v<T, void>) {
    switch (wbits) {
      case 8: return launch_int<8>(p, TN, grid, st);
      case 4: return launch_int<4>(p, TN, grid, st);
      case 3: return launch_int<3>(p, TN, grid, st);
      case 2: return launch_int<2>(p, TN, grid, st);
      default: return launch_int<1>(p, TN, grid, st);
    }
  } else {
    return wbits == 4 ? launch_tn<4, T, true>(p, TN, grid, st) : launch_tn<3, T, true>(p, TN, grid, st);
  }
}

}  // namespace

int mma_tokens_per_tile(int64_t M) { return M <= 8 ? 1 : M <= 16 ? 2 : M <= 32 ? 4 : 8; }

int mma_splits(const MmaParams &p, int num_sms) {
  const int TN = mma_tokens_per_tile(p.M);
  const int64_t tiles = (p.N + 15) / 16 * ((p.M + 8 * TN - 1) / (8 * TN));
  const int64_t unit = p.mode == MmaMode::IntGrouped ? p.blocks_per_group : kChunk;
  const int64_t units = (p.nblocks + unit - 1) / unit;
  // Enough CTAs for 2 per SM (16 warps, each with two chunks in flight: enough to stream at
  // full bandwidth), but every warp keeps at least 4 units, or the reduction costs more than
  // the split spreads.
  int64_t ks = (2LL * num_sms + tiles - 1) / tiles;
  ks = std::min<int64_t>(ks, std::max<int64_t>(1, units / (4 * kWarps)));
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(ks, 64)));
}

cudaError_t mma_linear(const MmaParams &p, int wbits, lowbit_dtype x_dtype, int KS, cudaStream_t st) {
  const int TN = mma_tokens_per_tile(p.M);
  const dim3 grid(static_cast<unsigned>((p.N + 15) / 16), static_cast<unsigned>(KS),
                  static_cast<unsigned>((p.M + 8 * TN - 1) / (8 * TN)));
  cudaError_t err;
  if (p.mode != MmaMode::WeightOnly) err = launch_bits<void>(p, wbits, TN, grid, st);
  else if (x_dtype == LOWBIT_F16) err = launch_bits<__half>(p, wbits, TN, grid, st);
  else err = launch_bits<__nv_bfloat16>(p, wbits, TN, grid, st);
  if (err != cudaSuccess || KS == 1) return err;
  const int64_t total = p.M * p.N;
  reduce_splits_kernel<<<static_cast<unsigned>((total + 255) / 256), 256, 0, st>>>(p, KS);
  return cudaGetLastError();
}

}  // namespace lowbit::cuda
