"""CUDA kernels against the CPU reference (integer part bit-exact). Skipped without a GPU."""
import pytest
import torch

import lowbit
from test_kernels import random_weight, reference, rel_err

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(not lowbit.backend_info()["cuda_compiled"], reason="lowbit built without CUDA"),
]


def to_cuda(q):
    return q.to("cuda")


@pytest.mark.parametrize("scheme", list(lowbit.SCHEMES))
@pytest.mark.parametrize("M,N,K", [(1, 33, 64), (3, 17, 100), (64, 31, 577)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_matches_reference(scheme, M, N, K, dtype):
    q, _ = random_weight(scheme, N, K, 32)
    x = torch.randn(M, K).to(dtype)
    ref = reference(q, x.float())
    y = to_cuda(q)(x.cuda())
    assert y.dtype == dtype and y.device.type == "cuda"
    assert rel_err(y.cpu(), ref) < (1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("scheme", ["w8a8", "w4a4", "ternary", "binary"])
def test_cuda_equals_cpu_integer_schemes(scheme):
    q, _ = random_weight(scheme, 29, 300, -1)
    x = torch.randn(5, 300)
    assert rel_err(to_cuda(q)(x.cuda()).cpu(), q(x).double()) < 1e-6


def test_cuda_device_mismatch_raises():
    q, _ = random_weight("w4a16", 8, 64, 32)
    with pytest.raises(ValueError, match="qweight: is on cpu but the input is on cuda"):
        q(torch.randn(2, 64, device="cuda"))
