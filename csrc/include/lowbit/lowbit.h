/* lowbit — the public C API.
 *
 * Plain C, no PyTorch: a serving stack links liblowbit_core.a (CPU kernels) and calls these
 * functions with raw pointers and sizes. Every function returns a status code; on failure
 * lowbit_last_error() holds a human-readable sentence (thread-local). Nothing here aborts
 * on bad input: null pointers, negative or inconsistent sizes and unknown enums are
 * reported, not dereferenced.
 *
 * Weights are [N, K] like torch.nn.Linear (out_features, in_features) and are passed in
 * the canonical packed format of csrc/include/lowbit/formats.h (docs/formats.md).
 */
#ifndef LOWBIT_LOWBIT_H
#define LOWBIT_LOWBIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOWBIT_VERSION_MAJOR 0
#define LOWBIT_VERSION_MINOR 1
#define LOWBIT_VERSION_PATCH 0
/* Version of the canonical packed formats; bumped whenever a byte on disk changes meaning. */
#define LOWBIT_FORMAT_VERSION 1

typedef enum lowbit_status {
  LOWBIT_OK = 0,
  LOWBIT_ERR_NULL = 1,        /* a required pointer is NULL */
  LOWBIT_ERR_SIZE = 2,        /* a size is negative, zero where it must not be, or inconsistent */
  LOWBIT_ERR_SCHEME = 3,      /* unknown scheme, or an argument the scheme does not take */
  LOWBIT_ERR_DTYPE = 4,       /* unknown dtype */
  LOWBIT_ERR_VALUE = 5,       /* a code outside its scheme's range, a group size not allowed */
  LOWBIT_ERR_UNSUPPORTED = 6, /* valid request this build cannot run (e.g. CUDA not compiled) */
  LOWBIT_ERR_CUDA = 7         /* a CUDA runtime error */
} lowbit_status;

/* The schemes of DESIGN.md. The order is part of the ABI. */
typedef enum lowbit_scheme {
  LOWBIT_W4A16 = 0,
  LOWBIT_W3A16 = 1,
  LOWBIT_W8A8 = 2,
  LOWBIT_W4A8 = 3,
  LOWBIT_W4A4 = 4,
  LOWBIT_W3A3 = 5,
  LOWBIT_TERNARY = 6,
  LOWBIT_BINARY = 7,
  LOWBIT_NUM_SCHEMES = 8
} lowbit_scheme;

/* Element type of activations and outputs. */
typedef enum lowbit_dtype { LOWBIT_F32 = 0, LOWBIT_F16 = 1, LOWBIT_BF16 = 2 } lowbit_dtype;

/* A quantized weight in canonical packed form. All arrays are row-major and contiguous.
 *   qweight: [N, lowbit_packed_row_bytes(scheme, K)] bytes
 *   scales:  [N, G] IEEE binary16 bit patterns, G = ceil(K / group_size)
 *   zeros:   [N, G] unsigned codes (w4a16 and w3a16 only; NULL for every other scheme)
 *   bias:    [N] float32, or NULL
 *   cpu_layout: NULL, or this weight in the CPU layout (lowbit_prepack_cpu) for the kernels
 *            that read it; it must be kept in step with qweight/scales/zeros by the caller.
 *            Zero-initialise the struct ({0} in C) and this stays NULL.
 * group_size is a positive multiple of 32, or K itself (one group per row). */
typedef struct lowbit_weight {
  lowbit_scheme scheme;
  int64_t N, K, group_size;
  const uint8_t *qweight;
  const uint16_t *scales;
  const uint8_t *zeros;
  const float *bias;
  const uint8_t *cpu_layout;
} lowbit_weight;

/* Thread-local text of the last failure in this thread ("" if none). */
const char *lowbit_last_error(void);
const char *lowbit_version(void);
const char *lowbit_scheme_name(lowbit_scheme scheme);

/* Bits of the stored weight code (1, 2, 3, 4 or 8) and of the activation (8, 4, 3; 16 = float). */
int lowbit_weight_bits(lowbit_scheme scheme);
int lowbit_act_bits(lowbit_scheme scheme);
/* Bytes of one packed row of K weights (K is padded up to a multiple of 32); 0 on bad input. */
int64_t lowbit_packed_row_bytes(lowbit_scheme scheme, int64_t K);

/* Pack unsigned codes [N, K] (one code a byte, see formats.h for their meaning) into
 * out [N, lowbit_packed_row_bytes]. out_bytes is the size of out, checked. */
lowbit_status lowbit_pack(lowbit_scheme scheme, const uint8_t *codes, int64_t N, int64_t K,
                          uint8_t *out, int64_t out_bytes);
/* The inverse: packed [N, row_bytes] -> codes [N, K]. */
lowbit_status lowbit_unpack(lowbit_scheme scheme, const uint8_t *packed, int64_t N, int64_t K,
                            uint8_t *codes, int64_t codes_bytes);

/* Per-token dynamic symmetric quantization of x [M, K] to `bits` (8, 4 or 3):
 *   scale[m] = max_k |x[m,k]| / (2^(bits-1) - 1)   (1.0 for an all-zero row)
 *   q[m,k]   = clamp(round_half_even(x[m,k] / scale[m]), -(2^(bits-1)-1), 2^(bits-1)-1)
 * computed in float32; q is int8 whatever the bit width. */
