"""The canonical packed formats in pure torch: the scheme table, pack/unpack and dequantize.

This is the reference for csrc/include/lowbit/formats.h and docs/formats.md: both produce
identical bytes (tests/test_formats.py checks it). Codes are unsigned, b bits each, in blocks of
32 along K; K is padded with zero codes up to a multiple of 32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

BLOCK = 32
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Scheme:
    name: str
    id: int  # lowbit_scheme in lowbit.h
    wbits: int  # bits of a stored weight code
    abits: int  # activation bits; 16 means float activations
    block_bytes: int  # bytes per block of 32 codes
    code_offset: int  # signed value q = u - code_offset (binary: q = 2u - 1)
    max_code: int
    has_zeros: bool  # per-group zero points (weight-only schemes)
    compute: str  # "weight_only" | "integer" | "addonly"
    default_group_size: int  # -1: one group per row (per-channel)

    @property
    def qmin(self) -> int:
        return -1 if self.name == "binary" else -self.code_offset

    @property
    def qmax(self) -> int:
        return 1 if self.name == "binary" else self.max_code - self.code_offset


_TABLE = [
    Scheme("w4a16", 0, 4, 16, 16, 0, 15, True, "weight_only", 128),
    Scheme("w3a16", 1, 3, 16, 12, 0, 7, True, "weight_only", 128),
    Scheme("w8a8", 2, 8, 8, 32, 128, 255, False, "integer", -1),
    Scheme("w4a8", 3, 4, 8, 16, 8, 15, False, "integer", -1),
    Scheme("w4a4", 4, 4, 4, 16, 8, 15, False, "integer", -1),
    Scheme("w3a3", 5, 3, 3, 12, 4, 7, False, "integer", -1),
    Scheme("ternary", 6, 2, 8, 8, 1, 2, False, "addonly", -1),
    Scheme("binary", 7, 1, 8, 4, 0, 1, False, "addonly", -1),
]
SCHEMES: dict[str, Scheme] = {s.name: s for s in _TABLE}


def get_scheme(scheme: "str | Scheme", arg: str = "scheme") -> Scheme:
    """Look a scheme up by name; a clear error names the argument and the choices."""
    if isinstance(scheme, Scheme):
        return scheme
    if not isinstance(scheme, str):
        raise TypeError(f"{arg}: expected a scheme name (str), got {type(scheme).__name__}")
    s = SCHEMES.get(scheme.lower())
    if s is None:
        raise ValueError(f"{arg}: unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return s


def padded_k(K: int) -> int:
    return (K + BLOCK - 1) // BLOCK * BLOCK


def row_bytes(scheme: "str | Scheme", K: int) -> int:
    return padded_k(K) // BLOCK * get_scheme(scheme).block_bytes


def resolve_group_size(scheme: "str | Scheme", group_size: "int | None", K: int) -> int:
    """The group size a kernel uses: a positive multiple of 32, or K for one group per row.
    None takes the scheme's default; -1 (GPTQ's convention) or K mean per-channel."""
    s = get_scheme(scheme)
    gs = s.default_group_size if group_size is None else group_size
    if isinstance(gs, bool) or not isinstance(gs, int):
        raise TypeError(f"group_size: expected an int, got {type(group_size).__name__}")
    if gs == -1 or gs == K or gs >= K and gs % BLOCK == 0:
        return K  # one group covers the row
    if gs <= 0 or gs % BLOCK != 0:
        raise ValueError(f"group_size: must be a positive multiple of {BLOCK} or -1 (per-channel), got {gs}")
    return gs


def num_groups(K: int, group_size: int) -> int:
    return (K + group_size - 1) // group_size


def _pack_bits(c: torch.Tensor, bits: int) -> torch.Tensor:
    """c: [..., 32] codes < 2**bits (bits in 1, 2, 4, 8) -> [..., 4*bits] bytes."""
    c = c.to(torch.uint8)
    if bits == 8:
        return c
    if bits == 1:  # one little-endian uint32: bit i = code i, so byte j holds codes 8j..8j+7
        c = c.view(*c.shape[:-1], 4, 8)
        shifts = torch.arange(8, dtype=torch.uint8, device=c.device)
    else:  # byte j holds codes j, j + 32/per, j + 2*32/per, ... in ascending bit fields
        per = 8 // bits
        c = c.view(*c.shape[:-1], per, BLOCK // per).transpose(-1, -2)
        shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=c.device)
    return (c << shifts).sum(-1, dtype=torch.int32).to(torch.uint8)


def _unpack_bits(b: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of _pack_bits: [..., 4*bits] bytes -> [..., 32] codes."""
    if bits == 8:
        return b
    mask = (1 << bits) - 1
    if bits == 1:
        shifts = torch.arange(8, dtype=torch.uint8, device=b.device)
        return ((b.unsqueeze(-1) >> shifts) & mask).reshape(*b.shape[:-1], BLOCK)
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=b.device)
    c = (b.unsqueeze(-1) >> shifts) & mask  # [..., 32/per, per]
    return c.transpose(-1, -2).reshape(*b.shape[:-1], BLOCK)


