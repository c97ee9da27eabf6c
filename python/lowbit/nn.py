"""QLinear: a drop-in replacement for torch.nn.Linear that stores packed low-bit weights and
runs lowbit's kernels."""
from __future__ import annotations

import torch
from torch import nn

from . import formats, ops
from .formats import get_scheme, num_groups, resolve_group_size, row_bytes
from .quant.rtn import quantize_weight


def cached_cpu_layout(layer: nn.Module, x: torch.Tensor, zeros, used) -> "torch.Tensor | None":
    """The CPU layout of layer's packed weight (qweight, scales, zeros; scheme, in_features,
    kernel_group_size) for a call on x, kept in layer._cpu_layout with the key of those tensors
    (id, storage, version counter) and rebuilt when it changes; None (and any kept one dropped)
    under torch.compile, off the CPU, with layer.use_cpu_layout False, or where used(scheme) says
    the active kernels read none (they may change: lowbit.set_cpu_isa). QLinear and RPTQ's
    QLinearStatic share it."""
    if torch.compiler.is_compiling():
        return None
    qweight, scales = layer.qweight, layer.scales
    if (not layer.use_cpu_layout or x.device.type != "cpu" or qweight.device.type != "cpu"
            or not used(layer.scheme)):
        layer.__dict__.pop("_cpu_layout", None)
        return None
    key = tuple((id(t), t.data_ptr(), t._version) for t in (qweight, scales, zeros) if t is not None)
    cached = layer.__dict__.get("_cpu_layout")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            layout = ops.prepack_cpu(qweight, scales, zeros, layer.scheme, layer.in_features, layer.kernel_group_size)
        layer.__dict__["_cpu_layout"] = cached = (key, layout)
    return cached[1]


