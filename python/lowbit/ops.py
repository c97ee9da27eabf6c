"""torch custom ops over the compiled core (lowbit._C), with fake implementations so that
`torch.compile(fullgraph=True)` traces through them.

    torch.ops.lowbit.linear(x, qweight, scales, zeros, bias, scheme, in_features, group_size, cpu_layout)
    torch.ops.lowbit.quantize_act(x, bits) -> (q int8, scale float32)
    torch.ops.lowbit.linear_q(q, scale, qweight, scales, bias, scheme, in_features, group_size, out_dtype)

Every argument is checked here, in Python, before a pointer reaches C++: a bad one raises a
TypeError/ValueError that names it. The C API checks again what protects memory.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode

from . import _C
from .formats import get_scheme, num_groups, row_bytes

_DTYPE_IDS = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_ACT_BITS = (8, 4, 3)


def _check_tensor(t, name, dtypes, device=None, shape=None, contiguous=True):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        want = "/".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name}: expected dtype {want}, got {str(t.dtype).replace('torch.', '')}")
    if device is not None and t.device != device:
        raise ValueError(f"{name}: is on {t.device} but the input is on {device}; move them to one device")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(t.shape)}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name}: must be contiguous (call .contiguous())")


def check_weight(qweight, scales, zeros, bias, scheme, in_features, group_size, device):
    """Validate a packed weight against its scheme and shapes; returns (Scheme, N)."""
    s = get_scheme(scheme)
    K = in_features
    if isinstance(K, bool) or not isinstance(K, int) or K <= 0:
        raise ValueError(f"in_features: expected a positive int, got {in_features!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size: expected an int, got {type(group_size).__name__}")
    if group_size != K and (group_size <= 0 or group_size % 32):
        raise ValueError(f"group_size: must be a positive multiple of 32 or in_features ({K}), got {group_size}")
    _check_tensor(qweight, "qweight", (torch.uint8,), device)
    if qweight.dim() != 2 or qweight.shape[1] != row_bytes(s, K):
        raise ValueError(f"qweight: expected [N, {row_bytes(s, K)}] for {s.name} with in_features={K}, "
                         f"got {tuple(qweight.shape)}")
    N = qweight.shape[0]
    G = num_groups(K, group_size)
    _check_tensor(scales, "scales", (torch.float16,), device, (N, G))
    if s.has_zeros:
        if zeros is None:
            raise ValueError(f"zeros: scheme {s.name} needs zero points [N, G] = ({N}, {G})")
        _check_tensor(zeros, "zeros", (torch.uint8,), device, (N, G))
    elif zeros is not None:
        raise ValueError(f"zeros: scheme {s.name} takes no zero points; pass None")
    if bias is not None:
        _check_tensor(bias, "bias", tuple(_DTYPE_IDS), device, (N,))
    return s, N


def _check_x(x, K):
    _check_tensor(x, "x", tuple(_DTYPE_IDS))
    if x.dim() < 1 or x.shape[-1] != K:
        raise ValueError(f"x: last dimension must be in_features={K}, got shape {tuple(x.shape)}")


def _bias_f32(bias):
    return None if bias is None else bias.float().contiguous()


def _ptr(t):
    return 0 if t is None else t.data_ptr()


def _eager(*tensors) -> bool:
    """True when calling the kernel directly is the same as calling the op: eager mode, no
    tracing (torch.compile/export, fake or functional tensors, a dispatch mode) and nothing for
    autograd to record. Going through the torch.library dispatcher costs 20-40 us more a call
    than this (bench/results/op_overhead.md), a tenth of a 4096x4096 4-bit GEMV, so the Python
    entry points skip it when nothing needs it."""
    if torch.compiler.is_compiling() or _current_dispatch_mode() is not None:
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) is not torch.Tensor or (grad and t.requires_grad)):
            return False
    return True


def linear(x, qweight, scales, zeros, bias, scheme, in_features, group_size, cpu_layout=None):
    """y = x @ dequant(W)^T + bias in the scheme's own arithmetic; any leading dims on x.
    cpu_layout: None, or prepack_cpu() of this very weight (CPU_LAYOUT_SCHEMES), which the
    decode kernels of the active ISA read where cpu_layout_used(scheme) (docs/formats.md says
    for which token counts; the other kernels ignore it); nothing checks that it matches: rebuild
    it when the weight changes.
    torch.ops.lowbit.linear, called directly when nothing traces or differentiates (_eager)."""
    if _eager(x, scales, bias):
        return _linear_impl(x, qweight, scales, zeros, bias, scheme, in_features, group_size, cpu_layout)
    return torch.ops.lowbit.linear(x, qweight, scales, zeros, bias, scheme, in_features, group_size, cpu_layout)


@torch.library.custom_op("lowbit::linear", mutates_args=())
def _linear_op(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: Optional[torch.Tensor],
               bias: Optional[torch.Tensor], scheme: str, in_features: int, group_size: int,
               cpu_layout: Optional[torch.Tensor] = None) -> torch.Tensor:
    return _linear_impl(x, qweight, scales, zeros, bias, scheme, in_features, group_size, cpu_layout)


# The schemes with a CPU layout (lowbit_cpu_layout_bytes > 0; tests/test_cpu_layout.py checks).
CPU_LAYOUT_SCHEMES = ("w4a16", "w3a16", "w3a3", "w4a8", "w4a4", "ternary", "binary")


def cpu_layout_bytes(scheme, out_features, in_features, group_size) -> int:
    """Bytes of the CPU layout of a weight; 0 for a scheme without one (w8a8)."""
    return _C.cpu_layout_bytes(get_scheme(scheme).id, out_features, in_features, group_size)


def cpu_layout_used(scheme) -> bool:
    """Whether the active CPU kernels (lowbit.backend_info()["cpu_isa"]) read this scheme's CPU
    layout at some token count: on AVX2 w4a16, w3a16, w3a3, w4a8, w4a4; on AVX-512 these and
    ternary, binary; the scalar reference none. QLinear builds a layout only then."""
    return _C.cpu_layout_used(get_scheme(scheme).id)


def cpu_layout_used_static(scheme) -> bool:
    """The same for linear_static (RPTQ, QLinearStatic): its CPU kernels dequantize the static
    activation codes and run the 4- and 3-bit integer weights as their weight-only twins (zero
    point = code offset, csrc/cpu/common/static_act.h), so they read a w4a8/w4a4/w3a3 layout
    wherever the active kernels read w4a16's/w3a16's; w8a8 has none."""
    s = get_scheme(scheme)
    return s.compute == "integer" and s.wbits in (3, 4) and cpu_layout_used("w4a16" if s.wbits == 4 else "w3a16")


def prepack_cpu(qweight, scales, zeros, scheme, in_features, group_size):
    """The CPU layout of a packed weight (uint8 tensor, docs/formats.md "CPU layout"), or None
    for the scheme without one (w8a8). 4- and 3-bit schemes: the same bytes as qweight + scales
    (+ zeros), rows interleaved in 16s, for the GEMV of a few tokens; ternary/binary: the
    AVX-512 lookup-table kernel's index, panels of 128 rows (every token count). Which kernels
    read it: cpu_layout_used. QLinear builds and refreshes it by itself."""
    s, N = check_weight(qweight, scales, zeros, None, scheme, in_features, group_size, torch.device("cpu"))
    n = _C.cpu_layout_bytes(s.id, N, in_features, group_size)
    if n == 0:
        return None
    out = torch.empty(n, dtype=torch.uint8)
    _C.prepack_cpu(s.id, N, in_features, group_size, qweight.data_ptr(), scales.data_ptr(), _ptr(zeros),
                   out.data_ptr(), n)
    return out


def _check_layout(cpu_layout, s, N, K, group_size):
    _check_tensor(cpu_layout, "cpu_layout", (torch.uint8,), torch.device("cpu"))
    n = _C.cpu_layout_bytes(s.id, N, K, group_size)
    if n == 0:
        raise ValueError(f"cpu_layout: scheme {s.name} has no CPU layout; pass None")
    if cpu_layout.dim() != 1 or cpu_layout.numel() != n:
        raise ValueError(f"cpu_layout: expected {n} bytes (prepack_cpu of this weight), got shape {tuple(cpu_layout.shape)}")


class CpuLinear:
    """A packed weight checked once for many eager calls on a CPU: what `QLinear` keeps per
    layer. A call then checks only x (dtype, device, last dimension, contiguity) and runs the
    kernel, saving the weight-side checks of `linear` (bench/results/op_overhead.md). It keeps
    references to the tensors it passes pointers of; build a new one when any of them changes
    (QLinear does, keyed on their storage and version counters). Call it only where `linear`
    would call the kernel directly (nothing traces or differentiates: see `_eager`)."""

    __slots__ = ("_head", "_layout", "_keep", "N", "K")

    def __init__(self, qweight, scales, zeros, bias, scheme, in_features, group_size, cpu_layout=None):
        s, N = check_weight(qweight, scales, zeros, bias, scheme, in_features, group_size, torch.device("cpu"))
        if cpu_layout is not None:
            _check_layout(cpu_layout, s, N, in_features, group_size)
        b = _bias_f32(bias)
        self._keep = (qweight, scales, zeros, b, cpu_layout)
        self._head = (s.id, N, in_features, group_size, qweight.data_ptr(), scales.data_ptr(), _ptr(zeros), _ptr(b))
        self._layout = _ptr(cpu_layout)
        self.N, self.K = N, in_features

    def accepts(self, x) -> bool:
        """True for a contiguous CPU float32/fp16/bf16 tensor [..., K]; anything else goes
        through `linear`, which raises the errors."""
        return (type(x) is torch.Tensor and x.dtype in _DTYPE_IDS and x.device.type == "cpu" and x.dim() >= 1
                and x.shape[-1] == self.K and x.is_contiguous())

    def __call__(self, x):
        dt = _DTYPE_IDS[x.dtype]
        y = torch.empty(*x.shape[:-1], self.N, dtype=x.dtype)
        _C.linear(*self._head, x.data_ptr(), dt, x.numel() // self.K, y.data_ptr(), dt, self._layout)
        return y


def _linear_impl(x, qweight, scales, zeros, bias, scheme, in_features, group_size, cpu_layout=None):
    _check_x(x, in_features)
    if x.device.type == "cpu":  # the same checks and call as QLinear's cached CPU path
        return CpuLinear(qweight, scales, zeros, bias, scheme, in_features, group_size, cpu_layout)(x)
    s, N = check_weight(qweight, scales, zeros, bias, scheme, in_features, group_size, x.device)
    M = x.numel() // in_features
    y = torch.empty(*x.shape[:-1], N, dtype=x.dtype, device=x.device)
    b = _bias_f32(bias)
    args = (s.id, N, in_features, group_size, qweight.data_ptr(), scales.data_ptr(), _ptr(zeros), _ptr(b),
            x.data_ptr(), _DTYPE_IDS[x.dtype], M, y.data_ptr(), _DTYPE_IDS[y.dtype])
    if x.device.type == "cuda":
        if not _C.CUDA_COMPILED:
            raise RuntimeError("lowbit was built without CUDA kernels; reinstall with nvcc on PATH "
                               "(LOWBIT_CUDA=ON) to run on a GPU")
        with torch.cuda.device(x.device):
            _cuda_linear(args, x, qweight, scales, zeros, b, s, N, in_features, group_size, M, y)
    else:
        raise ValueError(f"x: device {x.device.type} is not supported (cpu, cuda)")
    return y


# From how many tokens cuBLAS beats lowbit's tensor-core kernel (csrc/cuda/mma_linear.cu), per
# compute family, both timed side by side on an H100 (bench/results/h100_checks.md): the kernel
# reads the packed weights once and wins while the weights dominate the traffic; it is a GEMV
# design that re-reads the activations for every 16-row tile, so its time grows with M, and
# from these counts cuBLAS on weights unpacked for the call is faster (still slower than bf16
# itself between 64 and ~4096 tokens: docs/cuda.md).
# Weight-only schemes: fp16/bf16 weights + cuBLAS; integer and add-only schemes with one group
# per row (per-channel, the default): int8 codes + cuBLAS's int8 GEMM (torch._int_mm) + the
# reference's epilogue, bit-exact. Grouped integer weights always take the kernel.
CUDA_CUBLAS_FROM_M = {"weight_only": 64, "integer": 64}


def cuda_path(scheme, M, N, K, group_size, dtype) -> str:
    """Which path a CUDA call takes: "kernel" (lowbit's tensor-core kernel), "dense" (weights
    dequantized to x's dtype + cuBLAS) or "int8" (int8 codes + torch._int_mm + the epilogue)."""
    s = get_scheme(scheme)
    if s.compute == "weight_only":
        # float32 activations: float32 weights and cuBLAS at every M (the tensor-core kernel
        # takes fp16/bf16), the float32 answer to float32 rounding.
        return "dense" if dtype == torch.float32 or M >= CUDA_CUBLAS_FROM_M["weight_only"] else "kernel"
    if group_size == K and M >= CUDA_CUBLAS_FROM_M["integer"] and K % 8 == 0 and N % 8 == 0:
        return "int8"
    return "kernel"


def _cuda_linear(args, x, qweight, scales, zeros, bias, s, N, K, group_size, M, y):
    stream = torch.cuda.current_stream(x.device).cuda_stream
    dt = _DTYPE_IDS[x.dtype]
    path = cuda_path(s, M, N, K, group_size, x.dtype)
    if path == "dense":
        W = torch.empty(N, K, dtype=x.dtype, device=x.device)
        _C.cuda_dequantize(s.id, N, K, group_size, qweight.data_ptr(), scales.data_ptr(), _ptr(zeros),
                           W.data_ptr(), dt, False, stream)
        y2 = y.view(M, N)
        torch.mm(x.reshape(M, K), W.t(), out=y2)
        if bias is not None:
            y2.add_(bias)
    elif path == "int8":
        q = torch.empty(M, K, dtype=torch.int8, device=x.device)
        sa = torch.empty(M, dtype=torch.float32, device=x.device)
        _C.cuda_quantize_act(x.data_ptr(), dt, M, K, s.abits, q.data_ptr(), K, sa.data_ptr(), stream)
        Wq = torch.empty(N, K, dtype=torch.int8, device=x.device)
        _C.cuda_dequantize(s.id, N, K, group_size, qweight.data_ptr(), scales.data_ptr(), 0, Wq.data_ptr(), dt,
                           True, stream)
        acc = torch._int_mm(q, Wq.t())
        _C.cuda_scale_int32(acc.data_ptr(), M, N, scales.data_ptr(), sa.data_ptr(), _ptr(bias), y.data_ptr(), dt,
                            stream)
    else:
        _C.cuda_linear(*args, stream, False)


@_linear_op.register_fake
def _(x, qweight, scales, zeros, bias, scheme, in_features, group_size, cpu_layout=None):
    _check_x(x, in_features)
    _, N = check_weight(qweight, scales, zeros, bias, scheme, in_features, group_size, x.device)
    return x.new_empty(*x.shape[:-1], N)


def _linear_setup_context(ctx, inputs, output):
    x, qweight, scales, zeros, bias, scheme, in_features, group_size, _ = inputs
    ctx.save_for_backward(qweight, scales, zeros)
    ctx.meta = (scheme, in_features, group_size, x.dtype, bias is not None)


def _linear_backward(ctx, grad):
    """d/dx through the dequantized weight; activation quantization is passed straight through
    (STE), so integer schemes get the same gradient as their weight-only twin. Weights and
    scales are packed integers and get none."""
    from .formats import dequantize
    qweight, scales, zeros = ctx.saved_tensors
    scheme, K, gs, dtype, has_bias = ctx.meta
    gx = None
    if ctx.needs_input_grad[0]:
        W = dequantize(qweight, scales, zeros, scheme, K, gs)
        gx = (grad.float() @ W).to(dtype)
    gb = grad.reshape(-1, grad.shape[-1]).sum(0) if has_bias and ctx.needs_input_grad[4] else None
    return gx, None, None, None, gb, None, None, None, None


_linear_op.register_autograd(_linear_backward, setup_context=_linear_setup_context)


def _check_cpu(t, name):
    if t.device.type != "cpu":
        raise ValueError(f"{name}: this op runs on the CPU only for now, got a tensor on {t.device}")


def _check_bits(bits):
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in _ACT_BITS:
        raise ValueError(f"bits: activation bits must be one of {_ACT_BITS}, got {bits!r}")


def quantize_act(x, bits):
    """Per-token symmetric absmax quantization: q [..., K] int8, scale [...] float32
    (torch.ops.lowbit.quantize_act; direct call when _eager)."""
    if _eager(x):
        return _quantize_act_impl(x, bits)
    return torch.ops.lowbit.quantize_act(x, bits)


@torch.library.custom_op("lowbit::quantize_act", mutates_args=())
def _quantize_act_op(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _quantize_act_impl(x, bits)


def _quantize_act_impl(x, bits):
    _check_tensor(x, "x", tuple(_DTYPE_IDS))
    _check_bits(bits)
    _check_cpu(x, "x")
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"x: needs a non-empty last dimension, got shape {tuple(x.shape)}")
    K = x.shape[-1]
    q = torch.empty(x.shape, dtype=torch.int8)
    scale = torch.empty(x.shape[:-1], dtype=torch.float32)
    _C.quantize_act(x.data_ptr(), _DTYPE_IDS[x.dtype], x.numel() // K, K, bits, q.data_ptr(), scale.data_ptr())
    return q, scale


@_quantize_act_op.register_fake
def _(x, bits):
    _check_tensor(x, "x", tuple(_DTYPE_IDS))
    _check_bits(bits)
    return torch.empty_like(x, dtype=torch.int8), x.new_empty(x.shape[:-1], dtype=torch.float32)


def _check_q(q, scale, in_features):
    _check_tensor(q, "q", (torch.int8,))
    _check_cpu(q, "q")
    if q.dim() < 1 or q.shape[-1] != in_features:
        raise ValueError(f"q: last dimension must be in_features={in_features}, got shape {tuple(q.shape)}")
    _check_tensor(scale, "scale", (torch.float32,), q.device, q.shape[:-1])


def _check_integer_scheme(scheme):
    if get_scheme(scheme).compute == "weight_only":
        raise ValueError(f"scheme: {scheme} has float activations; use lowbit.ops.linear")


def linear_q(q, scale, qweight, scales, bias, scheme, in_features, group_size, out_dtype):
    """The integer part alone, on activations already quantized (int8 codes + per-token scale)
    (torch.ops.lowbit.linear_q; direct call when _eager)."""
    if _eager(q, scale, scales, bias):
        return _linear_q_impl(q, scale, qweight, scales, bias, scheme, in_features, group_size, out_dtype)
    return torch.ops.lowbit.linear_q(q, scale, qweight, scales, bias, scheme, in_features, group_size, out_dtype)


@torch.library.custom_op("lowbit::linear_q", mutates_args=())
def _linear_q_op(q: torch.Tensor, scale: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                 bias: Optional[torch.Tensor], scheme: str, in_features: int, group_size: int,
                 out_dtype: torch.dtype) -> torch.Tensor:
    return _linear_q_impl(q, scale, qweight, scales, bias, scheme, in_features, group_size, out_dtype)


def _linear_q_impl(q, scale, qweight, scales, bias, scheme, in_features, group_size, out_dtype):
    _check_q(q, scale, in_features)
    _check_integer_scheme(scheme)
    s, N = check_weight(qweight, scales, None, bias, scheme, in_features, group_size, q.device)
    if out_dtype not in _DTYPE_IDS:
        raise TypeError(f"out_dtype: expected float32/float16/bfloat16, got {out_dtype}")
    y = torch.empty(*q.shape[:-1], N, dtype=out_dtype)
    b = _bias_f32(bias)
    _C.linear_q(s.id, N, in_features, group_size, qweight.data_ptr(), scales.data_ptr(), _ptr(b),
                q.data_ptr(), scale.data_ptr(), q.numel() // in_features, y.data_ptr(), _DTYPE_IDS[out_dtype])
    return y


@_linear_q_op.register_fake
def _(q, scale, qweight, scales, bias, scheme, in_features, group_size, out_dtype):
    _check_integer_scheme(scheme)
    _, N = check_weight(qweight, scales, None, bias, scheme, in_features, group_size, q.device)
    return q.new_empty(*q.shape[:-1], N, dtype=out_dtype)


# ---- static per-cluster activation quantization (RPTQ) ------------------------------------------

def _check_static(x, act_scale, act_zero, cluster_end, in_features, abits):
    """Validate the static activation parameters of linear_static; returns C (segments)."""
    _check_bits(abits)
    _check_tensor(act_scale, "act_scale", (torch.float32,), x.device)
    if act_scale.dim() != 1 or act_scale.numel() == 0 or act_scale.numel() > in_features:
        raise ValueError(f"act_scale: expected a 1-D tensor of C values, 1 <= C <= in_features={in_features}, "
                         f"got shape {tuple(act_scale.shape)}")
    C = act_scale.numel()
    _check_tensor(act_zero, "act_zero", (torch.int32,), x.device, (C,))
    _check_tensor(cluster_end, "cluster_end", (torch.int32,), x.device, (C,))
    return C


def _check_static_values(act_scale, act_zero, cluster_end, in_features, abits):
    """Value checks (need the data, so not in the fake impl and not per call: the C API checks
    them on every call; QLinearStatic runs this once when it is built)."""
    if not bool(torch.isfinite(act_scale).all()) or not bool((act_scale > 0).all()):
        raise ValueError("act_scale: every scale must be positive and finite")
    if bool((act_zero < 0).any()) or bool((act_zero > 2 ** abits - 1).any()):
        raise ValueError(f"act_zero: zero points must lie in [0, {2 ** abits - 1}] for {abits}-bit activations")
    if bool((cluster_end[1:] <= cluster_end[:-1]).any()) or int(cluster_end[0]) <= 0:
        raise ValueError("cluster_end: must be strictly increasing and positive (exclusive segment ends)")
    if int(cluster_end[-1]) != in_features:
        raise ValueError(f"cluster_end: last entry must equal in_features={in_features}, got {int(cluster_end[-1])}")


def linear_static(x, qweight, scales, bias, act_scale, act_zero, cluster_end, scheme, in_features, group_size,
                  abits, cpu_layout=None):
    """y = x @ dequant(W)^T + bias with x quantized statically per channel segment (RPTQ):
    u = clamp(round(x / act_scale[c]) + act_zero[c], 0, 2^abits - 1) for the channels of
    segment c = [cluster_end[c-1], cluster_end[c]); integer dot products, exact int32 sums.
    cpu_layout: None, or prepack_cpu() of this weight, read where cpu_layout_used_static(scheme)
    (a few tokens; as in linear, nothing checks that it matches the weight).
    torch.ops.lowbit.linear_static; direct call when _eager."""
    args = (x, qweight, scales, bias, act_scale, act_zero, cluster_end, scheme, in_features, group_size, abits,
            cpu_layout)
    if _eager(x, scales, bias, act_scale):
        return _linear_static_impl(*args)
    return torch.ops.lowbit.linear_static(*args)


@torch.library.custom_op("lowbit::linear_static", mutates_args=())
def _linear_static_op(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor],
                      act_scale: torch.Tensor, act_zero: torch.Tensor, cluster_end: torch.Tensor, scheme: str,
                      in_features: int, group_size: int, abits: int,
                      cpu_layout: Optional[torch.Tensor] = None) -> torch.Tensor:
    return _linear_static_impl(x, qweight, scales, bias, act_scale, act_zero, cluster_end, scheme, in_features,
                               group_size, abits, cpu_layout)


def _linear_static_impl(x, qweight, scales, bias, act_scale, act_zero, cluster_end, scheme, in_features,
                        group_size, abits, cpu_layout=None):
    _check_x(x, in_features)
    _check_cpu(x, "x")
    s, N = check_weight(qweight, scales, None, bias, scheme, in_features, group_size, x.device)
    if s.compute != "integer":
        raise ValueError(f"scheme: static activation quantization needs an integer scheme "
                         f"(w8a8, w4a8, w4a4, w3a3), got {s.name}")
    # Values (positive finite scales, zeros in range, increasing ends) are checked by the C API,
    # whose ValueError names them: checking them here too cost ~40 us of torch reductions a call.
    C = _check_static(x, act_scale, act_zero, cluster_end, in_features, abits)
    if cpu_layout is not None:
        _check_layout(cpu_layout, s, N, in_features, group_size)
    y = torch.empty(*x.shape[:-1], N, dtype=x.dtype)
    b = _bias_f32(bias)
    _C.linear_static(s.id, N, in_features, group_size, qweight.data_ptr(), scales.data_ptr(), _ptr(b),
                     x.data_ptr(), _DTYPE_IDS[x.dtype], x.numel() // in_features, act_scale.data_ptr(),
                     act_zero.data_ptr(), cluster_end.data_ptr(), C, abits, y.data_ptr(), _DTYPE_IDS[y.dtype],
                     _ptr(cpu_layout))
    return y


@_linear_static_op.register_fake
def _(x, qweight, scales, bias, act_scale, act_zero, cluster_end, scheme, in_features, group_size, abits,
      cpu_layout=None):
    _check_x(x, in_features)
    _, N = check_weight(qweight, scales, None, bias, scheme, in_features, group_size, x.device)
    _check_static(x, act_scale, act_zero, cluster_end, in_features, abits)
    return x.new_empty(*x.shape[:-1], N)