def pack(codes: torch.Tensor, scheme: "str | Scheme") -> torch.Tensor:
    """Unsigned codes [N, K] (any integer dtype) -> packed bytes [N, row_bytes(K)] (uint8)."""
    s = get_scheme(scheme)
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes: expected a torch.Tensor, got {type(codes).__name__}")
    if codes.dim() != 2:
        raise ValueError(f"codes: expected a 2-D [N, K] tensor, got shape {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise TypeError(f"codes: expected an integer dtype, got {codes.dtype}")
    N, K = codes.shape
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > s.max_code):
        raise ValueError(f"codes: {s.name} codes must lie in [0, {s.max_code}], "
                         f"got [{int(codes.min())}, {int(codes.max())}]")
    c = torch.zeros(N, padded_k(K), dtype=torch.uint8, device=codes.device)
    c[:, :K] = codes.to(torch.uint8)
    c = c.view(N, -1, BLOCK)
    if s.wbits == 3:  # low 2 bits in the 2-bit layout, then the high bit plane
        out = torch.cat([_pack_bits(c & 3, 2), _pack_bits(c >> 2, 1)], dim=-1)
    else:
        out = _pack_bits(c, s.wbits)
    return out.reshape(N, -1).contiguous()


def unpack(packed: torch.Tensor, scheme: "str | Scheme", K: int) -> torch.Tensor:
    """Packed bytes [N, row_bytes(K)] -> unsigned codes [N, K] (uint8)."""
    s = get_scheme(scheme)
    if packed.dtype != torch.uint8 or packed.dim() != 2 or packed.shape[1] != row_bytes(s, K):
        raise ValueError(f"packed: expected uint8 [N, {row_bytes(s, K)}] for {s.name} with K={K}, "
                         f"got {packed.dtype} {tuple(packed.shape)}")
    N = packed.shape[0]
    b = packed.view(N, -1, s.block_bytes)
    if s.wbits == 3:
        c = _unpack_bits(b[..., :8], 2) | (_unpack_bits(b[..., 8:], 1) << 2)
    else:
        c = _unpack_bits(b, s.wbits)
    return c.reshape(N, -1)[:, :K].contiguous()


def code_values(codes: torch.Tensor, scheme: "str | Scheme") -> torch.Tensor:
    """Signed integer value of each code (int32); weight-only schemes return the codes as is."""
    s = get_scheme(scheme)
    c = codes.to(torch.int32)
    if s.name == "binary":
        return 2 * c - 1
    return c - s.code_offset


def expand_groups(t: torch.Tensor, group_size: int, K: int) -> torch.Tensor:
    """Per-group values [N, G] -> per-column [N, K]."""
    return t.repeat_interleave(group_size, dim=1)[:, :K]


def dequantize(packed: torch.Tensor, scales: torch.Tensor, zeros: "torch.Tensor | None",
               scheme: "str | Scheme", K: int, group_size: int) -> torch.Tensor:
    """The float32 weight [N, K] a kernel effectively multiplies with."""
    s = get_scheme(scheme)
    codes = unpack(packed, s, K)
    sc = expand_groups(scales.float(), group_size, K)
    if s.has_zeros:
        return sc * (codes.float() - expand_groups(zeros.float(), group_size, K))
    return sc * code_values(codes, s).float()


def bits_per_weight(scheme: "str | Scheme", K: int, group_size: int) -> float:
    """Stored bits per weight of one row, scales and zero points included (K padding too)."""
    s = get_scheme(scheme)
    g = num_groups(K, group_size)
    return (row_bytes(s, K) * 8 + g * 16 + (g * 8 if s.has_zeros else 0)) / K
