#!/usr/bin/env python3
"""Training-step throughput, the trainer's step (trainer/examples/train_step.rs: candle, fused AdamW) vs PyTorch CPU, same shapes and
thread count: batch 64 x 32 tokens, forward + backward + AdamW, MiniLM size and DistilBERT-base
size, random init. Prints tokens/s of both and the ratio candle / PyTorch.

The two engines alternate, per model, for --rounds rounds (candle, then PyTorch, each in a fresh process), and the
summary is the median of the per-round ratios: on a machine whose speed drifts by tens of percent within minutes,
a ratio of two runs taken minutes apart says more about the drift than about the engines.

Usage: python3 scripts/bench-train-step.py [--threads 2] [--steps 10] [--rounds 3] [--skip-candle] [--json FILE]
--json FILE also writes the medians, every round and the machine (docs/results/train-step.json, from which
scripts/render-docs draws docs/img/train-step.png and the table of docs/benchmarks.md).
Needs torch + transformers (PyPI); builds the example once with
`cargo build --release -p edgebert-trainer --example train_step` and runs it as `train_step STEPS MODEL`.
"""

import argparse
import json
import statistics
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


def build_candle():
    cmd = ["cargo", "build", "--release", "-p", "edgebert-trainer", "--example", "train_step"]
    print("building:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "examples" / "train_step"


def candle_tokens_per_s(binary, name, threads, steps):
    # The example applies edgebert-train's allocator settings itself (runtime/src/memory.rs).
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([str(binary), str(steps), name], cwd=ROOT, env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            if d["model"] == name:
                return d["tokens_per_s"]
    raise RuntimeError(f"train_step printed no result for {name}")


def torch_tokens_per_s_fresh(name, threads, steps):
    # A fresh process per measurement, as for candle (no warm allocator or thread pool carried over).
    out = subprocess.run([sys.executable, __file__, "--torch-only", name, "--threads", str(threads),
                          "--steps", str(steps)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="alternating candle/PyTorch rounds per model")
    ap.add_argument("--skip-candle", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--torch-only", metavar="MODEL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_only:
        print(torch_tokens_per_s(args.torch_only, args.threads, args.steps))
        return
    binary = None if args.skip_candle else build_candle()
    print(f"batch {BATCH}x{SEQ}, {args.threads} threads, forward+backward+AdamW, {args.rounds} alternating rounds")
    rows = []
    for name in ("minilm", "distilbert-base"):
        pts, cds = [], []
        for r in range(args.rounds):
            if binary is not None:
                cds.append(candle_tokens_per_s(binary, name, args.threads, args.steps))
            pts.append(torch_tokens_per_s_fresh(name, args.threads, args.steps))
            line = f"{name:16s} round {r + 1}: pytorch {pts[-1]:9.1f} tok/s"
            if cds:
                line += f"  candle {cds[-1]:9.1f} tok/s  ratio {cds[-1] / pts[-1]:.2f}x"
            print(line, flush=True)
        if cds:
            ratios = sorted(c / p for c, p in zip(cds, pts))
            print(f"{name:16s} median ratio {statistics.median(ratios):.2f}x "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})", flush=True)
            rows.append({"model": name, "candle_tokens_per_s": statistics.median(cds),
                         "torch_tokens_per_s": statistics.median(pts), "ratio": statistics.median(ratios),
                         "candle_rounds": cds, "torch_rounds": pts})
    if args.json:
        if not rows:
            sys.exit("bench-train-step: --json needs the candle side (no --skip-candle)")
        import torch
        sys.path.insert(0, str(ROOT / "scripts"))
        from machine_info import machine
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps({"batch": BATCH, "seq": SEQ, "threads": args.threads, "steps": args.steps,
                                   "rounds": args.rounds, "torch": torch.__version__, "rows": rows,
                                   "machine": machine()}, indent=1))
        tmp.replace(out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
