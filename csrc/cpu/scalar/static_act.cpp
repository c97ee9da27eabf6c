// Reference kernel for static (calibrated) asymmetric activation quantization with per-cluster
// scales, as RPTQ needs it (Yuan et al., arXiv 2304.01089): the K input channels are split into
// C contiguous segments (the clusters after the channel reorder, which is folded into the
// producing layers); segment c has one float scale s_c and one integer zero z_c:
//
//   u[m,k]  = clamp(round_half_even(x[m,k] / s_c) + z_c, 0, 2^abits - 1)       (k in segment c)
//   y[m,n]  = sum over pieces p = (segment c) ∩ (weight group g) of
//               s_c * wscale[n,g] * sum_{k in p} (u[m,k] - z_c) * q_w[n,k]          + bias[n]
//
// The inner sums are exact int32 (|u - z| <= 255, |q_w| <= 128; api.cpp bounds K so no piece can
// overflow). Only the epilogue is float: one multiply-add per piece.
#include <cmath>
#include <vector>

#include "core/half.h"
#include "core/kernels.h"
#include "core/threads.h"

namespace lowbit::scalar {

void static_act(const lowbit_weight &w, const float *x, int64_t M, const float *act_scale, const int32_t *act_zero,
                const int32_t *seg_end, int64_t C, int abits, float *y) {
  const int64_t K = w.K, N = w.N;
  const int64_t G = num_groups(K, w.group_size);
  const int64_t rb = row_bytes(w.scheme, K);
  const float umax = static_cast<float>((1 << abits) - 1);

  // 1. Activation codes, stored already centred: d = u - z (int16 holds -255..255).
  std::vector<int16_t> d(static_cast<size_t>(M * K));
  for (int64_t m = 0; m < M; ++m) {
    int64_t k = 0;
    for (int64_t c = 0; c < C; ++c) {
      const float s = act_scale[c];
      const float z = static_cast<float>(act_zero[c]);
      for (; k < seg_end[c]; ++k) {
        float u = std::nearbyint(x[m * K + k] / s) + z;  // same float32 ops as torch: x / s, round
        u = std::fmin(std::fmax(u, 0.0f), umax);
        d[m * K + k] = static_cast<int16_t>(u - z);
      }
    }
  }

  // 2. The pieces: boundaries of segments and weight groups merged, each piece knowing its
  //    segment and group (computed once; the same for every row).
  struct Piece { int64_t begin, end, seg, group; };
  std::vector<Piece> pieces;
  {
    int64_t k = 0, c = 0, g = 0;
    while (k < K) {
      const int64_t g_end = (g + 1) * w.group_size < K ? (g + 1) * w.group_size : K;
      const int64_t e = seg_end[c] < g_end ? seg_end[c] : g_end;
      pieces.push_back({k, e, c, g});
      k = e;
      if (k == seg_end[c]) ++c;
      if (k == g_end) ++g;
    }
  }

  // 3. Per output row: decode the weight row once, then every token. Rows are independent, so
  //    they are spread over the thread pool; each y element is written by exactly one task.
  parallel_for(N, [&](int64_t n) {
    std::vector<int8_t> wq(static_cast<size_t>(K));
    const uint8_t *row = w.qweight + n * rb;
    for (int64_t k = 0; k < K; ++k) wq[k] = static_cast<int8_t>(signed_value(w.scheme, row_code(row, w.scheme, k)));
    std::vector<float> wsc(static_cast<size_t>(G));
    for (int64_t g = 0; g < G; ++g) wsc[g] = fp16_to_float(w.scales[n * G + g]);
    const float b = w.bias ? w.bias[n] : 0.0f;
    for (int64_t m = 0; m < M; ++m) {
      const int16_t *dm = d.data() + m * K;
      float acc = 0.0f;
      for (const Piece &p : pieces) {
        int32_t dot = 0;
        for (int64_t k = p.begin; k < p.end; ++k) dot += static_cast<int32_t>(dm[k]) * wq[k];
        acc += act_scale[p.seg] * wsc[p.group] * static_cast<float>(dot);
      }
      y[m * N + n] = acc + b;
    }
  });
}

}  // namespace lowbit::scalar
