#!/usr/bin/env python3
"""PyTorch/transformers side of the GPU side-by-side (scripts/device-gpu-check).

Two commands:

  make-checkpoint --out DIR --vocab VOCAB [--num-labels 6] [--seed 0] [--layers 6]
      A DistilBERT-base-sized DistilBertForSequenceClassification with transformers' random init
      (DistilBertConfig() defaults: 6 layers, 768 hidden, 12 heads, 3072 FFN, vocab 30522),
      saved as an HF directory (config.json, model.safetensors) with a BERT uncased tokenizer
      built from VOCAB (tokenizer.json, vocab.txt, ...). Both trainers start from this directory.

  train --model DIR --data DIR [--batch-size 64] [--steps 100] [--warmup-steps 10] [--device cuda]
      Fine-tunes as transformers' Trainer does (AdamW with decoupled weight decay skipping biases
      and LayerNorm weights, linear schedule, gradient clipping at 1.0, dropout on, fp32), on
      shuffled train.txt batches padded to the longest row of each batch (or --fixed-seq-len),
      and prints one RESULT line with samples/s over the timed steps (after the warm-up steps),
      timed with device synchronisation. --json FILE writes the same numbers as JSON.

Python is a reference peer only: nothing in the product depends on this script.
"""

import argparse
import json
import math
import os
import random
import sys
import time


def read_split(path, max_lines=None):
    """`text;label` lines (label after the last `;`)."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            if ";" not in line:
                raise SystemExit(f"{path}:{n}: no ';' separating text and label")
            text, label = line.rsplit(";", 1)
            texts.append(text)
            labels.append(label)
            if max_lines and len(texts) >= max_lines:
                break
    return texts, labels


def make_checkpoint(args):
    import shutil

    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(args.seed)
    labels = args.labels.split(",") if args.labels else [f"LABEL_{i}" for i in range(args.num_labels)]
    cfg = DistilBertConfig(
        n_layers=args.layers,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
    )
    model = DistilBertForSequenceClassification(cfg)
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    # The uncased BERT tokenizer (what distilbert-base-uncased uses), built with the tokenizers
    # library itself so the file does not depend on the transformers version.
    tok = BertWordPieceTokenizer(args.vocab, lowercase=True)
    if tok.get_vocab_size() != cfg.vocab_size:
        raise SystemExit(f"{args.vocab}: {tok.get_vocab_size()} tokens, expected {cfg.vocab_size}")
    tok.save(os.path.join(args.out, "tokenizer.json"))
    shutil.copyfile(args.vocab, os.path.join(args.out, "vocab.txt"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512,
                   "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
                   "mask_token": "[MASK]"}, f, indent=1)
    n = sum(p.numel() for p in model.parameters())
    print(f"RESULT make_checkpoint dir={args.out} params={n} layers={cfg.n_layers} dim={cfg.dim} vocab={cfg.vocab_size}")


def label_ids(labels, order):
    if order:
        names = order.split(",")
    else:
        names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    missing = sorted(set(labels) - set(index))
    if missing:
        raise SystemExit(f"labels {missing} are not in --labels {names}")
    return [index[l] for l in labels], names


def train(args):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU")
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    # fp32 throughout, as the Rust side: no TF32 in matmuls or convolutions.
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32

    texts, labels = read_split(os.path.join(args.data, "train.txt"))
    y, names = label_ids(labels, args.labels)
    tok = AutoTokenizer.from_pretrained(args.model)
    enc = tok(texts, truncation=True, max_length=args.max_len)["input_ids"]
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=len(names)).to(device)
    model.train()

    # transformers' Trainer: no weight decay on biases and LayerNorm weights.
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if n.endswith("bias") or "layer_norm" in n.lower() or "LayerNorm" in n else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kw = {}
    if device.type == "cuda" and args.optim == "fused":
        kw["fused"] = True
    elif args.optim == "foreach":
        kw["foreach"] = True
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, **kw)
    total = args.warmup_steps + args.steps
    sched = get_linear_schedule_with_warmup(opt, 0, total)

    order = list(range(len(enc)))
    random.shuffle(order)
    pad = tok.pad_token_id or 0

    def batch(step):
        start = (step * args.batch_size) % len(order)
        idx = [order[(start + i) % len(order)] for i in range(args.batch_size)]
        rows = [enc[i] for i in idx]
        s = args.fixed_seq_len or max(len(r) for r in rows)
        ids = torch.full((len(rows), s), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), s), dtype=torch.long)
        for i, r in enumerate(rows):
            r = r[:s]
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        lab = torch.tensor([y[i] for i in idx], dtype=torch.long)
        return ids, mask, lab, s

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    seq_lens = []
    losses = []
    t0 = time.perf_counter()
    for step in range(total):
        if step == args.warmup_steps:
            sync()
            t0 = time.perf_counter()
        ids, mask, lab, s = batch(step)
        ids, mask, lab = ids.to(device, non_blocking=True), mask.to(device, non_blocking=True), lab.to(device, non_blocking=True)
        out = model(input_ids=ids, attention_mask=mask, labels=lab)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step >= args.warmup_steps:
            seq_lens.append(s)
        if step % args.log_every == 0 or step == total - 1:
            losses.append((step, out.loss.item()))
    sync()
    secs = time.perf_counter() - t0
    if not math.isfinite(losses[-1][1]):
        raise SystemExit(f"loss is {losses[-1][1]}")
    res = {
        "side": "pytorch",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "mean_seq_len": sum(seq_lens) / len(seq_lens),
        "secs": secs,
        "samples_per_s": args.batch_size * args.steps / secs,
        "ms_per_step": 1e3 * secs / args.steps,
        "optim": args.optim,
        "tf32": args.tf32,
        "first_loss": losses[0][1],
        "last_loss": losses[-1][1],
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(
        "RESULT torch_finetune batch={batch_size} steps={steps} mean_seq_len={mean_seq_len:.1f} secs={secs:.3f} "
        "samples_per_s={samples_per_s:.1f} ms_per_step={ms_per_step:.2f} first_loss={first_loss:.4f} "
        "last_loss={last_loss:.4f} optim={optim} device={device}".format(**res)
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-checkpoint")
    m.add_argument("--out", required=True)
    m.add_argument("--vocab", required=True, help="BERT uncased vocab.txt (30522 lines)")
    m.add_argument("--num-labels", type=int, default=6)
    m.add_argument("--labels", default="sadness,joy,love,anger,fear,surprise")
    m.add_argument("--layers", type=int, default=6)
    m.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train")
    t.add_argument("--model", required=True)
    t.add_argument("--data", required=True, help="folder with train.txt (text;label)")
    t.add_argument("--labels", default="sadness,joy,love,anger,fear,surprise")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--steps", type=int, default=100, help="timed steps")
    t.add_argument("--warmup-steps", type=int, default=10, help="untimed steps first")
    t.add_argument("--fixed-seq-len", type=int, default=0, help="pad every batch to this length (0: longest row)")
    t.add_argument("--max-len", type=int, default=128, help="truncate rows to this many tokens")
    t.add_argument("--lr", type=float, default=2e-5)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--optim", choices=["fused", "foreach", "plain"], default="fused")
    t.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (off: strict fp32 like candle)")
    t.add_argument("--device", default="cuda")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--json")
    args = p.parse_args()
    if args.cmd == "make-checkpoint":
        make_checkpoint(args)
    else:
        train(args)


if __name__ == "__main__":
    sys.exit(main())
