/* A plain C program that embeds lowbit without Python: packs a weight, runs the kernels through
 * the C API, checks them against its own naive arithmetic, and checks that bad arguments come
 * back as status codes. Built and run by tests/test_c_api.py against the installed
 * liblowbit_core.a. Exit code 0 = all checks passed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit/lowbit.h"

static int failures = 0;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      ++failures;                                          \
    }                                                      \
  } while (0)

static uint32_t rng = 12345u;
static uint32_t next(void) { rng = rng * 1664525u + 1013904223u; return rng >> 8; }

/* float 1.0 and 0.5 as IEEE binary16 bit patterns */
#define FP16_ONE 0x3C00u
#define FP16_HALF 0x3800u

/* Integer scheme w4a8 with unit activation scale: y must equal the exact integer dot product. */
static void test_w4a8_exact(void) {
  enum { N = 5, K = 70, M = 3 };
  const int64_t rb = lowbit_packed_row_bytes(LOWBIT_W4A8, K);
  /* No host OpenMP runtime in this program: the own pool stays. */
  CHECK(lowbit_use_openmp_runtime("/nonexistent/libgomp.so.1") == 0, "an unloaded runtime was accepted");
  CHECK(lowbit_use_openmp_runtime(NULL) == 0, "NULL must select the own pool");
  CHECK(rb == 3 * 16, "row bytes %lld", (long long)rb);
  uint8_t codes[N * K], packed[N * 48], back[N * K];
  int8_t q[M * K];
  float scale[M], y[M * N];
  uint16_t scales[N];
  for (int i = 0; i < N * K; ++i) codes[i] = (uint8_t)(next() % 16);
  for (int i = 0; i < M * K; ++i) q[i] = (int8_t)((int)(next() % 255) - 127);
  for (int i = 0; i < M; ++i) scale[i] = 1.0f;
  for (int i = 0; i < N; ++i) scales[i] = FP16_ONE;
  CHECK(lowbit_pack(LOWBIT_W4A8, codes, N, K, packed, sizeof packed) == LOWBIT_OK, "%s", lowbit_last_error());
  CHECK(lowbit_unpack(LOWBIT_W4A8, packed, N, K, back, sizeof back) == LOWBIT_OK, "%s", lowbit_last_error());
  CHECK(memcmp(codes, back, sizeof codes) == 0, "unpack(pack(codes)) != codes");
  lowbit_weight w = {LOWBIT_W4A8, N, K, K, packed, scales, NULL, NULL};
  CHECK(lowbit_linear_q(&w, q, scale, M, y, LOWBIT_F32) == LOWBIT_OK, "%s", lowbit_last_error());
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      long dot = 0;
      for (int k = 0; k < K; ++k) dot += (long)q[m * K + k] * ((int)codes[n * K + k] - 8);
      CHECK(y[m * N + n] == (float)dot, "y[%d,%d] = %f, want %ld", m, n, y[m * N + n], dot);
    }
}

/* Weight-only w4a16 through lowbit_linear with float activations and a bias. */
static void test_w4a16_float(void) {
  enum { N = 3, K = 64, M = 2, GS = 32, G = 2 };
  uint8_t codes[N * K], packed[N * 32], zeros[N * G];
  uint16_t scales[N * G];
  float x[M * K], y[M * N], bias[N];
  for (int i = 0; i < N * K; ++i) codes[i] = (uint8_t)(next() % 16);
  for (int i = 0; i < N * G; ++i) { scales[i] = FP16_HALF; zeros[i] = (uint8_t)(next() % 16); }
  for (int i = 0; i < M * K; ++i) x[i] = (float)((int)(next() % 200) - 100) / 50.0f;
  for (int i = 0; i < N; ++i) bias[i] = (float)i;
  CHECK(lowbit_pack(LOWBIT_W4A16, codes, N, K, packed, sizeof packed) == LOWBIT_OK, "%s", lowbit_last_error());
  lowbit_weight w = {LOWBIT_W4A16, N, K, GS, packed, scales, zeros, bias};
  CHECK(lowbit_linear(&w, x, LOWBIT_F32, M, y, LOWBIT_F32) == LOWBIT_OK, "%s", lowbit_last_error());
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double ref = bias[n];
      for (int k = 0; k < K; ++k) ref += x[m * K + k] * 0.5 * ((int)codes[n * K + k] - zeros[n * G + k / GS]);
      CHECK(fabs(y[m * N + n] - ref) <= 1e-5 * (1 + fabs(ref)), "y[%d,%d] = %f, want %f", m, n, y[m * N + n], ref);
    }
  /* The same weight through its CPU layout (prepack): the same results, one token at a time. */
  const int64_t nl = lowbit_cpu_layout_bytes(&w);
  CHECK(nl > 0, "w4a16 has a CPU layout");
  uint8_t *layout = (uint8_t *)malloc((size_t)nl);
  CHECK(lowbit_prepack_cpu(&w, layout, nl - 1) == LOWBIT_ERR_SIZE, "wrong layout size accepted");
  CHECK(lowbit_prepack_cpu(&w, layout, nl) == LOWBIT_OK, "%s", lowbit_last_error());
  w.cpu_layout = layout;
  float y1[N];
  for (int m = 0; m < M; ++m) {
    CHECK(lowbit_linear(&w, x + m * K, LOWBIT_F32, 1, y1, LOWBIT_F32) == LOWBIT_OK, "%s", lowbit_last_error());
    for (int n = 0; n < N; ++n)
      CHECK(fabs(y1[n] - y[m * N + n]) <= 1e-5 * (1 + fabs(y[m * N + n])), "layout y[%d,%d] = %f, want %f", m, n,
            y1[n], y[m * N + n]);
  }
  free(layout);
  lowbit_weight wt = {LOWBIT_W8A8, N, K, K, packed, scales, NULL, NULL};
  CHECK(lowbit_cpu_layout_bytes(&wt) == 0, "w8a8 has no CPU layout");
  CHECK(lowbit_cpu_layout_used(LOWBIT_W8A8) == 0 && lowbit_cpu_layout_used((lowbit_scheme)99) == 0,
        "no kernel reads a layout that does not exist");
  const char *isa = lowbit_cpu_isa();
  CHECK(lowbit_set_cpu_isa("scalar") == LOWBIT_OK && lowbit_cpu_layout_used(LOWBIT_W4A16) == 0,
        "the scalar reference reads no layout");
  CHECK(lowbit_set_cpu_isa(isa) == LOWBIT_OK, "%s", lowbit_last_error());
  wt.cpu_layout = packed;
  CHECK(lowbit_linear(&wt, x, LOWBIT_F32, 1, y1, LOWBIT_F32) == LOWBIT_ERR_SCHEME, "a layout for w8a8 accepted");
}

