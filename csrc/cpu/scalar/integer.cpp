// Reference integer kernel for w8a8 / w4a8 / w4a4 / w3a3: int8 activation codes times signed
// weight codes, exact int32 sums per group, then float scales in the epilogue.
#include "core/half.h"
#include "core/kernels.h"

namespace lowbit::scalar {

void integer(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const int64_t G = num_groups(w.K, w.group_size);
  const int64_t rb = row_bytes(w.scheme, w.K);
  for (int64_t m = 0; m < M; ++m) {
    const int8_t *qm = q + m * w.K;
    for (int64_t n = 0; n < w.N; ++n) {
      const uint8_t *row = w.qweight + n * rb;
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t k_end = (g + 1) * w.group_size < w.K ? (g + 1) * w.group_size : w.K;
        int32_t dot = 0;
        for (int64_t k = g * w.group_size; k < k_end; ++k)
          dot += static_cast<int32_t>(qm[k]) * signed_value(w.scheme, row_code(row, w.scheme, k));
        acc += fp16_to_float(w.scales[n * G + g]) * static_cast<float>(dot);
      }
      y[m * w.N + n] = acc * scale[m] + (w.bias ? w.bias[n] : 0.0f);
    }
  }
}

}  // namespace lowbit::scalar
