// The scalar reference's dispatch table.
#include "core/kernels.h"

namespace lowbit {
namespace scalar {
void weight_only(const lowbit_weight &, const float *, int64_t, float *);
void integer(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
void addonly(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
void quantize_act(const float *, int64_t, int64_t, int, int8_t *, float *);
void static_act(const lowbit_weight &, const float *, int64_t, const float *, const int32_t *, const int32_t *,
                int64_t, int, float *);
}  // namespace scalar

const KernelTable &scalar_kernels() {
  static const KernelTable table{"scalar", scalar::weight_only, scalar::integer, scalar::addonly,
                                 scalar::quantize_act, scalar::static_act, /*layout_schemes=*/0};
  return table;
}
}  // namespace lowbit
