"""Interop with the standard GPTQ checkpoint layout (AutoGPTQ / GPTQModel / transformers), so
models quantized by lowbit load in other tools and theirs load into QLinear.

For every quantized linear `name` with W [N, K] (out, in), b bits, group size g, G = ceil(K/g):

  name.qweight  int32 [K * b / 32, N]  codes packed along K (the input dimension): for b = 4,
                word [i, n] holds codes of rows 8i..8i+7 of column n, row 8i+j at bits 4j..4j+3;
                for b = 3, each 32 rows take 3 words, codes laid out as one 96-bit little-endian
                stream (row j at bits 3j..3j+2, crossing word boundaries: AutoGPTQ's packing)
  name.qzeros   int32 [G, N * b / 32]  zero points packed the same way, along N;
                format "gptq" (v1) stores zero - 1, format "gptq_v2" the zero itself
  name.scales   float16 [G, N]
  name.g_idx    int32 [K]   group of each input channel; lowbit always writes k // g (no run-time
                permutation: GPTQ's act-order is exported with static groups)
  name.bias     [N] (if any; written in float32 so a re-import is exact, loaders cast it)

plus `quantize_config.json` ({"bits", "group_size", "desc_act": false, "sym", "checkpoint_format",
"quant_method": "gptq"}) and, for Hugging Face models, `config.json` with the same under
"quantization_config". Dequantization: w[n, k] = scales[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n]).
v1 cannot store a zero point of 0 (0 - 1 wraps to 2^b - 1 and loaders read 2^b): export refuses
it with a clear error; use format="gptq_v2" then.
"""
from __future__ import annotations

import json
import os

import torch
from torch import nn

from ._atomic import atomic_folder
from .formats import get_scheme, num_groups, unpack
from .nn import QLinear

_BITS_SCHEME = {4: "w4a16", 3: "w3a16"}
FORMATS = ("gptq", "gptq_v2")


