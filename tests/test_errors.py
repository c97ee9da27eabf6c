"""Bad input raises a clear ValueError/TypeError that names the argument."""
import pytest
import torch

import lowbit
from conftest import make_qlinear

def q4():
    return make_qlinear("w4a16", 16, 64, 32)


def call(q, x, **over):
    args = dict(x=x, qweight=q.qweight, scales=q.scales, zeros=q.zeros, bias=q.bias, scheme=q.scheme,
                in_features=q.in_features, group_size=q.kernel_group_size)
    args.update(over)
    return torch.ops.lowbit.linear(**args)


def test_wrong_dtypes():
    q = q4()
    with pytest.raises(TypeError, match="x: expected dtype"):
        call(q, torch.randn(2, 64).double())
    with pytest.raises(TypeError, match="x: expected dtype"):
        call(q, torch.ones(2, 64, dtype=torch.int32))
    with pytest.raises(TypeError, match="qweight: expected dtype"):
        call(q, torch.randn(2, 64), qweight=q.qweight.to(torch.int8))
    with pytest.raises(TypeError, match="scales: expected dtype"):
        call(q, torch.randn(2, 64), scales=q.scales.float())
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        q([[1.0] * 64])


def test_wrong_shapes_and_k_mismatch():
    q = q4()
    with pytest.raises(ValueError, match="x: last dimension must be in_features=64"):
        call(q, torch.randn(2, 63))
    with pytest.raises(ValueError, match="in_features"):
        q(torch.randn(2, 65))
    with pytest.raises(ValueError, match="qweight: expected"):
        call(q, torch.randn(2, 96), in_features=96)
    with pytest.raises(ValueError, match="scales: expected shape"):
        call(q, torch.randn(2, 64), scales=q.scales[:, :1].contiguous())
    with pytest.raises(ValueError, match="zeros: expected shape"):
        call(q, torch.randn(2, 64), zeros=q.zeros[:8].contiguous())
    with pytest.raises(ValueError, match="zeros: scheme w4a16 needs zero points"):
        call(q, torch.randn(2, 64), zeros=None)
    with pytest.raises(ValueError, match="bias: expected shape"):
        call(q, torch.randn(2, 64), bias=torch.zeros(3))


def test_group_size_rules():
    lin = torch.nn.Linear(128, 8)
    for bad in (48, 0, -2, 100):
        with pytest.raises(ValueError, match="group_size"):
            lowbit.QLinear.from_linear(lin, "w4a16", bad)
    with pytest.raises(TypeError, match="group_size"):
        lowbit.QLinear.from_linear(lin, "w4a16", 32.0)
    q = q4()
    with pytest.raises(ValueError, match="group_size"):
        call(q, torch.randn(2, 64), group_size=48)


def test_unsupported_scheme():
    lin = torch.nn.Linear(64, 8)
    with pytest.raises(ValueError, match="scheme: unknown scheme 'w2a2'"):
        lowbit.QLinear.from_linear(lin, "w2a2")
    with pytest.raises(TypeError, match="scheme"):
        lowbit.quantize(torch.nn.Sequential(lin), scheme=4)
    with pytest.raises(ValueError, match="method"):
        lowbit.quantize(torch.nn.Sequential(lin), method="magic")
    with pytest.raises(ValueError, match="scheme: unknown"):
        call(q4(), torch.randn(2, 64), scheme="int4")
    with pytest.raises(TypeError, match="linear"):
        lowbit.QLinear.from_linear(torch.nn.Conv1d(4, 4, 1))


def test_non_contiguous():
    q = q4()
    with pytest.raises(ValueError, match="x: must be contiguous"):
        call(q, torch.randn(64, 2).t())
    with pytest.raises(ValueError, match="qweight: must be contiguous"):
        call(q, torch.randn(2, 64), qweight=torch.cat([q.qweight, q.qweight], 1)[:, ::2])
    # QLinear itself accepts any strides, like nn.Linear
    x = torch.randn(64, 2).t()
    assert torch.equal(q(x), q(x.contiguous()))


def test_wrong_device():
    q = q4()
    meta = torch.empty(2, 64, device="meta")
    with pytest.raises(ValueError, match="qweight: is on cpu but the input is on meta"):
        call(q, meta)


def test_activation_ops_reject_bad_input():
    with pytest.raises(ValueError, match="bits"):
        torch.ops.lowbit.quantize_act(torch.randn(2, 8), 5)
    with pytest.raises(TypeError, match="x: expected dtype"):
        torch.ops.lowbit.quantize_act(torch.randn(2, 8).double(), 8)
    q = make_qlinear("w4a4", 4, 64)
    qa, sa = torch.ops.lowbit.quantize_act(torch.randn(2, 64), 4)
    with pytest.raises(ValueError, match="scale: expected shape"):
        torch.ops.lowbit.linear_q(qa, sa[:1], q.qweight, q.scales, None, "w4a4", 64, 64, torch.float32)
    with pytest.raises(ValueError, match="float activations"):
        w = q4()
        torch.ops.lowbit.linear_q(qa, sa, w.qweight, w.scales, None, "w4a16", 64, 32, torch.float32)


def test_runtime_controls():
    with pytest.raises(ValueError, match="n: expected a positive int"):
        lowbit.set_num_threads(0)
    with pytest.raises(ValueError, match="isa: unknown 'sse9'"):
        lowbit.set_cpu_isa("sse9")


def test_checkpoint_errors(tmp_path):
    from safetensors.torch import save_file
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    lowbit.quantize(model, "w4a8", progress=False)
    good = tmp_path / "m.safetensors"
    lowbit.save(model, good)

    fresh = lambda: torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        lowbit.load(fresh(), tmp_path / "missing.safetensors")

    corrupt = tmp_path / "corrupt.safetensors"
    data = good.read_bytes()
    corrupt.write_bytes(data[:8] + b"\x00garbage" + data[16:])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        lowbit.load(fresh(), corrupt)

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="path:"):
        lowbit.load(fresh(), truncated)

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="not a lowbit checkpoint"):
        lowbit.load(fresh(), plain)

    other = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    with pytest.raises(ValueError, match="layer '0' is 64->32 in the checkpoint but 64->16"):
        lowbit.load(other, good)
    wrong_arch = torch.nn.Sequential(torch.nn.Linear(64, 32))
    with pytest.raises(ValueError, match="'2'"):
        lowbit.load(wrong_arch, good)

    with pytest.raises(TypeError, match="model"):
        lowbit.save("not a model", good)
