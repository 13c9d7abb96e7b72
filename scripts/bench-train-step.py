#!/usr/bin/env python3
"""Training-step throughput, the trainer's step (trainer/examples/train_step.rs: candle, fused AdamW) vs PyTorch CPU, same shapes and
thread count: batch 64 x 32 tokens, forward + backward + AdamW, MiniLM size and DistilBERT-base
size, random init. Prints tokens/s of both and the ratio candle / PyTorch.

Usage: python3 scripts/bench-train-step.py [--threads 2] [--steps 10] [--skip-candle]
Needs torch + transformers (PyPI); runs
`cargo run --release -p edgebert-trainer --example train_step -- STEPS` for the candle side.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH, SEQ, LABELS = 64, 32, 6


def torch_tokens_per_s(name, threads, steps):
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if name == "minilm":
        cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                         num_attention_heads=12, intermediate_size=1536, num_labels=LABELS)
        model = BertForSequenceClassification(cfg)
    else:
        cfg = DistilBertConfig(vocab_size=30522, dim=768, n_layers=6, n_heads=12,
                               hidden_dim=3072, num_labels=LABELS)
        model = DistilBertForSequenceClassification(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    g = torch.Generator().manual_seed(12345)
    ids = torch.randint(1000, 30000, (BATCH, SEQ), generator=g)
    mask = torch.zeros((BATCH, SEQ), dtype=torch.long)
    for r in range(BATCH):
        n = 16 + r % (SEQ - 15)
        mask[r, :n] = 1
    ids = ids * mask
    labels = torch.arange(BATCH) % LABELS

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return BATCH * SEQ / dt


def candle_tokens_per_s(threads, steps):
    # The example applies edgebert-train's allocator settings itself (runtime/src/memory.rs).
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = ["cargo", "run", "--release", "-p", "edgebert-trainer", "--example", "train_step", "--", str(steps)]
    print("running:", " ".join(cmd), f"(RAYON_NUM_THREADS={threads})", file=sys.stderr)
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    res = {}
    for line in out.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            res[d["model"]] = d["tokens_per_s"]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--skip-candle", action="store_true")
    args = ap.parse_args()
    candle = {} if args.skip_candle else candle_tokens_per_s(args.threads, args.steps)
    print(f"batch {BATCH}x{SEQ}, {args.threads} threads, forward+backward+AdamW")
    for name in ("minilm", "distilbert-base"):
        pt = torch_tokens_per_s(name, args.threads, args.steps)
        line = f"{name:16s} pytorch {pt:9.1f} tok/s"
        if name in candle:
            line += f"  candle {candle[name]:9.1f} tok/s  ratio {candle[name] / pt:.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
