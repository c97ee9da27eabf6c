// Run-time choice of the CPU kernel table: the best ISA the CPU and OS support, unless
// LOWBIT_ISA (environment, read once) or lowbit_set_cpu_isa() asks for another.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/kernels.h"

namespace lowbit {

#ifndef LOWBIT_HAVE_AVX2
const KernelTable *avx2_kernels() { return nullptr; }
#endif
#ifndef LOWBIT_HAVE_AVX512
const KernelTable *avx512_kernels() { return nullptr; }
#endif

namespace {

// The table for an ISA name if this build has it and this machine can run it.
const KernelTable *table_for(const char *isa) {
  const CpuFeatures &f = cpu_features();
  if (std::strcmp(isa, "scalar") == 0) return &scalar_kernels();
  if (std::strcmp(isa, "avx2") == 0) return f.avx2 ? avx2_kernels() : nullptr;
  // The AVX-512 kernels use VNNI (vpdpbusd): CPUs with AVX-512 but no VNNI (Skylake-X) get
  // the AVX2 table instead.
  if (std::strcmp(isa, "avx512") == 0) return f.avx512 && f.avx512_vnni ? avx512_kernels() : nullptr;
  return nullptr;
}

const KernelTable *best() {
  for (const char *isa : {"avx512", "avx2"})
    if (const KernelTable *t = table_for(isa)) return t;
  return &scalar_kernels();
}

const KernelTable *initial() {
  if (const char *env = std::getenv("LOWBIT_ISA"); env && *env) {
    if (const KernelTable *t = table_for(env)) return t;
    // An unusable request must not silently change results' provenance: say so once.
    std::fprintf(stderr, "lowbit: LOWBIT_ISA=%s is not available here (have: %s); using %s\n", env,
                 lowbit_cpu_isa_supported(), best()->isa);
  }
  return best();
}

std::atomic<const KernelTable *> g_active{nullptr};

}  // namespace

const KernelTable &active_kernels() {
  const KernelTable *t = g_active.load();
  if (!t) {
    t = initial();
    g_active.store(t);
  }
  return *t;
}

}  // namespace lowbit

extern "C" const char *lowbit_cpu_isa(void) { return lowbit::active_kernels().isa; }

extern "C" const char *lowbit_cpu_isa_supported(void) {
  static const std::string list = [] {
    std::string s = "scalar";
    for (const char *isa : {"avx2", "avx512"})
      if (lowbit::table_for(isa)) s += std::string(",") + isa;
    return s;
  }();
  return list.c_str();
}

extern "C" lowbit_status lowbit_set_cpu_isa(const char *isa) {
  if (!isa) return lowbit::fail(LOWBIT_ERR_NULL, "isa is NULL");
  const lowbit::KernelTable *t = lowbit::table_for(isa);
  if (!t)
    return lowbit::fail(LOWBIT_ERR_UNSUPPORTED, "isa '%s' is not available here (available: %s)",
                        isa, lowbit_cpu_isa_supported());
  lowbit::g_active.store(t);
  return LOWBIT_OK;
}
