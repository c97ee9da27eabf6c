// Reference fused-dequant kernel for w4a16 / w3a16: for each output, dequantize one code at
// a time (w = scale * (u - zero)) and accumulate in float32, group by group.
#include "core/half.h"
#include "core/kernels.h"

namespace lowbit::scalar {

void weight_only(const lowbit_weight &w, const float *x, int64_t M, float *y) {
  const int64_t G = num_groups(w.K, w.group_size);
  const int64_t rb = row_bytes(w.scheme, w.K);
  for (int64_t m = 0; m < M; ++m) {
    const float *xm = x + m * w.K;
    for (int64_t n = 0; n < w.N; ++n) {
      const uint8_t *row = w.qweight + n * rb;
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        const float scale = fp16_to_float(w.scales[n * G + g]);
        const int zero = w.zeros[n * G + g];
        const int64_t k_end = (g + 1) * w.group_size < w.K ? (g + 1) * w.group_size : w.K;
        float part = 0.0f;  // sum x * (u - zero); the scale is applied once per group
        for (int64_t k = g * w.group_size; k < k_end; ++k)
          part += xm[k] * static_cast<float>(row_code(row, w.scheme, k) - zero);
        acc += scale * part;
      }
      y[m * w.N + n] = acc + (w.bias ? w.bias[n] : 0.0f);
    }
  }
}

}  // namespace lowbit::scalar
