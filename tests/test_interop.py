"""GPTQ-layout export/import: re-import gives identical outputs, and the files match the
documented standard layout, decoded here independently of lowbit (numpy + plain integers)."""
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import lowbit


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 32, bias=False))


def decode_gptq(t, name, bits, K, N, v2=False):
    """Dequantized weight [N, K] from qweight/qzeros/scales/g_idx, bit by bit as documented."""
    qw = t[f"{name}.qweight"].astype(np.int64) & 0xFFFFFFFF
    qz = t[f"{name}.qzeros"].astype(np.int64) & 0xFFFFFFFF
    scales, g_idx = t[f"{name}.scales"].astype(np.float64), t[f"{name}.g_idx"]

    def code(words_col, r):  # row r of a little-endian stream of bits-wide codes
        v = 0
        for b in range(bits):
            bit = r * bits + b
            v |= ((int(words_col[bit // 32]) >> (bit % 32)) & 1) << b
        return v

    W = np.zeros((N, K))
    for n in range(N):
        for k in range(K):
            g = int(g_idx[k])
            z = code(qz[g], n) + (0 if v2 else 1)
            W[n, k] = scales[g, n] * (code(qw[:, n], k) - z)
    return W


@pytest.mark.parametrize("scheme,bits,gs", [("w4a16", 4, 32), ("w3a16", 3, 64), ("w4a16", 4, -1)])
def test_export_reimport_identical_and_standard_layout(scheme, bits, gs, tmp_path):
    model = lowbit.quantize(small_model(), scheme=scheme, group_size=gs, progress=False)
    x = torch.randn(5, 64)
    y = model(x)
    out = tmp_path / "gptq"
    lowbit.export_gptq(model, out, format="gptq_v2" if gs == -1 else "gptq")
    cfg = json.loads((out / "quantize_config.json").read_text())
    assert cfg["bits"] == bits and cfg["group_size"] == gs and cfg["desc_act"] is False and cfg["quant_method"] == "gptq"

    t = load_file(str(out / "model.safetensors"))
    assert t["0.qweight"].dtype == np.int32 and t["0.qweight"].shape == (64 * bits // 32, 96)
    G = 64 // (64 if gs == -1 else gs)
    assert t["0.qzeros"].shape == (G, 96 * bits // 32) and t["0.scales"].shape == (G, 96)
    assert t["0.scales"].dtype == np.float16 and t["0.g_idx"].dtype == np.int32
    for name, (K, N) in {"0": (64, 96), "2": (96, 32)}.items():
        W = decode_gptq(t, name, bits, K, N, v2=gs == -1)
        assert np.allclose(W, model[int(name)].dequantize().double().numpy(), rtol=0, atol=1e-6)

    fresh = lowbit.import_gptq(small_model(), out)
    assert isinstance(fresh[0], lowbit.QLinear) and fresh[0].scheme == scheme
    assert torch.equal(fresh(x), y)


def test_export_errors(tmp_path):
    with pytest.raises(ValueError, match="no QLinear"):
        lowbit.export_gptq(small_model(), tmp_path / "a")
    tern = lowbit.quantize(small_model(), scheme="ternary", progress=False)
    with pytest.raises(ValueError, match="w4a16/w3a16"):
        lowbit.export_gptq(tern, tmp_path / "b")
    m = lowbit.quantize(small_model(), scheme="w4a16", group_size=32, progress=False)
    m[0].zeros[0, 0] = 0
    with pytest.raises(ValueError, match="gptq_v2"):
        lowbit.export_gptq(m, tmp_path / "c")
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="format"):
        lowbit.export_gptq(m, tmp_path / "d", format="awq")


def test_import_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="quantize_config.json"):
        lowbit.import_gptq(small_model(), tmp_path)
    m = lowbit.quantize(small_model(), scheme="w4a16", group_size=32, progress=False)
    lowbit.export_gptq(m, tmp_path / "ok")
    # an act-order checkpoint (permuted g_idx) needs a run-time permutation: refused
    from safetensors.numpy import save_file
    t = load_file(str(tmp_path / "ok" / "model.safetensors"))
    t["0.g_idx"] = t["0.g_idx"][::-1].copy()
    save_file(t, str(tmp_path / "ok" / "model.safetensors"))
    with pytest.raises(ValueError, match="act-order"):
        lowbit.import_gptq(small_model(), tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        lowbit.import_gptq(small_model(), tmp_path / "ok")


def test_atomic_folder_replaces_on_success_and_keeps_the_old_on_error(tmp_path):
    """export_gptq and the demo report write through lowbit._atomic.atomic_folder."""
    from lowbit._atomic import atomic_folder
    out = tmp_path / "out"
    with atomic_folder(out) as tmp:
        (tmp_path / tmp / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as tmp:
            (tmp_path / tmp / "a.txt").write_text("two")
            raise RuntimeError("interrupted")
    assert (out / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind
    with atomic_folder(out) as tmp:
        (tmp_path / tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
