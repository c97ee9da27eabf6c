// Shared device helpers of the CUDA kernels: activation types, the tensor-core instructions,
// and the one table of how a thread takes its codes out of a canonical packed block.
//
// Why the canonical format feeds the tensor cores as it is: in mma.m16n8k32 (int8) thread
// t = 4 * r + p of a warp holds, of row r (and r + 8) of A, the 4 bytes at columns 4p..4p+3 and
// the 4 at 16+4p..16+4p+3. A packed block holds 32 consecutive codes of one row, and in every
// bit width the codes 4p..4p+3 and 16+4p..16+4p+3 sit in one or two aligned 32-bit words of it
// (the 4-bit block is ggml's Q4_0 order: byte j holds codes j and j + 16). So a thread loads one
// word per row and block and unpacks it with a few shifts and masks: no offline shuffle, no
// second copy of the weights. The fp16/bf16 MMA (m16n8k16) takes the same 8 codes as two
// k-steps of 4 (codes 4p..4p+3, then 16+4p..16+4p+3), with the activations loaded in the same
// order; the dot product does not care in which order its k terms are summed.
#ifndef LOWBIT_CUDA_COMMON_CUH
#define LOWBIT_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "lowbit/lowbit.h"

namespace lowbit::cuda {

// ---- activation types ------------------------------------------------------------------------
// Float activations of the weight-only kernels. kMagic is the 16-bit pattern whose low byte,
// replaced by a code c < 128, reads as the number kMagicValue + c: 0x6400 = 1024 in fp16,
// 0x4300 = 128 in bf16. One byte permute turns two code bytes into two exact numbers.
template <typename T>
struct Act;
template <>
struct Act<__half> {
  using T2 = __half2;
  static constexpr uint32_t kMagicByte = 0x64;
  static constexpr float kMagicValue = 1024.f;
  static __device__ __forceinline__ T2 from_float2(float a, float b) { return __floats2half2_rn(a, b); }
};
template <>
struct Act<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  static constexpr uint32_t kMagicByte = 0x43;
  static constexpr float kMagicValue = 128.f;
  static __device__ __forceinline__ T2 from_float2(float a, float b) { return __floats2bfloat162_rn(a, b); }
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ void store_as(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_as(__half *p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store_as(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

// The same with the dtype known only at run time (an output of any of the three dtypes).
__device__ __forceinline__ void store_dtype(void *p, lowbit_dtype dt, int64_t i, float v) {
  if (dt == LOWBIT_F32) store_as(static_cast<float *>(p) + i, v);
  else if (dt == LOWBIT_F16) store_as(static_cast<__half *>(p) + i, v);
  else store_as(static_cast<__nv_bfloat16 *>(p) + i, v);
}

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

template <typename T2>
__device__ __forceinline__ uint32_t as_u32(T2 v) { return *reinterpret_cast<uint32_t *>(&v); }
template <typename T2>
__device__ __forceinline__ T2 as_t2(uint32_t v) { return *reinterpret_cast<T2 *>(&v); }

// ---- tensor-core instructions (sm_80 and later) ---------------------------------------------
// c[4] (rows r, r+8 x tokens 2p, 2p+1) += A (16 rows x 32 int8) * B (32 x 8 tokens).
__device__ __forceinline__ void mma_s8(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// c[4] += A (16 rows x 16, fp16 or bf16) * B (16 x 8 tokens), fp32 accumulate.
template <typename T>
__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_f16<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
template <>
__device__ __forceinline__ void mma_f16<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                       uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// ---- codes out of a packed block ------------------------------------------------------------
// Four 1-bit values (bits 0..3 of v) spread to bit 0 of four bytes: bit j moves to bit 8j.
__device__ __forceinline__ uint32_t spread4(uint32_t v) { return (v * 0x00204081u) & 0x01010101u; }

__device__ __forceinline__ uint32_t ldg32(const uint8_t *p) {
  return __ldg(reinterpret_cast<const unsigned int *>(p));
}

// The codes thread p (0..3) of a quad feeds to the MMA from one block of one row, as bytes:
// lo = codes 4p..4p+3, hi = codes 16+4p..16+4p+3 (byte j = code 4p + j, resp. 16 + 4p + j).
// One specialisation per stored width; the bit diagrams are in lowbit/formats.h.
template <int WBITS>
__device__ __forceinline__ void block_codes(const uint8_t *blk, int p, uint32_t &lo, uint32_t &hi);

template <>  // byte j = code j
__device__ __forceinline__ void block_codes<8>(const uint8_t *blk, int p, uint32_t &lo, uint32_t &hi) {
  lo = ldg32(blk + 4 * p);
  hi = ldg32(blk + 16 + 4 * p);
}
template <>  // byte j = code j | code j+16 << 4
__device__ __forceinline__ void block_codes<4>(const uint8_t *blk, int p, uint32_t &lo, uint32_t &hi) {
  const uint32_t w = ldg32(blk + 4 * p);
  lo = w & 0x0F0F0F0Fu;
  hi = (w >> 4) & 0x0F0F0F0Fu;
}
template <>  // byte j (< 8) = code j | j+8 << 2 | j+16 << 4 | j+24 << 6
__device__ __forceinline__ void block_codes<2>(const uint8_t *blk, int p, uint32_t &lo, uint32_t &hi) {
  const uint32_t w = ldg32(blk + 4 * (p & 1));
  const int sh = 2 * (p >> 1);
  lo = (w >> sh) & 0x03030303u;
  hi = (w >> (sh + 4)) & 0x03030303u;
}
template <>  // bit i of one little-endian word = code i
__device__ __forceinline__ void block_codes<1>(const uint8_t *blk, int p, uint32_t &lo, uint32_t &hi) {
  const uint32_t w = ldg32(blk);
  lo = spread4((w >> (4 * p)) & 0xFu);
  hi = spread4((w >> (16 + 4 * p)) & 0xFu);
}
template <>  // bytes 0..7 = low two bits as b = 2, bytes 8..11 = high bit as b = 1
__device__ __forceinline__ void block_codes<3>(const uint8_t *blk, int p, uint32_t &lo, uint32_t &hi) {
  block_codes<2>(blk, p, lo, hi);
  const uint32_t h = ldg32(blk + 8);
  lo |= spread4((h >> (4 * p)) & 0xFu) << 2;
  hi |= spread4((h >> (16 + 4 * p)) & 0xFu) << 2;
}

// The whole block of one row as 32-bit words (WBITS words: block bytes = 4 * WBITS), loaded
// with the widest aligned loads (row starts are 16-byte aligned for 8/4-bit, see linear.cu).
template <int WBITS>
__device__ __forceinline__ void load_block(const uint8_t *blk, uint32_t (&w)[WBITS]) {
  if constexpr (WBITS == 8 || WBITS == 4) {
#pragma unroll
    for (int i = 0; i < WBITS / 4; ++i) {
      const uint4 v = __ldg(reinterpret_cast<const uint4 *>(blk) + i);
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  } else if constexpr (WBITS == 2) {
    const uint2 v = __ldg(reinterpret_cast<const uint2 *>(blk));
    w[0] = v.x, w[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < WBITS; ++i) w[i] = ldg32(blk + 4 * i);
  }
}

// block_codes on a block already in registers: the codes 4i..4i+3 (lo) and 16+4i..16+4i+3
// (hi) of word-set i (0..3, a compile-time constant so that w stays in registers).
template <int WBITS>
__device__ __forceinline__ void word_codes(const uint32_t (&w)[WBITS], int i, uint32_t &lo, uint32_t &hi) {
  if constexpr (WBITS == 8) {
    lo = w[i];
    hi = w[4 + i];
  } else if constexpr (WBITS == 4) {
    lo = w[i] & 0x0F0F0F0Fu;
    hi = (w[i] >> 4) & 0x0F0F0F0Fu;
  } else if constexpr (WBITS == 2 || WBITS == 3) {
    const int sh = 2 * (i >> 1);
    lo = (w[i & 1] >> sh) & 0x03030303u;
    hi = (w[i & 1] >> (sh + 4)) & 0x03030303u;
    if constexpr (WBITS == 3) {
      lo |= spread4((w[2] >> (4 * i)) & 0xFu) << 2;
      hi |= spread4((w[2] >> (16 + 4 * i)) & 0xFu) << 2;
    }
  } else {
    lo = spread4((w[0] >> (4 * i)) & 0xFu);
    hi = spread4((w[0] >> (16 + 4 * i)) & 0xFu);
  }
}

// Code i (0..31) of a block of any width, one code at a time (the reference and dequantize
// kernels; the fast kernel takes eight at once with block_codes).
__device__ __forceinline__ int block_code(const uint8_t *b, int bits, int i) {
  switch (bits) {
    case 8: return b[i];
    case 4: return (b[i & 15] >> ((i >> 4) * 4)) & 0xF;
    case 2: return (b[i & 7] >> ((i >> 3) * 2)) & 0x3;
    case 1: return (b[i >> 3] >> (i & 7)) & 0x1;
    default: return ((b[i & 7] >> ((i >> 3) * 2)) & 0x3) | (((b[8 + (i >> 3)] >> (i & 7)) & 1) << 2);
  }
}

// Signed int8 weights q = u - offset (binary: 2u - 1), four bytes at a time. Every code but
// w8a8's is below 16, so setting bit 7 of each byte first keeps the byte-wise subtraction from
// borrowing across bytes; the xor clears it again. w8a8: u - 128 is u with bit 7 flipped.
template <int WBITS>
__device__ __forceinline__ uint32_t to_signed(uint32_t u, int offset, bool binary) {
  if (WBITS == 8) return u ^ 0x80808080u;
  if (binary) u <<= 1;
  return ((u | 0x80808080u) - 0x01010101u * static_cast<uint32_t>(offset)) ^ 0x80808080u;
}

}  // namespace lowbit::cuda
#endif
