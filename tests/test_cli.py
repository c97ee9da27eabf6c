"""`lowbit bench` prints its table and writes JSON; bad arguments fail with one clear line."""
import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "lowbit", *args], capture_output=True, text=True, timeout=600)


def test_bench_quick_prints_table_and_json(tmp_path):
    out = tmp_path / "b.json"
    r = run("bench", "--quick", "--schemes", "w4a16,ternary", "--m", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(l.split()[:2] == ["scheme", "N"] for l in lines)
    rows = [l for l in lines if l.startswith(("w4a16", "ternary"))]
    assert len(rows) == 2
    data = json.loads(out.read_text())
    assert {r["scheme"] for r in data["rows"]} == {"w4a16", "ternary"}
    for row in data["rows"]:
        assert row["us"] > 0 and row["torch_fp32_us"] > 0 and row["torch_bf16_us"] > 0
    assert data["machine"]["cpu_isa"] and data["date"] and data["command"].startswith("lowbit bench")


def test_bench_rejects_bad_arguments(tmp_path):
    for args in (["--schemes", "w2a2"], ["--shapes", "12by12"], ["--m", "0"]):
        r = run("bench", "--quick", "--out", str(tmp_path / "x.json"), *args)
        assert r.returncode != 0 and "error" in r.stderr.lower(), args
        assert not (tmp_path / "x.json").exists()


def test_info_and_help():
    r = run("info")
    assert r.returncode == 0 and json.loads(r.stdout)["version"]
    r = run("bench", "--help")
    assert r.returncode == 0 and "--quick" in r.stdout
