"""BitNet b1.58 (Ma et al., "The Era of 1-bit LLMs", arXiv 2402.17764): quantization-aware
training with ternary weights, then conversion to lowbit's add-only kernels.

    model = lowbit.bitnet.prepare(model, skip=["lm_head"])   # nn.Linear -> BitLinear
    ... train as usual ...
    model = lowbit.bitnet.convert(model)                      # BitLinear -> QLinear("ternary")

BitLinear quantizes, in every forward:
  weights      ternary: W~ = s * clamp(round(W / s), -1, 1), s = mean|W| over the whole tensor
               (absmean, per tensor as in the paper); binary: W~ = s_n * sign(W) (0 -> +1),
               s_n = mean|W_n| per output row. s is rounded to float16, the precision QLinear
               stores, so the trained layer is exactly the converted one.
  activations  per token absmax int8: x~ = a * clamp(round(x / a), -127, 127), a = max|x| / 127
               (1 for an all-zero token), the arithmetic of lowbit.ops.quantize_act.
In training mode gradients pass through both roundings unchanged (straight-through estimator:
x + (q(x) - x).detach()), so the latent float weights are what the optimiser updates.
In eval mode the forward uses the integer arithmetic of the kernel instead: int8 activation
codes times ternary codes summed exactly (as float32, exact below 2**24), then
(s * sum) * a + bias in float32, in the kernel's order, so a converted model gives the same
outputs (tests/test_bitnet.py compares with lowbit.ops.linear_q / quantize_act).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .formats import get_scheme
from .nn import QLinear
from .quant.rtn import _to_fp16_scale, codes_for

_SCHEMES = ("ternary", "binary")
ACT_QMAX = 127  # int8 per-token absmax, as lowbit.ops.quantize_act(x, 8)


def _check_scheme(scheme):
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme: BitLinear supports {', '.join(_SCHEMES)}, got {scheme!r}")


def weight_scale(w: torch.Tensor, scheme: str) -> torch.Tensor:
    """fp16-rounded scale as float32, shaped [N, 1] (ternary: the per-tensor value replicated)."""
    w = w.detach().float()
    if scheme == "ternary":
        s = _to_fp16_scale(w.abs().mean()).float()
        return s.expand(w.shape[0], 1)
    return _to_fp16_scale(w.abs().mean(1)).float().unsqueeze(1)


def weight_codes(w: torch.Tensor, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(unsigned codes uint8 [N, K], scale float32 [N, 1]) as QLinear stores them."""
    s = weight_scale(w, scheme)
    return codes_for(w.detach(), s[:, 0].half(), None, get_scheme(scheme)), s


def quantize_act(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token int8 absmax in torch: (codes as float [..., K], scale [..., 1]); the same float32
    arithmetic as lowbit's kernel (amax / 127, x / a, round half to even, clamp)."""
    x = x.float()
    amax = x.detach().abs().amax(-1, keepdim=True)
    a = torch.where(amax > 0, amax / ACT_QMAX, torch.ones_like(amax))
    return torch.round(x / a).clamp(-ACT_QMAX, ACT_QMAX), a


class BitLinear(nn.Linear):
    """nn.Linear trained with ternary (or binary) weights and int8 activations; see the module doc."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, scheme: str = "ternary",
                 device=None, dtype=None):
        _check_scheme(scheme)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.scheme = scheme

    @classmethod
    def from_linear(cls, linear: nn.Linear, scheme: str = "ternary") -> "BitLinear":
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
        b = cls(linear.in_features, linear.out_features, linear.bias is not None, scheme,
                device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            b.weight.copy_(linear.weight)
            if linear.bias is not None:
                b.bias.copy_(linear.bias)
        return b

    def quantized_weight(self) -> torch.Tensor:
        """s * codes (the float weight the kernel effectively uses), with the STE gradient."""
        w = self.weight
        u, s = weight_codes(w, self.scheme)
        q = get_scheme(self.scheme)
        val = (2 * u.float() - 1) if q.name == "binary" else (u.float() - q.code_offset)
        return w + (s * val - w).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            qx, a = quantize_act(x)
            xq = x + (qx * a - x).detach().to(x.dtype)
            return F.linear(xq, self.quantized_weight().to(x.dtype), self.bias)
        return self._integer_forward(x)

    @torch.no_grad()
    def _integer_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The add-only kernel's arithmetic: exact integer sums, then (s * sum) * a + bias."""
        u, s = weight_codes(self.weight, self.scheme)
        q = get_scheme(self.scheme)
        val = (2 * u.float() - 1) if q.name == "binary" else (u.float() - q.code_offset)
        qx, a = quantize_act(x)
        acc = qx @ val.t()  # integers with |sum| <= 127 * K < 2**24: exact in float32, any order
        y = (acc * s[:, 0]) * a
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype)

    def to_qlinear(self) -> QLinear:
        u, s = weight_codes(self.weight, self.scheme)
        return QLinear.from_codes(u, s.half().contiguous(), None, self.bias, self.scheme, -1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scheme={self.scheme}"


def _targets(model, cls, skip):
    from .model import _matches
    if isinstance(skip, str):
        skip = [skip]
    return [(n, m) for n, m in model.named_modules() if type(m) is cls and not _matches(n, skip)]


def prepare(model: nn.Module, skip=("lm_head",), scheme: str = "ternary") -> nn.Module:
    """Swap every nn.Linear (except those matching skip) for a BitLinear, in place; returns model."""
    from .model import _set_module
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    _check_scheme(scheme)
    for n, m in _targets(model, nn.Linear, skip):
        _set_module(model, n, BitLinear.from_linear(m, scheme))
    return model


@torch.no_grad()
def convert(model: nn.Module) -> nn.Module:
    """Swap every BitLinear for a QLinear in its scheme ("ternary": the per-tensor scale replicated
    per row, group_size=-1; "binary": per-row scales), in place; returns model."""
    from .model import _set_module
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for n, m in [(n, m) for n, m in model.named_modules() if isinstance(m, BitLinear)]:
        _set_module(model, n, m.to_qlinear())
    return model
