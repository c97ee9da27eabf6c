"""Whole-model operations: quantize(model, ...) swaps nn.Linear for QLinear in place;
save/load keep a quantized model in one safetensors file with versioned metadata."""
from __future__ import annotations

import fnmatch
import json
import os
import tempfile

import torch
from torch import nn

from . import __version__
from .formats import FORMAT_VERSION, get_scheme, resolve_group_size
from .quant.rtn import quantize_weight
from .nn import QLinear

_METHODS = ("rtn", "gptq", "rptq")


def _matches(name: str, patterns) -> bool:
    """A pattern matches a module name exactly, as a glob (fnmatch), or as its last dotted part(s):
    "lm_head" matches "lm_head" and "model.lm_head"; "*.mlp.*" matches every MLP linear."""
    return any(name == p or name.endswith("." + p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _set_module(model: nn.Module, name: str, module: nn.Module):
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _progress(it, total, desc, enabled):
    if not enabled:
        return it
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but never fail a quantization over a progress bar
        return it
    return tqdm(it, total=total, desc=desc, unit="layer", leave=False)


def _check_number(name, v, kind=int, lo=None):
    if isinstance(v, bool) or not isinstance(v, kind if kind is int else (int, float)):
        raise TypeError(f"{name}: expected {'an int' if kind is int else 'a number'}, got {type(v).__name__}")
    if lo is not None and v < lo:
        raise ValueError(f"{name}: expected a value >= {lo}, got {v!r}")


def calib_windows(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """nsamples windows of seqlen tokens at random starts (torch.Generator seeded with seed) in
    the 1-D token sequence ids -> LongTensor [nsamples, seqlen] (the GPTQ papers' protocol)."""
    if ids.numel() <= seqlen:
        raise ValueError(f"calib: the calibration text has {ids.numel()} tokens; need more than seqlen={seqlen}")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seqlen, (nsamples,), generator=g)
    return torch.stack([ids[s:s + seqlen] for s in starts])


def calib_tokens(calib, tokenizer=None, nsamples: int = 128, seqlen: int = 512, seed: int = 0) -> torch.Tensor:
    """Calibration data as a LongTensor [n, seqlen] from any accepted form:
    a LongTensor [n, seqlen] of token ids (used as is), a list of strings (joined with blank
    lines) or the path of a UTF-8 text file, both with a tokenizer (a Hugging Face tokenizer or
    any callable returning .input_ids / a list of ids), then cut into nsamples random windows."""
    _check_number("nsamples", nsamples, lo=1)
    _check_number("seqlen", seqlen, lo=2)
    _check_number("seed", seed)
    if isinstance(calib, torch.Tensor):
        if calib.dtype.is_floating_point or calib.dtype == torch.bool or calib.is_complex():
            raise TypeError(f"calib: expected integer token ids (a LongTensor), got dtype {calib.dtype}")
        if calib.dim() != 2 or calib.shape[0] == 0 or calib.shape[1] == 0:
            raise ValueError(f"calib: expected token ids of shape [n, seqlen], got {tuple(calib.shape)}")
        return calib.long()
    if isinstance(calib, (str, os.PathLike)):
        path = os.fspath(calib)
        if not os.path.isfile(path):
            raise ValueError(f"calib: a string is read as the path of a text file, and {path!r} is not a file "
                             "(pass a list of strings for raw text)")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    elif isinstance(calib, (list, tuple)) and calib and all(isinstance(t, str) for t in calib):
        text = "\n\n".join(calib)
    else:
        raise TypeError("calib: expected a LongTensor [n, seqlen] of token ids, a list of strings or the path of "
                        f"a text file, got {type(calib).__name__}" + (" (empty)" if isinstance(calib, (list, tuple)) else ""))
    if tokenizer is None:
        raise ValueError("tokenizer: text calibration data (strings or a file) needs a tokenizer")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer: expected a callable tokenizer, got {type(tokenizer).__name__}")
    try:
        out = tokenizer(text, add_special_tokens=False)
    except TypeError:
        out = tokenizer(text)
    ids = getattr(out, "input_ids", None)
    if ids is None and isinstance(out, dict):
        ids = out.get("input_ids")
    ids = torch.as_tensor(out if ids is None else ids, dtype=torch.long).flatten()
    return calib_windows(ids, nsamples, seqlen, seed)


@torch.no_grad()
def quantize(model: nn.Module, scheme: str = "w4a16", method: str = "rtn", group_size: "int | None" = None,
             skip=(), progress: bool = True, *, calib=None, tokenizer=None, nsamples: int = 128, seqlen: int = 512,
             seed: int = 0, act_order: bool = False, sym: bool = False, mse: bool = False, percdamp: float = 0.01,
             true_sequential: bool = True, batch_size: int = 8, block_size: int = 128,
             log: "dict | None" = None, clusters: int = 32) -> nn.Module:
    """Replace every nn.Linear in `model` (in place) by a QLinear in `scheme`; returns model.

    skip: module names or glob patterns to leave in float (see _matches), e.g. ["lm_head"].
    method: "rtn" (round to nearest) or "gptq" (lowbit.quant.gptq, block by block with
        lowbit.quant.sequential; needs calib).
    calib (gptq): a LongTensor [n, seqlen] of token ids, a list of strings or a text file path
        (both with tokenizer=...; cut into nsamples random windows of seqlen tokens, seed).
    act_order, percdamp, true_sequential, batch_size (calibration sequences per forward),
    block_size: GPTQ options. sym, mse: the per-group quantizer (both methods, weight-only schemes
    for sym): symmetric grid; MSE-optimal range shrink (GPTQ's --mse).
    log (gptq): a dict that receives per-layer GPTQ info.
    method="rptq" (lowbit.quant.rptq; integer schemes w8a8/w4a8/w4a4/w3a3, LLaMA-family models,
        needs calib): channels of every linear input clustered into `clusters` static
        per-cluster activation ranges, reorder folded into the norms and weights, GPTQ weights."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    s = get_scheme(scheme)
    if method not in _METHODS:
        raise ValueError(f"method: unknown {method!r}; choose one of {', '.join(_METHODS)}")
    for name, v in (("act_order", act_order), ("sym", sym), ("mse", mse), ("true_sequential", true_sequential)):
        if not isinstance(v, bool):
            raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    if isinstance(skip, str):
        skip = [skip]
    if method == "rtn" and (calib is not None or act_order):
        raise ValueError("calib: round-to-nearest uses no calibration data (and no act_order); use method='gptq'")
    if method == "gptq":
        from .quant.sequential import gptq_model
        if calib is None:
            raise ValueError("calib: method='gptq' needs calibration data (token ids, strings or a text file)")
        if s.compute == "addonly":
            raise ValueError(f"scheme: GPTQ does not apply to {s.name}; use lowbit.bitnet for ternary/binary")
        _check_number("percdamp", percdamp, float, 0)
        _check_number("batch_size", batch_size, lo=1)
        _check_number("block_size", block_size, lo=1)
        tokens = calib_tokens(calib, tokenizer, nsamples, seqlen, seed)
        gptq_model(model, tokens, s.name, s.default_group_size if group_size is None else group_size,
                   act_order=act_order, sym=sym, percdamp=percdamp, block_size=block_size, mse=mse,
                   batch_size=batch_size, skip=skip, matches=_matches, true_sequential=true_sequential,
                   progress=progress, log=log)
    if method == "rptq":
        from .quant.rptq import rptq_model
        if calib is None:
            raise ValueError("calib: method='rptq' needs calibration data (token ids, strings or a text file)")
        if s.compute != "integer":
            raise ValueError(f"scheme: RPTQ quantizes activations statically; choose w8a8, w4a8, w4a4 or w3a3, got {s.name}")
        _check_number("clusters", clusters, lo=1)
        tokens = calib_tokens(calib, tokenizer, nsamples, seqlen, seed)
        rptq_model(model, tokens, s.name, clusters=clusters, group_size=group_size, percdamp=percdamp,
                   block_size=block_size, batch_size=batch_size, seed=seed, progress=progress, log=log)
    # round to nearest: every linear (rtn), or those outside the transformer blocks (gptq, rptq)
    targets = [(n, m) for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and not _matches(n, skip)]
    for name, lin in _progress(targets, len(targets), f"quantize {s.name}/rtn", progress and bool(targets)):
        gs = resolve_group_size(s, group_size, lin.in_features)
        codes, scales, zeros = quantize_weight(lin.weight.detach(), s, gs, sym=sym, mse=mse)
        _set_module(model, name, QLinear.from_codes(codes, scales, zeros, lin.bias, s.name, group_size))
    return model


def qlinear_layers(model: nn.Module) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, QLinear)}


def save(model: nn.Module, path: "str | os.PathLike"):
    """Write the whole model state (QLinear buffers and every other tensor) to one safetensors
    file, with the QLinear layouts and the format version in its metadata. The file appears
    whole or not at all (written to a temporary name, then renamed)."""
    from safetensors.torch import save_model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    path = os.fspath(path)
    layers = {n: m.config() for n, m in qlinear_layers(model).items()}
    meta = {"format": "lowbit", "format_version": str(FORMAT_VERSION), "lowbit_version": __version__,
            "layers": json.dumps(layers)}
    extra = _extra_modules(model)
    if extra:  # RPTQ's QLinearStatic / ReorderRMSNorm (lowbit.quant.rptq)
        meta["modules"] = json.dumps(extra)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".lowbit-", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        save_model(model, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_metadata(path: "str | os.PathLike") -> dict:
    """The lowbit metadata of a checkpoint, checked; ValueError for anything not a lowbit file."""
    from safetensors import safe_open
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such checkpoint file: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise ValueError(f"path: {path} is not a readable safetensors file ({e})") from None
    if meta.get("format") != "lowbit":
        raise ValueError(f"path: {path} is a safetensors file but not a lowbit checkpoint (no lowbit metadata)")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise ValueError(f"path: {path} has lowbit format version {meta.get('format_version')!r}; "
                         f"this lowbit (version {__version__}) reads version {FORMAT_VERSION}")
    try:
        meta["layers"] = json.loads(meta["layers"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"path: {path} has corrupted lowbit metadata ({e})") from None
    return meta


@torch.no_grad()
def load(model: nn.Module, path: "str | os.PathLike") -> nn.Module:
    """Load a checkpoint written by save() into `model`, the same architecture in float:
    the layers the checkpoint holds as QLinear are swapped in first, then every tensor is read
    (strict: a missing, unexpected or mis-shaped tensor is an error). Returns model."""
    from safetensors.torch import load_model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    meta = read_metadata(path)
    modules = dict(model.named_modules())
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
    if "modules" in meta:  # RPTQ modules: rebuilt empty, filled by the tensor load below
        from .quant.rptq import build_module
        for name, cfg in json.loads(meta["modules"]).items():
            if name not in modules:
                raise ValueError(f"path: checkpoint has a module {name!r} that the model does not have")
            _set_module(model, name, build_module(cfg, device))
    for name, cfg in meta["layers"].items():
        m = modules.get(name)
        if not isinstance(m, (nn.Linear, QLinear)):
            raise ValueError(f"path: checkpoint has a quantized layer {name!r} that the model does not have "
                             f"as a Linear (found {type(m).__name__ if m is not None else 'nothing'})")
        if (m.in_features, m.out_features) != (cfg["in_features"], cfg["out_features"]):
            raise ValueError(f"path: layer {name!r} is {cfg['in_features']}->{cfg['out_features']} in the checkpoint "
                             f"but {m.in_features}->{m.out_features} in the model")
        _set_module(model, name, QLinear(cfg["in_features"], cfg["out_features"], cfg["bias"], cfg["scheme"],
                                         cfg["group_size"], device=device))
    try:
        missing, unexpected = load_model(model, os.fspath(path), strict=False, device=str(device))
    except Exception as e:
        raise ValueError(f"path: cannot read the tensors of {os.fspath(path)} into this model ({e})") from None
    if missing or unexpected:
        raise ValueError(f"path: checkpoint does not match the model: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    return model


def _extra_modules(model: nn.Module) -> dict:
    """Configs of the modules besides QLinear that save/load must rebuild (RPTQ's)."""
    from .quant.rptq import MODULE_TYPES
    return {n: m.config() for n, m in model.named_modules() if isinstance(m, tuple(MODULE_TYPES.values()))}
