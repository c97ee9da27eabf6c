// lowbit — the one packing spec (docs/formats.md is the same text for people).
//
// Every scheme stores its weights as unsigned codes u of b bits, row by row ([N, K], K along
// the row), in blocks of 32 consecutive codes of one row. K is padded up to a multiple of 32;
// padded codes are 0 and never contribute (kernels treat activations past K as zero).
//
//   value of a code                                   b    block bytes
//   w4a16, w3a16   w = scale[g] * (u - zero[g])       4/3  16 / 12
//   w8a8           q = u - 128   in [-128, 127]        8    32
//   w4a8, w4a4     q = u - 8     in [-8, 7]            4    16
//   w3a3           q = u - 4     in [-4, 3]            3    12
//   ternary        q = u - 1     in {-1, 0, +1}; u=3 is invalid   2   8
//   binary         q = 2u - 1    in {-1, +1}           1    4
//   and w = scale[g] * q for all but w4a16/w3a16.
//
// Bit layout of one block of 32 codes c[0..31] (byte j of the block, bit 0 = least significant):
//
//   b = 8   byte j = c[j]
//   b = 4   byte j (j < 16) = c[j] | c[j+16] << 4
//             -> low nibbles are codes 0..15, high nibbles 16..31: one AND / one shift
//                gives 16 consecutive codes (ggml's Q4_0 order).
//   b = 2   byte j (j < 8) = c[j] | c[j+8] << 2 | c[j+16] << 4 | c[j+24] << 6
//   b = 1   4 bytes = one little-endian uint32, bit i = c[i]
//             -> the block is directly an AVX-512 mask / a popcount word.
//   b = 3   12 bytes: bytes 0..7 = the low 2 bits of each code in the b = 2 layout,
//           bytes 8..11 = the high bit of each code in the b = 1 layout (ggml q3_K's planes).
//
// Scales are IEEE binary16, one per (row, group), [N, G] with G = ceil(K / group_size);
// group_size is a multiple of 32 or K (one group per row), and the last group may be
// partial. w4a16/w3a16 also store zero[N, G] as one unsigned byte each.
#ifndef LOWBIT_FORMATS_H
#define LOWBIT_FORMATS_H

#include <cstdint>

#include "lowbit/lowbit.h"