lowbit_status lowbit_quantize_act(const void *x, lowbit_dtype x_dtype, int64_t M, int64_t K,
                                  int bits, int8_t *q, float *scale);

/* y [M, N] = x [M, K] @ dequant(w)^T + bias, in the scheme's own arithmetic:
 * fused dequant for w4a16/w3a16, per-token activation quantization followed by integer dot
 * products (int32 accumulation, scales in the epilogue) for w8a8/w4a8/w4a4/w3a3, add-only
 * for ternary/binary. Runs on the CPU with the best kernel this machine supports. */
lowbit_status lowbit_linear(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype, int64_t M,
                            void *y, lowbit_dtype y_dtype);

/* The integer part alone, for the integer and add-only schemes: activations already quantized
 * (q [M, K] int8 codes and scale [M] float32, e.g. from lowbit_quantize_act or a static
 * quantizer). y[m,n] = scale[m] * sum_g wscale[n,g] * (sum_{k in g} q[m,k] * wq[n,k]) + bias[n]. */
lowbit_status lowbit_linear_q(const lowbit_weight *w, const int8_t *q, const float *scale, int64_t M,
                              void *y, lowbit_dtype y_dtype);

/* Static activation quantization with per-cluster asymmetric scales (RPTQ), fused with the
 * integer matmul, for the integer schemes (w8a8, w4a8, w4a4, w3a3). The K input channels are
 * split into C contiguous segments: segment c is [cluster_end[c-1], cluster_end[c]) (the first
 * starts at 0); cluster_end is strictly increasing and cluster_end[C-1] == K. Each segment has
 * a float scale act_scale[c] > 0 and an integer zero point act_zero[c] in [0, 2^abits - 1]:
 *   u[m,k]  = clamp(round_half_even(x[m,k] / act_scale[c]) + act_zero[c], 0, 2^abits - 1)
 *   y[m,n]  = sum over pieces (segment c) ∩ (weight group g) of
 *             act_scale[c] * wscale[n,g] * (sum_{k in piece} (u[m,k] - act_zero[c]) * q_w[n,k]) + bias[n]
 * with exact int32 inner sums (K <= 65536 so they cannot overflow). abits: 8, 4 or 3 (any
 * integer weight scheme may be combined with any of them). Segments need not be multiples of
 * 32 nor aligned with the weight groups. w->cpu_layout: NULL or lowbit_prepack_cpu of w, read
 * (w4a8, w4a4, w3a3; a few tokens) by the CPU kernels that read w4a16's / w3a16's layout. */
lowbit_status lowbit_linear_static(const lowbit_weight *w, const void *x, lowbit_dtype x_dtype, int64_t M,
                                   const float *act_scale, const int32_t *act_zero, const int32_t *cluster_end,
                                   int64_t C, int abits, void *y, lowbit_dtype y_dtype);

/* The CPU layout ("prepack"): the same codes (and, except for ternary/binary, scales and zero
 * points) rearranged for the decode kernels (docs/formats.md, "CPU layout"): for w4a16, w3a16,
 * w3a3, w4a8, w4a4 rows interleaved in tiles of 16 for the GEMV of a few tokens; for ternary
 * and binary the index of the AVX-512 lookup-table kernel (panels of 128 rows), used at every
 * token count. w8a8 has none. lowbit_cpu_layout_bytes: its size in bytes, 0 when the scheme
 * has no CPU layout or on bad input. lowbit_prepack_cpu fills out (out_bytes checked).
 * Kernels without a use for it (other ISAs, more tokens) read the canonical arrays: the layout
 * is an addition, never a replacement. lowbit_cpu_layout_used: 1 if the active CPU kernels
 * (lowbit_cpu_isa) read the layout of this scheme at some token count, else 0 (a caller that
 * keeps the layout only for speed, as QLinear does, need not build it then). */
int64_t lowbit_cpu_layout_bytes(const lowbit_weight *w);
lowbit_status lowbit_prepack_cpu(const lowbit_weight *w, uint8_t *out, int64_t out_bytes);
int lowbit_cpu_layout_used(lowbit_scheme scheme);

/* Run-time CPU dispatch. isa: "scalar", "avx2", "avx512"; the best supported is the default,
 * LOWBIT_ISA in the environment picks another at start-up. Setting an ISA the machine lacks
 * fails with LOWBIT_ERR_UNSUPPORTED. */
const char *lowbit_cpu_isa(void);          /* the one in use */
const char *lowbit_cpu_isa_supported(void); /* comma-separated list this CPU and OS allow */
lowbit_status lowbit_set_cpu_isa(const char *isa);

/* Worker threads for the CPU kernels (<= 0: one per hardware thread). */
void lowbit_set_num_threads(int n);
int lowbit_get_num_threads(void);

/* Run the CPU kernels' threads as a team of a GNU OpenMP runtime the process has already
 * loaded (path: that libgomp, e.g. PyTorch's torch/lib/libgomp.so.1) instead of lowbit's own
 * pool, so that a host whose own OpenMP threads spin between its operations does not compete
 * with a second set of threads. Returns 1 when in use, 0 when the library is not loaded or is
 * not GNU OpenMP (the own pool stays). NULL: back to the own pool. The Python package calls it
 * at import when torch's parallel backend is OpenMP (LOWBIT_THREADS=pool keeps the own pool). */
int lowbit_use_openmp_runtime(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* LOWBIT_LOWBIT_H */
