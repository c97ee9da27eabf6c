"""`lowbit bench --device cuda`: lowbit's CUDA kernels against torch bf16 F.linear, in one run.

For each weight shape N x K (default: the linear layers of LLaMA-7B and LLaMA-70B), scheme and
token count M it times QLinear.forward and torch.nn.functional.linear(x, W_bf16) the same way:

  * weights come from DRAM, not from the L2 cache: each timed callable walks through R copies of
    its weight (R copies >= 3 x L2, R <= 64), as a model's layers do, each read once per token;
  * one CUDA graph holds the R calls, so the time is the GPU's, not Python's or the launch
    queue's (a one-token GEMV takes a few microseconds, about what one kernel launch costs);
  * every graph replay is timed on its own with CUDA events; the median replay / R is reported.

Writes JSON (--out) and, with --report, a markdown table per shape, a summary of the targets and
a plot. `python -m lowbit.bench_cuda --from-json FILE --report FILE.md` redoes the report from a
saved JSON (write_report is a pure function of it).
"""
from __future__ import annotations

import argparse
import copy
import datetime
import functools
import json
import math
import os
import statistics
import subprocess
import sys

import torch
import torch.nn.functional as F

# (N, K), label: the linear layers of LLaMA-7B and LLaMA-70B (70B's k/v are GQA: 8 heads of 128).
SHAPES = [((4096, 4096), "7B qkvo"), ((11008, 4096), "7B gate/up"), ((4096, 11008), "7B down"),
          ((8192, 8192), "70B q/o"), ((1024, 8192), "70B k/v"), ((28672, 8192), "70B gate/up"),
          ((8192, 28672), "70B down")]
LABELS = dict(SHAPES)
M_VALUES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
QUICK_SHAPES = [(4096, 4096)]
QUICK_M = [1, 16, 4096]

L2_FACTOR = 3  # copies of a weight together hold >= 3 x L2, so none is still cached when reused
MAX_COPIES = 64
WARMUP_REPLAYS = 3
MIN_REPS = 5
MAX_REPS = 1000
BUDGET_MS = 100.0  # GPU time per measurement, estimated from the first timed replay
CHECK_ROWS = 64  # output rows compared with the reference (rows are independent)
# Output check against the same arithmetic in float32 (see check_output): its error is the bf16
# rounding of y, ~0.004; these bounds only catch a broken kernel.
TOL_WEIGHT_ONLY = 0.1
TOL_ACT_QUANT = 0.3


def label_for(N: int, K: int) -> str:
    return LABELS.get((N, K), f"{N}x{K}")


def copies_for(nbytes: int, l2_bytes: int) -> int:
    """How many copies of an nbytes weight the timed graph walks through: together >= 3 x L2."""
    return max(1, min(MAX_COPIES, math.ceil(L2_FACTOR * l2_bytes / max(nbytes, 1))))


def method_text(l2_bytes: int) -> str:
    return (f"Median per call over CUDA-graph replays, each replay timed on its own with a pair of CUDA "
            f"events. A graph calls the layer once per copy of its weight, R copies in turn, with R the "
            f"smallest count whose bytes reach {L2_FACTOR} x L2 ({L2_FACTOR} x {l2_bytes / 2**20:.0f} MiB; "
            f"R <= {MAX_COPIES}, see 'copies' per row), so every call reads its weight from DRAM as a "
            f"model's layers do, and the graph takes Python and the launch queue out of the time; "
            f"time per call = median replay / R. The input x [M, K] bf16 is shared by the R calls (it "
            f"stays in L2, like activations). {WARMUP_REPLAYS} warm-up replays, then at least {MIN_REPS} "
            f"timed replays, more up to about {BUDGET_MS / 1e3:.1f} s of GPU time. The baseline "
            f"torch.nn.functional.linear(x, W_bf16) is timed the same way, in the same run, on the same x "
            f"and shape. Weights: randn * 0.02 in bf16, quantized by round-to-nearest with each scheme's "
            f"default group size. speedup = bf16 time / lowbit time; GB/s = packed weight bytes (codes + "
            f"scales + zeros) / time; TFLOP/s = 2 M N K / time. Each row's output is checked against "
            f"the same arithmetic in float32 (dequantized weight, activations quantized as the scheme "
            f"does) on its first {CHECK_ROWS} rows.")


# -- measurement (needs a GPU) ----------------------------------------------------------------------

