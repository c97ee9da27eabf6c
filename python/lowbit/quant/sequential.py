"""Model-level GPTQ: walk the transformer blocks one at a time (the "sequential" loop of the
GPTQ paper and of IST-DASLab/gptq's llama.py / opt.py), so that only one block's activations
live in memory beside the calibration inputs of the current block.

  1. Capture the inputs of the first block: run the model on the calibration batches with a
     pre-hook on block 0 that records its positional and keyword arguments (attention mask,
     position ids, rotary position_embeddings, ...) and raises a sentinel to stop the forward.
  2. For each block:
       a. find the "sequential groups": the block's nn.Linears in call order, linears called on
          the same input tensor forming one group (LLaMA: q/k/v, o_proj, gate/up, down_proj;
          OPT: q/k/v, out_proj, fc1, fc2; BERT: query/key/value, attention.output.dense,
          intermediate.dense, output.dense). Found by tracing one forward, not by names.
       b. true-sequential: for each group in order, run the block on every batch up to that
          group's input (a sentinel stops the forward there), accumulate one Hessian per group
          (the members share their input), quantize every member with GPTQ, and put the
          dequantized weight into the float layer, so the next group sees the outputs of the
          already quantized sublayers.
       c. run the quantized block on all batches: its outputs are the next block's inputs.
       d. swap the block's nn.Linears for QLinears built from the GPTQ codes.
  The calibration forwards in (b) and (c) use float nn.Linear layers holding exactly the weights
  QLinear.dequantize() returns (what the kernels multiply with): the same function, run with
  torch's BLAS, because the scalar reference kernels would make calibration hours long.

Supported layouts: model.model.layers (LLaMA, Mistral, Qwen, ...), model.model.decoder.layers
(OPT), model.transformer.h (GPT-2 style), model.encoder.layer / model.<base>.encoder.layer (BERT).
Linears outside the blocks (lm_head, pooler) are quantized by round-to-nearest unless skipped.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ..formats import get_scheme, resolve_group_size
from ..nn import QLinear
from .gptq import Hessian, gptq_quantize


class _Stop(Exception):
    """Raised by a hook to end a forward pass early (the rest of the computation is not needed)."""


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(prefix, ModuleList) of the model's transformer blocks; ValueError if unknown."""
    candidates = ["model.layers", "model.decoder.layers", "transformer.h", "encoder.layer", "layers",
                  "decoder.layers", "h"]
    base = getattr(model, "base_model_prefix", None)
    if base:
        candidates += [f"{base}.encoder.layer", f"{base}.layers", f"{base}.decoder.layers"]
    for path in candidates:
        try:
            m = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(m, nn.ModuleList) and len(m) > 0:
            return path, m
    raise ValueError("model: cannot find its transformer blocks (looked for model.layers, model.decoder.layers, "
                     "transformer.h, encoder.layer); GPTQ needs a LLaMA-, OPT-, GPT-2- or BERT-style model")


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


_ARGS = "__lowbit_positional__"  # key under which extra positional arguments of a block are kept


def _run(block, inp, kw):
    if _ARGS in kw:
        kw = dict(kw)
        return _first(block(inp, *kw.pop(_ARGS), **kw))
    return _first(block(inp, **kw))


@torch.no_grad()
def capture_inputs(model, blocks, calib: torch.Tensor, batch_size: int, progress):
    """Inputs of blocks[0] for each calibration batch: list of (hidden, kwargs)."""
    store = []

    def hook(module, args, kwargs):
        kw = dict(kwargs)
        hidden = args[0] if args else kw.pop("hidden_states")
        if len(args) > 1:  # other positional arguments (OPT, BERT pass the mask positionally)
            kw[_ARGS] = args[1:]
        store.append((hidden, kw))
        raise _Stop

    h = blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    dev = next(model.parameters()).device
    extra = {"use_cache": False} if getattr(getattr(model, "config", None), "use_cache", None) is not None else {}
    try:
        for i in progress(range(0, calib.shape[0], batch_size), "capture inputs"):
            try:
                model(input_ids=calib[i:i + batch_size].to(dev), **extra)
            except _Stop:
                pass
    finally:
        h.remove()
    if not store:
        raise RuntimeError("GPTQ: the model never called its first block; is it a supported architecture?")
    return store


@torch.no_grad()
def sequential_groups(block: nn.Module, inp, kw, names: dict) -> list[list[str]]:
    """The block's linears (names: id(module) -> name) in call order, grouped by shared input."""
    order, keep = [], []

    def make(name):
        def hook(module, args):
            x = args[0]
            keep.append(x)  # keeps the tensor alive so its id() stays unique during the pass
            order.append((name, id(x)))
        return hook

    hooks = [m.register_forward_pre_hook(make(n)) for m_id, n in names.items()
             for m in [_by_id(block, m_id)]]
    try:
        _run(block, inp[:1], kw)
    finally:
        for h in hooks:
            h.remove()
    groups, seen, last = [], set(), None
    for name, x_id in order:
        if name in seen:
            continue  # a linear called twice (weight sharing) belongs to its first group
        seen.add(name)
        if x_id == last:
            groups[-1].append(name)
        else:
            groups.append([name])
        last = x_id
    return groups


def _by_id(block, m_id):
    for m in block.modules():
        if id(m) == m_id:
            return m
    raise KeyError(m_id)


def _progress_factory(enabled):
    def progress(it, desc, leave=False):
        if not enabled:
            return it
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return it
        return tqdm(it, desc=desc, leave=leave)
    return progress


