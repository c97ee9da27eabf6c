// Throughput of vpdpbusd at 512 and 256 bits on this CPU (issue: on Zen 4 the 512-bit units
// are double-pumped, so measure both widths). Each thread runs 12 independent accumulator
// chains of one width for a fixed count and reports multiply-adds per second (64 per zmm
// vpdpbusd, 32 per ymm). Register-only: no memory traffic, nothing to optimise away.
//
//   g++ -O2 -mavx512f -mavx512bw -mavx512vl -mavx512vnni -pthread bench/vnni_width.cpp -o /tmp/vnni_width
//   /tmp/vnni_width        # prints one line per (round, width, threads)
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

constexpr int64_t kIters = 200'000'000;

template <typename V, typename F>
int64_t run(F dp, V init) {
  // 12 named chains (registers), each made opaque to the compiler every iteration: otherwise
  // it merges chains that compute equal values.
  V a0 = init, a1 = init, a2 = init, a3 = init, a4 = init, a5 = init, a6 = init, a7 = init, a8 = init, a9 = init,
    a10 = init, a11 = init;
  const V u = init, x = init;
  for (int64_t i = 0; i < kIters; ++i) {
    a0 = dp(a0, u, x); a1 = dp(a1, u, x); a2 = dp(a2, u, x); a3 = dp(a3, u, x);
    a4 = dp(a4, u, x); a5 = dp(a5, u, x); a6 = dp(a6, u, x); a7 = dp(a7, u, x);
    a8 = dp(a8, u, x); a9 = dp(a9, u, x); a10 = dp(a10, u, x); a11 = dp(a11, u, x);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
    __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
  }
  V s = a0;
  for (V v : {a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11}) s = dp(s, v, u);
  alignas(64) int32_t out[16];
  std::memcpy(out, &s, sizeof(V));
  return out[0];
}

template <int kBits>
double gmacs(int threads) {
  std::vector<std::thread> pool;
  volatile int64_t sink = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      if (kBits == 512)
        sink += run<__m512i>([](__m512i a, __m512i b, __m512i c) { return _mm512_dpbusd_epi32(a, b, c); },
                             _mm512_set1_epi32(0x01010101));
      else
        sink += run<__m256i>([](__m256i a, __m256i b, __m256i c) { return _mm256_dpbusd_epi32(a, b, c); },
                             _mm256_set1_epi32(0x01010101));
    });
  for (auto &th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return threads * 12.0 * kIters * (kBits / 8) / s / 1e9;
}

int main() {
  // Three interleaved rounds: this VM's second vCPU is sometimes busy with a neighbour's work.
  for (int round = 1; round <= 3; ++round)
    for (int threads : {1, 2}) {
      std::printf("round %d  zmm (512-bit) vpdpbusd, %d thread(s): %6.1f GMAC/s\n", round, threads, gmacs<512>(threads));
      std::printf("round %d  ymm (256-bit) vpdpbusd, %d thread(s): %6.1f GMAC/s\n", round, threads, gmacs<256>(threads));
    }
}