/* Bad arguments: a status code and a message, never a crash. */
static void test_bad_arguments(void) {
  uint8_t packed[16] = {0};
  uint16_t scales[1] = {FP16_ONE};
  float x[32] = {0}, y[1];
  lowbit_weight w = {LOWBIT_TERNARY, 1, 32, 32, packed, scales, NULL, NULL};
  CHECK(lowbit_linear(NULL, x, LOWBIT_F32, 1, y, LOWBIT_F32) == LOWBIT_ERR_NULL, "null weight");
  CHECK(lowbit_linear(&w, NULL, LOWBIT_F32, 1, y, LOWBIT_F32) == LOWBIT_ERR_NULL, "null x");
  CHECK(strstr(lowbit_last_error(), "x is NULL") != NULL, "message: %s", lowbit_last_error());
  CHECK(lowbit_linear(&w, x, LOWBIT_F32, 1, NULL, LOWBIT_F32) == LOWBIT_ERR_NULL, "null y");
  CHECK(lowbit_linear(&w, x, LOWBIT_F32, -1, y, LOWBIT_F32) == LOWBIT_ERR_SIZE, "negative M");
  CHECK(lowbit_linear(&w, x, (lowbit_dtype)7, 1, y, LOWBIT_F32) == LOWBIT_ERR_DTYPE, "bad dtype");
  w.group_size = 48;
  CHECK(lowbit_linear(&w, x, LOWBIT_F32, 1, y, LOWBIT_F32) == LOWBIT_ERR_VALUE, "group 48");
  w.group_size = 32;
  w.N = 0;
  CHECK(lowbit_linear(&w, x, LOWBIT_F32, 1, y, LOWBIT_F32) == LOWBIT_ERR_SIZE, "N = 0");
  w.N = 1;
  w.scheme = (lowbit_scheme)42;
  CHECK(lowbit_linear(&w, x, LOWBIT_F32, 1, y, LOWBIT_F32) == LOWBIT_ERR_SCHEME, "scheme 42");
  w.scheme = LOWBIT_W4A16; /* needs zeros */
  CHECK(lowbit_linear(&w, x, LOWBIT_F32, 1, y, LOWBIT_F32) == LOWBIT_ERR_NULL, "zeros missing");
  uint8_t codes[32] = {3}; /* 3 is not a ternary code */
  CHECK(lowbit_pack(LOWBIT_TERNARY, codes, 1, 32, packed, 8) == LOWBIT_ERR_VALUE, "ternary code 3");
  codes[0] = 0;
  CHECK(lowbit_pack(LOWBIT_TERNARY, codes, 1, 32, packed, 7) == LOWBIT_ERR_SIZE, "short output");
  CHECK(lowbit_pack(LOWBIT_TERNARY, NULL, 1, 32, packed, 8) == LOWBIT_ERR_NULL, "null codes");
  CHECK(lowbit_quantize_act(x, LOWBIT_F32, 1, 32, 5, (int8_t *)packed, y) == LOWBIT_ERR_VALUE, "5 bits");
  CHECK(lowbit_packed_row_bytes((lowbit_scheme)-1, 32) == 0, "row bytes of a bad scheme");
  CHECK(lowbit_set_cpu_isa("no-such-isa") == LOWBIT_ERR_UNSUPPORTED, "bad isa");
}

int main(void) {
  printf("lowbit %s, cpu isa %s (supported: %s)\n", lowbit_version(), lowbit_cpu_isa(), lowbit_cpu_isa_supported());
  test_w4a8_exact();
  test_w4a16_float();
  test_bad_arguments();
  printf("%s: %d failures\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
