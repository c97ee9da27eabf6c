"""Perplexity and speed of a causal language model: the measurements behind `lowbit eval`
and `lowbit demo`. The protocol is the one of ../shared/tools/reference_ppl.py: consecutive
non-overlapping windows of `seqlen` tokens from the start of the text, the loss of every
token but the first of each window, exp of the mean."""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F


def eval_windows(ids: torch.Tensor, n: int, seqlen: int) -> torch.Tensor:
    """The first n windows of seqlen tokens -> LongTensor [n, seqlen]; a clear error if the text
    is too short for what was asked."""
    if ids.numel() < n * seqlen:
        raise ValueError(f"text: has {ids.numel()} tokens, too short for {n} windows x {seqlen} tokens "
                         f"(need {n * seqlen}); give a longer text or fewer/shorter windows")
    return ids[: n * seqlen].view(n, seqlen)


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, batch_size: int = 4, progress: bool = True) -> float:
    nll, count = 0.0, 0
    batches = range(0, windows.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc="perplexity", unit="batch", leave=False)
    for i in batches:
        x = windows[i:i + batch_size]
        logits = model(input_ids=x, use_cache=False).logits[:, :-1].float()
        nll += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum").item()
        count += x[:, 1:].numel()
    return float(torch.exp(torch.tensor(nll / count)))


@torch.no_grad()
def prefill_tokens_per_s(model, ids: torch.Tensor, reps: int = 3) -> float:
    """Tokens per second of one forward pass over a [1, T] prompt (median of reps, after a warm-up)."""
    x = ids.view(1, -1)
    model(input_ids=x, use_cache=False)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model(input_ids=x, use_cache=False)
        times.append(time.perf_counter() - t0)
    return x.shape[1] / statistics.median(times)


@torch.no_grad()
def decode_tokens_per_s(model, ids: torch.Tensor, new_tokens: int = 32, reps: int = 2) -> float:
    """Greedy decoding with the KV cache, one token at a time after a short prompt: tokens per
    second of the decode steps alone (the prompt's forward pass is timed apart and removed)."""
    x = ids.view(1, -1)
    times = []
    for _ in range(reps + 1):  # the first run warms up
        t0 = time.perf_counter()
        out = model(input_ids=x, use_cache=True)
        t1 = time.perf_counter()
        past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(new_tokens):
            out = model(input_ids=tok, past_key_values=past, use_cache=True)
            past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        times.append(time.perf_counter() - t1)
        del t0
    return new_tokens / statistics.median(times[1:])
