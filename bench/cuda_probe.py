"""Where each CUDA path wins: lowbit's tensor-core kernel, its cuBLAS fallback and dense bf16
cuBLAS, side by side, per scheme, shape and M (the numbers behind ops.CUDA_CUBLAS_FROM_M).

Timing: lowbit.bench_cuda's (a CUDA graph of R calls over R copies of the weights, R copies
>= 3x L2, so the weights come from DRAM as in a real forward pass; median replay / R). The numbers
in bench/results/h100_checks.md were taken with an earlier copy of that method in this file (a
fixed 20 replays per measurement instead of ~0.1 s of them).

    python bench/cuda_probe.py --out probe.json
"""
import argparse
import copy
import json

import torch
import torch.nn.functional as F

import lowbit
from lowbit import bench_cuda, ops
from lowbit.bench_cuda import time_calls


def graph_time_us(fns):
    """Median microseconds per call of the callables fns (one CUDA graph calls each once):
    lowbit.bench_cuda's method, the one `lowbit bench --device cuda` reports."""
    return time_calls(fns)[0]


def copies_for(nbytes):
    return bench_cuda.copies_for(nbytes, torch.cuda.get_device_properties(0).L2_cache_size)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--schemes", default="w4a16,w3a16,w8a8,w4a4,ternary")
    ap.add_argument("--shapes", default="4096x4096,28672x8192")
    ap.add_argument("--m", default="1,16,64,128,256,512,1024,4096")
    a = ap.parse_args()
    rows = []
    for shape in a.shapes.split(","):
        N, K = map(int, shape.split("x"))
        w = torch.randn(N, K, device="cuda") * 0.02
        lin = torch.nn.Linear(K, N, bias=False, device="cuda")
        lin.weight.copy_(w)
        wb = w.bfloat16()
        Rb = copies_for(wb.numel() * 2)
        wbs = [wb.clone() for _ in range(Rb)]
        dense = {}
        for M in map(int, a.m.split(",")):
            x = torch.randn(M, K, device="cuda").bfloat16()
            dense[M] = graph_time_us([lambda wi=wi: F.linear(x, wi) for wi in wbs])
        del wbs
        for scheme in a.schemes.split(","):
            q = lowbit.QLinear.from_linear(lin, scheme).to("cuda")
            nbytes = sum(t.numel() * t.element_size() for t in (q.qweight, q.scales, q.zeros) if t is not None)
            qs = [copy.deepcopy(q) for _ in range(copies_for(nbytes))]
            for M in map(int, a.m.split(",")):
                x = torch.randn(M, K, device="cuda").bfloat16()
                saved = dict(ops.CUDA_CUBLAS_FROM_M)
                res = {}
                for path, th in (("kernel", 1 << 30), ("cublas", 0)):
                    ops.CUDA_CUBLAS_FROM_M.update({k: th for k in saved})
                    if path == "cublas" and scheme not in ("w4a16", "w3a16") and (M <= 16):
                        continue  # torch._int_mm needs M > 16
                    try:
                        res[path] = graph_time_us([lambda qi=qi: qi(x) for qi in qs])
                    except Exception as e:  # noqa: BLE001 - report and go on
                        res[path] = float("nan")
                        print("ERR", scheme, N, K, M, path, e)
                ops.CUDA_CUBLAS_FROM_M.update(saved)
                r = dict(scheme=scheme, N=N, K=K, M=M, bf16_us=dense[M], **{f"{k}_us": v for k, v in res.items()})
                rows.append(r)
                print(f"{scheme:8s} {N:6d}x{K:<6d} M={M:5d} bf16 {dense[M]:9.1f}  " +
                      "  ".join(f"{k} {v:9.1f} ({dense[M] / v:5.2f}x)" for k, v in res.items()), flush=True)
            del qs, q
            torch.cuda.empty_cache()
    json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
