"""The CPU layout against the canonical format, per scheme and token count, in one run.

    python bench/layout_bench.py        # about 4 minutes on 2 cores
    python bench/layout_bench.py --schemes w4a8,w4a4 --stem cpu_layout_avx2   # a subset, another file
    python bench/layout_bench.py --static --schemes w4a8,w3a3 --stem cpu_layout_static   # RPTQ's path

For 4096x4096 and M in 1..4 (and 8 for ternary/binary) it times lowbit.ops.linear given the
CPU layout (what QLinear passes) and without it (the canonical kernels), and torch fp32
F.linear, in interleaved rounds with weights rotated through > 256 MiB of copies (as
bench/cpu_bench.py). It backs the choices written in csrc/cpu/avx512/layout_gemv.cpp and
addonly.cpp (up to how many tokens each path is used). Writes bench/results/cpu_layout.md.
--static times lowbit.ops.linear_static (RPTQ: 32 activation segments, per-channel weight scales)
instead, for the integer schemes with a layout (csrc/cpu/common/static_act.h).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

import torch

import lowbit
from lowbit import formats, ops

sys.path.insert(0, os.path.dirname(__file__))
from cpu_bench import GROUP, copies_for, cpu_name, paired_medians  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "results")
N = K = 4096


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schemes", default=",".join(ops.CPU_LAYOUT_SCHEMES), help="comma-separated subset")
    ap.add_argument("--stem", default="cpu_layout", help="write bench/results/STEM.md")
    ap.add_argument("--note", default="", help="a remark stored with the results")
    ap.add_argument("--static", action="store_true", help="time linear_static (RPTQ) instead of linear")
    args = ap.parse_args()
    schemes = [formats.get_scheme(n).name for n in args.schemes.split(",")]
    torch.set_num_threads(2)
    lowbit.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    load0 = os.getloadavg()[0]
    dense = [torch.randn(N, K, generator=gen) for _ in range(copies_for(N * K * 4))]
    rows = []
    for scheme in schemes:
        s = formats.SCHEMES[scheme]
        gs = formats.resolve_group_size(s, GROUP.get(scheme, -1), K)
        G = formats.num_groups(K, gs)
        codes = torch.randint(0, s.max_code + 1, (N, K), generator=gen, dtype=torch.int32)
        q = formats.pack(codes, s)
        sc = (torch.rand(N, G, generator=gen) * 0.01 + 0.001).half()
        z = torch.randint(0, s.max_code + 1, (N, G), generator=gen).to(torch.uint8) if s.has_zeros else None
        lay = ops.prepack_cpu(q, sc, z, scheme, K, gs)
        copies = [(q.clone(), sc.clone(), None if z is None else z.clone(), lay.clone())
                  for _ in range(copies_for(lay.numel()))]
        if args.static:  # 32 equal segments, zero points and scales as a calibration might give
            C = 32
            st = (torch.rand(C, generator=gen) * 0.1 + 0.02, torch.randint(0, 2 ** s.abits, (C,), generator=gen,
                  dtype=torch.int32), torch.linspace(K // C, K, C).to(torch.int32))

            def call(x, i, layout=None):
                return ops.linear_static(x, copies[i][0], copies[i][1], None, *st, scheme, K, gs, s.abits, layout)
        else:
            def call(x, i, layout=None):
                return ops.linear(x, *copies[i][:3], None, scheme, K, gs, layout)
        counts = (1, 2, 3, 4, 8) if args.static else (1, 2, 3, 4) + ((8,) if s.compute == "addonly" else ())
        for M in counts:
            x = torch.randn(M, K, generator=gen)
            t_lay, t_can, t32 = paired_medians([
                (lambda i: call(x, i, copies[i][3]), len(copies), "layout"),
                (lambda i: call(x, i), len(copies), "canonical"),
                (lambda i: torch.nn.functional.linear(x, dense[i]), len(dense), "fp32")], 0.5)
            rows.append((scheme, M, t_lay * 1e3, t_can * 1e3, t32 * 1e3))
            print(f"{scheme:8} M={M}: layout {t_lay * 1e3:.3f} ms  canonical {t_can * 1e3:.3f} ms  "
                  f"x{t_can / t_lay:.2f}  fp32 {t32 * 1e3:.3f} ms", flush=True)
        del copies
    op = "lowbit.ops.linear_static (RPTQ, 32 activation segments)" if args.static else "lowbit.ops.linear"
    lines = ["# CPU layout vs canonical format (4096x4096)" + (", RPTQ's static path" if args.static else ""), "",
             f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
             "- command: `python " + " ".join(["bench/layout_bench.py"] + sys.argv[1:]) + "`",
             f"- machine: {cpu_name()}, 2 threads, ISA {lowbit._C.cpu_isa()}, torch {torch.__version__}",
             f"- 1-minute load average at start / end: {load0:.2f} / {os.getloadavg()[0]:.2f}"
             + (f"; note: {args.note}" if args.note else ""),
             f"- median ms of {op} with the CPU layout and without it, and torch fp32, timed in "
             "interleaved rounds, weights rotated through > 256 MiB of copies", "",
             "| scheme | M | layout ms | canonical ms | canonical / layout | torch fp32 ms |", "|---|---|---|---|---|---|"]
    lines += [f"| {sc} | {M} | {a:.3f} | {b:.3f} | {b / a:.2f}x | {c:.3f} |" for sc, M, a, b, c in rows]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, args.stem + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote bench/results/{args.stem}.md")


if __name__ == "__main__":
    main()
