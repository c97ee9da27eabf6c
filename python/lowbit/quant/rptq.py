"""RPTQ (Yuan et al., "RPTQ: Reorder-based Post-training Quantization for Large Language
Models", arXiv 2304.01089) for the integer schemes w8a8, w4a8, w4a4, w3a3.

Activation channels of LLMs have very different ranges, so one static scale for a whole tensor
wastes most of the grid. RPTQ:
  1. calibrates the per-channel (min, max) of every quantized activation (the inputs of the
     linear layers);
  2. clusters the channels by their (min, max) point with KMeans (lowbit.quant.kmeans) into
     `clusters` groups (32 in the paper);
  3. reorders the channels so each cluster is a contiguous range, and quantizes each range
     statically and asymmetrically with its own scale / zero point from the cluster's range:
         u = clamp(round(x / s_c) + z_c, 0, 2^b - 1)
  4. never permutes activations at run time: the reorder is folded into the producer of the
     activation and into the consumer's weight columns:
       * norm outputs (q/k/v input, gate/up input): ReorderRMSNorm writes its output already in
         cluster order (one gather inside the norm, its weight permuted alike), and q/k/v
         (gate/up) store their weight columns in that order;
       * act(gate) * up (down_proj input): elementwise, so permuting the rows of gate and up
         alike permutes it; down_proj stores its columns in that order;
       * attention output (o_proj input): attention mixes tokens per head, channel by channel
         within a head, so a permutation of v_proj's output rows carries through to the
         attention output only if it keeps every channel in its head. With grouped-query
         attention (SmolLM2: 9 query heads share 3 kv heads of 64 channels), query head h reads
         kv head h // rep (transformers' repeat_kv), so one permutation pi_j of kv head j's
         channels moves the channels of all `rep` query heads of that group alike. lowbit
         therefore clusters the 64 * n_kv "value channels": channel d of kv head j gets the range
         spanned by o_proj input channels h*64 + d over the query heads h of group j (min of the
         mins, max of the maxes), the KMeans runs over these points, pi_j sorts head j's
         channels by cluster, v_proj rows and o_proj columns are permuted by it. The o_proj
         input is then contiguous per (head, cluster) piece, not per cluster: the kernel takes
         any list of contiguous segments, each with its cluster's scale and zero, so the
         segments of one cluster in different heads simply repeat that cluster's parameters.
         The paper likewise reorders the out-projection input within heads.
  5. quantizes the weights with GPTQ on the reordered inputs (per-channel symmetric, the
     integer schemes' grid), block by block and group by group in call order ("true
     sequential"), each group seeing the already quantized (weights and activations) layers
     before it. The Hessian and the (min, max) statistics of a group come from one forward
     pass over the calibration data; the Hessian of the reordered input is the permuted one.

Run time: QLinearStatic calls torch.ops.lowbit.linear_static (static codes computed inside the
kernel, exact int32 dot products per (segment x weight group) piece, scales in the epilogue).
Its `simulate` flag runs the same arithmetic in float torch (fake quantization + the decoded
weights) instead: calibration uses it (fast BLAS), and the benchmark uses it for long evaluations
beside a kernel run that checks they agree.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from .. import formats, ops
from ..nn import cached_cpu_layout
from ..formats import get_scheme, num_groups, resolve_group_size, row_bytes
from .gptq import gptq_quantize
from .kmeans import kmeans


# ---- static activation quantization parameters --------------------------------------------------

def static_params(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric min-max parameters (float32 scale, int32 zero) of ranges [lo, hi]. The range is
    widened to hold 0 (so the zero point is a valid code and 0 is represented exactly, as in
    GPTQ's and most static quantizers); a dead range gets scale 1."""
    umax = 2 ** bits - 1
    lo = lo.double().clamp(max=0)
    hi = hi.double().clamp(min=0)
    scale = ((hi - lo) / umax).float()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-lo / scale.double()).clamp(0, umax).to(torch.int32)
    return scale, zero


