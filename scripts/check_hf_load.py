#!/usr/bin/env python3
"""Load an edgebert-train fine-tuned directory with transformers and compare its logits with the
candle model's.

Usage:
  python3 scripts/check_hf_load.py OUT_DIR [--texts FILE] [--tol 1e-4]

It loads OUT_DIR with AutoModelForSequenceClassification + AutoTokenizer, classifies a few
texts, and compares its logits with those of `cargo run --release --example forward -- --model
OUT_DIR TEXT...` (the models crate's example, which prints one JSON line per text with
`logits`). Exits non-zero if max |Δ| > tol. Not run in CI (PyPI's torch is ~5 GB).
"""
import argparse
import json
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--texts", help="one text per line (default: a few built-in sentences)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--forward-bin", default=None,
                    help="path of a built `forward` example binary (default: cargo run --release --example forward)")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = [
        "i feel so lonely since you left",
        "what a wonderful surprise, i am thrilled",
        "i am terrified of what tomorrow brings",
        "i didnt feel humiliated",
    ]
    if args.texts:
        with open(args.texts) as f:
            texts = [l.rstrip("\n") for l in f if l.strip()]

    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir)
    model.eval()
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    print("architectures:", model.config.architectures, "id2label:", model.config.id2label)
    with torch.no_grad():
        hf = []
        for t in texts:
            enc = tok(t, return_tensors="pt", truncation=True, max_length=128)
            hf.append(model(**enc).logits[0].tolist())

    cmd = ([args.forward_bin] if args.forward_bin else
           ["cargo", "run", "-q", "--release", "--example", "forward", "--"])
    cmd += ["--model", args.model_dir] + texts
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rust = [json.loads(l)["logits"] for l in out.splitlines() if l.strip().startswith("{")]
    if len(rust) != len(texts):
        print(f"expected {len(texts)} JSON lines from the forward example, got {len(rust)}", file=sys.stderr)
        return 2
    worst = 0.0
    for t, a, b in zip(texts, hf, rust):
        d = max(abs(x - y) for x, y in zip(a, b))
        worst = max(worst, d)
        print(f"max|Δ|={d:.2e}  hf={['%.4f' % x for x in a]}  {t!r}")
    print(f"max |Δlogit| over {len(texts)} texts: {worst:.3e} (tol {args.tol})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
