"""Every SIMD kernel table against the scalar reference (the oracle), scheme by scheme.

For each ISA this build and CPU support, the same random weights and activations go through
the ISA's kernels and through the scalar ones: the integer and add-only schemes must agree
bit for bit (their float epilogue runs in the reference's order), the weight-only schemes
within 1e-5 relative to the size of the terms (float summation order differs).
"""
import os

import pytest
import torch

import lowbit
from lowbit import formats, ops

SIMD_ISAS = [i for i in lowbit._C.cpu_isa_supported().split(",") if i != "scalar"]
SCHEMES = list(formats.SCHEMES)
INT_SCHEMES = [s for s in SCHEMES if formats.SCHEMES[s].compute != "weight_only"]

pytestmark = pytest.mark.skipif(not SIMD_ISAS, reason="no SIMD ISA on this CPU/build")


@pytest.fixture(autouse=True)
def restore_isa():
    before = lowbit._C.cpu_isa()
    yield
    lowbit.set_cpu_isa(before)


def make_weight(scheme, N, K, group_size, gen, bias=True, unit_scales=False):
    s = formats.SCHEMES[scheme]
    codes = torch.randint(0, s.max_code + 1, (N, K), generator=gen, dtype=torch.int32)
    G = formats.num_groups(K, group_size)
    if unit_scales:
        scales = torch.ones(N, G, dtype=torch.float16)
    else:
        scales = ((torch.rand(N, G, generator=gen) + 0.5) * 0.02).half()
    zeros = torch.randint(0, s.max_code + 1, (N, G), generator=gen, dtype=torch.int32).to(torch.uint8) if s.has_zeros else None
    b = torch.randn(N, generator=gen) if bias else None
    return formats.pack(codes, s), scales, zeros, b, codes


def run_linear(isa, x, w, scheme, K, gs):
    lowbit.set_cpu_isa(isa)
    qweight, scales, zeros, bias, _ = w
    return ops.linear(x, qweight, scales, zeros, bias, scheme, K, gs)


def check_close(scheme, got, ref, x, w, K, gs):
    if formats.SCHEMES[scheme].compute != "weight_only":
        assert torch.equal(got, ref), (got - ref).abs().max()
        return
    # Tolerance relative to sum |x| |w|: the size of the terms, not of a cancelling sum.
    wd = formats.dequantize(w[0], w[1], w[2], scheme, K, gs).double()
    mag = x.double().abs().reshape(-1, K) @ wd.abs().T
    err = (got.double() - ref.double()).abs().reshape(mag.shape)
    assert (err <= 1e-5 * mag + 1e-6).all(), (err / (mag + 1e-12)).max()


def group_sizes(K):
    # 32, 64, 128 where they split K into groups (the last one may be partial), and per-channel.
    return sorted({g for g in (32, 64, 128) if g < K} | {K})


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("K", [32, 96, 100, 576, 1000])
def test_linear_matches_scalar(isa, scheme, K):
    gen = torch.Generator().manual_seed(hash((scheme, K)) % 2**31)
    N = 37
    for gs in group_sizes(K):
        w = make_weight(scheme, N, K, gs, gen, bias=gs != 64)
        for M in (1, 3, 7, 64, 129):
            x = torch.randn(M, K, generator=gen)
            ref = run_linear("scalar", x, w, scheme, K, gs)
            got = run_linear(isa, x, w, scheme, K, gs)
            check_close(scheme, got, ref, x, w, K, gs)


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_many_tasks_and_dtypes(isa, scheme):
    """Enough rows for many tasks (threads, the M split), leading dims, fp16/bf16 in and out."""
    gen = torch.Generator().manual_seed(7)
    N, K, gs = 301, 576, 128
    w = make_weight(scheme, N, K, gs, gen)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 35, K, generator=gen).to(dtype)
        ref = run_linear("scalar", x, w, scheme, K, gs)
        got = run_linear(isa, x, w, scheme, K, gs)
        assert got.shape == (2, 35, N) and got.dtype == dtype
        if dtype == torch.float32:
            check_close(scheme, got, ref, x, w, K, gs)
        else:
            torch.testing.assert_close(got.float(), ref.float(), rtol=1e-2, atol=1e-2)


