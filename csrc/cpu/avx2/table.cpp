// The AVX2 (+ FMA, F16C) kernel table: the scalar reference's entries, overridden by
// the kernels of this folder. quantize_act stays scalar: it is O(M*K), next to O(M*N*K).
#include "core/kernels.h"

namespace lowbit {
namespace avx2 {
void weight_only(const lowbit_weight &, const float *, int64_t, float *);
void integer(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
void addonly(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
}  // namespace avx2

const KernelTable *avx2_kernels() {
  static const KernelTable table = [] {
    KernelTable t = scalar_kernels();
    t.isa = "avx2";
    t.weight_only = avx2::weight_only;
    t.integer = avx2::integer;
    t.addonly = avx2::addonly;
    return t;
  }();
  return &table;
}
}  // namespace lowbit
