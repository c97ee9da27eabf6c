"""QLinear in a small transformer block, under torch.compile(fullgraph=True), through
save/load; lowbit.quantize's skip list; every op passes torch.library.opcheck."""
import pytest
import torch
from torch import nn

import lowbit
from conftest import make_qlinear


class Block(nn.Module):
    """A pre-norm transformer block: attention + MLP, every projection an nn.Linear."""

    def __init__(self, d=96, heads=4, ff=160):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.up = nn.Linear(d, ff)
        self.down = nn.Linear(ff, d)
        self.head = nn.Linear(d, 50, bias=False)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, D // self.heads).unbind(2)
        a = nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                       is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        x = x + self.down(nn.functional.gelu(self.up(self.norm2(x))))
        return self.head(x)


@pytest.mark.parametrize("scheme", list(lowbit.SCHEMES))
def test_block_quantize_and_reload(scheme, tmp_path):
    torch.manual_seed(1)
    model = Block().eval()
    x = torch.randn(2, 7, 96)
    y_float = model(x)
    lowbit.quantize(model, scheme=scheme, skip=["head"], progress=False)
    assert isinstance(model.qkv, lowbit.QLinear) and isinstance(model.down, lowbit.QLinear)
    assert type(model.head) is nn.Linear  # skipped
    y = model(x)
    assert y.shape == y_float.shape and torch.isfinite(y).all()
    # The quantized block computes what its dequantized weights say (activation rounding aside).
    rel = ((y - y_float).norm() / y_float.norm()).item()
    assert rel < {"w8a8": 0.05, "w4a16": 0.3, "w4a8": 0.3}.get(scheme, 1.5)

    path = tmp_path / "block.safetensors"
    lowbit.save(model, path)
    fresh = Block().eval()
    lowbit.load(fresh, path)
    assert isinstance(fresh.qkv, lowbit.QLinear) and fresh.qkv.scheme == scheme
    assert type(fresh.head) is nn.Linear
    assert torch.equal(fresh(x), y)


def test_block_under_torch_compile_fullgraph():
    """One compiled graph holding a layer of every scheme, equal to eager."""
    torch.manual_seed(2)
    layers = [make_qlinear(s, 64, 64, 32) for s in lowbit.SCHEMES]
    net = nn.Sequential(*[m for q in layers for m in (q, nn.LayerNorm(64))]).eval()
    x = torch.randn(3, 5, 64)
    eager = net(x)
    compiled = torch.compile(net, fullgraph=True)
    assert torch.allclose(compiled(x), eager, rtol=1e-5, atol=1e-5)
    x2 = torch.randn(2, 9, 64)  # another shape: no graph break, same answer
    assert torch.allclose(compiled(x2), net(x2), rtol=1e-5, atol=1e-5)


def test_quantize_skip_patterns():
    model = Block()
    lowbit.quantize(model, scheme="w4a16", skip=["qkv", "*.nothing", "do*"], progress=False)
    kinds = {n: type(m).__name__ for n, m in model.named_children()}
    assert kinds["qkv"] == "Linear" and kinds["down"] == "Linear"
    assert kinds["proj"] == "QLinear" and kinds["up"] == "QLinear" and kinds["head"] == "QLinear"


