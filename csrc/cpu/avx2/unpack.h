// AVX2 helpers shared by the files of this folder (compiled with AVX2 flags only; internal
// linkage, see common/tiling.h).
#ifndef LOWBIT_CPU_AVX2_UNPACK_H
#define LOWBIT_CPU_AVX2_UNPACK_H

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace lowbit::avx2 {
namespace {

// A 32-bit word -> 32 bytes, byte i = 0xFF where bit i is set.
inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                        _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                                           0x0202020202020202, 0x0303030303030303));
  const __m256i sel = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

// The low 2-bit plane of a block (b = 2 layout) -> 32 bytes, byte i = code i & 3 ... plus the
// two bits above it (mask them as needed).
inline __m256i plane2(const uint8_t *p) {
  uint64_t lo;
  std::memcpy(&lo, p, 8);
  return _mm256_srlv_epi64(_mm256_set1_epi64x(static_cast<long long>(lo)), _mm256_setr_epi64x(0, 2, 4, 6));
}

// One packed block of 32 codes (8, 4 or 3 bits) -> 32 unsigned bytes in code order.
inline __m256i unpack_block(const uint8_t *p, int bits) {
  if (bits == 8) return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
  if (bits == 4) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m), _mm_and_si128(x, m));
  }
  uint32_t hi;
  std::memcpy(&hi, p + 8, 4);
  const __m256i lo = _mm256_and_si256(plane2(p), _mm256_set1_epi8(3));
  return _mm256_or_si256(lo, _mm256_and_si256(bits_to_bytes(hi), _mm256_set1_epi8(4)));
}

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace
}  // namespace lowbit::avx2
#endif
