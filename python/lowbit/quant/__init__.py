"""Quantizers: float weights (+ calibration data) -> integer codes and scales.

Each quantizer returns what `lowbit.formats.pack` and `QLinear.from_codes` take; packing and
kernel layouts are not its business (DESIGN.md: quantizers, packers and kernels stay three
separate steps)."""
from .rtn import quantize_weight

__all__ = ["quantize_weight"]
