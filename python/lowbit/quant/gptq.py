"""GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", arXiv 2210.17323) for one weight matrix, given the Hessian of its layer-wise
reconstruction loss ||X W^T - X Wq^T||^2, i.e. H = 2 X^T X over the calibration inputs X [n, K].

The algorithm as published (and as in the authors' code, IST-DASLab/gptq):
  * dead inputs (H_ii == 0) get H_ii = 1 and their weight column is zeroed;
  * dampening: H += percdamp * mean(diag H) * I (default 1%); if the Cholesky factorisation
    still fails, lowbit raises the dampening x10 and retries (the reference code just crashes);
  * the inverse Hessian enters as its upper Cholesky factor U (H^-1 = U^T U), whose rows give
    the OBS updates of the remaining columns, so no column is ever removed from a matrix;
  * columns are quantized one at a time, the error of each spread over the not yet quantized
    columns; within a block of 128 columns the updates are immediate, to later blocks they are
    applied once per block ("lazy batch" updates, one matmul);
  * act-order (desc_act): columns are processed by decreasing diag(H);
  * groups: one scale/zero per `group_size` input columns. Without act-order the parameters of
    a group are computed when its first column is reached, from the weights as updated so far
    (the block size is rounded to a multiple of the group size so a group never straddles a
    lazy update). With act-order lowbit always uses "static groups" (AutoGPTQ's option): the
    parameters are computed from the original weights in the original group layout before the
    loop, every column keeps the scale of its original group, and the codes are un-permuted at
    the end. So an act-order result is a plain grouped weight: the kernels need no g_idx and
    no permutation at run time.

The per-group quantizer is lowbit's own RTN (rtn.group_params / rtn.codes_for, or the MSE range
search rtn.mse_group_params): codes and fp16 scales / uint8 zeros are exactly what QLinear
stores, and the dequantized weight GPTQ compensates against is exactly what the kernels use.

`gptq_reference` is an independent, slow float64 derivation of the same update rule (full
inverse Hessian, OBS formulas of the paper's eq. 2-3, column by column, no blocks) used by the
tests as an oracle.
"""
from __future__ import annotations


import torch

from ..formats import Scheme, get_scheme, num_groups, resolve_group_size
from .rtn import codes_for, dequant_codes, group_params, mse_group_params


class Hessian:
    """Running average of H = 2/n sum_i x_i x_i^T over calibration rows (GPTQ's add_batch).

    The batch product X^T X is computed in float32 (fast BLAS), the running sum is kept in
    float64 so that thousands of batches do not lose precision."""

    def __init__(self, K: int, device=None):
        self.H = torch.zeros(K, K, dtype=torch.float64, device=device)
        self.n = 0

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor):
        x = x.detach().reshape(-1, x.shape[-1]).float()
        self.add_xtx(x.t() @ x, x.shape[0])

    @torch.no_grad()
    def add_xtx(self, xtx: torch.Tensor, m: int):
        """Add a batch of m rows given its product X^T X (shared by layers fed the same input)."""
        if m == 0:
            return
        self.H *= self.n / (self.n + m)
        self.n += m
        self.H += (2.0 / self.n) * xtx.double()


def _params(w, s, sym, mse):
    return mse_group_params(w, s, sym) if mse else group_params(w, s, sym)


def _check(W, H, scheme, group_size, percdamp):
    s = get_scheme(scheme)
    if s.compute == "addonly":
        raise ValueError(f"scheme: GPTQ quantizes to the integer grids (w4a16, w3a16, w8a8, w4a8, w4a4, w3a3), "
                         f"not {s.name}; use lowbit.bitnet for ternary/binary")
    if not isinstance(W, torch.Tensor) or W.dim() != 2 or not W.dtype.is_floating_point:
        raise ValueError(f"W: expected a 2-D float tensor [N, K], got "
                         f"{tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__}")
    K = W.shape[1]
    if not isinstance(H, torch.Tensor) or tuple(H.shape) != (K, K):
        raise ValueError(f"H: expected a [{K}, {K}] tensor (K = in_features), got "
                         f"{tuple(H.shape) if isinstance(H, torch.Tensor) else type(H).__name__}")
    if isinstance(percdamp, bool) or not isinstance(percdamp, (int, float)) or not 0 <= percdamp < 1e6:
        raise ValueError(f"percdamp: expected a non-negative number, got {percdamp!r}")
    return s, resolve_group_size(s, group_size, K)