def time_calls(calls) -> tuple[float, int]:
    """(microseconds per call, timed replays) of running calls in order, as one CUDA graph."""
    # Warm-up on a side stream before capture, as torch.cuda.graphs' docs require (lazy init,
    # cuBLAS workspaces, allocator); one pass also touches every weight copy once.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()  # outputs are dropped: the graph's pool reuses their memory
    for _ in range(WARMUP_REPLAYS):
        graph.replay()

    def timed_replay():
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        return start, end

    events = [timed_replay()]
    torch.cuda.synchronize()
    first_ms = events[0][0].elapsed_time(events[0][1])
    reps = max(MIN_REPS, min(MAX_REPS, int(BUDGET_MS / max(first_ms, 1e-3))))
    events += [timed_replay() for _ in range(reps - 1)]
    torch.cuda.synchronize()
    ms = statistics.median(s.elapsed_time(e) for s, e in events)
    del graph
    return ms * 1e3 / len(calls), reps


def packed_bytes(q) -> int:
    return sum(b.numel() * b.element_size() for b in (q.qweight, q.scales, q.zeros) if b is not None)


def check_output(q, W: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """Relative error (Frobenius) of y = q(x) on its first CHECK_ROWS rows against the same
    arithmetic in float32: the weight lowbit stores (W = q.dequantize()) and, for schemes that quantize
    activations, x quantized per token by lowbit's CPU reference. Against the unquantized bf16
    weight the error is the quantization's own, which crosses the bounds with a correct kernel
    (randn weights 1024x4096, CPU kernels: w4a16 0.10, w3a16 0.21, w3a3 0.54, ternary 0.51,
    binary 0.60), so it could not tell a broken kernel from a coarse scheme."""
    import lowbit
    s = lowbit.SCHEMES[q.scheme]
    xs = x[:CHECK_ROWS]
    if s.compute == "weight_only":
        a = xs.float()
    else:
        qa, sa = lowbit.ops.quantize_act(xs.cpu(), s.abits)
        a = (qa.float() * sa.unsqueeze(-1)).to(x.device)
    ref = F.linear(a, W)
    return ((y[:CHECK_ROWS].float() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def tolerance(scheme: str) -> float:
    import lowbit
    return TOL_WEIGHT_ONLY if lowbit.SCHEMES[scheme].compute == "weight_only" else TOL_ACT_QUANT


def print_row(r: dict, header: bool = False):
    if header:
        print(f"{'scheme':<8} {'layer':<11} {'N':>6} {'K':>6} {'M':>5} {'R':>3} {'us':>10} {'bf16 us':>10} "
              f"{'speedup':>8} {'GB/s':>7} {'TFLOP/s':>8} {'rel err':>8}", flush=True)
    if r["scheme"] == "bf16":  # a baseline measurement
        print(f"{'bf16':<8} {r['label']:<11} {r['N']:>6} {r['K']:>6} {r['M']:>5} {r['copies']:>3} {'':>10} "
              f"{r['bf16_us']:>10.1f}", flush=True)
        return
    flag = "" if r["check_ok"] else f"  BAD OUTPUT (> {tolerance(r['scheme'])})"
    print(f"{r['scheme']:<8} {r['label']:<11} {r['N']:>6} {r['K']:>6} {r['M']:>5} {r['copies']:>3} {r['us']:>10.1f} "
          f"{r['bf16_us']:>10.1f} {r['speedup']:>7.2f}x {r['gbps']:>7.0f} {r['tflops']:>8.2f} "
          f"{r['rel_err']:>8.1e}{flag}", flush=True)


def machine() -> dict:
    import lowbit
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        driver = None
    return {"gpu": torch.cuda.get_device_name(0), "driver": driver, "cuda": torch.version.cuda,
            "torch": torch.__version__, "sm_count": props.multi_processor_count, "l2_bytes": props.L2_cache_size,
            "memory_bytes": props.total_memory, "lowbit": lowbit.backend_info()}


@torch.no_grad()
def bench_shape(N: int, K: int, schemes, ms, l2: int) -> list[dict]:
    from torch import nn
    from . import QLinear
    label = label_for(N, K)
    w = (torch.randn(N, K, device="cuda") * 0.02).bfloat16()
    xs = {M: torch.randn(M, K, device="cuda", dtype=torch.bfloat16) for M in ms}
    # The baseline first, for every M; only its times are kept, and serve every scheme's row.
    R16 = copies_for(w.numel() * w.element_size(), l2)
    ws = [w] + [w.clone() for _ in range(R16 - 1)]
    bf16_us = {}
    for M in ms:
        bf16_us[M], _ = time_calls([functools.partial(F.linear, xs[M], wi) for wi in ws])
        print_row(dict(scheme="bf16", label=label, N=N, K=K, M=M, copies=R16, bf16_us=bf16_us[M]))
    del ws
    torch.cuda.empty_cache()

    lin = nn.Linear(K, N, bias=False, device="meta")
    lin.weight = nn.Parameter(w, requires_grad=False)
    rows = []
    for scheme in schemes:
        # One scheme's copies at a time: all of them for 70B gate/up would not fit beside the rest.
        q = QLinear.from_linear(lin, scheme).cuda()
        nbytes = packed_bytes(q)
        R = copies_for(nbytes, l2)
        layers = [q] + [copy.deepcopy(q) for _ in range(R - 1)]
        W = q.dequantize()  # float32, for the output check
        for M in ms:
            x = xs[M]
            err = check_output(q, W, x, q(x))
            us, reps = time_calls([functools.partial(layer, x) for layer in layers])
            rows.append(dict(scheme=scheme, label=label, N=N, K=K, M=M, us=us, bf16_us=bf16_us[M],
                             speedup=bf16_us[M] / us, gbps=nbytes / (us * 1e-6) / 1e9,
                             tflops=2 * M * N * K / (us * 1e-6) / 1e12, weight_bytes=nbytes, copies=R,
                             bf16_copies=R16, reps=reps, rel_err=err, check_ok=bool(err < tolerance(scheme))))
            print_row(rows[-1])
        del layers, q, W
        torch.cuda.empty_cache()
    del lin, w, xs
    torch.cuda.empty_cache()
    return rows


def _write_json(result: dict, path: str):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)


def run_sweep(args) -> int:
    """`lowbit bench --device cuda`: measure, write the JSON (args.out) and the report (args.report)."""
    from .bench import command_line
    shapes = args.shapes or (QUICK_SHAPES if args.quick else [s for s, _ in SHAPES])
    ms = args.m or (QUICK_M if args.quick else M_VALUES)
    info = machine()
    l2 = info["l2_bytes"]
    print(f"lowbit bench on {info['gpu']} ({info['sm_count']} SMs, L2 {l2 / 2**20:.0f} MiB), CUDA {info['cuda']}, "
          f"torch {info['torch']}", flush=True)
    torch.manual_seed(0)
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "command": command_line(),
              "machine": info, "method": method_text(l2), "schemes": list(args.schemes),
              "shapes": [dict(label=label_for(N, K), N=N, K=K) for N, K in shapes], "m": list(ms),
              "complete": False, "rows": []}
    for i, (N, K) in enumerate(shapes):
        result["rows"] += bench_shape(N, K, args.schemes, ms, l2)
        result["complete"] = i == len(shapes) - 1
        _write_json(result, args.out)  # after every shape: a long sweep cut short keeps what it measured
    bad = [r for r in result["rows"] if not r["check_ok"]]
    if bad:
        print(f"WARNING: {len(bad)} row(s) failed the output check (BAD OUTPUT above): their times are of a "
              f"wrong result", flush=True)
    print(f"wrote {args.out}")
    if args.report:
        write_report(result, args.report)
        print(f"wrote {args.report}")
    return 0


# -- report (a pure function of the JSON; no GPU) -----------------------------------------------------

def _shapes(result):
    return result.get("shapes") or [dict(label=l, N=N, K=K) for l, N, K in
                                     dict.fromkeys((r["label"], r["N"], r["K"]) for r in result["rows"])]


def _schemes(result):
    return result.get("schemes") or list(dict.fromkeys(r["scheme"] for r in result["rows"]))


def _x(v: float, ok: bool = True) -> str:
    # 2 decimals ("3.41x"); 3 significant digits below 0.1 so that slow kernels still compare.
    return (f"{v:.2f}x" if v >= 0.1 else f"{v:.3g}x") + ("" if ok else "!")  # !: failed its output check


def targets(result: dict) -> list[dict]:
    """The target lines of the report: for each (scheme, M) target and for each scheme over every
    M, the minimum speedup over the shapes, where it is, and the value per shape."""
    rows, shapes = result["rows"], _shapes(result)
    out = []
    wanted = [("w4a16", 1), ("w4a16", 16), ("w3a16", 1), ("ternary", 1), ("w8a8", 4096), ("w4a4", 4096)]
    wanted += [(s, None) for s in _schemes(result)]  # None: the minimum over every M
    for scheme, M in wanted:
        per_shape = []
        for sh in shapes:
            cand = [r for r in rows if r["scheme"] == scheme and r["N"] == sh["N"] and r["K"] == sh["K"]
                    and (M is None or r["M"] == M)]
            if cand:
                worst = min(cand, key=lambda r: r["speedup"])
                per_shape.append(dict(label=sh["label"], M=worst["M"], speedup=worst["speedup"],
                                      check_ok=worst["check_ok"]))
        worst = min(per_shape, key=lambda p: p["speedup"]) if per_shape else None
        out.append(dict(scheme=scheme, M=M, min=worst, per_shape=per_shape))
    return out


def report_markdown(result: dict, plot_name: "str | None" = None) -> str:
    m = result["machine"]
    schemes = _schemes(result)
    lines = ["# lowbit CUDA kernels vs torch bf16 F.linear", "",
             f"- date: {result['date']}",
             f"- device: {m['gpu']}, {m['sm_count']} SMs, L2 {m['l2_bytes'] / 2**20:.0f} MiB; driver "
             f"{m.get('driver') or '?'}, CUDA {m['cuda']}, torch {m['torch']}, lowbit {m['lowbit'].get('version')}",
             f"- command: `{result['command']}`", "", result["method"], ""]
    if result.get("complete") is False:
        lines += ["**Incomplete: the run stopped before its last shape; only the shapes below were measured.**", ""]
    if any(not r["check_ok"] for r in result["rows"]):
        lines += ["**Some rows failed the output check (marked `!`): their kernel gave a wrong result, so their "
                  "times mean nothing.**", ""]
    if plot_name:
        lines += [f"![speedup vs bf16]({plot_name})", ""]
    lines += ["Cells: speedup over torch bf16 F.linear (bf16 time / lowbit time), same shape and x, same run.", ""]
    for sh in _shapes(result):
        rows = [r for r in result["rows"] if r["N"] == sh["N"] and r["K"] == sh["K"]]
        if not rows:
            continue
        cell = {(r["M"], r["scheme"]): r for r in rows}
        lines += [f"## {sh['label']}: N x K = {sh['N']} x {sh['K']}", "",
                  "| M | bf16 us | " + " | ".join(schemes) + " |", "|---:" * (len(schemes) + 2) + "|"]
        for M in sorted({r["M"] for r in rows}):
            bf16 = next(r["bf16_us"] for r in rows if r["M"] == M)
            cells = [_x(cell[M, s]["speedup"], cell[M, s]["check_ok"]) if (M, s) in cell else "-" for s in schemes]
            lines.append(f"| {M} | {bf16:.1f} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Targets", "", "Minimum speedup over the shapes measured, where it occurs, and each shape's value "
              "(for 'every M': each shape's minimum over M, at that M).", "",
              "| scheme | M | min | where | per shape |", "|---|---|---:|---|---|"]
    for t in targets(result):
        M = "every M" if t["M"] is None else str(t["M"])
        if t["min"] is None:
            lines.append(f"| {t['scheme']} | {M} | - | not measured | |")
            continue
        w = t["min"]
        where = w["label"] + ("" if t["M"] is not None else f", M={w['M']}")
        per = ", ".join(f"{p['label']} {_x(p['speedup'], p['check_ok'])}" + ("" if t["M"] is not None else f" (M={p['M']})")
                        for p in t["per_shape"])
        lines.append(f"| {t['scheme']} | {M} | {_x(w['speedup'], w['check_ok'])} | {where} | {per} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> bool:
    """Speedup vs M, one subplot per shape; False (with a note) when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("note: matplotlib is not installed; no plot (pip install matplotlib)")
        return False
    shapes = [sh for sh in _shapes(result) if any(r["N"] == sh["N"] and r["K"] == sh["K"] for r in result["rows"])]
    cols = min(4, len(shapes))
    nrows = math.ceil(len(shapes) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.8 * nrows), squeeze=False)
    for ax, sh in zip(axes.flat, shapes):
        for s in _schemes(result):
            pts = sorted((r["M"], r["speedup"]) for r in result["rows"]
                         if r["scheme"] == s and r["N"] == sh["N"] and r["K"] == sh["K"])
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=s)
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.axhline(0.9, color="gray", ls="--", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}x" if f"{v:.0e}"[0] in "235" else ""))
        ax.set_title(f"{sh['label']} ({sh['N']}x{sh['K']})", fontsize=10)
        ax.set_xlabel("M (tokens)")
        ax.set_ylabel("speedup vs bf16")
    for ax in list(axes.flat)[len(shapes):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"lowbit vs torch bf16 F.linear, {result['machine']['gpu']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(result: dict, path: str) -> str:
    """Write the markdown report of a sweep's JSON dict to path and its plot to path's stem +
    ".png" (when matplotlib is there); returns the markdown."""
    png = os.path.splitext(path)[0] + ".png"
    text = report_markdown(result, os.path.basename(png) if plot(result, png) else None)
    with open(path, "w") as f:
        f.write(text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lowbit.bench_cuda",
                                description="Write the markdown report (and plot) of a saved "
                                            "`lowbit bench --device cuda` JSON.")
    p.add_argument("--from-json", required=True, metavar="FILE", help="JSON written by lowbit bench --device cuda")
    p.add_argument("--report", required=True, metavar="FILE.md", help="markdown output; the plot goes beside it")
    args = p.parse_args(argv)
    with open(args.from_json) as f:
        result = json.load(f)
    write_report(result, args.report)
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
