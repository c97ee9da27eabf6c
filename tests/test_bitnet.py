"""BitNet b1.58 QAT layer: STE training path, eval path == lowbit's add-only kernels bit for bit."""
import pytest
import torch
from torch import nn

import lowbit
from lowbit import bitnet, ops
from lowbit.bitnet import BitLinear


def _layer(scheme, K=200, N=70, bias=True, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(K, N, bias=bias)
    return BitLinear.from_linear(lin, scheme)


@pytest.mark.parametrize("scheme", ["ternary", "binary"])
@pytest.mark.parametrize("bias", [True, False])
def test_eval_forward_matches_kernel_bit_exact(scheme, bias):
    b = _layer(scheme, bias=bias).eval()
    x = torch.randn(3, 5, 200) * 2
    x[0, 0] = 0  # an all-zero token: scale 1, codes 0
    y = b(x)
    q = b.to_qlinear()
    assert q.scheme == scheme and q.kernel_group_size == 200
    assert torch.equal(q(x), y)  # QLinear.forward: the compiled add-only kernel
    # the integer part alone: activation codes and scales from the kernel's own quantizer
    qa, sa = ops.quantize_act(x, 8)
    qt, at = bitnet.quantize_act(x)
    assert torch.equal(qa.float(), qt) and torch.equal(sa, at[..., 0])
    assert torch.equal(ops.linear_q(qa, sa, q.qweight, q.scales, q.bias, scheme, 200, 200, torch.float32), y)


def test_ternary_weights_and_scale():
    b = _layer("ternary")
    w = b.quantized_weight().detach()
    s = b.weight.abs().mean().half().float()
    assert torch.equal(torch.unique(w / s), torch.tensor([-1.0, 0.0, 1.0]))
    # converted layer holds the same weight: per-tensor scale replicated per row
    q = b.to_qlinear()
    assert torch.equal(q.dequantize(), w)
    assert torch.equal(q.scales.float(), s.expand(70, 1))


def test_binary_weights_per_channel():
    b = _layer("binary")
    w = b.quantized_weight().detach()
    s = b.weight.abs().mean(1, keepdim=True).half().float()
    assert torch.equal(w.abs(), s.expand_as(w))
    assert torch.equal(b.to_qlinear().dequantize(), w)


def test_training_forward_and_ste_gradient():
    b = _layer("ternary").train()
    x = torch.randn(4, 200, requires_grad=True)
    y = b(x)
    qx, a = bitnet.quantize_act(x.detach())
    ref = torch.nn.functional.linear(qx * a, b.quantized_weight().detach(), b.bias)
    assert torch.allclose(y, ref, atol=1e-5, rtol=1e-5)
    y.sum().backward()
    # straight-through: gradients as if both roundings were the identity
    g_w = torch.ones(4, 70).t() @ (qx * a)
    assert torch.allclose(b.weight.grad, g_w, atol=1e-4, rtol=1e-4)
    assert torch.allclose(x.grad, b.quantized_weight().detach().sum(0).expand(4, 200), atol=1e-5)


def test_prepare_and_convert_model():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 64))
    model.lm_head = nn.Linear(64, 10)
    bitnet.prepare(model, skip=["lm_head"])
    assert isinstance(model[0], BitLinear) and isinstance(model[2], BitLinear)
    assert type(model.lm_head) is nn.Linear
    model.eval()
    x = torch.randn(7, 64)
    y = model(x)  # Sequential also runs lm_head (float) last
    bitnet.convert(model)
    assert isinstance(model[0], lowbit.QLinear) and model[0].scheme == "ternary"
    assert torch.equal(model(x), y)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scheme"):
        BitLinear(8, 8, scheme="w4a16")
    with pytest.raises(ValueError, match="scheme"):
        bitnet.prepare(nn.Linear(8, 8), scheme="int2")
    with pytest.raises(TypeError, match="model"):
        bitnet.convert("not a model")
    with pytest.raises(TypeError, match="linear"):
        BitLinear.from_linear(nn.Conv1d(2, 2, 1))
