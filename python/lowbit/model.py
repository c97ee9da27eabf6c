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
from .formats import FORMAT_VERSION, get_scheme
from .nn import QLinear

_METHODS = ("rtn",)


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


@torch.no_grad()
def quantize(model: nn.Module, scheme: str = "w4a16", method: str = "rtn", group_size: "int | None" = None,
             skip=(), progress: bool = True) -> nn.Module:
    """Replace every nn.Linear in `model` (in place) by a QLinear in `scheme`; returns model.

    skip: module names or glob patterns to leave in float (see _matches), e.g. ["lm_head"].
    method: "rtn" (round to nearest)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    s = get_scheme(scheme)
    if method not in _METHODS:
        raise ValueError(f"method: unknown {method!r}; choose one of {', '.join(_METHODS)}")
    if isinstance(skip, str):
        skip = [skip]
    targets = [(n, m) for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and not _matches(n, skip)]
    for name, lin in _progress(targets, len(targets), f"quantize {s.name}/{method}", progress):
        _set_module(model, name, QLinear.from_linear(lin, s.name, group_size))
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
