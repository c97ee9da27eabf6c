"""Does lowbit compete with torch's own threads? Times lowbit.ops.linear on its own and right
after a multi-threaded torch op (torch's OpenMP threads keep spinning for a few ms after one),
with lowbit's tasks on torch's OpenMP team (the default when torch runs on OpenMP) and on
lowbit's own pool (LOWBIT_THREADS=pool), each in its own process, with torch fp32 F.linear of
the same shape timed in the same process. Writes bench/results/thread_sharing.md.

    python bench/thread_sharing.py
"""
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [("w4a16", 576, 576, 512), ("w4a8", 576, 576, 512), ("w4a16", 4096, 4096, 64), ("w4a8", 4096, 4096, 1),
         ("ternary", 4096, 4096, 1)]  # scheme, N, K, M
GAPS_US = [0, 300, 1000, 3000]


def child(mode):
    import torch
    import lowbit
    from lowbit import formats, ops
    gen = torch.Generator().manual_seed(0)
    out = [lowbit.backend_info()["threads"]]
    x_t, w_t = torch.randn(64, 576), torch.randn(576, 576)
    torch_op = lambda: torch.nn.functional.linear(x_t, w_t)  # a multi-threaded torch op (MKL sgemm)
    for scheme, N, K, M in CASES:
        s = formats.SCHEMES[scheme]
        gs = formats.resolve_group_size(s, 128 if s.has_zeros else -1, K)
        codes = torch.randint(0, s.max_code + 1, (N, K), generator=gen, dtype=torch.int32)
        G = formats.num_groups(K, gs)
        q, sc = formats.pack(codes, s), (torch.rand(N, G, generator=gen) * 0.01 + 0.001).half()
        z = torch.randint(0, s.max_code + 1, (N, G), generator=gen).to(torch.uint8) if s.has_zeros else None
        lay = ops.prepack_cpu(q, sc, z, scheme, K, gs)
        x, wf = torch.randn(M, K, generator=gen), torch.randn(N, K, generator=gen)
        f = lambda: ops.linear(x, q, sc, z, None, scheme, K, gs, lay)
        for _ in range(5):
            f(), torch_op()

        def timed(gap_us):  # median ms of f, gap_us after a torch op (None: 20 ms after anything)
            ts = []
            for _ in range(40):
                if gap_us is None:
                    time.sleep(0.02)
                else:
                    torch_op()
                    end = time.perf_counter() + gap_us * 1e-6
                    while time.perf_counter() < end:
                        pass
                t0 = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t0)
            return statistics.median(ts) * 1e3
        tf = []
        for _ in range(20):
            t0 = time.perf_counter()
            torch.nn.functional.linear(x, wf)
            tf.append(time.perf_counter() - t0)
        row = [f"{scheme} {N}x{K} M={M}", f"{timed(None):.3f}"] + [f"{timed(g):.3f}" for g in GAPS_US]
        out.append("|".join(row + [f"{statistics.median(tf) * 1e3:.3f}"]))
    print("\n".join(out))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    import torch
    results = {}
    for mode in ("openmp", "pool", "openmp", "pool"):  # alternated, twice
        r = subprocess.run([sys.executable, __file__, "--child", mode], env=dict(os.environ, LOWBIT_THREADS=mode),
                           capture_output=True, text=True, check=True)
        lines = r.stdout.strip().split("\n")
        results.setdefault(mode, []).append(lines)
        print(mode, *lines, sep="\n  ", flush=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    md = ["# lowbit's threads beside torch's", "",
          f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
          "- command: `python bench/thread_sharing.py`",
          f"- machine: {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)",
          "- median ms of lowbit.ops.linear (40 calls) on its own (20 ms after anything) and a given time after a "
          "torch fp32 F.linear 64x576x576 (multi-threaded); last column: torch fp32 F.linear of the case's shape",
          "- each backend in its own process, alternated, two runs each",
          "- reading: right after torch ops (what a model does: norms, attention, activations between every two "
          "linears) the OpenMP team does not wait for torch's spinning threads; 'alone' is after a pause long enough "
          "for the team to fall asleep, whose wake-up the first parallel region pays (torch's own ops too; "
          "csrc/core/threads.cpp)", ""]
    head = "| threads | case | alone | " + " | ".join(f"{g} us after torch" for g in GAPS_US) + " | torch fp32 |"
    md += [head, "|" + "---|" * (len(GAPS_US) + 4)]
    for mode, runs in results.items():
        for run in runs:
            for line in run[1:]:
                md.append(f"| {'torch OpenMP team' if mode == 'openmp' else 'own pool'} | " + " | ".join(line.split("|")) + " |")
    path = os.path.join(HERE, "results", "thread_sharing.md")
    with open(path, "w") as fh:
        fh.write("\n".join(md) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
