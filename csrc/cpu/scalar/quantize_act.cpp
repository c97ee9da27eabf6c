// Reference per-token dynamic activation quantization: symmetric absmax, round half to even
// (std::nearbyint in the default rounding mode, the same as torch.round).
#include <cmath>

#include "core/kernels.h"

namespace lowbit::scalar {

void quantize_act(const float *x, int64_t M, int64_t K, int bits, int8_t *q, float *scale) {
  const int qmax = (1 << (bits - 1)) - 1;
  for (int64_t m = 0; m < M; ++m) {
    const float *xm = x + m * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::fmax(amax, std::fabs(xm[k]));
    const float s = amax > 0.0f ? amax / static_cast<float>(qmax) : 1.0f;
    scale[m] = s;
    for (int64_t k = 0; k < K; ++k) {
      float v = std::nearbyint(xm[k] / s);
      v = std::fmin(std::fmax(v, static_cast<float>(-qmax)), static_cast<float>(qmax));
      q[m * K + k] = static_cast<int8_t>(v);
    }
  }
}

}  // namespace lowbit::scalar