def test_dequantize_is_what_the_kernel_uses():
    q = make_qlinear("w3a16", 19, 130, 64)
    x = torch.randn(4, 130)
    assert torch.allclose(q(x), x @ q.dequantize().T + q.bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme", list(lowbit.SCHEMES))
def test_opcheck_linear(scheme):
    q = make_qlinear(scheme, 17, 100, 32)
    for x in (torch.randn(3, 100), torch.randn(2, 2, 100).bfloat16()):
        torch.library.opcheck(torch.ops.lowbit.linear.default,
                              (x, q.qweight, q.scales, q.zeros, q.bias, q.scheme, q.in_features,
                               q.kernel_group_size))


def test_opcheck_quantize_act_and_linear_q():
    x = torch.randn(3, 4, 100)
    torch.library.opcheck(torch.ops.lowbit.quantize_act.default, (x, 4))
    q = make_qlinear("w4a4", 9, 100, -1)
    qa, sa = torch.ops.lowbit.quantize_act(x, 4)
    torch.library.opcheck(torch.ops.lowbit.linear_q.default,
                          (qa, sa, q.qweight, q.scales, q.bias, "w4a4", 100, 100, torch.float32))


def test_bits_per_weight_counts_scales():
    q = make_qlinear("w4a16", 8, 4096, 128)
    assert q.bits_per_weight() == pytest.approx(4 + 24 / 128)
    t = make_qlinear("ternary", 8, 4096, -1)
    assert t.bits_per_weight() == pytest.approx(2 + 16 / 4096)


def test_backend_info():
    info = lowbit.backend_info()
    assert info["version"] == lowbit.__version__ and info["cpu_isa"] in info["cpu_isa_supported"]
    assert "scalar" in info["cpu_isa_supported"] and info["format_version"] == 1
    lowbit.set_num_threads(1)
    assert lowbit.get_num_threads() == 1
    lowbit.set_num_threads(2)
    assert lowbit.get_num_threads() == 2


@pytest.mark.parametrize("scheme", ["w4a16", "w4a4"])
def test_backward_goes_through_dequantized_weight(scheme):
    q = make_qlinear(scheme, 13, 70, 32)
    x = torch.randn(3, 70, requires_grad=True)
    q(x).square().sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    # Straight-through for the activation rounding: the gradient of the dequantized matmul
    # evaluated at the kernel's own output.
    y = q(x2.detach())
    (x2 @ q.dequantize().T).backward(2 * y)
    assert torch.allclose(x.grad, x2.grad, rtol=1e-5, atol=1e-5)


def test_eager_fast_path_matches_the_op_and_yields_to_tracing_and_autograd():
    """lowbit.ops.linear skips the torch.library dispatcher only when nothing traces or
    differentiates: the result is the op's, fake tensors still get the fake impl, and a
    requires_grad input still gets a gradient."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from lowbit import ops
    q = make_qlinear("w4a8", 13, 70, -1)
    args = (q.qweight, q.scales, q.zeros, q.bias, q.scheme, q.in_features, q.kernel_group_size)
    x = torch.randn(3, 70)
    assert ops._eager(x, q.scales, q.bias)
    assert torch.equal(ops.linear(x, *args), torch.ops.lowbit.linear(x, *args))
    with FakeTensorMode() as mode:
        fx = mode.from_tensor(x)
        y = ops.linear(fx, *(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args))
        assert type(y).__name__ == "FakeTensor" and y.shape == (3, 13)
    xg = x.clone().requires_grad_()
    assert not ops._eager(xg, q.scales, q.bias)
    ops.linear(xg, *args).sum().backward()
    assert torch.allclose(xg.grad, q.dequantize().sum(0).expand(3, -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme", list(lowbit.SCHEMES))
def test_cpu_fast_path_matches_and_refreshes(scheme):
    """QLinear's eager CPU path (ops.CpuLinear: the weight checked once, x checked per call) gives
    what ops.linear gives, follows in-place writes and replaced buffers, steps aside for
    autograd, and leaves the errors to ops.linear."""
    torch.manual_seed(1)
    q = lowbit.QLinear.from_linear(torch.nn.Linear(100, 37), scheme, group_size=-1)
    x = torch.randn(3, 2, 100)

    def expect(x=x):  # the same kernels (given the same CPU layout) through the checked entry point
        return lowbit.ops.linear(x, q.qweight, q.scales, q.zeros, q.bias, scheme, 100, q.kernel_group_size,
                                 q._cpu_layout_for(x))

    with torch.no_grad():
        assert torch.equal(q(x), expect())
        fast = q._cpu_linear[1]
        q(x)
        assert q._cpu_linear[1] is fast  # kept while nothing changes
        q.scales.mul_(0.5)  # in place: the version counter moves
        q.bias.add_(1.0)
        assert torch.equal(q(x), expect()) and q._cpu_linear[1] is not fast
        other = lowbit.QLinear.from_linear(torch.nn.Linear(100, 37), scheme, group_size=-1)
        q.load_state_dict(other.state_dict())
        assert torch.equal(q(x), expect())
        q.qweight = other.qweight.clone()  # reassigned
        assert torch.equal(q(x), expect())
        xb = x.to(torch.bfloat16)
        assert q(xb).dtype == torch.bfloat16 and torch.equal(q(xb), expect(xb))
        with pytest.raises(ValueError, match="last dimension must be in_features=100"):
            q(torch.randn(2, 99))
        with pytest.raises(TypeError, match="x: expected dtype"):
            q(torch.randn(2, 100, dtype=torch.float64))
        y = q(x.transpose(0, 1))  # non-contiguous input: forward makes it contiguous
        assert torch.equal(y, q(x.transpose(0, 1).contiguous()))
    xg = x.clone().requires_grad_(True)
    q(xg).sum().backward()  # autograd: the op path, which has a backward
    assert xg.grad is not None and xg.grad.shape == x.shape
    import copy
    import pickle
    c = copy.deepcopy(q)
    assert "_cpu_linear" not in c.__dict__ and "_cpu_linear" not in pickle.loads(pickle.dumps(q)).__dict__
    with torch.no_grad():
        assert torch.equal(c(x), q(x))
