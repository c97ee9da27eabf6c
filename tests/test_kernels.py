"""The reference kernels against a float64 reference computed from the dequantized operands.

Integer schemes: the int32 sums are checked bit-exactly (linear_q with unit scales returns them
as exact floats), the full float result within 1e-5 relative (fp32) / 1e-2 (bf16, fp16)."""
import pytest
import torch

import lowbit
from lowbit import formats

SCHEMES = list(lowbit.SCHEMES)
SHAPES = [(1, 33, 64), (3, 17, 100), (64, 31, 96), (3, 5, 577), (1, 9, 1000)]  # M, N, K
GROUPS = [32, 64, 128, -1]


def random_weight(scheme, N, K, group_size):
    """Random codes over the scheme's whole range, random fp16 scales (and zeros)."""
    s = lowbit.SCHEMES[scheme]
    gs = formats.resolve_group_size(s, group_size, K)
    G = formats.num_groups(K, gs)
    codes = torch.randint(0, s.max_code + 1, (N, K), dtype=torch.uint8)
    scales = (torch.rand(N, G) * 0.9 + 0.1).half()
    zeros = torch.randint(0, s.max_code + 1, (N, G), dtype=torch.uint8) if s.has_zeros else None
    bias = torch.randn(N)
    return lowbit.QLinear.from_codes(codes, scales, zeros, bias, scheme, group_size), codes


def rel_err(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


def reference(q: lowbit.QLinear, x: torch.Tensor) -> torch.Tensor:
    """float64 reference from the dequantized operands (activations quantized as the scheme says)."""
    W = q.dequantize().double()
    s = lowbit.SCHEMES[q.scheme]
    if s.compute == "weight_only":
        a = x.double()
    else:
        qa, sa = torch.ops.lowbit.quantize_act(x, s.abits)
        a = qa.double() * sa.double().unsqueeze(-1)
    return a @ W.T + q.bias.double()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("group_size", GROUPS)
def test_linear_fp32_matches_float64(scheme, M, N, K, group_size):
    q, _ = random_weight(scheme, N, K, group_size)
    x = torch.randn(M, K)
    y = q(x)
    assert y.shape == (M, N) and y.dtype == torch.float32
    assert rel_err(y, reference(q, x)) < 1e-5


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_linear_half_dtypes(scheme, dtype):
    q, _ = random_weight(scheme, 23, 200, 64)
    x = torch.randn(3, 200).to(dtype)
    y = q(x)
    assert y.dtype == dtype
    assert rel_err(y, reference(q, x.float())) < 1e-2


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if lowbit.SCHEMES[s].compute != "weight_only"])
@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("group_size", [32, -1])
def test_integer_part_is_exact(scheme, M, N, K, group_size):
    """With unit scales the output is the int32 sum itself: compare it exactly."""
    s = lowbit.SCHEMES[scheme]
    gs = formats.resolve_group_size(s, group_size, K)
    G = formats.num_groups(K, gs)
    codes = torch.randint(0, s.max_code + 1, (N, K), dtype=torch.uint8)
    qw = formats.pack(codes, s)
    amax = (1 << (s.abits - 1)) - 1
    qa = torch.randint(-amax, amax + 1, (M, K), dtype=torch.int8)
    y = torch.ops.lowbit.linear_q(qa, torch.ones(M), qw, torch.ones(N, G, dtype=torch.float16), None,
                                  scheme, K, gs, torch.float32)
    exact = qa.long() @ formats.code_values(codes, s).long().T  # int64, no rounding anywhere
    assert torch.equal(y.double(), exact.double())


@pytest.mark.parametrize("bits", [8, 4, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_quantize_act_matches_torch(bits, dtype):
    x = (torch.randn(5, 7, 99) * 3).to(dtype)
    x[0, 0] = 0  # an all-zero token gets scale 1 and codes 0
    q, s = torch.ops.lowbit.quantize_act(x, bits)
    qmax = (1 << (bits - 1)) - 1
    xf = x.float()
    s_ref = xf.abs().amax(-1) / qmax
    s_ref[s_ref == 0] = 1.0
    q_ref = torch.round(xf / s_ref.unsqueeze(-1)).clamp(-qmax, qmax).to(torch.int8)
    assert torch.equal(s, s_ref) and torch.equal(q, q_ref)
    assert torch.all(q[0, 0] == 0) and s[0, 0] == 1.0


@pytest.mark.parametrize("scheme", ["w4a16", "w4a4", "ternary"])
def test_leading_batch_dims_and_empty_batch(scheme):
    q, _ = random_weight(scheme, 11, 64, 32)
    x = torch.randn(2, 3, 4, 64)
    y = q(x)
    assert y.shape == (2, 3, 4, 11)
    assert torch.allclose(y.reshape(-1, 11), q(x.reshape(-1, 64)), rtol=0, atol=0)
    assert q(torch.randn(0, 64)).shape == (0, 11)


def test_rtn_quantize_is_close_to_float():
    """Round to nearest at 8 bits reproduces a layer closely; a sanity check of quant.rtn."""
    lin = torch.nn.Linear(256, 64)
    x = torch.randn(4, 256)
    for scheme, tol in [("w8a8", 0.02), ("w4a16", 0.1)]:
        q = lowbit.QLinear.from_linear(lin, scheme, 32)
        assert rel_err(q(x), lin(x).double()) < tol, scheme