def _prepare(W, H, dtype):
    """Dead columns, in the working precision. Returns (W, H) copies."""
    W = W.detach().to(dtype).clone()
    H = H.detach().to(device=W.device, dtype=torch.float64).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    return W, H


def _damped_inverse_chol(H: torch.Tensor, percdamp: float):
    """Upper Cholesky factor of (H + damp I)^-1, in float64; damp raised x10 until it works.
    Returns (U, damp used as a fraction of mean diag)."""
    K = H.shape[0]
    mean_diag = torch.diag(H).mean()
    eye = torch.eye(K, dtype=H.dtype, device=H.device)
    p = percdamp
    for _ in range(8):
        Hd = H + (p * mean_diag) * eye
        L, info = torch.linalg.cholesky_ex(Hd)
        if info == 0:
            Hinv = torch.cholesky_inverse(L)
            U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
            if info == 0:
                return U, p
        p = p * 10 if p > 0 else 1e-4
    raise RuntimeError(f"GPTQ: the Hessian is not positive definite even with damping {p:g} x mean(diag)")


@torch.no_grad()
def gptq_quantize(W: torch.Tensor, H: torch.Tensor, scheme: "str | Scheme" = "w4a16", group_size: "int | None" = 128,
                  act_order: bool = False, static_groups: "bool | None" = None, sym: bool = False,
                  percdamp: float = 0.01, block_size: int = 128, mse: bool = False,
                  dtype: torch.dtype = torch.float32):
    """Quantize W [N, K] (nn.Linear layout) with GPTQ given H [K, K].

    Returns (codes uint8 [N, K] in the original column order, scales fp16 [N, G], zeros uint8
    [N, G] or None, info dict: damp used, loss = sum of the OBS errors, perm or None).
    group_size: multiple of 32, or -1 / K for per-channel. sym: symmetric weight-only grid
    (integer schemes are always symmetric). static_groups: default = act_order (required with it).
    mse: GPTQ's --mse range search for each group. dtype: precision of the loop (float32 as the
    reference code; float64 for tests)."""
    s, g = _check(W, H, scheme, group_size, percdamp)
    if static_groups is None:
        static_groups = act_order
    if act_order and not static_groups:
        raise ValueError("static_groups: act_order needs static groups in lowbit (the kernels have no "
                         "per-column group index); pass static_groups=True or leave it None")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0:
        raise ValueError(f"block_size: expected a positive int, got {block_size!r}")
    W, H = _prepare(W, H, dtype)
    N, K = W.shape
    G = num_groups(K, g)
    dev = W.device
    if g >= K:
        static_groups = True  # one group per row: its parameters come from the whole row up front
    else:  # a group must never straddle a lazy update: a block is a whole number of groups
        block_size = max(g, block_size // g * g)

    scales = torch.empty(N, G, dtype=torch.float16, device=dev)
    zeros = torch.empty(N, G, dtype=torch.uint8, device=dev) if s.has_zeros else None
    if static_groups:  # from the original weights, in the original (un-permuted) group layout
        for j in range(G):
            sc, z = _params(W[:, j * g:(j + 1) * g], s, sym, mse)
            scales[:, j] = sc
            if zeros is not None:
                zeros[:, j] = z

    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, perm], H[perm][:, perm]
    # group of each (possibly permuted) column position, as a Python list for the loop
    col_group = ((perm if perm is not None else torch.arange(K, device=dev)) // g).tolist()

    U, damp = _damped_inverse_chol(H, percdamp)
    Hinv = U.to(dtype)
    codes = torch.empty(N, K, dtype=torch.uint8, device=dev)
    loss = torch.zeros(N, dtype=dtype, device=dev)
    for i1 in range(0, K, block_size):
        i2 = min(i1 + block_size, K)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            grp = col_group[col]
            if not static_groups and col % g == 0:  # first column of a group: params from W as updated
                sc, z = _params(W1[:, i:i + g], s, sym, mse)
                scales[:, grp] = sc
                if zeros is not None:
                    zeros[:, grp] = z
            sc = scales[:, grp]
            z = None if zeros is None else zeros[:, grp]
            w = W1[:, i:i + 1]
            u = codes_for(w, sc, z, s)
            q = dequant_codes(u, sc, z, s).to(dtype)
            codes[:, col] = u[:, 0]
            d = Hinv1[i, i]
            err = (w - q) / d  # [N, 1]
            loss += (err[:, 0] ** 2) / 2
            W1[:, i:] -= err * Hinv1[i:i + 1, i:]  # OBS update of the rest of the block
            Err1[:, i] = err[:, 0]
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # lazy batch update of the later blocks
    if perm is not None:
        codes = codes[:, torch.argsort(perm)]
    return codes, scales, zeros, dict(damp=damp, loss=float(loss.sum()), perm=perm)


@torch.no_grad()
def gptq_reference(W: torch.Tensor, H: torch.Tensor, scheme: "str | Scheme" = "w4a16", group_size: "int | None" = 128,
                   act_order: bool = False, sym: bool = False, percdamp: float = 0.01):
    """Slow float64 oracle for the tests: the OBS rule of the paper written out directly.

    For each column j in order (by decreasing diag H with act_order): quantize w_j, then
        W[:, rest] -= (w_j - q_j) / Hinv[j, j] * Hinv[j, rest]           (eq. 2, optimal update)
        Hinv       -= Hinv[:, j] Hinv[j, :] / Hinv[j, j]                 (eq. 3, remove column j)
    with Hinv the full inverse of the damped Hessian (no Cholesky, no blocks, no lazy updates).
    Group parameters: computed from the fully updated weights when a group's first column is
    reached, or, with act_order, statically from the original weights. Returns (codes, scales, zeros)."""
    s, g = _check(W, H, scheme, group_size, percdamp)
    W, H = _prepare(W, H, torch.float64)
    N, K = W.shape
    G = num_groups(K, g)
    static = act_order or g >= K
    scales = torch.empty(N, G, dtype=torch.float16)
    zeros = torch.empty(N, G, dtype=torch.uint8) if s.has_zeros else None
    if static:
        for j in range(G):
            scales[:, j], z = group_params(W[:, j * g:(j + 1) * g], s, sym)
            if zeros is not None:
                zeros[:, j] = z
    order = torch.argsort(torch.diag(H), descending=True).tolist() if act_order else list(range(K))
    Hinv = torch.linalg.inv(H + percdamp * torch.diag(H).mean() * torch.eye(K, dtype=torch.float64))
    codes = torch.empty(N, K, dtype=torch.uint8)
    done = torch.zeros(K, dtype=torch.bool)
    for j in order:
        if not static and j % g == 0:
            scales[:, j // g], z = group_params(W[:, j:j + g], s, sym)
            if zeros is not None:
                zeros[:, j // g] = z
        z = None if zeros is None else zeros[:, j // g]
        u = codes_for(W[:, j:j + 1], scales[:, j // g], z, s)
        q = dequant_codes(u, scales[:, j // g], z, s).double()[:, 0]
        codes[:, j] = u[:, 0]
        done[j] = True
        rest = ~done
        W[:, rest] -= ((W[:, j] - q) / Hinv[j, j]).unsqueeze(1) * Hinv[j, rest].unsqueeze(0)
        W[:, j] = q
        Hinv -= torch.outer(Hinv[:, j], Hinv[j, :]) / Hinv[j, j]
    return codes, scales, zeros
