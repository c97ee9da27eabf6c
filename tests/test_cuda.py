"""CUDA kernels against the CPU reference, on fresh random inputs, odd sizes included; every
dispatch path (tensor-core kernel, cuBLAS fallbacks, the float32 path); CUDA graphs and
torch.compile; bad inputs. Skipped without a GPU (CPU-only CI)."""
import pytest
import torch

import lowbit
from lowbit import _C, ops
from test_kernels import random_weight, reference, rel_err

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(not lowbit.backend_info()["cuda_compiled"], reason="lowbit built without CUDA"),
]

TOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 1.5e-2}


@pytest.mark.parametrize("scheme", list(lowbit.SCHEMES))
@pytest.mark.parametrize("M", [1, 3, 13, 16, 31, 64, 100, 300])
@pytest.mark.parametrize("N,K", [(33, 64), (17, 100), (200, 1024), (40, 2080)])
@pytest.mark.parametrize("group_size", [32, 128, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_matches_reference(scheme, M, N, K, group_size, dtype):
    q, _ = random_weight(scheme, N, K, group_size)
    x = torch.randn(M, K).to(dtype)
    ref = reference(q, x.float())
    qc = q.to("cuda")
    y = qc(x.cuda())
    assert y.dtype == dtype and y.device.type == "cuda" and y.shape == (M, N)
    assert torch.isfinite(y).all()
    assert rel_err(y.cpu(), ref) < TOL[dtype], ops.cuda_path(scheme, M, N, K, q.kernel_group_size, dtype)


@pytest.mark.parametrize("scheme", ["w8a8", "w4a8", "w4a4", "w3a3", "ternary", "binary"])
@pytest.mark.parametrize("M", [1, 5, 16, 40, 300])
def test_cuda_integer_bit_exact(scheme, M):
    """One group per row: the CUDA result equals the scalar CPU reference bit for bit (exact
    int32 dot products, then the reference's float epilogue in its order), on the kernel path
    (small M) and on the int8 cuBLAS path (M = 300), the K split across warps and CTAs."""
    N, K = 72, 4096
    q, _ = random_weight(scheme, N, K, -1)
    x = torch.randn(M, K)
    x[0] = 1.0  # a token of all +qmax: the largest sums
    prev = lowbit._C.cpu_isa()
    lowbit.set_cpu_isa("scalar")
    try:
        ref = q(x)
    finally:
        lowbit.set_cpu_isa(prev)
    got = q.to("cuda")(x.cuda()).cpu()
    assert torch.equal(got, ref), (ops.cuda_path(scheme, M, N, K, K, x.dtype), (got - ref).abs().max().item())


@pytest.mark.parametrize("scheme", list(lowbit.SCHEMES))
@pytest.mark.parametrize("group_size", [64, 256, -1])
def test_cuda_kernel_equals_reference_kernel(scheme, group_size):
    """The tensor-core kernel against the one-thread-per-output oracle on the device, through
    the raw entry points (no cuBLAS), bf16 activations, a ragged K and a partial 16-row tile;
    groups of 64 take the integer schemes' block path, 256 and per-channel the chunked one."""
    N, K, M = 45, 1000, 11
    q, _ = random_weight(scheme, N, K, group_size)
    q = q.to("cuda")
    x = torch.randn(M, K, device="cuda").bfloat16()
    out = []
    for reference_kernel in (False, True):
        y = torch.empty(M, N, device="cuda", dtype=torch.float32)
        _C.cuda_linear(lowbit.SCHEMES[scheme].id, N, K, q.kernel_group_size, q.qweight.data_ptr(),
                       q.scales.data_ptr(), ops._ptr(q.zeros), ops._ptr(q.bias.float()), x.data_ptr(), 2, M,
                       y.data_ptr(), 0, torch.cuda.current_stream().cuda_stream, reference_kernel)
        out.append(y)
    # Weight-only: the kernel rounds scale * (u - zero) to bf16 before its MMA (the oracle keeps
    # fp32); integer: the same exact int32 sums, the float sum over groups re-associated.
    tol = 1e-2 if lowbit.SCHEMES[scheme].compute == "weight_only" else 1e-6
    assert rel_err(out[0].cpu(), out[1].cpu().double()) < tol


def test_cuda_unaligned_and_leading_dims():
    """x whose data pointer is not 8-byte aligned (copied into padded rows) and 3-D x."""
    q, _ = random_weight("w4a16", 24, 256, 128)
    base = torch.randn(2 * 3 * 256 + 1).half()
    ref = reference(q, base[1:].float().view(6, 256)).reshape(2, 3, 24)  # before .to() moves q
    x = base.cuda()[1:].view(2, 3, 256)
    assert x.data_ptr() % 8 != 0
    y = q.to("cuda")(x)
    assert y.shape == (2, 3, 24)
    assert rel_err(y.float().cpu(), ref) < TOL[torch.float16]


@pytest.mark.parametrize("scheme", ["w4a16", "w4a4", "ternary"])
@pytest.mark.parametrize("M", [2, 300])
def test_cuda_graph_replay(scheme, M):
    """Captured in a CUDA graph (scratch from cudaMallocAsync / torch's graph pool) and replayed
    on new inputs: the same as eager calls."""
    q, _ = random_weight(scheme, 256, 512, None)
    qc = q.to("cuda")
    x = torch.randn(M, 512, device="cuda").bfloat16()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(2):
            qc(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.no_grad():
        y = qc(x)
    for _ in range(3):
        x.copy_(torch.randn(M, 512, device="cuda"))
        g.replay()
        torch.cuda.synchronize()
        with torch.no_grad():
            assert torch.equal(y, qc(x))


def test_cuda_torch_compile():
    q, _ = random_weight("w4a16", 64, 256, 128)
    qc = q.to("cuda")
    x = torch.randn(4, 256, device="cuda").half()
    f = torch.compile(lambda t: qc(t) * 2, fullgraph=True)
    with torch.no_grad():
        assert torch.equal(f(x), qc(x) * 2)


def test_cuda_device_mismatch_raises():
    q, _ = random_weight("w4a16", 8, 64, 32)
    with pytest.raises(ValueError, match="qweight: is on cpu but the input is on cuda"):
        q(torch.randn(2, 64, device="cuda"))


def test_cuda_misaligned_qweight_raises():
    q, _ = random_weight("w4a4", 8, 64, -1)
    qc = q.to("cuda")
    x = torch.randn(2, 64, device="cuda")
    y = torch.empty(2, 8, device="cuda")
    with pytest.raises(ValueError, match="16-byte aligned"):
        _C.cuda_linear(lowbit.SCHEMES["w4a4"].id, 8, 64, 64, qc.qweight.data_ptr() + 4, qc.scales.data_ptr(), 0, 0,
                       x.data_ptr(), 0, 2, y.data_ptr(), 0, torch.cuda.current_stream().cuda_stream, False)


def test_cuda_empty_batch():
    q, _ = random_weight("w3a3", 8, 64, -1)
    y = q.to("cuda")(torch.randn(0, 64, device="cuda"))
    assert y.shape == (0, 8)
