"""The CPU layout (lowbit_prepack_cpu, docs/formats.md "CPU layout") and the GEMVs that read it
(csrc/cpu/avx512/layout_gemv.cpp, csrc/cpu/avx2/layout_gemv.cpp), against the scalar reference.

The layout is checked byte for byte against an independent Python transcription of the spec;
the kernels on odd shapes, every group-size kind, 1-9 tokens (AVX-512 serves 1-3 of the
bit-group schemes, AVX2 up to 8 for w4a16/w3a16, 4 for w3a3 and 1 for w4a8/w4a4, and each must
hand the rest to the other kernels), bit-exact for the integer schemes, and for w4a16/w3a16 on hard activations
(outliers, tiny, denormal, huge, zero, Inf, NaN: its fixed point must not break any of them);
and QLinear must keep a layout exactly where the active kernels read it and rebuild it when
its weight changes.
"""
import pytest
import torch

import lowbit
from lowbit import formats, ops
from lowbit.nn import QLinear

from test_cpu_isa import check_close, group_sizes, make_weight, run_linear

ISAS = lowbit._C.cpu_isa_supported().split(",")  # the layout must be harmless on every ISA
LAYOUT_SCHEMES = ["w4a16", "w3a16", "w3a3", "w4a8", "w4a4", "ternary", "binary"]
# Whose layout each ISA's kernels read (lowbit_cpu_layout_used): the rest run the canonical arrays.
READERS = {"scalar": set(), "avx2": {"w4a16", "w3a16", "w3a3", "w4a8", "w4a4"},
           "avx512": {"w4a16", "w3a16", "w3a3", "w4a8", "w4a4", "ternary", "binary"}}
WEIGHT_ONLY = ["w4a16", "w3a16"]


@pytest.fixture(autouse=True)
def restore_isa():
    before = lowbit._C.cpu_isa()
    yield
    lowbit.set_cpu_isa(before)


def test_which_schemes_have_a_layout():
    for name in formats.SCHEMES:
        n = ops.cpu_layout_bytes(name, 5, 40, 40)
        assert (n > 0) == (name in ops.CPU_LAYOUT_SCHEMES) == (name in LAYOUT_SCHEMES), name


def test_which_layouts_each_isa_reads():
    for isa in ISAS:
        lowbit.set_cpu_isa(isa)
        assert {s for s in formats.SCHEMES if ops.cpu_layout_used(s)} == READERS[isa], isa


