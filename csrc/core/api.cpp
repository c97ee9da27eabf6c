// The C API: argument checks that protect memory, fp16/bf16 conversion at the edges, and calls
// through the active CPU kernel table. Python validates more (and more kindly) before it gets
// here; these checks are the last line for C callers.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/checks.h"
#include "core/error.h"
#include "core/half.h"
#include "core/kernels.h"
#include "core/threads.h"
#include "lowbit/formats.h"
#include "lowbit/lowbit.h"

namespace lowbit {

namespace {
thread_local char t_error[512] = "";

bool valid_scheme(int s) { return s >= 0 && s < LOWBIT_NUM_SCHEMES; }

// x (any dtype) -> float32; returns x itself when it already is float32.
const float *as_float(const void *x, lowbit_dtype dt, int64_t n, std::vector<float> &buf) {
  if (dt == LOWBIT_F32) return static_cast<const float *>(x);
  buf.resize(static_cast<size_t>(n));
  const uint16_t *h = static_cast<const uint16_t *>(x);
  if (dt == LOWBIT_F16)
    for (int64_t i = 0; i < n; ++i) buf[i] = fp16_to_float(h[i]);
  else
    for (int64_t i = 0; i < n; ++i) buf[i] = bf16_to_float(h[i]);
  return buf.data();
}

void store(const float *src, void *dst, lowbit_dtype dt, int64_t n) {
  if (dt == LOWBIT_F32) {
    if (src != dst) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  uint16_t *h = static_cast<uint16_t *>(dst);
  if (dt == LOWBIT_F16)
    for (int64_t i = 0; i < n; ++i) h[i] = float_to_fp16(src[i]);
  else
    for (int64_t i = 0; i < n; ++i) h[i] = float_to_bf16(src[i]);
}

}  // namespace

bool valid_dtype(int d) { return d == LOWBIT_F32 || d == LOWBIT_F16 || d == LOWBIT_BF16; }

lowbit_status check_weight(const lowbit_weight *w) {
  if (!w) return fail(LOWBIT_ERR_NULL, "weight descriptor is NULL");
  if (!valid_scheme(w->scheme)) return fail(LOWBIT_ERR_SCHEME, "unknown scheme %d", static_cast<int>(w->scheme));
  const SchemeInfo &si = kSchemes[w->scheme];
  if (w->N <= 0 || w->K <= 0)
    return fail(LOWBIT_ERR_SIZE, "weight shape must be positive, got N=%lld K=%lld",
                static_cast<long long>(w->N), static_cast<long long>(w->K));
  if (w->group_size <= 0 || (w->group_size % kBlock != 0 && w->group_size != w->K))
    return fail(LOWBIT_ERR_VALUE, "group_size must be a positive multiple of 32 or K=%lld, got %lld",
                static_cast<long long>(w->K), static_cast<long long>(w->group_size));
  if (!w->qweight) return fail(LOWBIT_ERR_NULL, "qweight is NULL");
  if (!w->scales) return fail(LOWBIT_ERR_NULL, "scales is NULL");
  if (si.has_zeros && !w->zeros) return fail(LOWBIT_ERR_NULL, "zeros is NULL (scheme %s needs zero points)", si.name);
  if (!si.has_zeros && w->zeros)
    return fail(LOWBIT_ERR_SCHEME, "scheme %s takes no zero points; pass zeros = NULL", si.name);
  if (w->cpu_layout && !has_cpu_layout(w->scheme))
    return fail(LOWBIT_ERR_SCHEME, "scheme %s has no CPU layout; pass cpu_layout = NULL", si.name);
  return LOWBIT_OK;
}

lowbit_status check_io(const void *in, const char *in_name, int64_t M, const void *y, lowbit_dtype y_dtype) {
  if (M < 0) return fail(LOWBIT_ERR_SIZE, "M must be >= 0, got %lld", static_cast<long long>(M));
  if (M > 0 && !in) return fail(LOWBIT_ERR_NULL, "%s is NULL", in_name);
  if (M > 0 && !y) return fail(LOWBIT_ERR_NULL, "y is NULL");
  if (!valid_dtype(y_dtype)) return fail(LOWBIT_ERR_DTYPE, "unknown y dtype %d", static_cast<int>(y_dtype));
  return LOWBIT_OK;
}

lowbit_status fail(lowbit_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(t_error, sizeof t_error, fmt, ap);
  va_end(ap);
  return status;
}

void clear_error() { t_error[0] = '\0'; }

}  // namespace lowbit

using namespace lowbit;

extern "C" {

const char *lowbit_last_error(void) { return t_error; }

const char *lowbit_version(void) {
#define LOWBIT_STR2(x) #x
#define LOWBIT_STR(x) LOWBIT_STR2(x)
  return LOWBIT_STR(LOWBIT_VERSION_MAJOR) "." LOWBIT_STR(LOWBIT_VERSION_MINOR) "." LOWBIT_STR(LOWBIT_VERSION_PATCH);
}

const char *lowbit_scheme_name(lowbit_scheme s) { return valid_scheme(s) ? kSchemes[s].name : nullptr; }
int lowbit_weight_bits(lowbit_scheme s) { return valid_scheme(s) ? kSchemes[s].wbits : 0; }
int lowbit_act_bits(lowbit_scheme s) { return valid_scheme(s) ? kSchemes[s].abits : 0; }

int64_t lowbit_packed_row_bytes(lowbit_scheme s, int64_t K) {
  return valid_scheme(s) && K > 0 ? row_bytes(s, K) : 0;
}

lowbit_status lowbit_pack(lowbit_scheme s, const uint8_t *codes, int64_t N, int64_t K, uint8_t *out,
                          int64_t out_bytes) {
  if (!valid_scheme(s)) return fail(LOWBIT_ERR_SCHEME, "unknown scheme %d", static_cast<int>(s));
  if (N <= 0 || K <= 0) return fail(LOWBIT_ERR_SIZE, "N and K must be positive, got N=%lld K=%lld", static_cast<long long>(N), static_cast<long long>(K));
  if (!codes) return fail(LOWBIT_ERR_NULL, "codes is NULL");
  if (!out) return fail(LOWBIT_ERR_NULL, "out is NULL");
  const SchemeInfo &si = kSchemes[s];
  const int64_t rb = row_bytes(s, K);
  if (out_bytes != N * rb)
    return fail(LOWBIT_ERR_SIZE, "out has %lld bytes, %s needs N*row_bytes = %lld", static_cast<long long>(out_bytes), si.name, static_cast<long long>(N * rb));
  for (int64_t i = 0; i < N * K; ++i)
    if (codes[i] > si.max_code)
      return fail(LOWBIT_ERR_VALUE, "code %d at row %lld col %lld is out of range [0, %d] for %s", codes[i],
                  static_cast<long long>(i / K), static_cast<long long>(i % K), si.max_code, si.name);
  std::memset(out, 0, static_cast<size_t>(N * rb));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      block_set_code(out + n * rb + (k / kBlock) * si.block_bytes, si.wbits, static_cast<int>(k % kBlock), codes[n * K + k]);
  return LOWBIT_OK;
}

lowbit_status lowbit_unpack(lowbit_scheme s, const uint8_t *packed, int64_t N, int64_t K, uint8_t *codes,
                            int64_t codes_bytes) {
  if (!valid_scheme(s)) return fail(LOWBIT_ERR_SCHEME, "unknown scheme %d", static_cast<int>(s));
  if (N <= 0 || K <= 0) return fail(LOWBIT_ERR_SIZE, "N and K must be positive, got N=%lld K=%lld", static_cast<long long>(N), static_cast<long long>(K));
  if (!packed) return fail(LOWBIT_ERR_NULL, "packed is NULL");
  if (!codes) return fail(LOWBIT_ERR_NULL, "codes is NULL");
  if (codes_bytes != N * K)
    return fail(LOWBIT_ERR_SIZE, "codes has %lld bytes, need N*K = %lld", static_cast<long long>(codes_bytes), static_cast<long long>(N * K));
  const int64_t rb = row_bytes(s, K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) codes[n * K + k] = static_cast<uint8_t>(row_code(packed + n * rb, s, k));
  return LOWBIT_OK;
}

int64_t lowbit_cpu_layout_bytes(const lowbit_weight *w) {
  if (!w || !valid_scheme(w->scheme) || !has_cpu_layout(w->scheme) || w->N <= 0 || w->K <= 0 || w->group_size <= 0)
    return 0;
  return cpu_layout_bytes(w->scheme, w->N, w->K, w->group_size);
}

int lowbit_cpu_layout_used(lowbit_scheme scheme) {
  if (!valid_scheme(scheme) || !has_cpu_layout(scheme)) return 0;
  return (lowbit::active_kernels().layout_schemes & lowbit::layout_bit(scheme)) ? 1 : 0;
}

lowbit_status lowbit_prepack_cpu(const lowbit_weight *w, uint8_t *out, int64_t out_bytes) {
  if (lowbit_status st = check_weight(w)) return st;
  if (!has_cpu_layout(w->scheme))
    return fail(LOWBIT_ERR_SCHEME, "scheme %s has no CPU layout (its canonical rows are the fastest to stream)",
                kSchemes[w->scheme].name);
  if (!out) return fail(LOWBIT_ERR_NULL, "out is NULL");
  const int64_t need = cpu_layout_bytes(w->scheme, w->N, w->K, w->group_size);
  if (out_bytes != need)
    return fail(LOWBIT_ERR_SIZE, "out has %lld bytes, the CPU layout needs %lld (lowbit_cpu_layout_bytes)",
                static_cast<long long>(out_bytes), static_cast<long long>(need));
  const int64_t panel_rows = (w->N + kLutRows - 1) / kLutRows * kLutRows;
  if (w->scheme == LOWBIT_BINARY) {
    const int64_t rb = row_bytes(w->scheme, w->K), bb = kSchemes[w->scheme].block_bytes;
    int c[kBlock];
    for (int64_t n = 0; n < panel_rows; ++n) {
      uint8_t *panel = out + n / kLutRows * kLutRows * rb;
      for (int64_t b = 0; b < rb / bb; ++b) {
        for (int i = 0; i < kBlock && n < w->N; ++i) c[i] = block_code(w->qweight + n * rb + b * bb, 1, i);
        for (int j = 0; j < bb; ++j) panel[(b * bb + j) * kLutRows + n % kLutRows] = n < w->N ? binary_lut_byte(c, j) : 0;
      }
    }
    return LOWBIT_OK;
  }
  if (w->scheme == LOWBIT_TERNARY) {
    const int64_t W = ternary_words(w->K, w->group_size), gs = w->group_size, G = num_groups(w->K, gs);
    const int64_t wpg = ternary_words_per_group(gs), rb = row_bytes(w->scheme, w->K);
    std::vector<int> c(static_cast<size_t>(w->K));
    for (int64_t n = 0; n < panel_rows; ++n) {
      uint16_t *panel = reinterpret_cast<uint16_t *>(out) + n / kLutRows * kLutRows * W;
      if (n < w->N)
        for (int64_t k = 0; k < w->K; ++k) c[k] = row_code(w->qweight + n * rb, w->scheme, k);
      for (int64_t g = 0; g < G; ++g) {
        const int64_t k0 = g * gs, len = std::min(w->K, k0 + gs) - k0;
        for (int64_t j = 0; j < ternary_words_per_group(len); ++j)
          panel[(g * wpg + j) * kLutRows + n % kLutRows] = n < w->N ? ternary_word(c.data() + k0, len, j) : 0;
      }
    }
    return LOWBIT_OK;
  }
  const CpuLayout L(w->scheme, w->N, w->K, w->group_size);
  const int bits = kSchemes[w->scheme].wbits;
  const int64_t rb = row_bytes(w->scheme, w->K);
  const int64_t Kp = padded_k(w->K);
  std::vector<int> c(static_cast<size_t>(Kp));
  for (int64_t t = 0; t < L.tiles; ++t) {
    uint8_t *tile = out + t * L.tile_bytes();
    uint8_t *words = tile;
    uint16_t *scales = reinterpret_cast<uint16_t *>(tile + L.code_bytes());
    uint8_t *zeros = tile + L.code_bytes() + L.G * kLayoutRows * 2;
    for (int64_t r = 0; r < kLayoutRows; ++r) {
      const int64_t n = t * kLayoutRows + r;
      for (int64_t k = 0; k < Kp; ++k) c[k] = n < w->N ? row_code(w->qweight + n * rb, w->scheme, k) : 0;
      for (int64_t b = 0; b < L.nb; ++b)
        for (int j = 0; j < bits; ++j) {
          const uint32_t v = layout_word(c.data() + b * kBlock, bits, j);
          std::memcpy(words + ((b * bits + j) * kLayoutRows + r) * 4, &v, 4);
        }
      for (int64_t g = 0; g < L.G; ++g) {
        scales[g * kLayoutRows + r] = n < w->N ? w->scales[n * L.G + g] : 0;
        if (L.zeros) zeros[g * kLayoutRows + r] = n < w->N ? w->zeros[n * L.G + g] : 0;
      }
    }
  }
  return LOWBIT_OK;
}

lowbit_status lowbit_quantize_act(const void *x, lowbit_dtype x_dtype, int64_t M, int64_t K, int bits, int8_t *q,
                                  float *scale) {
  if (M < 0 || K <= 0) return fail(LOWBIT_ERR_SIZE, "need M >= 0 and K > 0, got M=%lld K=%lld", static_cast<long long>(M), static_cast<long long>(K));
  if (bits != 8 && bits != 4 && bits != 3) return fail(LOWBIT_ERR_VALUE, "activation bits must be 8, 4 or 3, got %d", bits);
  if (!valid_dtype(x_dtype)) return fail(LOWBIT_ERR_DTYPE, "unknown x dtype %d", static_cast<int>(x_dtype));
  if (M == 0) return LOWBIT_OK;
  if (!x || !q || !scale) return fail(LOWBIT_ERR_NULL, "%s is NULL", !x ? "x" : !q ? "q" : "scale");
  std::vector<float> buf;
  active_kernels().quantize_act(as_float(x, x_dtype, M * K, buf), M, K, bits, q, scale);
  return LOWBIT_OK;
}

lowbit_status lowbit_linear_q(const lowbit_weight *w, const int8_t *q, const float *scale, int64_t M, void *y,
                              lowbit_dtype y_dtype) {
  if (lowbit_status st = check_weight(w)) return st;
  const SchemeInfo &si = kSchemes[w->scheme];
  if (si.compute == Compute::WeightOnly)
    return fail(LOWBIT_ERR_SCHEME, "scheme %s has float activations; use lowbit_linear", si.name);
  if (lowbit_status st = check_io(q, "q", M, y, y_dtype)) return st;
  if (M > 0 && !scale) return fail(LOWBIT_ERR_NULL, "scale is NULL");
  if (M == 0) return LOWBIT_OK;
  std::vector<float> ybuf;
  float *yf = y_dtype == LOWBIT_F32 ? static_cast<float *>(y) : (ybuf.resize(static_cast<size_t>(M * w->N)), ybuf.data());
  const KernelTable &kt = active_kernels();
  (si.compute == Compute::AddOnly ? kt.addonly : kt.integer)(*w, q, scale, M, yf);
  store(yf, y, y_dtype, M * w->N);
  return LOWBIT_OK;
}

lowbit_status lowbit_linear(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype, int64_t M, void *y,
                            lowbit_dtype y_dtype) {
  if (lowbit_status st = check_weight(w)) return st;
  if (lowbit_status st = check_io(x, "x", M, y, y_dtype)) return st;
  if (!valid_dtype(x_dtype)) return fail(LOWBIT_ERR_DTYPE, "unknown x dtype %d", static_cast<int>(x_dtype));
  if (M == 0) return LOWBIT_OK;
  const SchemeInfo &si = kSchemes[w->scheme];
  const KernelTable &kt = active_kernels();
  std::vector<float> xbuf;
  const float *xf = as_float(x, x_dtype, M * w->K, xbuf);
  if (si.compute == Compute::WeightOnly) {
    std::vector<float> ybuf;
    float *yf = y_dtype == LOWBIT_F32 ? static_cast<float *>(y) : (ybuf.resize(static_cast<size_t>(M * w->N)), ybuf.data());
    kt.weight_only(*w, xf, M, yf);
    store(yf, y, y_dtype, M * w->N);
    return LOWBIT_OK;
  }
  // Reused per thread: a GEMV is ~0.1-0.5 ms, and a fresh M*K buffer per call is avoidable work.
  static thread_local std::vector<int8_t> q;
  static thread_local std::vector<float> scale;
  q.resize(static_cast<size_t>(M * w->K));
  scale.resize(static_cast<size_t>(M));
  // Tokens are independent: many of them (prefill) are quantized in parallel, 16 per task
  // (4096 x 512 took ~0.23 ms on one Zen 5 core, ~2% of the integer GEMM after it).
  constexpr int64_t kQuantTokens = 16;
  if (M < 2 * kQuantTokens) {
    kt.quantize_act(xf, M, w->K, si.abits, q.data(), scale.data());
  } else {
    int8_t *qp = q.data();  // not q inside the tasks: q is thread_local, each thread has its own
    float *sp = scale.data();
    lowbit::parallel_for((M + kQuantTokens - 1) / kQuantTokens, [&](int64_t t) {
      const int64_t m0 = t * kQuantTokens, mc = std::min(kQuantTokens, M - m0);
      kt.quantize_act(xf + m0 * w->K, mc, w->K, si.abits, qp + m0 * w->K, sp + m0);
    });
  }
  return lowbit_linear_q(w, q.data(), scale.data(), M, y, y_dtype);
}

lowbit_status lowbit_linear_static(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype, int64_t M,
                                   const float *act_scale, const int32_t *act_zero, const int32_t *cluster_end,
                                   int64_t C, int abits, void *y, lowbit_dtype y_dtype) {
  if (lowbit_status st = check_weight(w)) return st;
  const SchemeInfo &si = kSchemes[w->scheme];
  if (si.compute != Compute::Integer)
    return fail(LOWBIT_ERR_SCHEME, "static activation quantization needs an integer scheme (w8a8, w4a8, w4a4, w3a3), got %s", si.name);
  if (lowbit_status st = check_io(x, "x", M, y, y_dtype)) return st;
  if (!valid_dtype(x_dtype)) return fail(LOWBIT_ERR_DTYPE, "unknown x dtype %d", static_cast<int>(x_dtype));
  if (abits != 8 && abits != 4 && abits != 3) return fail(LOWBIT_ERR_VALUE, "abits must be 8, 4 or 3, got %d", abits);
  // |u - z| <= 255 and |q_w| <= 128: a piece of at most K channels stays inside int32.
  if (w->K > 65536) return fail(LOWBIT_ERR_SIZE, "K=%lld is too large for exact int32 sums (at most 65536)", static_cast<long long>(w->K));
  if (C <= 0 || C > w->K)
    return fail(LOWBIT_ERR_SIZE, "C (number of clusters) must be in [1, K=%lld], got %lld", static_cast<long long>(w->K), static_cast<long long>(C));
  if (!act_scale) return fail(LOWBIT_ERR_NULL, "act_scale is NULL");
  if (!act_zero) return fail(LOWBIT_ERR_NULL, "act_zero is NULL");
  if (!cluster_end) return fail(LOWBIT_ERR_NULL, "cluster_end is NULL");
  const int32_t umax = (1 << abits) - 1;
  int64_t prev = 0;
  for (int64_t c = 0; c < C; ++c) {
    if (cluster_end[c] <= prev)
      return fail(LOWBIT_ERR_VALUE, "cluster_end must be strictly increasing and positive: cluster_end[%lld]=%d after %lld",
                  static_cast<long long>(c), cluster_end[c], static_cast<long long>(prev));
    prev = cluster_end[c];
    if (!(act_scale[c] > 0.0f) || !std::isfinite(act_scale[c]))
      return fail(LOWBIT_ERR_VALUE, "act_scale[%lld]=%g must be positive and finite", static_cast<long long>(c), static_cast<double>(act_scale[c]));
    if (act_zero[c] < 0 || act_zero[c] > umax)
      return fail(LOWBIT_ERR_VALUE, "act_zero[%lld]=%d is outside [0, %d] for %d-bit activations", static_cast<long long>(c), act_zero[c], umax, abits);
  }
  if (prev != w->K)
    return fail(LOWBIT_ERR_SIZE, "cluster_end[C-1] must equal K=%lld, got %lld", static_cast<long long>(w->K), static_cast<long long>(prev));
  if (M == 0) return LOWBIT_OK;
  std::vector<float> xbuf, ybuf;
  const float *xf = as_float(x, x_dtype, M * w->K, xbuf);
  float *yf = y_dtype == LOWBIT_F32 ? static_cast<float *>(y) : (ybuf.resize(static_cast<size_t>(M * w->N)), ybuf.data());
  const KernelTable &kt = active_kernels();
  (kt.static_act ? kt.static_act : scalar_kernels().static_act)(*w, xf, M, act_scale, act_zero, cluster_end, C, abits, yf);
  store(yf, y, y_dtype, M * w->N);
  return LOWBIT_OK;
}

}  // extern "C"