@torch.no_grad()
def gptq_model(model: nn.Module, calib: torch.Tensor, scheme: str = "w4a16", group_size: "int | None" = 128,
               act_order: bool = False, sym: bool = False, percdamp: float = 0.01, block_size: int = 128,
               mse: bool = False, batch_size: int = 8, skip=(), matches=None, true_sequential: bool = True,
               progress: bool = True, log: "dict | None" = None) -> nn.Module:
    """Quantize every nn.Linear inside the model's transformer blocks with GPTQ, in place.

    calib: LongTensor [n, seqlen] of token ids. skip / matches: names to leave in float and the
    name matcher (model.quantize passes its own). true_sequential=False collects every group's
    Hessian from the block's float outputs in one pass (the paper's original setting).
    log: if a dict, gets per-layer info (damp used, GPTQ loss, seconds)."""
    s = get_scheme(scheme)
    prog = _progress_factory(progress)
    prefix, blocks = find_blocks(model)
    all_names = {id(m): n for n, m in model.named_modules()}
    data = capture_inputs(model, blocks, calib, batch_size, prog)
    for bi in prog(range(len(blocks)), f"GPTQ {s.name} blocks", leave=True):
        block = blocks[bi]
        lin = {id(m): n for n, m in block.named_modules()
               if isinstance(m, nn.Linear) and not (matches and matches(f"{prefix}.{bi}.{n}" if n else "", skip))}
        if not lin:
            data = [(_run(block, x, kw), kw) for x, kw in data]
            continue
        mods = {n: block.get_submodule(n) for n in lin.values()}
        groups = sequential_groups(block, data[0][0], data[0][1], lin)
        if not true_sequential:  # all Hessians from the float block, one pass
            groups = [[n for g in groups for n in g]]
        results = {}
        replay = _Replay(block, [n for g in groups for n in g])
        for grp in groups:
            hess = _collect(block, data, [mods[n] for n in grp], stop_at_last=true_sequential, replay=replay)
            for n in grp:
                t = time.time()
                m = mods[n]
                gs = resolve_group_size(s, group_size, m.in_features)
                codes, scales, zeros, info = gptq_quantize(m.weight, hess[n].H, s, gs, act_order=act_order, sym=sym,
                                                           percdamp=percdamp, block_size=block_size, mse=mse)
                q = QLinear.from_codes(codes, scales, zeros, m.bias, s.name, group_size)
                m.weight.copy_(q.dequantize().to(m.weight.dtype))  # later groups see the quantized layer
                results[n] = q
                if log is not None:
                    log[f"{prefix}.{bi}.{n}"] = dict(damp=info["damp"], loss=info["loss"], seconds=time.time() - t)
            replay.done(grp)
        outs = []
        for b, (x, kw) in enumerate(data):  # the quantized block's outputs
            replay.batch = b
            outs.append((_run(block, x, kw), kw))
        replay.close()
        data = outs
        for n, q in results.items():
            _set(block, n, q)
    return model


class _Replay:
    """Saves recomputation in the true-sequential passes. Once every linear inside a direct child
    of the block (LLaMA: self_attn after o_proj) is quantized, that child's output no longer
    changes (its input comes from the already final part of the block, since groups are done in
    call order), so it is computed once more, stored per batch, and replayed in the later passes.
    Only children that contain linears are cached (norms are cheap)."""

    def __init__(self, block, order):
        self.block, self.order, self.finished, self.batch = block, order, set(), 0
        self.children = {}
        for cname, child in block.named_children():
            lin = {f"{cname}.{n}" if n else cname for n, m in child.named_modules() if isinstance(m, nn.Linear)}
            if lin:
                self.children[cname] = (child, lin)
        self.cache, self.patched = {}, []

    def done(self, group):
        self.finished.update(group)
        prefix = set(self.order[:max(self.order.index(n) for n in self.finished) + 1])
        for cname, (child, lin) in self.children.items():
            if cname not in self.cache and lin <= self.finished and lin <= prefix:
                self.cache[cname] = {}
                child.forward = self._wrap(cname, child.forward)
                self.patched.append(child)

    def _wrap(self, cname, fwd):
        store = self.cache[cname]

        def forward(*args, **kwargs):
            if self.batch not in store:
                store[self.batch] = fwd(*args, **kwargs)
            return store[self.batch]
        return forward

    def close(self):
        for child in self.patched:
            del child.forward  # back to the class's forward
        self.cache.clear()
        self.patched.clear()


def _collect(block, data, members, stop_at_last, replay=None):
    """Run the block on every batch and return {name: Hessian} for the member linears. Members
    called on the same input tensor share one X^T X product per batch (q/k/v: one product, not
    three). With stop_at_last the forward ends at the last member's input: the rest of the
    block is not needed yet."""
    names = {m: n for n, m in block.named_modules()}
    acc = {names[m]: Hessian(m.in_features, m.weight.device) for m in members}
    cache = {}

    def make(m):
        def hook(module, args):
            x = args[0]
            if id(x) not in cache:  # (x itself is kept so the id stays unique during the pass)
                x2 = x.detach().reshape(-1, x.shape[-1]).float()
                cache[id(x)] = (x2.t() @ x2, x2.shape[0], x)
            xtx, rows, _ = cache[id(x)]
            acc[names[m]].add_xtx(xtx, rows)
            if stop_at_last and module is members[-1]:
                raise _Stop
        return hook

    hooks = [m.register_forward_pre_hook(make(m)) for m in members]
    try:
        for b, (x, kw) in enumerate(data):
            cache.clear()
            if replay is not None:
                replay.batch = b
            try:
                _run(block, x, kw)
            except _Stop:
                pass
    finally:
        for h in hooks:
            h.remove()
        cache.clear()
    return acc


def _set(block, name, module):
    parent, _, child = name.rpartition(".")
    setattr(block.get_submodule(parent) if parent else block, child, module)
