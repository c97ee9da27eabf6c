// The C entry points of lowbit_cuda.h: validate what protects memory, pick a kernel, queue it.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "core/checks.h"
#include "core/error.h"
#include "cuda/kernels.cuh"
#include "lowbit/formats.h"
#include "lowbit/lowbit_cuda.h"

using namespace lowbit;

namespace {

lowbit_status cuda_fail(cudaError_t err, const char *what) {
  return fail(LOWBIT_ERR_CUDA, "%s: %s", what, cudaGetErrorString(err));
}

// The C API's weight checks (core/checks.h), plus what the GPU kernels need besides.
lowbit_status check_gpu_weight(const lowbit_weight *w) {
  if (lowbit_status st = check_weight(w)) return st;
  // The tensor-core kernel reads a 4-bit block (16 bytes) with one vector load, an 8-bit one with
  // two: rows start on 16-byte boundaries when qweight does (torch's allocations do).
  if (reinterpret_cast<uintptr_t>(w->qweight) % 16)
    return fail(LOWBIT_ERR_VALUE, "qweight must be 16-byte aligned on the GPU (a fresh tensor is; a view may not be)");
  return LOWBIT_OK;
}

lowbit_status check_dtype(lowbit_dtype dt, const char *name) {
  if (!valid_dtype(dt)) return fail(LOWBIT_ERR_DTYPE, "unknown %s dtype %d", name, static_cast<int>(dt));
  return LOWBIT_OK;
}

// What lowbit_cuda_linear and lowbit_cuda_reference_linear both check.
lowbit_status check_linear(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype, int64_t M, const void *y,
                           lowbit_dtype y_dtype) {
  if (lowbit_status st = check_gpu_weight(w)) return st;
  if (lowbit_status st = check_io(x, "x", M, y, y_dtype)) return st;
  return check_dtype(x_dtype, "x");
}

int sm_count() {  // of the current device, cached per device (the query costs microseconds)
  static std::atomic<int> cache[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 132;
  int n = cache[dev].load(std::memory_order_relaxed);
  if (!n) {
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 132;
    cache[dev].store(n, std::memory_order_relaxed);
  }
  return n;
}

// Stream-ordered scratch, freed (on the stream) when it goes out of scope.
struct Scratch {
  cudaStream_t st;
  void *ptrs[4] = {};
  int n = 0;
  explicit Scratch(cudaStream_t s) : st(s) {}
  ~Scratch() {
    for (int i = 0; i < n; ++i) cudaFreeAsync(ptrs[i], st);
  }
  template <typename P>
  cudaError_t alloc(P **p, size_t bytes) {
    const cudaError_t err = cudaMallocAsync(reinterpret_cast<void **>(p), bytes, st);
    if (err == cudaSuccess) ptrs[n++] = *p;
    return err;
  }
};

}  // namespace

extern "C" lowbit_status lowbit_cuda_linear(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype, int64_t M,
                                            void *y, lowbit_dtype y_dtype, void *stream) {
  clear_error();
  if (lowbit_status st = check_linear(w, x, x_dtype, M, y, y_dtype)) return st;
  if (M == 0) return LOWBIT_OK;
  const SchemeInfo &si = kSchemes[w->scheme];
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const bool weight_only = si.compute == Compute::WeightOnly;
  if (weight_only && x_dtype == LOWBIT_F32) {
    const cudaError_t err = cuda::reference_linear(*w, x, x_dtype, nullptr, nullptr, M, y, y_dtype, st);
    return err == cudaSuccess ? LOWBIT_OK : cuda_fail(err, "reference kernel launch");
  }
  const int64_t nblocks = (w->K + kBlock - 1) / kBlock, Kp = nblocks * kBlock;
  Scratch scratch(st);
  cuda::MmaParams p{};
  p.qweight = w->qweight;
  p.row_bytes = nblocks * si.block_bytes;
  p.nblocks = nblocks;
  p.scales = w->scales;
  p.zeros = w->zeros;
  p.bias = w->bias;
  p.N = w->N;
  p.G = (w->K + w->group_size - 1) / w->group_size;
  p.blocks_per_group = (w->group_size + kBlock - 1) / kBlock;
  p.code_offset = w->scheme == LOWBIT_BINARY ? 1 : si.code_offset;
  p.binary = w->scheme == LOWBIT_BINARY;
  p.M = M;
  p.y = y;
  p.y_dtype = y_dtype;
  cudaError_t err = cudaSuccess;
  if (weight_only) {
    p.mode = cuda::MmaMode::WeightOnly;
    p.x = x;
    p.ldx = w->K;
    // The kernel reads whole blocks of 32 activations, 8 bytes at a time: a ragged K or an
    // unaligned x is first copied into zero-padded rows.
    if (w->K % kBlock || reinterpret_cast<uintptr_t>(x) % 8) {
      void *xp = nullptr;
      const size_t row = static_cast<size_t>(Kp) * 2;
      if ((err = scratch.alloc(&xp, row * M)) != cudaSuccess) return cuda_fail(err, "cudaMallocAsync");
      if ((err = cudaMemsetAsync(xp, 0, row * M, st)) != cudaSuccess) return cuda_fail(err, "cudaMemsetAsync");
      if ((err = cudaMemcpy2DAsync(xp, row, x, w->K * 2, w->K * 2, M, cudaMemcpyDeviceToDevice, st)) != cudaSuccess)
        return cuda_fail(err, "cudaMemcpy2DAsync");
      p.x = xp;
      p.ldx = Kp;
    }
  } else {
    p.mode = p.G == 1 ? cuda::MmaMode::IntPerChannel : cuda::MmaMode::IntGrouped;
    int8_t *q = nullptr;
    float *ascale = nullptr;
    if ((err = scratch.alloc(&q, static_cast<size_t>(M) * Kp)) != cudaSuccess ||
        (err = scratch.alloc(&ascale, static_cast<size_t>(M) * sizeof(float))) != cudaSuccess)
      return cuda_fail(err, "cudaMallocAsync");
    if ((err = cuda::quantize_act(x, x_dtype, M, w->K, si.abits, q, Kp, ascale, st)) != cudaSuccess)
      return cuda_fail(err, "quantize_act launch");
    p.x = q;
    p.ldx = Kp;
    p.ascale = ascale;
  }
  const int KS = cuda::mma_splits(p, sm_count());
  if (KS > 1 && (err = scratch.alloc(&p.partial, static_cast<size_t>(KS) * M * w->N * 4)) != cudaSuccess)
    return cuda_fail(err, "cudaMallocAsync");
  if ((err = cuda::mma_linear(p, si.wbits, x_dtype, KS, st)) != cudaSuccess) return cuda_fail(err, "mma_linear launch");
  return LOWBIT_OK;
}

extern "C" lowbit_status lowbit_cuda_reference_linear(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype,
                                                      int64_t M, void *y, lowbit_dtype y_dtype, void *stream) {
  clear_error();
  if (lowbit_status st = check_linear(w, x, x_dtype, M, y, y_dtype)) return st;
  if (M == 0) return LOWBIT_OK;
  const SchemeInfo &si = kSchemes[w->scheme];
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  Scratch scratch(st);
  int8_t *q = nullptr;
  float *ascale = nullptr;
  cudaError_t err = cudaSuccess;
  if (si.compute != Compute::WeightOnly) {
    if ((err = scratch.alloc(&q, static_cast<size_t>(M) * w->K)) != cudaSuccess ||
        (err = scratch.alloc(&ascale, static_cast<size_t>(M) * sizeof(float))) != cudaSuccess)
      return cuda_fail(err, "cudaMallocAsync");
    if ((err = cuda::quantize_act(x, x_dtype, M, w->K, si.abits, q, w->K, ascale, st)) != cudaSuccess)
      return cuda_fail(err, "quantize_act launch");
  }
  if ((err = cuda::reference_linear(*w, x, x_dtype, q, ascale, M, y, y_dtype, st)) != cudaSuccess)
    return cuda_fail(err, "reference kernel launch");
  return LOWBIT_OK;
}

extern "C" lowbit_status lowbit_cuda_quantize_act(const void *x, lowbit_dtype x_dtype, int64_t M, int64_t K, int bits,
                                                  int8_t *q, int64_t ldq, float *scale, void *stream) {
  clear_error();
  if (M < 0 || K <= 0 || ldq < K) return fail(LOWBIT_ERR_SIZE, "bad sizes M=%lld K=%lld ldq=%lld", (long long)M,
                                              (long long)K, (long long)ldq);
  if (bits != 8 && bits != 4 && bits != 3) return fail(LOWBIT_ERR_VALUE, "bits must be 8, 4 or 3, got %d", bits);
  if (lowbit_status st = check_dtype(x_dtype, "x")) return st;
  if (M == 0) return LOWBIT_OK;
  if (!x || !q || !scale) return fail(LOWBIT_ERR_NULL, "lowbit_cuda_quantize_act: a pointer is NULL");
  const cudaError_t err = cuda::quantize_act(x, x_dtype, M, K, bits, q, ldq, scale, static_cast<cudaStream_t>(stream));
  return err == cudaSuccess ? LOWBIT_OK : cuda_fail(err, "quantize_act launch");
}

extern "C" lowbit_status lowbit_cuda_dequantize(const lowbit_weight *w, void *out, lowbit_dtype out_dtype, int int8,
                                                void *stream) {
  clear_error();
  if (lowbit_status st = check_weight(w)) return st;
  if (!out) return fail(LOWBIT_ERR_NULL, "lowbit_cuda_dequantize: out is NULL");
  if (lowbit_status st = check_dtype(out_dtype, "out")) return st;
  if (int8 && kSchemes[w->scheme].compute == Compute::WeightOnly)
    return fail(LOWBIT_ERR_UNSUPPORTED, "int8 codes exist for the integer and add-only schemes only");
  const cudaError_t err = cuda::dequantize(*w, out, out_dtype, int8 != 0, static_cast<cudaStream_t>(stream));
  return err == cudaSuccess ? LOWBIT_OK : cuda_fail(err, "dequantize launch");
}

extern "C" lowbit_status lowbit_cuda_scale_int32(const int32_t *acc, int64_t M, int64_t N, const uint16_t *wscale,
                                                 const float *ascale, const float *bias, void *y, lowbit_dtype y_dtype,
                                                 void *stream) {
  clear_error();
  if (M < 0 || N <= 0) return fail(LOWBIT_ERR_SIZE, "bad sizes M=%lld N=%lld", (long long)M, (long long)N);
  if (lowbit_status st = check_dtype(y_dtype, "y")) return st;
  if (M == 0) return LOWBIT_OK;
  if (!acc || !wscale || !ascale || !y) return fail(LOWBIT_ERR_NULL, "lowbit_cuda_scale_int32: a pointer is NULL");
  const cudaError_t err =
      cuda::scale_int32(acc, M, N, wscale, ascale, bias, y, y_dtype, static_cast<cudaStream_t>(stream));
  return err == cudaSuccess ? LOWBIT_OK : cuda_fail(err, "scale_int32 launch");
}
