#!/usr/bin/env python3
"""Perplexity of a saved lowbit SmolLM2 checkpoint (bench/quality.py --save) through lowbit's
kernels and through bench/quality.py's float simulation of the same arithmetic, on the first
--tokens tokens of the first eval window (the scalar reference kernels are slow on 2 cores).

  python bench/kernel_check.py /tmp/models/rptq4a4c32.lowbit.safetensors --tokens 128
"""
import argparse, json, os, sys, time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lowbit  # noqa: E402
import quality  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--data", default=quality.DATA)
    a = ap.parse_args()
    model, tok = quality.load_model()
    lowbit.load(model, a.checkpoint)
    ids = torch.tensor(tok(quality.read("pride_and_prejudice", a.data), add_special_tokens=False).input_ids)
    win = ids[: a.tokens].view(1, -1)
    with quality.packed_path(model):
        sim = quality.perplexity(model, win)
    t = time.time()
    ker = quality.perplexity(model, win, bs=1)
    print(json.dumps(dict(checkpoint=os.path.basename(a.checkpoint), tokens=a.tokens, ppl_kernels=round(ker, 4),
                          ppl_sim=round(sim, 4), kernel_s=round(time.time() - t, 1),
                          backend=lowbit.backend_info()["cpu_isa"])), flush=True)


if __name__ == "__main__":
    main()