class QLinear(nn.Module):
    """y = x @ W^T + b with W stored in a lowbit scheme (see `lowbit.SCHEMES`).

    Buffers (what save/load keep): qweight uint8 [N, row_bytes], scales fp16 [N, G],
    zeros uint8 [N, G] (w4a16/w3a16 only), bias [N] (optional).

    On a CPU whose kernels read it (ops.cpu_layout_used) the layer also keeps its weight in the
    CPU layout (see _cpu_layout_for), which the fastest decode kernels read
    (bench/results/cpu.md) and which doubles the packed weight's memory; set
    `use_cpu_layout = False` on a layer (or on the class, for all) to trade that speed for the
    memory.
    """

    use_cpu_layout: bool = True

    def __init__(self, in_features: int, out_features: int, bias: bool = True, scheme: str = "w4a16",
                 group_size: "int | None" = None, device=None):
        super().__init__()
        s = get_scheme(scheme)
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        self.in_features, self.out_features = in_features, out_features
        self.scheme = s.name
        # As the user gave it (-1 = per-channel) and as the kernels use it.
        self.group_size = s.default_group_size if group_size is None else group_size
        self.kernel_group_size = resolve_group_size(s, group_size, in_features)
        G = num_groups(in_features, self.kernel_group_size)
        self.register_buffer("qweight", torch.zeros(out_features, row_bytes(s, in_features), dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.ones(out_features, G, dtype=torch.float16, device=device))
        self.register_buffer("zeros", torch.zeros(out_features, G, dtype=torch.uint8, device=device) if s.has_zeros else None)
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device) if bias else None)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_codes(cls, codes: torch.Tensor, scales: torch.Tensor, zeros: "torch.Tensor | None",
                   bias: "torch.Tensor | None", scheme: str, group_size: "int | None" = None) -> "QLinear":
        """Build from a quantizer's output: unsigned codes [N, K], fp16 scales [N, G], zeros."""
        s = get_scheme(scheme)
        N, K = codes.shape
        q = cls(K, N, bias is not None, s.name, group_size, device=codes.device)
        q.qweight.copy_(formats.pack(codes, s))
        ops.check_weight(q.qweight, scales.contiguous(), None if zeros is None else zeros.contiguous(), None,
                         s.name, K, q.kernel_group_size, codes.device)
        q.scales.copy_(scales)
        if s.has_zeros:
            q.zeros.copy_(zeros)
        if bias is not None:
            q.bias.copy_(bias.detach().float())
        return q

    @classmethod
    def from_linear(cls, linear: nn.Linear, scheme: str = "w4a16", group_size: "int | None" = None) -> "QLinear":
        """Quantize an nn.Linear by round-to-nearest (see lowbit.quant.rtn)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
        s = get_scheme(scheme)
        gs = resolve_group_size(s, group_size, linear.in_features)
        codes, scales, zeros = quantize_weight(linear.weight.detach(), s, gs)
        return cls.from_codes(codes, scales, zeros, linear.bias, s.name, group_size)

    # -- use -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        x = x.contiguous()
        fast = self._cpu_linear_for(x)
        if fast is not None:
            return fast(x)
        return ops.linear(x, self.qweight, self.scales, self.zeros, self.bias,
                          self.scheme, self.in_features, self.kernel_group_size, self._cpu_layout_for(x))

    def __getstate__(self):
        # Pickles and deep copies leave the fast path behind: it holds raw pointers of this
        # layer's tensors (the copy builds its own on its first call).
        state = dict(super().__getstate__())
        state.pop("_cpu_linear", None)
        return state

    def _weight_key(self) -> tuple:
        """Changes whenever qweight, scales, zeros or bias is replaced (moved, reloaded,
        reassigned) or written in place (its version counter). Read from _buffers directly:
        nn.Module's attribute lookup costs ~1 us a tensor, a tenth of a small layer's call."""
        b = self._buffers
        return tuple((id(t), t.data_ptr(), t._version) for t in (b["qweight"], b["scales"], b["zeros"], b["bias"])
                     if t is not None)

    def _cpu_linear_for(self, x: torch.Tensor) -> "ops.CpuLinear | None":
        """The eager CPU fast path (ops.CpuLinear: the weight checked once, each call checks only
        x), rebuilt whenever the weight changes; None where ops.linear must run the call (other
        devices, tracing, autograd (ops._eager), inputs it must reject with an error)."""
        b = self._buffers
        if x.device.type != "cpu" or not ops._eager(x, b["scales"], b["bias"]):
            return None
        key = (self._weight_key(), self.use_cpu_layout, ops._C.cpu_isa())
        cached = self.__dict__.get("_cpu_linear")
        if cached is None or cached[0] != key:
            if b["qweight"].device.type != "cpu":
                return None
            fast = ops.CpuLinear(b["qweight"], b["scales"], b["zeros"], b["bias"], self.scheme, self.in_features,
                                 self.kernel_group_size, self._cpu_layout_for(x))
            self.__dict__["_cpu_linear"] = cached = (key, fast)
        return cached[1] if cached[1].accepts(x) else None

    def _cpu_layout_for(self, x: torch.Tensor) -> "torch.Tensor | None":
        """The weight in the CPU layout (ops.prepack_cpu), which the fastest CPU decode kernels
        read, or None where the active kernels read none for this scheme (ops.cpu_layout_used:
        e.g. ternary on AVX2, everything on the scalar reference): built on the first CPU call
        where they do, and rebuilt whenever
        qweight, scales or zeros changed (moved, reloaded or written in place: their storage or
        version counter differs). It is a plain attribute, not a buffer, so it is neither saved
        nor moved by .to(). It holds the same bytes as the packed weight, so a layer run on a
        CPU keeps its packed weights twice. Under torch.compile no layout is used (the version
        check cannot run inside a graph) and the canonical-format kernels serve every call."""
        return cached_cpu_layout(self, x, self.zeros, ops.cpu_layout_used)

    @torch.no_grad()
    def dequantize(self) -> torch.Tensor:
        """The float32 weight [N, K] the kernel effectively uses (activation quantization aside)."""
        return formats.dequantize(self.qweight, self.scales, self.zeros, self.scheme, self.in_features,
                                  self.kernel_group_size)

    def bits_per_weight(self) -> float:
        return formats.bits_per_weight(self.scheme, self.in_features, self.kernel_group_size)

    def config(self) -> dict:
        """What load() needs to rebuild this layer before it reads the buffers."""
        return dict(scheme=self.scheme, in_features=self.in_features, out_features=self.out_features,
                    group_size=self.group_size, bias=self.bias is not None)

    def extra_repr(self) -> str:
        gs = "per-channel" if self.kernel_group_size == self.in_features else f"group_size={self.kernel_group_size}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"scheme={self.scheme}, {gs}")