def _pack_stream(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """codes [R, C] -> int32 [R * bits / 32, C]: each column's codes as one little-endian bit
    stream, row r at bit offset r * bits (AutoGPTQ's layout for 2/4/8 bits and its 3-bit packing
    alike). R * bits must be a multiple of 32."""
    R, C = codes.shape
    if (R * bits) % 32:
        raise ValueError(f"{R} rows of {bits}-bit codes do not fill whole 32-bit words")
    c = codes.to(torch.int64)
    words = torch.zeros(R * bits // 32, C, dtype=torch.int64)
    for r in range(R):
        w, s = divmod(r * bits, 32)
        words[w] |= (c[r] << s) & 0xFFFFFFFF
        if s + bits > 32:  # the code crosses into the next word
            words[w + 1] |= c[r] >> (32 - s)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def _unpack_stream(words: torch.Tensor, bits: int, R: int) -> torch.Tensor:
    """Inverse of _pack_stream: int32 [R * bits / 32, C] -> codes [R, C] (int64)."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    out = torch.empty(R, w.shape[1], dtype=torch.int64)
    mask = (1 << bits) - 1
    for r in range(R):
        i, s = divmod(r * bits, 32)
        v = w[i] >> s
        if s + bits > 32:
            v = v | (w[i + 1] << (32 - s))
        out[r] = v & mask
    return out


def _gptq_layers(model: nn.Module) -> dict:
    layers = {n: m for n, m in model.named_modules() if isinstance(m, QLinear)}
    if not layers:
        raise ValueError("model: has no QLinear layers to export (quantize it with scheme w4a16/w3a16 first)")
    bad = {n: m.scheme for n, m in layers.items() if m.scheme not in _BITS_SCHEME.values()}
    if bad:
        raise ValueError(f"model: the GPTQ layout holds weight-only w4a16/w3a16 layers; these are not: {bad}")
    configs = {(m.scheme, m.group_size) for m in layers.values()}
    if len(configs) > 1:
        raise ValueError(f"model: GPTQ checkpoints have one bits/group_size for all layers, found {sorted(configs)}")
    return layers


def export_gptq(model: nn.Module, folder: "str | os.PathLike", format: str = "gptq"):
    """Write `model` (its QLinear layers w4a16/w3a16, every other tensor as is) in the standard GPTQ
    layout to `folder` (model.safetensors + quantize_config.json [+ config.json]). The folder is
    written whole or not at all."""
    from safetensors.torch import save_file
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {format!r}")
    layers = _gptq_layers(model)
    scheme, gs = next(iter({(m.scheme, m.group_size) for m in layers.values()}))
    bits = get_scheme(scheme).wbits
    tensors, seen = {}, {}
    skip_prefixes = tuple(n + "." for n in layers)
    for name, t in model.state_dict().items():
        if name.startswith(skip_prefixes):
            continue
        key = (t.data_ptr(), t.shape, t.dtype)
        if t.numel() and key in seen:  # tied weights (e.g. lm_head = embeddings) are stored once
            continue
        seen[key] = name
        tensors[name] = t.detach().contiguous().cpu()
    for name, m in layers.items():
        K, N = m.in_features, m.out_features
        codes = unpack(m.qweight.cpu(), m.scheme, K)  # [N, K], unsigned
        zeros = m.zeros.cpu().to(torch.int64)
        if format == "gptq":
            if bool((zeros == 0).any()):
                raise ValueError(f"model: layer {name!r} has a zero point of 0, which the v1 'gptq' format cannot "
                                 "store (it keeps zero - 1); export with format='gptq_v2'")
            zeros = zeros - 1
        for what, size in (("in_features", K), ("out_features", N)):
            if (size * bits) % 32:
                raise ValueError(f"model: layer {name!r} has {what}={size}; the GPTQ layout packs {bits}-bit codes "
                                 f"along it in whole 32-bit words, which needs {what} * {bits} % 32 == 0")
        tensors[f"{name}.qweight"] = _pack_stream(codes.T, bits)  # [K * bits / 32, N]
        tensors[f"{name}.qzeros"] = _pack_stream(zeros, bits).T.contiguous()  # [G, N * bits / 32]
        tensors[f"{name}.scales"] = m.scales.cpu().T.contiguous()
        tensors[f"{name}.g_idx"] = (torch.arange(K) // m.kernel_group_size).to(torch.int32)
        if m.bias is not None:
            tensors[f"{name}.bias"] = m.bias.detach().cpu()  # float32: loaders cast; re-import stays exact
    qcfg = {"bits": bits, "group_size": gs, "desc_act": False, "sym": False, "true_sequential": True,
            "checkpoint_format": format, "quant_method": "gptq", "quantizer": "lowbit"}
    with atomic_folder(folder, ".lowbit-gptq-") as tmp:
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt", "quantizer": "lowbit"})
        with open(os.path.join(tmp, "quantize_config.json"), "w") as f:
            json.dump(qcfg, f, indent=1)
        cfg = getattr(model, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            d = cfg.to_dict()
            d["quantization_config"] = qcfg
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(d, f, indent=1, default=str)


@torch.no_grad()
def import_gptq(model: nn.Module, folder: "str | os.PathLike") -> nn.Module:
    """Load a standard GPTQ checkpoint folder (4 or 3 bits, g_idx without act-order permutation)
    into `model`, the same architecture in float: each quantized nn.Linear becomes a QLinear.
    Returns model."""
    from safetensors import safe_open
    folder = os.fspath(folder)
    cfg_path = os.path.join(folder, "quantize_config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"folder: no quantize_config.json in {folder}")
    try:
        with open(cfg_path) as f:
            qcfg = json.load(f)
        bits, gs = int(qcfg["bits"]), int(qcfg["group_size"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"folder: {cfg_path} is not a valid GPTQ config ({e})") from None
    if bits not in _BITS_SCHEME:
        raise ValueError(f"folder: {bits}-bit GPTQ checkpoints are not supported (4 and 3 are)")
    v2 = qcfg.get("checkpoint_format", "gptq") == "gptq_v2"
    files = [f for f in sorted(os.listdir(folder)) if f.endswith(".safetensors")]
    if not files:
        raise FileNotFoundError(f"folder: no .safetensors file in {folder}")
    state = {}
    for fn in files:
        try:
            with safe_open(os.path.join(folder, fn), framework="pt") as f:
                for k in f.keys():
                    state[k] = f.get_tensor(k)
        except Exception as e:
            raise ValueError(f"folder: {fn} is not a readable safetensors file ({e})") from None
    modules = dict(model.named_modules())
    for name in [k[: -len(".qweight")] for k in state if k.endswith(".qweight")]:
        lin = modules.get(name)
        if not isinstance(lin, (nn.Linear, QLinear)):
            raise ValueError(f"folder: the checkpoint quantizes {name!r}, which the model has not as a Linear")
        K, N = lin.in_features, lin.out_features
        gsz = K if gs == -1 else gs
        G = num_groups(K, gsz)
        g_idx = state.pop(f"{name}.g_idx", None)
        if g_idx is not None and not torch.equal(g_idx.to(torch.int64), torch.arange(K) // gsz):
            raise ValueError(f"folder: layer {name!r} has an act-order g_idx (a run-time permutation); lowbit "
                             "kernels take static groups only: re-quantize with static groups")
        qweight, qzeros, scales = state.pop(f"{name}.qweight"), state.pop(f"{name}.qzeros"), state.pop(f"{name}.scales")
        if scales.shape != (G, N):
            raise ValueError(f"folder: {name}.scales has shape {tuple(scales.shape)}, expected ({G}, {N})")
        if qweight.shape != (K * bits // 32, N) or qzeros.shape != (G, N * bits // 32):
            raise ValueError(f"folder: {name}.qweight/qzeros have shapes {tuple(qweight.shape)}/{tuple(qzeros.shape)}, "
                             f"expected ({K * bits // 32}, {N})/({G}, {N * bits // 32})")
        codes = _unpack_stream(qweight, bits, K).T.contiguous()  # [N, K]
        zeros = _unpack_stream(qzeros.T.contiguous(), bits, N)  # [N, G]
        if not v2:
            zeros = zeros + 1
        if int(zeros.max()) > (1 << bits) - 1:
            raise ValueError(f"folder: layer {name!r} has a zero point of {int(zeros.max())} (a v1 zero of 0 that "
                             f"wrapped); lowbit cannot represent it in {bits} bits")
        bias = state.pop(f"{name}.bias", None)
        q = QLinear.from_codes(codes.to(torch.uint8), scales.half().T.contiguous(), zeros.to(torch.uint8),
                               None if bias is None else bias.float(), _BITS_SCHEME[bits], gs)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, q)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith((".qweight", ".scales", ".zeros", ".bias"))]
    # Tied weights stored once (e.g. lm_head) come back through the tie itself.
    tied = getattr(model, "_tied_weights_keys", None) or []
    tied = list(tied.keys()) if isinstance(tied, dict) else list(tied)
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"folder: checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model
