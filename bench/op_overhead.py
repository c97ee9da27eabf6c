"""Per-call overhead of lowbit's Python entry points on a tiny shape (64x64, one token), where the
kernel itself takes ~2 us: lowbit.ops.linear (direct kernel call in eager mode), the same under
torch.inference_mode, torch.ops.lowbit.linear (through the torch.library dispatcher, what
torch.compile traces) and the bare compiled call lowbit._C.linear. Writes
bench/results/op_overhead.md.

    python bench/op_overhead.py
"""
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


def main():
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
    lines = ["# Per-call overhead of lowbit's entry points", "",
             f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; command: `python bench/op_overhead.py`",
             f"- machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"lowbit ISA {lowbit._C.cpu_isa()}, 1-minute load average {os.getloadavg()[0]:.2f}",
             "- w4a8, N = K = 64, one token (the kernel itself is a few us); median of 5 rounds of 3000 calls", "",
             "| entry point | us per call |", "|---|---|"] + [f"| {n} | {t:.1f} |" for n, t in rows]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    open(OUT, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
