// The activation side of the layout GEMVs (avx2/layout_gemv.cpp, avx512/layout_gemv.cpp):
// per token, int8 planes that the unsigned weight codes are dotted with, and their group sums.
// Plain C++ with internal linkage (compiled once per ISA, see common/tiling.h); each ISA
// vectorizes the bulk of make_digits itself and calls the scalar pieces here for the rest.
//
// Float activations (w4a16/w3a16) become exact fixed point, X[k] = x[k] * 2^sh rounded to an
// integer with sh = 30 - e (max |x| < 2^e, so |X| <= 2^30), written as four signed int8 digit
// planes X = d0 + 2^8 d1 + 2^16 d2 + 2^24 d3 (the derivation is at the top of
// avx512/layout_gemv.cpp). Integer codes (w3a3) are one plane: the codes themselves.
#ifndef LOWBIT_CPU_COMMON_DIGIT_PLANES_H
#define LOWBIT_CPU_COMMON_DIGIT_PLANES_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/common/tiling.h"

namespace lowbit {
namespace {

constexpr int kDigitPlanes = 4;

// Where the plane sums go: one per span of `span` codes of each group (a kernel that must
// settle its integer sums more often than once per group asks for shorter spans; span is a
// multiple of 32 and the last span of a group may be shorter).
struct Spans {
  int64_t gs, span;
  int64_t per_group() const { return (gs + span - 1) / span; }
  int64_t index(int64_t k) const { return k / gs * per_group() + k % gs / span; }
};

// Per token: P int8 planes [P][Kp] (zero past K), per span and plane their sums, and the
// output factor: 2^-sh as two halves (either alone may underflow for tiny x) for digit planes,
// the activation scale (f0) for integer codes.
struct TokenPlanes {
  int8_t *d;
  int32_t *gsum;  // [G * spans per group][P]
  float f0, f1;
};

// The fixed-point shift of a token and its output factors; false if x has a NaN or an Inf (no
// fixed point: the caller falls back to its float kernel). Clears the planes and sums.
inline bool begin_digits(const float *x, int64_t K, int64_t Kp, int64_t n_sums, TokenPlanes &t, int &sh) {
  float mx = 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    if (!std::isfinite(x[k])) return false;
    mx = std::max(mx, std::fabs(x[k]));
  }
  int e = 0;
  if (mx > 0.0f) std::frexp(mx, &e);  // mx < 2^e
  sh = 30 - e;
  t.f0 = std::ldexp(1.0f, -sh / 2);
  t.f1 = std::ldexp(1.0f, -sh + sh / 2);
  std::memset(t.d, 0, static_cast<size_t>(kDigitPlanes * Kp));
  std::memset(t.gsum, 0, sizeof(int32_t) * static_cast<size_t>(n_sums * kDigitPlanes));
  return true;
}

// Digits of x[k0..K) one by one, in double (exact): the tail after the vector loop, and every
// element when 2^sh overflows a float (max |x| < 2^-96).
inline void digits_scalar(const float *x, int64_t k0, int64_t K, int sh, int64_t Kp, const Spans &sp, TokenPlanes &t) {
  for (int64_t k = k0; k < K; ++k) {
    int64_t X = std::llrint(std::ldexp(static_cast<double>(x[k]), sh));
    for (int p = 0; p < kDigitPlanes; ++p) {
      const int8_t d = static_cast<int8_t>(static_cast<uint8_t>(X & 0xFF));
      X = (X - d) / 256;
      t.d[p * Kp + k] = d;
      t.gsum[sp.index(k) * kDigitPlanes + p] += d;
    }
  }
}

// Integer codes: the one plane is q itself (zero past K), with its group sums.
inline void stage_codes(const int8_t *q, float scale, int64_t K, int64_t Kp, int64_t gs, int64_t G, TokenPlanes &t) {
  std::memcpy(t.d, q, static_cast<size_t>(K));
  std::memset(t.d + K, 0, static_cast<size_t>(Kp - K));
  for (int64_t g = 0; g < G; ++g) {
    int32_t sum = 0;
    for (int64_t k = g * gs; k < std::min(K, (g + 1) * gs); ++k) sum += q[k];
    t.gsum[g] = sum;
  }
  t.f0 = scale;
  t.f1 = 1.0f;
}

// The one-plane TokenPlanes of M integer-code tokens (sums per group), in this thread's scratch.
inline void stage_code_planes(const lowbit_weight &w, const Geometry &s, const int8_t *q, const float *scale,
                              int64_t M, TokenPlanes *tok) {
  static thread_local std::vector<int8_t> dbuf;
  static thread_local std::vector<int32_t> sbuf;
  int8_t *d = scratch(dbuf, static_cast<size_t>(M * s.Kp));
  int32_t *sums = scratch(sbuf, static_cast<size_t>(M * s.G));
  for (int64_t m = 0; m < M; ++m) {
    tok[m].d = d + m * s.Kp;
    tok[m].gsum = sums + m * s.G;
    stage_codes(q + m * w.K, scale[m], w.K, s.Kp, s.bpg * kBlock, s.G, tok[m]);
  }
}

}  // namespace
}  // namespace lowbit
#endif
