"""Round-to-nearest weight quantization for every scheme, group by group along K.

  w4a16, w3a16   asymmetric min-max with an integer zero point (the range always holds 0,
                 like GPTQ's reference quantizer): scale = (hi - lo) / maxq, zero = round(-lo/scale)
  w8a8 .. w3a3   symmetric absmax: scale = max|w| / qmax, q = round(w / scale)
  ternary        BitNet b1.58 absmean: scale = mean|w|, q = clamp(round(w / scale), -1, 1)
  binary         scale = mean|w|, q = sign(w) (0 -> +1)

Scales are stored as float16 and the codes are computed with the float16-rounded scale, so
that what is stored is exactly what the rounding assumed. Scales are kept at or above the
smallest normal float16 (2**-14) so a float16 scale never flushes to zero.
"""
from __future__ import annotations

import torch

from ..formats import Scheme, get_scheme, num_groups

FP16_TINY = 2.0 ** -14


def _to_fp16_scale(scale: torch.Tensor) -> torch.Tensor:
    return scale.clamp(min=FP16_TINY, max=65504.0).half()


def group_params(w: torch.Tensor, s: Scheme) -> tuple[torch.Tensor, "torch.Tensor | None"]:
    """fp16 scale [N] (and uint8 zero [N] for weight-only schemes) of one group w [N, g]."""
    w = w.float()
    if s.has_zeros:
        maxq = s.max_code
        lo = w.min(1).values.clamp(max=0)
        hi = w.max(1).values.clamp(min=0)
        dead = (lo == 0) & (hi == 0)
        lo, hi = torch.where(dead, -1.0, lo), torch.where(dead, 1.0, hi)
        scale = _to_fp16_scale((hi - lo) / maxq)
        zero = torch.round(-lo / scale.float()).clamp(0, maxq).to(torch.uint8)
        return scale, zero
    if s.compute == "integer":
        scale = w.abs().amax(1) / s.qmax
    else:  # ternary / binary: absmean
        scale = w.abs().mean(1)
    return _to_fp16_scale(scale), None


def codes_for(w: torch.Tensor, scale: torch.Tensor, zero: "torch.Tensor | None", s: Scheme) -> torch.Tensor:
    """Unsigned codes [N, g] of w [N, g] given one fp16 scale (and zero) per row."""
    x = w.float() / scale.float().unsqueeze(1)
    if s.has_zeros:
        return (torch.round(x) + zero.float().unsqueeze(1)).clamp(0, s.max_code).to(torch.uint8)
    if s.name == "binary":
        return (w >= 0).to(torch.uint8)
    q = torch.round(x).clamp(s.qmin, s.qmax)
    return (q + s.code_offset).to(torch.uint8)


@torch.no_grad()
def quantize_weight(weight: torch.Tensor, scheme: "str | Scheme", group_size: int):
    """weight [N, K] float -> (codes uint8 [N, K], scales fp16 [N, G], zeros uint8 [N, G] or None).
    group_size is the resolved size (a multiple of 32, or K)."""
    s = get_scheme(scheme)
    N, K = weight.shape
    G = num_groups(K, group_size)
    codes = torch.empty(N, K, dtype=torch.uint8, device=weight.device)
    scales = torch.empty(N, G, dtype=torch.float16, device=weight.device)
    zeros = torch.empty(N, G, dtype=torch.uint8, device=weight.device) if s.has_zeros else None
    for g in range(G):
        sl = slice(g * group_size, min((g + 1) * group_size, K))
        scale, zero = group_params(weight[:, sl], s)
        scales[:, g] = scale
        if zeros is not None:
            zeros[:, g] = zero
        codes[:, sl] = codes_for(weight[:, sl], scale, zero, s)
    return codes, scales, zeros
