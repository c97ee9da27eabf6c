// The AVX2 (+ FMA, F16C) kernel table: the scalar reference's entries, overridden by
// the kernels of this folder.
#include "core/kernels.h"
#include "cpu/common/static_act.h"

namespace lowbit {
namespace avx2 {
void weight_only(const lowbit_weight &, const float *, int64_t, float *);
bool weight_only_layout(const lowbit_weight &, const float *, int64_t, float *);  // layout_gemv.cpp
void integer(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
void addonly(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
void quantize_act(const float *, int64_t, int64_t, int, int8_t *, float *);
}  // namespace avx2

const KernelTable *avx2_kernels() {
  static const KernelTable table = [] {
    KernelTable t = scalar_kernels();
    t.isa = "avx2";
    t.weight_only = avx2::weight_only;
    t.integer = avx2::integer;
    t.addonly = avx2::addonly;
    t.quantize_act = avx2::quantize_act;
    t.static_act = static_act_via_weight_only<avx2::weight_only, avx2::weight_only_layout>;  // RPTQ: see common/static_act.h
    // layout_gemv.cpp; not ternary/binary (addonly.cpp says why).
    t.layout_schemes = layout_bit(LOWBIT_W4A16) | layout_bit(LOWBIT_W3A16) | layout_bit(LOWBIT_W3A3) |
                       layout_bit(LOWBIT_W4A8) | layout_bit(LOWBIT_W4A4);
    return t;
  }();
  return &table;
}
}  // namespace lowbit
