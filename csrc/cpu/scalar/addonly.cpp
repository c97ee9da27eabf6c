// Reference add-only kernel for ternary (b1.58) and binary weights: each weight only decides
// whether an int8 activation is added, subtracted or skipped, so the inner loop has no
// multiplication. Sums are exact in int32; scales come in the epilogue.
#include "core/half.h"
#include "core/kernels.h"

namespace lowbit::scalar {

void addonly(const lowbit_weight &w, const int8_t *q, const float *scale, int64_t M, float *y) {
  const int64_t G = num_groups(w.K, w.group_size);
  const int64_t rb = row_bytes(w.scheme, w.K);
  const bool binary = w.scheme == LOWBIT_BINARY;
  for (int64_t m = 0; m < M; ++m) {
    const int8_t *qm = q + m * w.K;
    for (int64_t n = 0; n < w.N; ++n) {
      const uint8_t *row = w.qweight + n * rb;
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t k_end = (g + 1) * w.group_size < w.K ? (g + 1) * w.group_size : w.K;
        int32_t sum = 0;
        for (int64_t k = g * w.group_size; k < k_end; ++k) {
          const int u = row_code(row, w.scheme, k);
          // binary: u=1 -> +x, u=0 -> -x.  ternary: u=2 -> +x, u=0 -> -x, u=1 -> skip.
          if (binary ? u == 1 : u == 2) sum += qm[k];
          else if (u == 0) sum -= qm[k];
        }
        acc += fp16_to_float(w.scales[n * G + g]) * static_cast<float>(sum);
      }
      y[m * w.N + n] = acc * scale[m] + (w.bias ? w.bias[n] : 0.0f);
    }
  }
}

}  // namespace lowbit::scalar
