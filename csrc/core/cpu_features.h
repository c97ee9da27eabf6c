// What this CPU and OS can run, from CPUID and XGETBV (the OS must save the wide registers,
// or AVX instructions fault even where CPUID lists them).
#ifndef LOWBIT_CORE_CPU_FEATURES_H
#define LOWBIT_CORE_CPU_FEATURES_H

namespace lowbit {
struct CpuFeatures {
  bool avx2 = false;    // AVX2 + FMA + F16C, with YMM state enabled by the OS
  bool avx512 = false;  // AVX-512 F/BW/VL/DQ, with ZMM state enabled by the OS
  bool avx512_vnni = false;
  bool avx_vnni = false;  // 256-bit VNNI without AVX-512 (AVX-VNNI)
  bool avx512_bf16 = false;
};
const CpuFeatures &cpu_features();
}  // namespace lowbit
#endif