def fake_quant_static(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """(u - z) * s with u = clamp(round(x / s) + z, 0, 2^b - 1), per channel (scale / zero [K]):
    in float32 with the same operations as the kernel (x / s, round half to even)."""
    s, z = scale.float(), zero.float()
    u = (torch.round(x.float() / s) + z).clamp(0, 2 ** bits - 1)
    return ((u - z) * s).to(x.dtype)


def segments_of(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs of equal labels in a sequence -> (segment ends int32 [S], cluster of each segment)."""
    labels = labels.long()
    change = torch.nonzero(labels[1:] != labels[:-1]).flatten() + 1
    ends = torch.cat([change, torch.tensor([labels.numel()])])
    return ends.to(torch.int32), labels[ends - 1]


def expand_segments(values: torch.Tensor, seg_end: torch.Tensor) -> torch.Tensor:
    """Per-segment values [S] -> per-channel [K]."""
    starts = torch.cat([seg_end.new_zeros(1), seg_end[:-1]])
    return values.repeat_interleave((seg_end - starts).long())


# ---- modules ------------------------------------------------------------------------------------

class ReorderRMSNorm(nn.Module):
    """RMSNorm (LLaMA's: float32 normalisation, weight applied in the input dtype) whose output
    channels come out in the order `perm`: out[..., j] = norm(x)[..., perm[j]] * weight[j]. The
    stored weight is the original one permuted, so this is the original norm followed by a
    gather, fused: the only place an RPTQ model moves activation channels."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, device=None, dtype=torch.float32):
        super().__init__()
        self.hidden_size, self.variance_epsilon = hidden_size, eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_buffer("perm", torch.arange(hidden_size, device=device))

    @classmethod
    @torch.no_grad()
    def from_norm(cls, norm: nn.Module, perm: torch.Tensor) -> "ReorderRMSNorm":
        w = norm.weight.detach()
        eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
        m = cls(w.numel(), eps, device=w.device, dtype=w.dtype)
        m.weight.copy_(w[perm])
        m.perm.copy_(perm)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        h = h.index_select(-1, self.perm)  # the reorder, folded into the norm
        return self.weight * h.to(dtype)

    def config(self) -> dict:
        return dict(type="ReorderRMSNorm", hidden_size=self.hidden_size, eps=self.variance_epsilon)

    def extra_repr(self) -> str:
        return f"{self.hidden_size}, eps={self.variance_epsilon}, reordered"


class QLinearStatic(nn.Module):
    """Linear layer of an integer scheme with statically quantized activations (RPTQ).

    Buffers (kept by lowbit.save/load): qweight uint8 [N, row_bytes] and scales fp16 [N, G] as
    QLinear's (integer schemes: signed symmetric codes), bias float32 [N] or None, and the
    activation quantizer: act_scale float32 [S], act_zero int32 [S], cluster_end int32 [S] (the
    exclusive end channel of each contiguous segment; a cluster may own several segments).
    The weight columns are stored in the (reordered) order of the input it receives.
    simulate=True runs the same arithmetic in float torch instead of the kernel (not saved).
    On a CPU whose kernels read it (ops.cpu_layout_used_static: the 4- and 3-bit schemes) the
    layer also keeps its weight in the CPU layout, as QLinear does (use_cpu_layout = False opts
    out); a few tokens then run the layout GEMV."""

    use_cpu_layout: bool = True

    def __init__(self, in_features: int, out_features: int, bias: bool = True, scheme: str = "w4a8",
                 group_size: "int | None" = None, segments: int = 1, abits: "int | None" = None, device=None):
        super().__init__()
        s = get_scheme(scheme)
        if s.compute != "integer":
            raise ValueError(f"scheme: QLinearStatic needs an integer scheme (w8a8, w4a8, w4a4, w3a3), got {s.name}")
        for name, v in (("in_features", in_features), ("out_features", out_features), ("segments", segments)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if segments > in_features:
            raise ValueError(f"segments: at most in_features={in_features}, got {segments}")
        self.in_features, self.out_features, self.scheme = in_features, out_features, s.name
        self.abits = s.abits if abits is None else abits
        if self.abits not in (8, 4, 3):
            raise ValueError(f"abits: expected 8, 4 or 3, got {abits!r}")
        self.group_size = s.default_group_size if group_size is None else group_size
        self.kernel_group_size = resolve_group_size(s, group_size, in_features)
        G = num_groups(in_features, self.kernel_group_size)
        self.register_buffer("qweight", torch.zeros(out_features, row_bytes(s, in_features), dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.ones(out_features, G, dtype=torch.float16, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device) if bias else None)
        self.register_buffer("act_scale", torch.ones(segments, dtype=torch.float32, device=device))
        self.register_buffer("act_zero", torch.zeros(segments, dtype=torch.int32, device=device))
        ends = torch.linspace(0, in_features, segments + 1)[1:].round().to(torch.int32)
        self.register_buffer("cluster_end", ends.to(device))
        self.simulate = False
        self._w = None  # decoded weight cache of the simulate path

    @classmethod
    @torch.no_grad()
    def from_codes(cls, codes, scales, bias, scheme, group_size, act_scale, act_zero, cluster_end,
                   abits=None) -> "QLinearStatic":
        N, K = codes.shape
        m = cls(K, N, bias is not None, scheme, group_size, int(cluster_end.numel()), abits, device=codes.device)
        m.qweight.copy_(formats.pack(codes, m.scheme))
        m.scales.copy_(scales)
        if bias is not None:
            m.bias.copy_(bias.detach().float())
        m.act_scale.copy_(act_scale)
        m.act_zero.copy_(act_zero)
        m.cluster_end.copy_(cluster_end)
        ops._check_static_values(m.act_scale, m.act_zero, m.cluster_end, K, m.abits)
        return m

    @torch.no_grad()
    def dequantize(self) -> torch.Tensor:
        """The float32 weight [N, K] the kernel multiplies with (columns in the stored order)."""
        return formats.dequantize(self.qweight, self.scales, None, self.scheme, self.in_features,
                                  self.kernel_group_size)

    @torch.no_grad()
    def permute_rows_(self, perm: torch.Tensor):
        """Reorder the output rows (codes, scales, bias together: rows are independent in the packed
        format), so the layer's output channels come out in order perm."""
        self.qweight.copy_(self.qweight[perm])
        self.scales.copy_(self.scales[perm])
        if self.bias is not None:
            self.bias.copy_(self.bias[perm])
        self._w = None

    def channel_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return expand_segments(self.act_scale, self.cluster_end), expand_segments(self.act_zero, self.cluster_end)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.simulate:
            if self._w is None:
                self._w = self.dequantize()
            s, z = self.channel_params()
            return F.linear(fake_quant_static(x, s, z, self.abits), self._w.to(x.dtype),
                            None if self.bias is None else self.bias.to(x.dtype))
        x = x.contiguous()
        return ops.linear_static(x, self.qweight, self.scales, self.bias, self.act_scale,
                                 self.act_zero, self.cluster_end, self.scheme, self.in_features,
                                 self.kernel_group_size, self.abits,
                                 cached_cpu_layout(self, x, None, ops.cpu_layout_used_static))

    def bits_per_weight(self) -> float:
        return formats.bits_per_weight(self.scheme, self.in_features, self.kernel_group_size)

    def config(self) -> dict:
        return dict(type="QLinearStatic", scheme=self.scheme, in_features=self.in_features,
                    out_features=self.out_features, group_size=self.group_size, bias=self.bias is not None,
                    segments=int(self.cluster_end.numel()), abits=self.abits)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"scheme={self.scheme}, static a{self.abits} in {self.cluster_end.numel()} segments")


MODULE_TYPES = {"QLinearStatic": QLinearStatic, "ReorderRMSNorm": ReorderRMSNorm}


def build_module(cfg: dict, device=None) -> nn.Module:
    """Rebuild an empty module from its config() (lowbit.load), before the buffers are read."""
    t = cfg.get("type")
    if t == "QLinearStatic":
        return QLinearStatic(cfg["in_features"], cfg["out_features"], cfg["bias"], cfg["scheme"], cfg["group_size"],
                             cfg["segments"], cfg["abits"], device=device)
    if t == "ReorderRMSNorm":
        return ReorderRMSNorm(cfg["hidden_size"], cfg["eps"], device=device)
    raise ValueError(f"path: checkpoint names an unknown module type {t!r}")


def set_simulate(model: nn.Module, on: bool):
    """Switch every QLinearStatic of model between the kernel and the float simulation."""
    for m in model.modules():
        if isinstance(m, QLinearStatic):
            m.simulate = on
            m._w = None


# ---- clustering ---------------------------------------------------------------------------------

def cluster_channels(lo: torch.Tensor, hi: torch.Tensor, clusters: int, bits: int, seed: int = 0):
    """KMeans of the channels' (min, max) points -> (perm, seg_end, act_scale, act_zero): perm
    lists the channels cluster by cluster (stable within a cluster), each cluster one segment
    with the static parameters of its range."""
    labels, _ = kmeans(torch.stack([lo, hi], 1), clusters, seed)
    perm = torch.argsort(labels, stable=True)
    seg_end, seg_cluster = segments_of(labels[perm])
    c_lo = torch.zeros(int(labels.max()) + 1, dtype=torch.float64).scatter_reduce(0, labels, lo.double(), "amin")
    c_hi = torch.zeros(int(labels.max()) + 1, dtype=torch.float64).scatter_reduce(0, labels, hi.double(), "amax")
    scale, zero = static_params(c_lo, c_hi, bits)
    return perm, seg_end, scale[seg_cluster], zero[seg_cluster]


def cluster_heads(lo: torch.Tensor, hi: torch.Tensor, n_heads: int, n_kv: int, clusters: int, bits: int,
                  seed: int = 0):
    """The o_proj input (n_heads x head_dim channels): clusters of value channels, permutations
    inside kv heads (see the module docstring). Returns (v_perm [n_kv*hd] for v_proj's rows,
    o_perm [n_heads*hd] for o_proj's columns, seg_end, act_scale, act_zero)."""
    hd = lo.numel() // n_heads
    rep = n_heads // n_kv
    lo2 = lo.view(n_kv, rep, hd).amin(1).flatten()  # range of value channel (j, d) over its query heads
    hi2 = hi.view(n_kv, rep, hd).amax(1).flatten()
    labels, _ = kmeans(torch.stack([lo2, hi2], 1), clusters, seed)
    labels = labels.view(n_kv, hd)
    pis = [torch.argsort(labels[j], stable=True) for j in range(n_kv)]
    v_perm = torch.cat([j * hd + pis[j] for j in range(n_kv)])
    o_perm = torch.cat([h * hd + pis[h // rep] for h in range(n_heads)])
    o_labels = torch.cat([labels[h // rep][pis[h // rep]] for h in range(n_heads)])
    seg_end, seg_cluster = segments_of(o_labels)
    flat = labels.flatten()
    nc = int(flat.max()) + 1
    c_lo = torch.zeros(nc, dtype=torch.float64).scatter_reduce(0, flat, lo2.double(), "amin")
    c_hi = torch.zeros(nc, dtype=torch.float64).scatter_reduce(0, flat, hi2.double(), "amax")
    scale, zero = static_params(c_lo, c_hi, bits)
    return v_perm, o_perm, seg_end, scale[seg_cluster], zero[seg_cluster]


# ---- model driver -------------------------------------------------------------------------------

class _Stop(Exception):
    pass


@torch.no_grad()
def _stats(block, data, module):
    """One pass over the calibration batches up to `module`: per-channel min / max of its input
    and the GPTQ Hessian H = 2/n X^T X (float64 running average)."""
    from .gptq import Hessian
    K = module.in_features
    st = dict(lo=torch.full((K,), float("inf")), hi=torch.full((K,), float("-inf")),
              H=Hessian(K, module.weight.device))

    def hook(mod, args):
        x = args[0].detach().reshape(-1, K).float()
        st["lo"] = torch.minimum(st["lo"], x.amin(0).cpu())
        st["hi"] = torch.maximum(st["hi"], x.amax(0).cpu())
        st["H"].add_batch(x)
        raise _Stop

    h = module.register_forward_pre_hook(hook)
    try:
        for x, kw in data:
            try:
                block(x, **kw)
            except _Stop:
                pass
    finally:
        h.remove()
    return st["lo"], st["hi"], st["H"].H


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def _check_llama(block):
    for n in ("input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
              "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
        try:
            block.get_submodule(n)
        except AttributeError:
            raise ValueError(f"model: RPTQ supports LLaMA-family decoders (blocks with input_layernorm, "
                             f"post_attention_layernorm, self_attn.q/k/v/o_proj, mlp.gate/up/down_proj); "
                             f"this block has no {n}") from None


@torch.no_grad()
def rptq_model(model: nn.Module, calib: torch.Tensor, scheme: str = "w4a8", clusters: int = 32,
               group_size: "int | None" = None, percdamp: float = 0.01, block_size: int = 128,
               batch_size: int = 8, seed: int = 0, progress: bool = True, log: "dict | None" = None) -> nn.Module:
    """Quantize the transformer blocks of a LLaMA-family model with RPTQ, in place: norms become
    ReorderRMSNorm, the seven linears of each block QLinearStatic (in kernel mode when done).
    calib: LongTensor [n, seqlen]. log (dict): per-layer input/output permutations (tensors,
    original channel index of each stored position), cluster counts, GPTQ loss and seconds."""
    from .sequential import _progress_factory, capture_inputs, find_blocks
    s = get_scheme(scheme)
    if s.compute != "integer":
        raise ValueError(f"scheme: RPTQ quantizes activations; choose w8a8, w4a8, w4a4 or w3a3, got {s.name}")
    if isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 1:
        raise ValueError(f"clusters: expected a positive int, got {clusters!r}")
    prog = _progress_factory(progress)
    prefix, blocks = find_blocks(model)
    cfg = model.config
    n_heads = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    data = capture_inputs(model, blocks, calib, batch_size, prog)
    data = [(x, kw) for x, kw in data]
    for bi in prog(range(len(blocks)), f"RPTQ {s.name} c{clusters} blocks", leave=True):
        block = blocks[bi]
        _check_llama(block)
        attn, mlp = block.self_attn, block.mlp
        run = lambda x, kw: _first(block(x, **kw))
        new = {}

        def quant(name, lin, H, in_perm, seg_end, a_scale, a_zero):
            """GPTQ of lin with its columns in order in_perm, H already permuted -> QLinearStatic in
            simulate mode, installed in place of lin (later groups see it quantized)."""
            t = time.time()
            W = lin.weight.detach()[:, in_perm]
            gs = resolve_group_size(s, group_size, lin.in_features)
            codes, scales, _, info = gptq_quantize(W, H, s, gs, percdamp=percdamp, block_size=block_size)
            q = QLinearStatic.from_codes(codes, scales, lin.bias, s.name, group_size, a_scale, a_zero, seg_end)
            q.simulate = True
            parent, _, child = name.rpartition(".")
            setattr(block.get_submodule(parent), child, q)
            new[name] = q
            if log is not None:
                log[f"{prefix}.{bi}.{name}"] = dict(in_perm=in_perm.clone(), out_perm=torch.arange(lin.out_features),
                                                    segments=int(seg_end.numel()), loss=info["loss"],
                                                    damp=info["damp"], seconds=time.time() - t)

        def permute_out(name, perm):
            new[name].permute_rows_(perm)
            if log is not None:
                log[f"{prefix}.{bi}.{name}"]["out_perm"] = log[f"{prefix}.{bi}.{name}"]["out_perm"][perm]

        # 1. attention norm -> q, k, v
        lo, hi, H = _stats(block, data, attn.q_proj)
        perm, seg_end, a_s, a_z = cluster_channels(lo, hi, clusters, s.abits, seed)
        block.input_layernorm = ReorderRMSNorm.from_norm(block.input_layernorm, perm)
        Hp = H[perm][:, perm]
        for n in ("q_proj", "k_proj", "v_proj"):
            quant(f"self_attn.{n}", getattr(attn, n), Hp, perm, seg_end, a_s, a_z)
        # 2. attention output -> o_proj (permutation inside kv heads, carried by v_proj's rows)
        lo, hi, H = _stats(block, data, attn.o_proj)
        v_perm, o_perm, seg_end, a_s, a_z = cluster_heads(lo, hi, n_heads, n_kv, clusters, s.abits, seed)
        permute_out("self_attn.v_proj", v_perm)
        quant("self_attn.o_proj", attn.o_proj, H[o_perm][:, o_perm], o_perm, seg_end, a_s, a_z)
        # 3. MLP norm -> gate, up
        lo, hi, H = _stats(block, data, mlp.gate_proj)
        perm, seg_end, a_s, a_z = cluster_channels(lo, hi, clusters, s.abits, seed)
        block.post_attention_layernorm = ReorderRMSNorm.from_norm(block.post_attention_layernorm, perm)
        Hp = H[perm][:, perm]
        for n in ("gate_proj", "up_proj"):
            quant(f"mlp.{n}", getattr(mlp, n), Hp, perm, seg_end, a_s, a_z)
        # 4. act(gate) * up -> down_proj (elementwise: gate and up rows permuted alike)
        lo, hi, H = _stats(block, data, mlp.down_proj)
        perm, seg_end, a_s, a_z = cluster_channels(lo, hi, clusters, s.abits, seed)
        permute_out("mlp.gate_proj", perm)
        permute_out("mlp.up_proj", perm)
        quant("mlp.down_proj", mlp.down_proj, H[perm][:, perm], perm, seg_end, a_s, a_z)
        # the quantized block's outputs feed the next block
        data = [(run(x, kw), kw) for x, kw in data]
        for q in new.values():
            q.simulate, q._w = False, None
    return model
