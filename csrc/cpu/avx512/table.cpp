// The AVX-512 (F/BW/VL/DQ + VNNI) kernel table: the scalar reference's entries, overridden by
// the kernels of this folder. quantize_act stays scalar: it is O(M*K), next to O(M*N*K).
#include "core/kernels.h"

namespace lowbit {
namespace avx512 {
void weight_only(const lowbit_weight &, const float *, int64_t, float *);
void integer(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
void addonly(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
}  // namespace avx512

const KernelTable *avx512_kernels() {
  static const KernelTable table = [] {
    KernelTable t = scalar_kernels();
    t.isa = "avx512";
    t.weight_only = avx512::weight_only;
    t.integer = avx512::integer;
    t.addonly = avx512::addonly;
    return t;
  }();
  return &table;
}
}  // namespace lowbit
