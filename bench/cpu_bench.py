"""CPU microbenchmark of lowbit's kernels against torch fp32 / bf16 matmul, in one run.

    python bench/cpu_bench.py            # full sweep (about 6 min on 2 cores)
    python bench/cpu_bench.py --quick    # 4096x4096 and 576x1536 only, M in {1, 512} (< 1 min)
    python bench/cpu_bench.py --isa avx2 --shapes 4096x4096   # the 256-bit kernels -> cpu_avx2_partial.*

For every (N, K) shape, token count M and scheme it reports the median time of
lowbit's kernels called as QLinear calls them on a CPU (ops.CpuLinear: the weight checked once,
x per call; given the CPU layout where the active kernels read one), the GB/s
of weight bytes read that implies (codes + scales + zeros; ternary on AVX-512: its CPU layout, base-3 words
of 1.78 bits a weight, + scales), the
fraction of this machine's DRAM read bandwidth (measured in the same run) and the speedup over
torch's dense fp32 and bf16 matmul of the same shape, timed in interleaved rounds. Weights (ours
and torch's) are rotated through more than 256 MiB of distinct copies, so no call finds its
weight in the L3 cache. Writes bench/results/cpu.json, cpu.md and cpu.png.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

import lowbit
from lowbit import formats, ops

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
ROTATE_BYTES = 288 << 20  # > 256 MiB of distinct weights, well past the 32 MiB L3
SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008), (576, 576), (1536, 576), (576, 1536)]  # (N, K)
MS = [1, 8, 64, 512]
MIN_REPS = 3  # --quick: 2
GROUP = {"w4a16": 128, "w3a16": 128}  # the schemes' defaults; the rest are per-channel


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def samples(fn, n_copies, budget_s, min_reps, state, max_reps=200):
    """Times (s) of fn(i) over calls that rotate i through the copies, for about budget_s."""
    times, start = [], time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget_s and len(times) < max_reps):
        i = state[0] = (state[0] + 1) % n_copies
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return times


def paired_medians(fns, budget_s, rounds=8):
    """Median seconds of each (fn, n_copies, label[, calls per round]) in fns, measured in
    interleaved rounds (A B C A B C ...) so that a slow spell of this shared VM (neighbours'
    memory traffic) hits the baseline and the kernel alike instead of skewing their ratio.
    8 rounds, not 4: with 4, a spell of ~0.1 s could still fall on one side's slots only (a
    576x576 M=512 row read 2.5 ms in one sweep and 1.1-1.3 ms in A/B runs of the same code)."""
    out = [[] for _ in fns]
    states = [[0] for _ in fns]
    for fn, *_ in fns:
        fn(0)  # warm up (thread pool, allocator)
    for _ in range(rounds):
        for k, (fn, n, _, *per_round) in enumerate(fns):
            if per_round:
                out[k] += samples(fn, n, 0.0, per_round[0], states[k])
            else:
                out[k] += samples(fn, n, budget_s / rounds, max(1, MIN_REPS // 2), states[k])
    return [statistics.median(t) for t in out]


class DramBandwidth:
    """The machine's DRAM read speed: GB/s of a torch sum over a 1 GiB float32 buffer. This VM's
    bandwidth drifts by 20-50% within minutes (neighbours), so besides a first measurement
    (median of 7) every one-token row measures it again in its own interleaved rounds, and its
    'of BW' is relative to that (probes keeps them all for the header)."""
    BYTES = 1 << 30

    def __init__(self):
        self.buf = torch.ones(self.BYTES // 4)
        self.buf.sum()
        ts = []
        for _ in range(7):
            t0 = time.perf_counter()
            self.buf.sum()
            ts.append(time.perf_counter() - t0)
        self.first = self.BYTES / statistics.median(ts) / 1e9
        self.probes = []

    def probe(self):
        """An entry for paired_medians: one 1 GiB sum per round."""
        return (lambda i: self.buf.sum(), 1, "dram", 1)


def copies_for(nbytes):
    return max(2, -(-ROTATE_BYTES // max(nbytes, 1)))


def make_weights(scheme, N, K, gen):
    s = formats.SCHEMES[scheme]
    gs = formats.resolve_group_size(s, GROUP.get(scheme, -1), K)
    codes = torch.randint(0, s.max_code + 1, (N, K), generator=gen, dtype=torch.int32)
    G = formats.num_groups(K, gs)
    qweight = formats.pack(codes, s)
    scales = (torch.rand(N, G, generator=gen) * 0.01 + 0.001).half()
    zeros = torch.randint(0, s.max_code + 1, (N, G), generator=gen).to(torch.uint8) if s.has_zeros else None
    nbytes = qweight.numel() + scales.numel() * 2 + (zeros.numel() if zeros is not None else 0)
    if scheme == "ternary" and ops.cpu_layout_used(scheme):  # its kernel reads the CPU layout (8/9 the codes' size) and the scales
        nbytes = ops.cpu_layout_bytes(scheme, N, K, gs) + scales.numel() * 2
    n = copies_for(nbytes)
    copies = []
    for _ in range(n):
        q, sc, z = qweight.clone(), scales.clone(), None if zeros is None else zeros.clone()
        # What QLinear passes on a CPU: the CPU layout where the active kernels read one (same bytes, own copy).
        layout = ops.prepack_cpu(q, sc, z, scheme, K, gs) if ops.cpu_layout_used(scheme) else None
        copies.append((q, sc, z, layout, ops.CpuLinear(q, sc, z, None, scheme, K, gs, layout)))
    return copies, gs, nbytes


def bench_shape(N, K, schemes, ms, budget, gen, bw):
    rows = []
    dense = {}
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.randn(N, K, generator=gen).to(dtype)
        dense[dtype] = [w.clone() for _ in range(copies_for(w.numel() * w.element_size()))]
        del w
    for scheme in schemes:
        copies, gs, nbytes = make_weights(scheme, N, K, gen)
        for M in ms:
            x = torch.randn(M, K, generator=gen)
            xb = x.bfloat16()
            wf, wb = dense[torch.float32], dense[torch.bfloat16]
            fns = [(lambda i: copies[i][4](x), len(copies), "lowbit"),
                   (lambda i: torch.nn.functional.linear(x, wf[i]), len(wf), "fp32"),
                   (lambda i: torch.nn.functional.linear(xb, wb[i]), len(wb), "bf16")]
            if M == 1:  # memory-bound: its bandwidth fraction matters, so measure the bandwidth beside it
                fns.append(bw.probe())
            t, tf, tb, *tbw = paired_medians(fns, budget)
            row_bw = DramBandwidth.BYTES / tbw[0] / 1e9 if tbw else bw.first
            if tbw:
                bw.probes.append(row_bw)
            gbs = nbytes / t / 1e9
            rows.append(dict(N=N, K=K, M=M, scheme=scheme, group_size=gs, ms=t * 1e3, weight_bytes=nbytes,
                             gbps=gbs, dram_gbps=row_bw, bw_frac=gbs / row_bw, torch_fp32_ms=tf * 1e3,
                             torch_bf16_ms=tb * 1e3, speedup_fp32=tf / t, speedup_bf16=tb / t))
            r = rows[-1]
            print(f"{N:>6}x{K:<6} M={M:<4} {scheme:8} {r['ms']:9.3f} ms {gbs:6.1f} GB/s ({r['bw_frac']:4.0%} of {row_bw:.1f})"
                  f"  x{r['speedup_fp32']:6.2f} vs fp32  x{r['speedup_bf16']:6.2f} vs bf16", flush=True)
        del copies
    del dense
    return rows


def write_markdown(path, meta, rows):
    lines = ["# lowbit CPU kernels vs torch dense matmul", "",
             f"- date: {meta['date']}", f"- command: `{meta['command']}`", f"- machine: {meta['cpu']}, "
             f"{meta['threads']} threads, ISA {meta['isa']}, torch {meta['torch']}",
             f"- measured DRAM read bandwidth (torch sum over 1 GiB): {meta['dram_gbps']:.1f} GB/s at the start; "
             f"measured again beside every one-token row: median {meta['dram_gbps_median']:.1f}, range "
             f"{meta['dram_gbps_min']:.1f}-{meta['dram_gbps_max']:.1f} GB/s",
             f"- 1-minute load average at start / end: {meta.get('loadavg_1min_start', float('nan')):.2f} / "
             f"{meta.get('loadavg_1min_end', float('nan')):.2f}; run took {meta['elapsed_s'] / 60:.1f} min"
             + (f"; note: {meta['note']}" if meta.get("note") else ""),
             "- weights rotated through > 256 MiB of copies (nothing from L3); median times",
             "- GB/s: weight bytes read per second (codes + scales + zeros; ternary where the kernels read its CPU layout (AVX-512): the layout, 1.78 bits a weight, + scales); 'of BW': fraction of the "
             "bandwidth measured in the same interleaved rounds as the row (M = 1 rows; other rows: of the "
             "first measurement)", "- speedup: torch fp32 (bf16) F.linear time / lowbit time, same shape, same run; lowbit: the call QLinear "
             "makes on a CPU (ops.CpuLinear: weight checked once, x per call, the CPU layout where the kernels read one)",
             "", "| N x K | M | scheme | ms | GB/s | DRAM GB/s | of BW | vs fp32 | vs bf16 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['N']}x{r['K']} | {r['M']} | {r['scheme']} | {r['ms']:.3f} | {r['gbps']:.1f} | "
                     f"{r.get('dram_gbps', meta['dram_gbps']):.1f} | {r['bw_frac']:.0%} | {r['speedup_fp32']:.2f}x | "
                     f"{r['speedup_bf16']:.2f}x |")
    dense = {}
    for r in rows:
        dense.setdefault((r["N"], r["K"], r["M"]), (r["torch_fp32_ms"], r["torch_bf16_ms"]))
    lines += ["", "Dense baselines (ms; medians of the rounds interleaved with each scheme's row, first scheme "
              "shown):", "", "| N x K | M | torch fp32 | torch bf16 |", "|---|---|---|---|"]
    for (N, K, M), (f, b) in dense.items():
        lines.append(f"| {N}x{K} | {M} | {f:.3f} | {b:.3f} |")
    open(path, "w").write("\n".join(lines) + "\n")


def plot(path, rows, schemes):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ms = sorted({r["M"] for r in rows})
    shapes = list(dict.fromkeys((r["N"], r["K"]) for r in rows))
    fig, axes = plt.subplots(1, len(ms), figsize=(4.5 * len(ms), 4), squeeze=False)
    width = 0.8 / len(shapes)
    for ax, M in zip(axes[0], ms):
        for si, (N, K) in enumerate(shapes):
            vals = [next((r["speedup_fp32"] for r in rows if r["M"] == M and r["N"] == N and r["K"] == K
                          and r["scheme"] == s), 0) for s in schemes]
            ax.bar([i + si * width for i in range(len(schemes))], vals, width, label=f"{N}x{K}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(schemes))], schemes, rotation=60)
        ax.set_title(f"M = {M}")
        ax.set_ylabel("speedup vs torch fp32")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="two shapes, M in {1, 512}: under a minute")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--schemes", default=",".join(formats.SCHEMES))
    ap.add_argument("--note", default="", help="a remark stored with the results (e.g. what else ran)")
    ap.add_argument("--isa", default=None, help="force a kernel table (avx2: 256-bit, avx512); results go to "
                    "cpu_<isa>.{json,md,png} so the widths can be compared (Zen 4 double-pumps 512-bit ops)")
    ap.add_argument("--shapes", default=None, help="NxK,NxK,... instead of the default list (results go to "
                    "cpu_partial.*, or cpu_<isa>_partial.*)")
    ap.add_argument("--stem", default=None, help="name the result files STEM.{json,md,png} (e.g. one per "
                    "machine) instead of the default cpu / cpu_quick / cpu_<isa> / *_partial")
    args = ap.parse_args()
    if lowbit._C.cpu_isa() == "scalar":
        # The scalar reference is an oracle, not a kernel to time: M=512 would take hours. Most
        # likely a build without SIMD kernels is installed (reinstall from this tree).
        sys.exit(f"lowbit runs its scalar kernels here (have {lowbit._C.cpu_isa_supported()}; "
                 f"from {lowbit.__file__}); install a build with the AVX2/AVX-512 kernels")
    if args.isa:
        lowbit.set_cpu_isa(args.isa)
    torch.set_num_threads(args.threads)
    lowbit.set_num_threads(args.threads)
    schemes = args.schemes.split(",")
    shapes = [(4096, 4096), (576, 1536)] if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in sh.split("x")) for sh in args.shapes.split(",")]
    ms = [1, 512] if args.quick else MS
    budget = 0.1 if args.quick else 0.6
    global MIN_REPS
    MIN_REPS = 2 if args.quick else 3
    gen = torch.Generator().manual_seed(0)
    load0 = os.getloadavg()[0]  # recorded: a busy machine makes every number here meaningless
    bw = DramBandwidth()
    print(f"DRAM read bandwidth: {bw.first:.1f} GB/s; lowbit ISA {lowbit._C.cpu_isa()}, {args.threads} threads")
    t0 = time.time()
    rows = []
    for N, K in shapes:
        rows += bench_shape(N, K, schemes, ms, budget, gen, bw)
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"),
                command="python " + " ".join(["bench/cpu_bench.py"] + sys.argv[1:]), cpu=cpu_name(),
                threads=args.threads, isa=lowbit._C.cpu_isa(), torch=torch.__version__, dram_gbps=bw.first,
                dram_gbps_median=statistics.median(bw.probes or [bw.first]),
                dram_gbps_min=min(bw.probes or [bw.first]), dram_gbps_max=max(bw.probes or [bw.first]),
                lowbit=lowbit.backend_info(), elapsed_s=time.time() - t0,
                loadavg_1min_start=load0, loadavg_1min_end=os.getloadavg()[0], note=args.note)
    os.makedirs(OUT, exist_ok=True)
    # Only the full default sweep writes cpu.*: a partial one (--quick, --isa, --shapes, fewer
    # --schemes) goes to its own files rather than replace the table README links.
    stem = "cpu_quick" if args.quick else "cpu" if not args.isa else "cpu_" + args.isa
    if args.shapes or schemes != list(formats.SCHEMES):
        stem += "_partial"
    stem = args.stem or stem
    json.dump(dict(meta=meta, rows=rows), open(os.path.join(OUT, stem + ".json"), "w"), indent=1)
    write_markdown(os.path.join(OUT, stem + ".md"), meta, rows)
    plot(os.path.join(OUT, stem + ".png"), rows, schemes)
    print(f"wrote {OUT}/{stem}.{{json,md,png}} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