def unit_scale_outputs(isa, q, qweight, scales, scheme, K, gs):
    """linear_q of int8 codes q with unit activation scales, on the scalar ISA and on isa."""
    one = torch.ones(q.shape[0])
    outs = []
    for isa_ in ("scalar", isa):
        lowbit.set_cpu_isa(isa_)
        outs.append(torch.ops.lowbit.linear_q(q, one, qweight, scales, None, scheme, K, gs, torch.float32))
    return outs


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("scheme", INT_SCHEMES)
@pytest.mark.parametrize("K", [100, 1000, 8300])
def test_exact_integers(isa, scheme, K):
    """Unit scales: linear_q returns the exact integer dot products, as the scalar ISA does.
    K = 8300 runs past the 255 blocks an int16 add-only lane holds (the widening path);
    M = 5 takes the GEMV kernels, M = 21 the GEMM ones."""
    s = formats.SCHEMES[scheme]
    gen = torch.Generator().manual_seed(K)
    N = 19
    qweight, scales, _, _, codes = make_weight(scheme, N, K, K, gen, bias=False, unit_scales=True)
    for M in (5, 21):
        x = torch.randn(M, K, generator=gen)
        x[0] = 1.0  # a token of all +qmax: the largest sums
        q, _ = torch.ops.lowbit.quantize_act(x, s.abits)
        expect = (q.long() @ formats.code_values(codes, s).long().T).double()
        assert expect.abs().max() < 2**24  # exact in float32
        ref, got = unit_scale_outputs(isa, q, qweight, scales, scheme, K, K)
        assert torch.equal(got, ref)
        assert torch.equal(got.double(), expect)


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("scheme", ["ternary", "binary"])
@pytest.mark.parametrize("K,gs", [(100, 100), (8300, 8300), (8300, 4096), (576, 64)])
def test_addonly_many_tokens_exact(isa, scheme, K, gs):
    """The lookup-table GEMM (64+ tokens): exact integer sums with unit scales, past the 64
    k-groups an int16 lane holds and across group boundaries, 45 rows (a partial panel),
    equal to the scalar ISA bit for bit also with real scales."""
    s = formats.SCHEMES[scheme]
    gen = torch.Generator().manual_seed(K + gs)
    N, M = 45, 70
    qweight, scales, _, _, codes = make_weight(scheme, N, K, gs, gen, bias=False, unit_scales=True)
    x = torch.randn(M, K, generator=gen)
    x[0] = 1.0  # all +qmax: the largest sums
    x[1] = -1.0
    q, _ = torch.ops.lowbit.quantize_act(x, s.abits)
    vals = formats.code_values(codes, s).long()
    G = formats.num_groups(K, gs)
    expect = sum((q[:, g * gs:(g + 1) * gs].long() @ vals[:, g * gs:(g + 1) * gs].T) for g in range(G)).double()
    ref, got = unit_scale_outputs(isa, q, qweight, scales, scheme, K, gs)
    assert torch.equal(got, ref)
    assert torch.equal(got.double(), expect)
    w = make_weight(scheme, N, K, gs, gen)
    ref = run_linear("scalar", x, w, scheme, K, gs)
    assert torch.equal(run_linear(isa, x, w, scheme, K, gs), ref)


