"""The add-only kernels (ternary, binary) of every SIMD ISA against the scalar reference, bit for
bit, over what their paths split on: every token count from 1 to 9 and a few more (GEMV and
GEMM), row counts that are no multiple of a tile, groups that are no multiple of a 128- or
256-code chunk, and int8 activations of the full range: a -128 (possible through linear_q,
never from quantize_act) cannot be negated in int8, which the kernels must survive."""
import pytest
import torch

import lowbit
from lowbit import formats
from test_cpu_isa import SIMD_ISAS, pytestmark, restore_isa  # noqa: F401 (the fixture is autouse)


def linear_q(isa, q, scale, qweight, scales, bias, scheme, K, gs):
    lowbit.set_cpu_isa(isa)
    return torch.ops.lowbit.linear_q(q, scale, qweight, scales, bias, scheme, K, gs, torch.float32)


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("scheme", ["ternary", "binary"])
@pytest.mark.parametrize("K,gs", [(100, 100), (1000, 1000), (1000, 32), (1000, 64), (1000, 96), (608, 288), (4096, 4096)])
@pytest.mark.parametrize("full_range", [False, True])
def test_addonly_token_counts(isa, scheme, K, gs, full_range):
    s = formats.SCHEMES[scheme]
    gen = torch.Generator().manual_seed(K * 7 + gs + full_range)
    N = 45
    codes = torch.randint(0, s.max_code + 1, (N, K), generator=gen, dtype=torch.int32)
    G = formats.num_groups(K, gs)
    qweight = formats.pack(codes, s)
    scales = ((torch.rand(N, G, generator=gen) + 0.5) * 0.02).half()
    bias = torch.randn(N, generator=gen)
    for M in (1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 33):
        lo = -128 if full_range else -127
        q = torch.randint(lo, 128, (M, K), generator=gen, dtype=torch.int8)
        q[0, :] = lo  # the largest sums
        if full_range:
            q[1:, :] = q[1:, :].clamp(min=-127)
            q[-1, K // 2] = -128  # a single one
        scale = torch.rand(M, generator=gen) + 0.5
        ref = linear_q("scalar", q, scale, qweight, scales, bias, scheme, K, gs)
        got = linear_q(isa, q, scale, qweight, scales, bias, scheme, K, gs)
        assert torch.equal(got, ref), (M, (got - ref).abs().max())
        # unit scales: the integer sums themselves
        ones_w, ones_t = torch.ones(N, G, dtype=torch.float16), torch.ones(M)
        expect = sum((q[:, g * gs:(g + 1) * gs].long() @ formats.code_values(codes, s)[:, g * gs:(g + 1) * gs].long().T)
                     for g in range(G)).double()
        got = linear_q(isa, q, ones_t, qweight, ones_w, None, scheme, K, gs)
        assert torch.equal(got.double(), expect), M
