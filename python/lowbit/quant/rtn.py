"""Round-to-nearest weight quantization for every scheme, group by group along K.

  w4a16, w3a16   asymmetric min-max with an integer zero point (the range always holds 0,
                 like GPTQ's reference quantizer): scale = (hi - lo) / maxq, zero = round(-lo/scale)
  w8a8 .. w3a3   symmetric absmax: scale = max|w| / qmax, q = round(w / scale)
  ternary        BitNet b1.58 absmean: scale = mean|w|, q = clamp(round(w / scale), -1, 1)
  binary         scale = mean|w|, q = sign(w) (0 -> +1)

Options (weight-only schemes): sym = symmetric range with the zero at the middle code; mse =
the range shrink that minimises the group's reconstruction error (GPTQ's --mse grid search).
GPTQ (gptq.py) uses these same functions for its per-group quantizer, so the codes it emits are
exactly what QLinear stores.

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


def group_params(w: torch.Tensor, s: Scheme, sym: bool = False,
                 shrink: "float | torch.Tensor" = 1.0) -> tuple[torch.Tensor, "torch.Tensor | None"]:
    """fp16 scale [N] (and uint8 zero [N] for weight-only schemes) of one group w [N, g].

    sym: weight-only schemes only; symmetric range [-m, m] with the zero fixed at (maxq+1)/2
         (GPTQ's `sym` quantizer). Integer schemes are always symmetric.
    shrink: factor (scalar or [N]) applied to the range before the scale is computed; 1 is
         plain min-max / absmax, smaller clips outliers (see mse_group_params)."""
    w = w.float()
    if s.has_zeros:
        maxq = s.max_code
        lo = w.min(1).values.clamp(max=0)
        hi = w.max(1).values.clamp(min=0)
        if sym:
            hi = torch.maximum(lo.abs(), hi)
            lo = -hi
        lo, hi = lo * shrink, hi * shrink
        dead = (lo == 0) & (hi == 0)
        lo, hi = torch.where(dead, -1.0, lo), torch.where(dead, 1.0, hi)
        scale = _to_fp16_scale((hi - lo) / maxq)
        if sym:
            zero = torch.full_like(lo, (maxq + 1) // 2).to(torch.uint8)
        else:
            zero = torch.round(-lo / scale.float()).clamp(0, maxq).to(torch.uint8)
        return scale, zero
    if s.compute == "integer":
        scale = w.abs().amax(1) * shrink / s.qmax
    else:  # ternary / binary: absmean
        scale = w.abs().mean(1)
    return _to_fp16_scale(scale), None


def dequant_codes(u: torch.Tensor, scale: torch.Tensor, zero: "torch.Tensor | None", s: Scheme) -> torch.Tensor:
    """The float32 weights [N, g] that codes u [N, g] stand for (one fp16 scale/zero per row):
    exactly what formats.dequantize and the kernels use."""
    sc = scale.float().unsqueeze(1)
    if s.has_zeros:
        return sc * (u.float() - zero.float().unsqueeze(1))
    if s.name == "binary":
        return sc * (2 * u.float() - 1)
    return sc * (u.float() - s.code_offset)


@torch.no_grad()
def mse_group_params(w: torch.Tensor, s: Scheme, sym: bool = False, grid: int = 100, maxshrink: float = 0.8,
                     norm: float = 2.4) -> tuple[torch.Tensor, "torch.Tensor | None"]:
    """Like group_params, but the range is shrunk by the factor p in {1, 1 - 1/grid, ...,
    1 - maxshrink} that minimises sum |w - dequant(quant(w))|^norm per row: the grid search of
    GPTQ's `--mse` option (same defaults: grid 100, maxshrink 0.8, norm 2.4), here with lowbit's
    fp16 scales and uint8 zeros so the error is measured on what is actually stored."""
    if s.compute == "addonly":
        raise ValueError(f"scheme: the MSE range search applies to min-max/absmax schemes, not {s.name}")
    w = w.float()
    best_scale, best_zero = group_params(w, s, sym)
    best_err = _err(w, best_scale, best_zero, s, norm)
    for i in range(1, int(maxshrink * grid) + 1):
        scale, zero = group_params(w, s, sym, 1 - i / grid)
        err = _err(w, scale, zero, s, norm)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        if zero is not None:
            best_zero = torch.where(better, zero, best_zero)
    return best_scale, best_zero


def _err(w, scale, zero, s, norm):
    return (dequant_codes(codes_for(w, scale, zero, s), scale, zero, s) - w).abs().pow(norm).sum(1)


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
def quantize_weight(weight: torch.Tensor, scheme: "str | Scheme", group_size: int, sym: bool = False,
                    mse: bool = False):
    """weight [N, K] float -> (codes uint8 [N, K], scales fp16 [N, G], zeros uint8 [N, G] or None).
    group_size is the resolved size (a multiple of 32, or K); sym/mse: see group_params and
    mse_group_params."""
    s = get_scheme(scheme)
    N, K = weight.shape
    G = num_groups(K, group_size)
    codes = torch.empty(N, K, dtype=torch.uint8, device=weight.device)
    scales = torch.empty(N, G, dtype=torch.float16, device=weight.device)
    zeros = torch.empty(N, G, dtype=torch.uint8, device=weight.device) if s.has_zeros else None
    for g in range(G):
        sl = slice(g * group_size, min((g + 1) * group_size, K))
        scale, zero = mse_group_params(weight[:, sl], s, sym) if mse else group_params(weight[:, sl], s, sym)
        scales[:, g] = scale
        if zeros is not None:
            zeros[:, g] = zero
        codes[:, sl] = codes_for(weight[:, sl], scale, zero, s)
    return codes, scales, zeros
