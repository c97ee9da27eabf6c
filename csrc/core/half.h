// IEEE binary16 and bfloat16 <-> float32 in portable C++ (the core is compiled without ISA
// flags; SIMD files convert with their own instructions).
#ifndef LOWBIT_CORE_HALF_H
#define LOWBIT_CORE_HALF_H

#include <cstdint>
#include <cstring>

namespace lowbit {

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    // subnormal: value = mant * 2^-24, exact in float32
    float f = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -f : f;
  }
  if (exp == 31) return bits_to_float(sign | 0x7F800000u | (mant << 13));
  return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
}

// Round to nearest even, overflow to infinity, like torch's .half().
inline uint16_t float_to_fp16(float f) {
  uint32_t x = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  x &= 0x7FFFFFFFu;
  if (x >= 0x7F800000u) return sign | (x > 0x7F800000u ? 0x7E00 : 0x7C00);  // NaN / inf
  if (x >= 0x477FF000u) return sign | 0x7C00;  // rounds to >= 65520: overflow
  if (x < 0x38800000u) {  // below the smallest normal 2^-14: subnormal or zero
    // Adding 0.5 makes the FPU round at 2^-24 granularity, round-half-even included.
    const float r = bits_to_float(x) + 0.5f;
    return sign | static_cast<uint16_t>(float_to_bits(r) - float_to_bits(0.5f));
  }
  const uint32_t mant_odd = (x >> 13) & 1;
  x += 0xC8000FFFu + mant_odd;  // re-bias exponent (-112 << 23) and round half to even
  return sign | static_cast<uint16_t>(x >> 13);
}

inline float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t x = float_to_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  x += 0x7FFFu + ((x >> 16) & 1);  // round half to even
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace lowbit
#endif
