"""`lowbit bench`: time lowbit's kernels against dense torch matmul in the same run.

For each scheme, weight shape N x K and batch M: the median time of QLinear.forward, of torch
fp32 F.linear and of torch bf16 F.linear on the same shape, printed as a table and written
as JSON (with the machine, the command and the date). Speed claims come from runs like this.
For DRAM-honest numbers (weights rotated through more memory than the cache holds) see
bench/cpu_bench.py in the repository.

--device cuda runs the GPU sweep of lowbit.bench_cuda instead (LLaMA-7B/70B layers, M from 1 to
8192, weights from DRAM, CUDA-graph timing, against torch bf16; --report writes markdown + plot).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from . import SCHEMES, QLinear, backend_info

QUICK_SHAPES = [(1024, 1024)]
QUICK_M = [1, 16]
FULL_SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008), (576, 576), (1536, 576), (576, 1536)]
FULL_M = [1, 8, 64, 512]


def median_time(fn, min_reps=3, max_reps=50, budget_s=0.5) -> float:
    """Median wall time of fn() in seconds, after one warm-up call."""
    fn()
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < min_reps or (len(times) < max_reps and time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), **backend_info()}


def parse_shapes(text: str):
    try:
        return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shapes: expected NxK[,NxK...], got {text!r}") from None


def parse_ints(text: str):
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def parse_schemes(text: str):
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SCHEMES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown scheme(s) {', '.join(bad)}; choose from {', '.join(SCHEMES)}")
    return names


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: this table; cuda: the GPU sweep of lowbit.bench_cuda (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="one 1024x1024 shape, M in 1,16 (seconds); cuda: 4096x4096, M in 1,16,4096")
    p.add_argument("--schemes", type=parse_schemes, default=list(SCHEMES), help="comma-separated (default: all)")
    p.add_argument("--shapes", type=parse_shapes, default=None,
                   help="weight shapes NxK, comma-separated (default: LLaMA-7B and SmolLM2-135M layers; "
                        "cuda: LLaMA-7B and LLaMA-70B layers)")
    p.add_argument("--m", type=parse_ints, default=None,
                   help="batch sizes (tokens), default 1,8,64,512; cuda: powers of 2 from 1 to 8192")
    p.add_argument("--threads", type=int, default=None, help="threads for torch and lowbit (default: torch's)")
    p.add_argument("--out", default="lowbit-bench.json", help="JSON output file (default: %(default)s)")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="cuda only: markdown report (tables, targets) here, its plot beside it as .png")


def run(args) -> list[dict]:
    import lowbit
    if args.threads:
        torch.set_num_threads(args.threads)
        lowbit.set_num_threads(args.threads)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
    ms = args.m or (QUICK_M if args.quick else FULL_M)
    budget = 0.2 if args.quick else 1.0
    rows = []
    torch.manual_seed(0)
    for N, K in shapes:
        lin = torch.nn.Linear(K, N, bias=False)
        w_bf16 = lin.weight.detach().bfloat16()
        layers = {s: QLinear.from_linear(lin, s) for s in args.schemes}
        for M in ms:
            x = torch.randn(M, K)
            x_bf16 = x.bfloat16()
            with torch.no_grad():
                t32 = median_time(lambda: F.linear(x, lin.weight), budget_s=budget)
                t16 = median_time(lambda: F.linear(x_bf16, w_bf16), budget_s=budget)
                for s, q in layers.items():
                    t = median_time(lambda: q(x), budget_s=budget)
                    nbytes = sum(b.numel() * b.element_size() for b in (q.qweight, q.scales, q.zeros) if b is not None)
                    rows.append(dict(scheme=s, N=N, K=K, M=M, us=t * 1e6, torch_fp32_us=t32 * 1e6,
                                     torch_bf16_us=t16 * 1e6, speedup_vs_fp32=t32 / t, speedup_vs_bf16=t16 / t,
                                     packed_gb_per_s=nbytes / t / 1e9))
                    print_row(rows[-1], header=len(rows) == 1)
    return rows


def print_row(r: dict, header: bool = False):
    if header:
        print(f"{'scheme':<8} {'N x K':>12} {'M':>5} {'lowbit us':>11} {'fp32 us':>10} {'bf16 us':>10} "
              f"{'x fp32':>7} {'x bf16':>7} {'GB/s':>7}")
    print(f"{r['scheme']:<8} {r['N']:>5} x {r['K']:<5} {r['M']:>5} {r['us']:>11.1f} {r['torch_fp32_us']:>10.1f} "
          f"{r['torch_bf16_us']:>10.1f} {r['speedup_vs_fp32']:>7.2f} {r['speedup_vs_bf16']:>7.2f} "
          f"{r['packed_gb_per_s']:>7.2f}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lowbit bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return bench_command(p.parse_args(argv))


def command_line() -> str:
    """The command as typed, for the results file."""
    return "lowbit bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:])


def bench_command(args) -> int:
    if getattr(args, "device", "cpu") == "cuda":
        if not torch.cuda.is_available():
            print(f"lowbit bench: error: --device cuda: no CUDA device (torch.cuda.is_available() is False; "
                  f"torch {torch.__version__}, built for CUDA {torch.version.cuda})", file=sys.stderr)
            return 2
        if not backend_info()["cuda_compiled"]:
            print("lowbit bench: error: --device cuda: this lowbit build has no CUDA kernels "
                  "(backend_info()['cuda_compiled'] is False); reinstall with nvcc on PATH (LOWBIT_CUDA=ON)",
                  file=sys.stderr)
            return 2
        from . import bench_cuda
        return bench_cuda.run_sweep(args)
    if getattr(args, "report", None):
        print("lowbit bench: error: --report is for --device cuda (the CPU report: bench/cpu_bench.py)",
              file=sys.stderr)
        return 2
    info = machine()
    print(f"lowbit bench on {info['cpu']} ({info['cores']} cores), isa {info['cpu_isa']}, "
          f"{torch.get_num_threads()} torch threads, {info['num_threads']} lowbit threads")
    rows = run(args)
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
           "command": command_line(),
           "machine": info, "rows": rows}
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