def spec_lut_index(codes, scheme, gs):
    """Ternary/binary: panels of 128 rows, idx[j][128] (docs/formats.md), transcribed plainly:
    binary bytes of two plus nibbles, ternary 16-bit words of three base-3 fields per group."""
    N, K = codes.shape
    P = (N + 127) // 128
    out = bytearray()
    if scheme == "binary":
        Kp = (K + 31) // 32 * 32
        c = torch.zeros(P * 128, Kp, dtype=torch.int64)  # codes past K as packed: 0
        c[:N, :K] = codes.long()
        for p in range(P):
            for j in range(Kp // 8):
                for r in range(128):
                    x = c[p * 128 + r, j * 8:(j + 1) * 8].tolist()
                    out.append(0 if p * 128 + r >= N else
                               sum((x[i] == 1) << i for i in range(4)) | sum((x[4 + i] == 1) << i for i in range(4)) << 4)
        return bytes(out)
    groups = [codes[:, k0:k0 + gs].long() for k0 in range(0, K, gs)]
    words_per_row = sum(-(-g.shape[1] // 9) for g in groups)
    words = torch.zeros(P * 128, words_per_row, dtype=torch.int64)
    for n in range(N):
        j = 0
        for g in groups:
            c = g[n].tolist()
            c += [1] * (-len(c) % 9)  # past the group's end: code 1 (weight 0)
            for w0 in range(0, len(c), 9):
                fields = [9 * c[w0 + 3 * f] + 3 * c[w0 + 3 * f + 1] + c[w0 + 3 * f + 2] for f in range(3)]
                words[n, j] = fields[0] | fields[1] << 5 | fields[2] << 10
                j += 1
    for p in range(P):
        out += words[p * 128:(p + 1) * 128].T.contiguous().to(torch.int16).numpy().astype("<u2").tobytes()
    return bytes(out)


def spec_layout(codes, scales, zeros, bits, K, gs):
    """The 4-/3-bit schemes: docs/formats.md, "CPU layout", transcribed plainly (zeros None: no
    zero-point part)."""
    N = codes.shape[0]
    Kp = (K + 31) // 32 * 32
    nb, G, T = Kp // 32, formats.num_groups(K, gs), (N + 15) // 16
    c = torch.zeros(T * 16, Kp, dtype=torch.int64)
    c[:N, :K] = codes.long()
    out = bytearray()
    for t in range(T):
        for b in range(nb):
            for j in range(bits):
                for r in range(16):
                    x = c[t * 16 + r, b * 32:(b + 1) * 32].tolist()
                    for i in range(4):
                        if bits == 4:
                            byte = x[8 * j + i] | x[8 * j + 4 + i] << 4
                        elif j == 0:
                            byte = x[i] | x[4 + i] << 3 | (x[24 + i] & 3) << 6
                        elif j == 1:
                            byte = x[8 + i] | x[12 + i] << 3 | (x[24 + i] >> 2) << 6 | (x[28 + i] >> 2) << 7
                        else:
                            byte = x[16 + i] | x[20 + i] << 3 | (x[28 + i] & 3) << 6
                        out.append(byte)
        sc = torch.zeros(16, G, dtype=torch.float16)
        zz = torch.zeros(16, G, dtype=torch.uint8)
        rows = slice(t * 16, min(N, t * 16 + 16))
        sc[: rows.stop - rows.start] = scales[rows]
        out += sc.T.contiguous().view(torch.uint8).numpy().tobytes()
        if zeros is not None:
            zz[: rows.stop - rows.start] = zeros[rows]
            out += zz.T.contiguous().numpy().tobytes()
    return bytes(out)


@pytest.mark.parametrize("scheme", LAYOUT_SCHEMES)
@pytest.mark.parametrize("N,K,gs", [(1, 32, 32), (21, 80, 64), (16, 96, 96), (33, 200, 32)])
def test_layout_bytes_follow_the_spec(scheme, N, K, gs):
    gen = torch.Generator().manual_seed(N * K)
    qweight, scales, zeros, _, codes = make_weight(scheme, N, K, gs, gen)
    layout = ops.prepack_cpu(qweight, scales, zeros, scheme, K, gs)
    assert layout.dtype == torch.uint8 and layout.numel() == ops.cpu_layout_bytes(scheme, N, K, gs)
    if scheme in ("ternary", "binary"):
        assert layout.numpy().tobytes() == spec_lut_index(codes, scheme, gs)
    else:
        assert layout.numpy().tobytes() == spec_layout(codes, scales, zeros, formats.SCHEMES[scheme].wbits, K, gs)


def linear_with_layout(isa, x, w, scheme, K, gs, layout):
    lowbit.set_cpu_isa(isa)
    qweight, scales, zeros, bias, _ = w
    return ops.linear(x, qweight, scales, zeros, bias, scheme, K, gs, layout)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("scheme", LAYOUT_SCHEMES)
@pytest.mark.parametrize("K", [32, 100, 576, 1000])
def test_gemv_with_layout_matches_scalar(isa, scheme, K):
    gen = torch.Generator().manual_seed(hash((scheme, K, 1)) % 2**31)
    for N in (1, 16, 45):
        for gs in group_sizes(K):
            w = make_weight(scheme, N, K, gs, gen, bias=gs != 64)
            layout = ops.prepack_cpu(w[0], w[1], w[2], scheme, K, gs)
            for M in (1, 2, 3, 4, 5, 8, 9) + ((70,) if scheme in ("ternary", "binary") else ()):
                x = torch.randn(M, K, generator=gen)
                ref = run_linear("scalar", x, w, scheme, K, gs)
                got = linear_with_layout(isa, x, w, scheme, K, gs, layout)
                check_close(scheme, got, ref, x, w, K, gs)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("scheme", WEIGHT_ONLY)
@pytest.mark.parametrize("K", [1000, 3200, 4096])  # 3200 per channel: AVX2 spans of 64 + 36 blocks
def test_gemv_with_layout_hard_activations(isa, scheme, K):
    """One token at a time, in pairs and six at once (the layout kernels' cases): a 1e4 outlier, all-positive
    values, tiny (1e-30), denormal (1e-41) and huge (1e30) tokens, half zeros, all zeros; an Inf
    or NaN makes exactly that token's outputs non-finite (the call falls back to floats)."""
    gen = torch.Generator().manual_seed(K + 1)
    N = 29
    for gs in (128, K):
        w = make_weight(scheme, N, K, gs, gen)
        layout = ops.prepack_cpu(w[0], w[1], w[2], scheme, K, gs)
        x = torch.randn(8, K, generator=gen)
        x[0, 7] = 1e4
        x[1] = x[1].abs() + 1.0
        x[2] *= 1e-30
        x[3, : K // 2] = 0.0
        x[4] = 0.0
        x[5] *= 1e30
        x[6] *= 1e-41
        for rows in ([0], [1], [2], [3], [4], [5], [6], [0, 1], [2, 5], [3, 4, 6], [0, 1, 2, 3, 4, 5]):
            xs = x[rows]
            ref = run_linear("scalar", xs, w, scheme, K, gs)
            got = linear_with_layout(isa, xs, w, scheme, K, gs, layout)
            if rows == [6]:  # denormal inputs: both are ~1e-41 * |w|; compare absolutely
                assert (got - ref).abs().max() < 1e-40
                continue
            check_close(scheme, got, ref, xs, w, K, gs)
        x[7, 3] = float("inf")
        got = linear_with_layout(isa, x[[0, 7]], w, scheme, K, gs, layout)
        assert torch.isfinite(got[0]).all() and not torch.isfinite(got[1]).any()
        x[7, 3] = float("nan")
        got = linear_with_layout(isa, x[[7]], w, scheme, K, gs, layout)
        assert torch.isnan(got).all()


def test_bad_layouts_raise():
    gen = torch.Generator().manual_seed(0)
    w = make_weight("w4a16", 20, 64, 32, gen)
    x = torch.randn(1, 64)
    layout = ops.prepack_cpu(w[0], w[1], w[2], "w4a16", 64, 32)
    with pytest.raises(ValueError, match="expected .* bytes"):
        ops.linear(x, *w[:4], "w4a16", 64, 32, layout[:-1])
    with pytest.raises(TypeError, match="cpu_layout: expected dtype uint8"):
        ops.linear(x, *w[:4], "w4a16", 64, 32, layout.to(torch.int8))
    w3 = make_weight("w3a3", 20, 64, 32, gen)
    with pytest.raises(ValueError, match="expected .* bytes"):  # another scheme's layout
        ops.linear(x, *w3[:4], "w3a3", 64, 32, layout)
    wt = make_weight("w8a8", 20, 64, 32, gen)
    assert ops.prepack_cpu(wt[0], wt[1], None, "w8a8", 64, 32) is None
    with pytest.raises(ValueError, match="no CPU layout"):
        ops.linear(x, wt[0], wt[1], None, wt[3], "w8a8", 64, 32, layout)
    with pytest.raises(ValueError, match="lowbit: out has 3 bytes"):
        lowbit._C.prepack_cpu(formats.SCHEMES["w4a16"].id, 20, 64, 32, w[0].data_ptr(), w[1].data_ptr(),
                              w[2].data_ptr(), layout.data_ptr(), 3)
    with pytest.raises(ValueError, match="has no CPU layout"):
        lowbit._C.prepack_cpu(formats.SCHEMES["w8a8"].id, 20, 64, 32, wt[0].data_ptr(), wt[1].data_ptr(), 0,
                              layout.data_ptr(), layout.numel())


@pytest.mark.parametrize("scheme", LAYOUT_SCHEMES)
def test_qlinear_builds_its_layout_where_the_kernels_read_it(scheme):
    """On every ISA: QLinear keeps a layout exactly when that ISA's kernels read it, and drops or
    builds it when the ISA changes (lowbit.set_cpu_isa); results match the canonical path."""
    torch.manual_seed(0)
    q = QLinear.from_linear(torch.nn.Linear(96, 40), scheme, group_size=32)
    x = torch.randn(1, 96)
    with torch.no_grad():
        for isa in ISAS + ISAS[::-1]:
            lowbit.set_cpu_isa(isa)
            y = q(x)
            assert hasattr(q, "_cpu_layout") == (scheme in READERS[isa]), (isa, scheme)
            torch.testing.assert_close(y, ops.linear(x, q.qweight, q.scales, q.zeros, q.bias, scheme, 96, 32),
                                       rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme", LAYOUT_SCHEMES)
def test_qlinear_builds_and_refreshes_its_layout(scheme):
    readers = [i for i in ISAS if scheme in READERS[i]]
    if not readers:
        pytest.skip(f"no kernel of this CPU ({', '.join(ISAS)}) reads the {scheme} layout; that QLinear then "
                    "builds none is test_qlinear_builds_its_layout_where_the_kernels_read_it")
    lowbit.set_cpu_isa(readers[-1])
    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 40)
    q = QLinear.from_linear(lin, scheme, group_size=32)
    x = torch.randn(1, 96)

    def expect():  # the canonical format, no layout
        return ops.linear(x, q.qweight, q.scales, q.zeros, q.bias, scheme, 96, 32)

    with torch.no_grad():
        torch.testing.assert_close(q(x), expect(), rtol=1e-5, atol=1e-5)
        key, layout = q._cpu_layout
        assert layout.numel() == ops.cpu_layout_bytes(scheme, 40, 96, 32)
        assert "_cpu_layout" not in q.state_dict() and all("layout" not in k for k in q.state_dict())
        q(x)
        assert q._cpu_layout[1] is layout  # reused while nothing changed
        q.scales.mul_(2.0)  # written in place: the version counter moves
        torch.testing.assert_close(q(x), expect(), rtol=1e-5, atol=1e-5)
        other = QLinear.from_linear(torch.nn.Linear(96, 40), scheme, group_size=32)
        q.load_state_dict(other.state_dict())
        torch.testing.assert_close(q(x), expect(), rtol=1e-5, atol=1e-5)
        assert q._cpu_layout[1] is not layout
        q.use_cpu_layout = False  # the opt-out frees the layout
        torch.testing.assert_close(q(x), expect(), rtol=1e-5, atol=1e-5)
        assert not hasattr(q, "_cpu_layout")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("scheme", ["ternary", "binary"])
@pytest.mark.parametrize("K,gs", [(8300, 8300), (8300, 4096), (1000, 32), (577, 128)])
def test_addonly_layout_exact_at_the_largest_sums(isa, scheme, K, gs):
    """The lookup tables on the CPU layout (ternary base 3, binary nibbles), 1-9 tokens: exact
    integer sums with unit scales when every weight and activation is at its extreme (int16
    lanes at their limit before they widen), on random ones, and across group boundaries."""
    s = formats.SCHEMES[scheme]
    gen = torch.Generator().manual_seed(K + gs)
    N = 45
    qweight, scales, _, _, codes = make_weight(scheme, N, K, gs, gen, bias=False, unit_scales=True)
    extreme = torch.full((N // 3, K), 2 if scheme == "ternary" else 1, dtype=torch.int32)  # all +1
    extreme[N // 6:] = 0  # all -1
    codes[: N // 3] = extreme
    qweight = formats.pack(codes, s)
    layout = ops.prepack_cpu(qweight, scales, None, scheme, K, gs)
    for M in (1, 4, 9):
        x = torch.randn(M, K, generator=gen)
        x[0] = 1.0  # +qmax everywhere
        if M > 1:
            x[1] = -1.0  # -qmax everywhere
        q, xscale = torch.ops.lowbit.quantize_act(x, s.abits)
        expect = (q.long() @ formats.code_values(codes, s).long().T).double()
        ref = run_linear("scalar", x, (qweight, scales, None, None, None), scheme, K, gs)  # the oracle: exact sums
        assert torch.equal(ref.double(), (expect * xscale.double()[:, None]).float().double())
        got = linear_with_layout(isa, x, (qweight, scales, None, None, None), scheme, K, gs, layout)
        assert torch.equal(got, ref), (got - ref).abs().max()
