# Per-source ISA flags for the SIMD kernels (included from CMakeLists.txt after lowbit_core).
#
# Only the files of csrc/cpu/avx2/ and csrc/cpu/avx512/ are compiled with ISA flags, so the
# library still runs on any x86-64: csrc/core/dispatch.cpp picks a table at run time from CPUID
# and XGETBV. -ffp-contract=off keeps the float epilogues (scales, bias) rounded exactly like
# the scalar reference, which the integer schemes match bit for bit.
if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64|i.86")
  message(STATUS "lowbit: not x86, SIMD kernels off (scalar only)")
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  message(STATUS "lowbit: SIMD kernels need GCC or Clang flags; scalar only")
  return()
endif()

set(LOWBIT_AVX2_SOURCES
  csrc/cpu/avx2/table.cpp
  csrc/cpu/avx2/weight_only.cpp
  csrc/cpu/avx2/layout_gemv.cpp
  csrc/cpu/avx2/integer.cpp
  csrc/cpu/avx2/addonly.cpp
  csrc/cpu/avx2/quantize_act.cpp)
set(LOWBIT_AVX512_SOURCES
  csrc/cpu/avx512/table.cpp
  csrc/cpu/avx512/weight_only.cpp
  csrc/cpu/avx512/layout_gemv.cpp
  csrc/cpu/avx512/integer.cpp
  csrc/cpu/avx512/addonly.cpp
  csrc/cpu/avx512/addonly_lut.cpp
  csrc/cpu/avx512/quantize_act.cpp)

target_sources(lowbit_core PRIVATE ${LOWBIT_AVX2_SOURCES} ${LOWBIT_AVX512_SOURCES})
set_source_files_properties(${LOWBIT_AVX2_SOURCES} PROPERTIES
  COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-ffp-contract=off;-Wno-maybe-uninitialized")
set_source_files_properties(${LOWBIT_AVX512_SOURCES} PROPERTIES
  COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mbmi2;-mfma;-mf16c;-ffp-contract=off;-Wno-maybe-uninitialized")
set_source_files_properties(csrc/core/dispatch.cpp PROPERTIES
  COMPILE_DEFINITIONS "LOWBIT_HAVE_AVX2;LOWBIT_HAVE_AVX512")
message(STATUS "lowbit: SIMD kernels ON (avx2, avx512)")