@pytest.mark.parametrize("isa", SIMD_ISAS)
def test_set_num_threads_same_result(isa):
    gen = torch.Generator().manual_seed(3)
    w = make_weight("w4a8", 130, 256, 64, gen)
    x = torch.randn(9, 256, generator=gen)
    before = lowbit.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            lowbit.set_num_threads(n)
            outs.append(run_linear(isa, x, w, "w4a8", 256, 64))
    finally:
        lowbit.set_num_threads(before)
    assert all(torch.equal(o, outs[0]) for o in outs)


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("bits", [8, 4, 3])
def test_quantize_act_matches_scalar(isa, bits):
    """The vectorized per-token quantizer is bit-identical to the scalar one: ties (x / s exactly
    k + 0.5 round to even), an all-zero token, NaN and inf, K that is not a multiple of the
    vector width."""
    gen = torch.Generator().manual_seed(bits)
    for K in (1, 7, 31, 33, 100, 4096):
        x = torch.randn(6, K, generator=gen) * 3
        qmax = 2 ** (bits - 1) - 1
        x[1] = torch.randint(-2 * qmax, 2 * qmax + 1, (K,), generator=gen) * 0.5  # ties
        x[1, 0] = qmax  # amax = qmax: s = 1, x / s = exact halves
        x[2] = 0.0
        x[3, K // 2] = float("nan")
        x[4, K - 1] = float("inf")
        x[5, 0] = float("-inf")
        outs = {}
        for isa_ in ("scalar", isa):
            lowbit.set_cpu_isa(isa_)
            outs[isa_] = torch.ops.lowbit.quantize_act(x, bits)
        assert torch.equal(outs[isa][0], outs["scalar"][0])
        assert torch.equal(outs[isa][1], outs["scalar"][1])


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("scheme", ["w4a16", "w3a16"])
@pytest.mark.parametrize("K", [1000, 4096])
def test_weight_only_gemv_hard_activations(isa, scheme, K):
    """Activations that break shortcuts in a float kernel (fixed-point or bf16 activations, a
    zero-point term taken out of the sum): a 1e4 outlier, all-positive values (the zero-point
    term then cancels most of the sum), tiny values, half a token of zeros, per channel and
    per group, within the tolerance; an Inf or NaN makes that token's outputs non-finite."""
    gen = torch.Generator().manual_seed(K)
    N = 29
    for gs in (128, K):
        w = make_weight(scheme, N, K, gs, gen)
        x = torch.randn(6, K, generator=gen)
        x[0, 7] = 1e4
        x[1] = x[1].abs() + 1.0
        x[2] *= 1e-30
        x[3, : K // 2] = 0.0
        ref = run_linear("scalar", x, w, scheme, K, gs)
        got = run_linear(isa, x, w, scheme, K, gs)
        check_close(scheme, got, ref, x, w, K, gs)
        x[4, 3], x[5, K - 1] = float("inf"), float("nan")
        got = run_linear(isa, x, w, scheme, K, gs)
        assert not torch.isfinite(got[4:]).any() and torch.isfinite(got[:4]).all()


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("scheme", [s for s in SCHEMES if formats.SCHEMES[s].compute == "integer"])
@pytest.mark.parametrize("K", [150, 1000])
def test_linear_static_matches_scalar(isa, scheme, K):
    """RPTQ's static-activation matmul: the SIMD tables dequantize the same activation codes and
    run their fused-dequant kernel (cpu/common/static_act.h); within 1e-5 of the size of the
    terms of the scalar reference's exact per-piece integer sums, and bit-exact with unit
    scales (every partial sum an integer below 2^24). The 4- and 3-bit schemes also with their
    CPU layout, which the layout GEMV reads as its weight-only twin's (a few tokens)."""
    from lowbit.quant.rptq import expand_segments
    abits = formats.SCHEMES[scheme].abits
    gen = torch.Generator().manual_seed(K + abits)
    N = 23
    seg_end = torch.sort(torch.randperm(K - 1, generator=gen)[:6] + 1).values.to(torch.int32)
    seg_end = torch.cat([seg_end, torch.tensor([K], dtype=torch.int32)])
    C = seg_end.numel()
    act_zero = torch.randint(0, 2 ** abits, (C,), generator=gen, dtype=torch.int32)
    for gs in (64, K):
        for unit in (True, False):
            qweight, scales, _, bias, _ = make_weight(scheme, N, K, gs, gen, bias=not unit, unit_scales=unit)
            act_scale = torch.ones(C) if unit else torch.rand(C, generator=gen) * 0.2 + 0.05
            layout = ops.prepack_cpu(qweight, scales, None, scheme, K, gs)
            for M in (1, 2, 5, 40, 70):  # 70 x 1000: the activation codes on the threads
                x = torch.randn(M, K, generator=gen) * (2 ** abits if unit else 1.0)
                if M == 70 and not unit:  # the reference's clamp: NaN -> code 0, +-Inf -> the ends
                    x[3, 5], x[4, 7], x[5, 9] = float("nan"), float("inf"), float("-inf")
                outs = {}
                for isa_, lay in (("scalar", None), (isa, None), (isa + "+layout", layout)):
                    lowbit.set_cpu_isa(isa_.split("+")[0])
                    outs[isa_] = ops.linear_static(x, qweight, scales, bias, act_scale, act_zero, seg_end, scheme,
                                                   K, gs, abits, lay)
                if unit:
                    assert torch.equal(outs[isa], outs["scalar"])
                    assert torch.equal(outs[isa + "+layout"], outs["scalar"])
                    continue
                s_ch, z_ch = expand_segments(act_scale, seg_end), expand_segments(act_zero, seg_end)
                u = (torch.round(x / s_ch) + z_ch).clamp(0, 2 ** abits - 1)
                u = torch.where(torch.isnan(u), 0.0, u)
                xd = ((u - z_ch) * s_ch).double()
                wd = formats.dequantize(qweight, scales, None, scheme, K, gs).double()
                mag = xd.abs() @ wd.abs().T
                for key in (isa, isa + "+layout"):
                    err = (outs[key].double() - outs["scalar"].double()).abs()
                    assert (err <= 1e-5 * mag + 1e-6).all(), (key, (err / (mag + 1e-12)).max())


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("scheme", ["w4a16", "w3a16"])
def test_weight_only_gemm_every_token_remainder(isa, scheme):
    """The weight-only GEMM runs up to 12 tokens per microkernel call: every count of leftover
    tokens (M = 16..28), with the M split of a narrow layer (2 row panels, tasks starting inside a
    12-token block) and of a wide one."""
    gen = torch.Generator().manual_seed(5)
    for N in (37, 301):
        w = make_weight(scheme, N, 100, 32, gen)
        for M in list(range(16, 29)) + [67]:
            x = torch.randn(M, 100, generator=gen)
            ref = run_linear("scalar", x, w, scheme, 100, 32)
            got = run_linear(isa, x, w, scheme, 100, 32)
            check_close(scheme, got, ref, x, w, 100, 32)


def test_thread_backends_agree():
    """lowbit runs its CPU tasks on torch's OpenMP team when torch's backend is OpenMP (the
    default here) and on its own pool with LOWBIT_THREADS=pool: both give bit-identical results,
    from 1-3 threads, from two Python threads at once, and the pool is what backend_info says."""
    import subprocess
    import sys
    code = """
import threading, torch, lowbit
from lowbit import formats, ops
gen = torch.Generator().manual_seed(3)
s = formats.SCHEMES["w4a8"]
codes = torch.randint(0, 16, (301, 576), generator=gen, dtype=torch.int32)
qw, sc = formats.pack(codes, s), (torch.rand(301, 5, generator=gen) * 0.02 + 0.01).half()
x = torch.randn(70, 576, generator=gen)
outs = []
for n in (1, 2, 3):
    lowbit.set_num_threads(n)
    outs.append(ops.linear(x, qw, sc, None, None, "w4a8", 576, 128))
res = [None, None]
def run(i):
    res[i] = ops.linear(x, qw, sc, None, None, "w4a8", 576, 128)
ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
outs += res
assert all(torch.equal(o, outs[0]) for o in outs)
print(lowbit.backend_info()["threads"])
print(outs[0].double().sum().item())
"""
    runs = {}
    for mode in ("openmp", "pool"):
        env = dict(os.environ, LOWBIT_THREADS=mode)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        runs[mode] = r.stdout.split("\n")
    openmp_backend = "ATen parallel backend: OpenMP" in torch.__config__.parallel_info()
    assert runs["openmp"][0].startswith("OpenMP team (") == openmp_backend, runs["openmp"][0]
    assert runs["pool"][0] == "lowbit's own pool"
    assert runs["openmp"][1] == runs["pool"][1]  # the same outputs
