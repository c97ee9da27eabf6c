"""`lowbit bench --device cuda`: the report is a pure function of the results JSON (checked here on
invented numbers, no GPU), and the command fails clearly where there is no GPU."""
import json

import pytest
import torch

import lowbit.bench
import lowbit.cli
from lowbit import bench_cuda

# TEST DATA, INVENTED: not a measurement. (label, N, K) -> M -> (bf16 us, {scheme: lowbit us}).
FAKE_TIMES = {
    ("7B qkvo", 4096, 4096): {1: (20.0, {"w4a16": 5.0, "ternary": 4.0}),
                              16: (22.0, {"w4a16": 8.0, "ternary": 11.0}),
                              4096: (400.0, {"w4a16": 500.0, "ternary": 320.0})},
    ("70B k/v", 1024, 8192): {1: (10.0, {"w4a16": 4.0, "ternary": 2.5}),
                              16: (12.0, {"w4a16": 3.0, "ternary": 6.0}),
                              4096: (200.0, {"w4a16": 160.0, "ternary": 400.0})},
}
FAKE_BAD = {("ternary", 1024, 16)}  # (scheme, N, M) of a row whose output check failed


def fake_result():
    """A results dict shaped like run_sweep's, from FAKE_TIMES (invented test numbers)."""
    rows = []
    for (label, N, K), per_m in FAKE_TIMES.items():
        for M, (bf16_us, times) in per_m.items():
            for scheme, us in times.items():
                rows.append(dict(scheme=scheme, label=label, N=N, K=K, M=M, us=us, bf16_us=bf16_us,
                                 speedup=bf16_us / us, gbps=1.0, tflops=2 * M * N * K / us / 1e6, weight_bytes=1,
                                 copies=7, bf16_copies=5, reps=5, rel_err=0.004,
                                 check_ok=(scheme, N, M) not in FAKE_BAD))
    return {"date": "2000-01-01T00:00:00", "command": "lowbit bench --device cuda (TEST DATA, invented)",
            "machine": {"gpu": "Fake GPU (test data)", "driver": "0.0", "cuda": "0.0", "torch": "0.0",
                        "sm_count": 1, "l2_bytes": 50 << 20, "memory_bytes": 1 << 30, "lowbit": {"version": "0"}},
            "method": "TEST DATA: invented numbers, not a measurement.", "schemes": ["w4a16", "ternary"],
            "shapes": [dict(label=l, N=N, K=K) for l, N, K in FAKE_TIMES], "m": [1, 16, 4096], "rows": rows}


def target(md, scheme, M):
    line = next(l for l in md.splitlines() if l.startswith(f"| {scheme} | {M} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_report_tables_and_targets(tmp_path):
    md = bench_cuda.write_report(fake_result(), str(tmp_path / "r.md"))
    assert (tmp_path / "r.md").read_text() == md
    assert "TEST DATA" in md and "Fake GPU" in md
    # One table per shape: M, bf16 us, then each scheme's speedup (bf16 us / lowbit us).
    assert "## 7B qkvo: N x K = 4096 x 4096" in md and "## 70B k/v: N x K = 1024 x 8192" in md
    assert "| M | bf16 us | w4a16 | ternary |" in md
    assert "| 1 | 20.0 | 4.00x | 5.00x |" in md
    assert "| 16 | 22.0 | 2.75x | 2.00x |" in md
    assert "| 4096 | 400.0 | 0.80x | 1.25x |" in md
    assert "| 4096 | 200.0 | 1.25x | 0.50x |" in md
    assert "| 16 | 12.0 | 4.00x | 2.00x! |" in md  # the failed output check is marked
    # Targets: the minimum over shapes, where, and every shape's value.
    assert target(md, "w4a16", 1) == ["w4a16", "1", "2.50x", "70B k/v", "7B qkvo 4.00x, 70B k/v 2.50x"]
    assert target(md, "w4a16", 16)[2:4] == ["2.75x", "7B qkvo"]
    assert target(md, "ternary", 1)[2:4] == ["4.00x", "70B k/v"]
    assert target(md, "w3a16", 1)[2:4] == ["-", "not measured"]
    assert target(md, "w8a8", 4096)[3] == "not measured" and target(md, "w4a4", 4096)[3] == "not measured"
    # Each scheme's minimum over every M and shape, with its place, and per shape.
    assert target(md, "w4a16", "every M") == ["w4a16", "every M", "0.80x", "7B qkvo, M=4096",
                                             "7B qkvo 0.80x (M=4096), 70B k/v 1.25x (M=4096)"]
    assert target(md, "ternary", "every M") == ["ternary", "every M", "0.50x", "70B k/v, M=4096",
                                               "7B qkvo 1.25x (M=4096), 70B k/v 0.50x (M=4096)"]


def test_report_from_saved_json(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "r.json").write_text(json.dumps(fake_result()))
    assert bench_cuda.main(["--from-json", str(tmp_path / "r.json"), "--report", str(tmp_path / "out.md")]) == 0
    assert "| 1 | 20.0 | 4.00x | 5.00x |" in (tmp_path / "out.md").read_text()
    assert (tmp_path / "out.png").stat().st_size > 0 and "![speedup vs bf16](out.png)" in (tmp_path / "out.md").read_text()


def test_copies_cover_three_l2():
    l2 = 50 << 20
    assert bench_cuda.copies_for(8 << 20, l2) == 19  # ceil(150 / 8)
    assert bench_cuda.copies_for(470 << 20, l2) == 1
    assert bench_cuda.copies_for(1 << 10, l2) == bench_cuda.MAX_COPIES


def test_bench_cuda_fails_clearly_without_gpu(tmp_path, monkeypatch, capsys):
    out = tmp_path / "b.json"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert lowbit.cli.main(["bench", "--device", "cuda", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "lowbit bench: error: --device cuda: no CUDA device" in err and "is_available() is False" in err

    # A GPU, but a lowbit built without its CUDA kernels.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(lowbit.bench, "backend_info", lambda: {"cuda_compiled": False})
    assert lowbit.cli.main(["bench", "--device", "cuda", "--quick", "--out", str(out)]) == 2
    assert "this lowbit build has no CUDA kernels" in capsys.readouterr().err
    assert not out.exists()


def test_report_needs_cuda_device(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert lowbit.cli.main(["bench", "--quick", "--report", str(tmp_path / "r.md"), "--out", str(out)]) == 2
    assert "--report is for --device cuda" in capsys.readouterr().err
    assert not out.exists()
