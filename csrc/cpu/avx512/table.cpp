// The AVX-512 (F/BW/VL/DQ + VNNI) kernel table: the scalar reference's entries, overridden by
// the kernels of this folder.
#include "core/kernels.h"
#include "cpu/common/static_act.h"

namespace lowbit {
namespace avx512 {
void weight_only(const lowbit_weight &, const float *, int64_t, float *);
bool weight_only_layout(const lowbit_weight &, const float *, int64_t, float *);  // layout_gemv.cpp
void integer(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
void addonly(const lowbit_weight &, const int8_t *, const float *, int64_t, float *);
void quantize_act(const float *, int64_t, int64_t, int, int8_t *, float *);
}  // namespace avx512

const KernelTable *avx512_kernels() {
  static const KernelTable table = [] {
    KernelTable t = scalar_kernels();
    t.isa = "avx512";
    t.weight_only = avx512::weight_only;
    t.integer = avx512::integer;
    t.addonly = avx512::addonly;
    t.quantize_act = avx512::quantize_act;
    t.static_act = static_act_via_weight_only<avx512::weight_only, avx512::weight_only_layout>;  // RPTQ: see common/static_act.h
    // layout_gemv.cpp (w4a16, w3a16, w3a3, w4a8, w4a4) and addonly_lut.cpp (ternary, binary).
    t.layout_schemes = layout_bit(LOWBIT_W4A16) | layout_bit(LOWBIT_W3A16) | layout_bit(LOWBIT_W3A3) |
                       layout_bit(LOWBIT_TERNARY) | layout_bit(LOWBIT_BINARY) | layout_bit(LOWBIT_W4A8) | layout_bit(LOWBIT_W4A4);
    return t;
  }();
  return &table;
}
}  // namespace lowbit