namespace lowbit {

constexpr int kBlock = 32;  // codes per packed block, and the granularity of group sizes

enum class Compute : uint8_t {
  WeightOnly,  // dequantize to float, float multiply-add
  Integer,     // int8 activations x signed int weights, int32 accumulate
  AddOnly      // int8 activations added or subtracted by the weight's sign
};

struct SchemeInfo {
  const char *name;
  int wbits;         // bits of a stored code
  int abits;         // activation bits (16: float activations)
  int block_bytes;   // bytes per block of 32 codes
  int code_offset;   // q = u - code_offset (binary: q = 2u - 1, see decode)
  int max_code;      // largest valid u
  bool has_zeros;    // per-group zero points stored
  Compute compute;
};

// One table, in lowbit_scheme order.
constexpr SchemeInfo kSchemes[LOWBIT_NUM_SCHEMES] = {
    {"w4a16", 4, 16, 16, 0, 15, true, Compute::WeightOnly},
    {"w3a16", 3, 16, 12, 0, 7, true, Compute::WeightOnly},
    {"w8a8", 8, 8, 32, 128, 255, false, Compute::Integer},
    {"w4a8", 4, 8, 16, 8, 15, false, Compute::Integer},
    {"w4a4", 4, 4, 16, 8, 15, false, Compute::Integer},
    {"w3a3", 3, 3, 12, 4, 7, false, Compute::Integer},
    {"ternary", 2, 8, 8, 1, 2, false, Compute::AddOnly},
    {"binary", 1, 8, 4, 0, 1, false, Compute::AddOnly},
};

// Block sizes are b * 32 / 8 bytes: checked once here so a table edit cannot drift.
static_assert(kSchemes[LOWBIT_W4A16].block_bytes == 4 * 32 / 8, "w4a16 block");
static_assert(kSchemes[LOWBIT_W3A16].block_bytes == 3 * 32 / 8, "w3a16 block");
static_assert(kSchemes[LOWBIT_W8A8].block_bytes == 8 * 32 / 8, "w8a8 block");
static_assert(kSchemes[LOWBIT_W4A8].block_bytes == 4 * 32 / 8, "w4a8 block");
static_assert(kSchemes[LOWBIT_W4A4].block_bytes == 4 * 32 / 8, "w4a4 block");
static_assert(kSchemes[LOWBIT_W3A3].block_bytes == 3 * 32 / 8, "w3a3 block");
static_assert(kSchemes[LOWBIT_TERNARY].block_bytes == 2 * 32 / 8, "ternary block");
static_assert(kSchemes[LOWBIT_BINARY].block_bytes == 1 * 32 / 8, "binary block");
static_assert(sizeof(uint16_t) == 2, "fp16 scales are stored as 16-bit patterns");

inline const SchemeInfo &scheme_info(lowbit_scheme s) { return kSchemes[s]; }

inline int64_t padded_k(int64_t K) { return (K + kBlock - 1) / kBlock * kBlock; }
inline int64_t row_bytes(lowbit_scheme s, int64_t K) {
  return padded_k(K) / kBlock * kSchemes[s].block_bytes;
}
inline int64_t num_groups(int64_t K, int64_t group_size) {
  return (K + group_size - 1) / group_size;
}

// Code i (0..31) of a packed block of `bits`-bit codes. The reference decoder: slow and plain.
inline int block_code(const uint8_t *block, int bits, int i) {
  switch (bits) {
    case 8: return block[i];
    case 4: return (block[i & 15] >> ((i >> 4) * 4)) & 0xF;
    case 2: return (block[i & 7] >> ((i >> 3) * 2)) & 0x3;
    case 1: return (block[i >> 3] >> (i & 7)) & 0x1;
    case 3: return ((block[i & 7] >> ((i >> 3) * 2)) & 0x3) | (((block[8 + (i >> 3)] >> (i & 7)) & 1) << 2);
    default: return 0;
  }
}

// Store code c (already range-checked) at position i of a zero-initialised block.
inline void block_set_code(uint8_t *block, int bits, int i, int c) {
  switch (bits) {
    case 8: block[i] = static_cast<uint8_t>(c); break;
    case 4: block[i & 15] |= static_cast<uint8_t>(c << ((i >> 4) * 4)); break;
    case 2: block[i & 7] |= static_cast<uint8_t>(c << ((i >> 3) * 2)); break;
    case 1: block[i >> 3] |= static_cast<uint8_t>(c << (i & 7)); break;
    case 3:
      block[i & 7] |= static_cast<uint8_t>((c & 3) << ((i >> 3) * 2));
      block[8 + (i >> 3)] |= static_cast<uint8_t>(((c >> 2) & 1) << (i & 7));
      break;
    default: break;
  }
}

// Code at column k of a packed row.
inline int row_code(const uint8_t *row, lowbit_scheme s, int64_t k) {
  const SchemeInfo &si = kSchemes[s];
  return block_code(row + (k / kBlock) * si.block_bytes, si.wbits, static_cast<int>(k % kBlock));
}

// ---- CPU layout (lowbit_prepack_cpu) -------------------------------------------------------
//
// For the GEMV of few tokens (cpu/avx512/layout_gemv.cpp, cpu/avx2/layout_gemv.cpp): vector
// lanes are rows, so 16 rows are interleaved word by word. Every 4- and 3-bit scheme has it
// (which kernels read which: KernelTable::layout_schemes, docs/formats.md); w8a8 has none, its
// canonical rows already stream as well; ternary/binary have their own, below. Rows are taken in tiles
// of 16 (the last tile padded with code 0, scale 0, zero 0); a tile is
//   codes  [nb blocks][b words][16 rows] uint32   (b = 4 or 3 words per block of 32 codes)
//   scales [G][16 rows] binary16
//   zeros  [G][16 rows] uint8                     (w4a16 / w3a16 only)
// and the tiles follow one another (one contiguous stream per tile). Byte i (0..3) of a word:
//   4 bits, word j:  c[8j+i] | c[8j+4+i] << 4       -> AND / shift+AND: codes 8j..8j+3, 8j+4..8j+7
//   3 bits, word P:  c[i]    | c[4+i]  << 3 | (c[24+i] & 3) << 6
//           word Q:  c[8+i]  | c[12+i] << 3 | (c[24+i] >> 2) << 6 | (c[28+i] >> 2) << 7
//           word R:  c[16+i] | c[20+i] << 3 | (c[28+i] & 3) << 6
// so every group of 4 consecutive codes becomes one byte per code (the unsigned VNNI operand)
// in 1-4 instructions per 16 rows. Same bytes as canonical, in another order.
constexpr int64_t kLayoutRows = 16;

inline bool has_cpu_layout(lowbit_scheme s) {
  return s == LOWBIT_W4A16 || s == LOWBIT_W3A16 || s == LOWBIT_W3A3 || s == LOWBIT_W4A8 || s == LOWBIT_W4A4 ||
         kSchemes[s].compute == Compute::AddOnly;
}

struct CpuLayout {
  int64_t tiles, nb, G, words;
  bool zeros;
  CpuLayout(lowbit_scheme s, int64_t N, int64_t K, int64_t group_size)
      : tiles((N + kLayoutRows - 1) / kLayoutRows), nb(padded_k(K) / kBlock),
        G(num_groups(K, group_size)), words(kSchemes[s].wbits), zeros(kSchemes[s].has_zeros) {}
  int64_t code_bytes() const { return nb * words * kLayoutRows * 4; }     // per tile
  int64_t tile_bytes() const { return code_bytes() + G * kLayoutRows * (zeros ? 3 : 2); }
  int64_t bytes() const { return tiles * tile_bytes(); }
};

// Ternary and binary: the index of the lookup-table kernel (cpu/avx512/addonly_lut.cpp). Rows in
// panels of 128 (the last padded with zeros); a panel is idx[j][128 rows], j along the row, so
// that a panel is one sequential stream. Scales stay in the canonical array.
//
// Binary: bytes, row_bytes of them; byte j of a block (4 per block) is
//   plus nibble of codes 8j..8j+3 | plus nibble of codes 8j+4..8j+7 << 4
// where bit i of a nibble says that its code i is +1.
//
// Ternary: 16-bit words in base 3. Each quantization group's codes go in triples from the
// group's start (3t, 3t+1, 3t+2; places past the group's end hold code 1, weight 0); triple t's
// field is 9 u[3t] + 3 u[3t+1] + u[3t+2] (0..26, 13 = all zero), three fields per word (bits
// 0-4, 5-9, 10-14; bit 15 zero), ceil(len / 9) words per group of len codes. 1.78 bits a weight
// (2 canonical), and one 32-entry table lookup (vpermw) covers 3 weights of 32 rows.
constexpr int64_t kLutRows = 128;

inline int64_t ternary_words_per_group(int64_t len) { return (len + 8) / 9; }
inline int64_t ternary_words(int64_t K, int64_t group_size) {  // per row
  const int64_t G = num_groups(K, group_size);
  return (G - 1) * ternary_words_per_group(group_size) + ternary_words_per_group(K - (G - 1) * group_size);
}
// Word j of a group whose codes are c[0..len) (u = 0, 1, 2 for -1, 0, +1).
inline uint16_t ternary_word(const int *c, int64_t len, int64_t j) {
  unsigned word = 0;
  for (int f = 0; f < 3; ++f) {
    unsigned field = 0;
    for (int i = 0; i < 3; ++i) {
      const int64_t k = 9 * j + 3 * f + i;
      field = 3 * field + static_cast<unsigned>(k < len ? c[k] : 1);
    }
    word |= field << (5 * f);
  }
  return static_cast<uint16_t>(word);
}

inline int64_t cpu_layout_bytes(lowbit_scheme s, int64_t N, int64_t K, int64_t group_size) {
  if (!has_cpu_layout(s)) return 0;
  const int64_t panel_rows = (N + kLutRows - 1) / kLutRows * kLutRows;
  if (s == LOWBIT_TERNARY) return panel_rows * ternary_words(K, group_size) * 2;
  if (s == LOWBIT_BINARY) return panel_rows * row_bytes(s, K);
  return CpuLayout(s, N, K, group_size).bytes();
}

// Binary index byte j of a block of 32 codes c[] (u = 1 is +1).
inline uint8_t binary_lut_byte(const int *c, int j) {
  unsigned lo = 0, hi = 0;
  for (int i = 0; i < 4; ++i) {
    lo |= (c[8 * j + i] == 1) << i;
    hi |= (c[8 * j + 4 + i] == 1) << i;
  }
  return static_cast<uint8_t>(lo | hi << 4);
}

// Word w (0..words-1) of a block of 32 codes c[] in the CPU layout.
inline uint32_t layout_word(const int *c, int bits, int w) {
  uint32_t word = 0;
  for (int i = 0; i < 4; ++i) {
    unsigned byte;
    if (bits == 4) byte = c[8 * w + i] | c[8 * w + 4 + i] << 4;
    else if (w == 0) byte = c[i] | c[4 + i] << 3 | (c[24 + i] & 3) << 6;
    else if (w == 1) byte = c[8 + i] | c[12 + i] << 3 | (c[24 + i] >> 2) << 6 | (c[28 + i] >> 2) << 7;
    else byte = c[16 + i] | c[20 + i] << 3 | (c[28 + i] & 3) << 6;
    word |= static_cast<uint32_t>(byte & 0xFF) << (8 * i);
  }
  return word;
}

// Signed integer value of a code for the integer and add-only schemes.
inline int signed_value(lowbit_scheme s, int u) {
  return s == LOWBIT_BINARY ? 2 * u - 1 : u - kSchemes[s].code_offset;
}

}  // namespace lowbit
#endif  // LOWBIT_FORMATS_H
