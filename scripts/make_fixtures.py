#!/usr/bin/env python3
"""Write the PyTorch parity fixtures of the models crate (run once by hand, never in CI).

Writes, under models/tests/fixtures/:
  tiny-distilbert/, tiny-bert/  random DistilBert/BertForSequenceClassification checkpoints
      (config.json, model.safetensors, vocab.txt) and reference.json with fixed batches that
      include padding: input_ids, attention_mask, logits, last_hidden_state.
  minilm_reference.json  [CLS] and mean-pooled last hidden states of the real
      all-MiniLM-L6-v2 for three sentences (ids from transformers' tokenizer stored too).

Needs torch + transformers + safetensors. Usage:
  EDGEBERT_SHARED=/work/shared python3 scripts/make_fixtures.py
"""

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "models" / "tests" / "fixtures"
SHARED = Path(os.environ.get("EDGEBERT_SHARED", ROOT.parent / "shared"))
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
VOCAB = 1000
HIDDEN, LAYERS, HEADS, FFN, MAXPOS = 32, 2, 2, 64, 64


def labels_kwargs():
    return dict(
        num_labels=len(LABELS),
        id2label={i: l for i, l in enumerate(LABELS)},
        label2id={l: i for i, l in enumerate(LABELS)},
    )


def randomize(model, seed):
    """Replace transformers' small init (std 0.02) by larger random values so that logits and
    hidden states are far from zero and a wrong op cannot hide under the tolerance."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def batches():
    """Fixed batches: padding of different lengths, and one unpadded batch."""
    g = torch.Generator().manual_seed(1234)
    out = []
    for lengths, seq in (([12, 7, 3], 12), ([5], 5), ([9, 9], 9)):
        ids = torch.zeros((len(lengths), seq), dtype=torch.long)
        mask = torch.zeros((len(lengths), seq), dtype=torch.long)
        for r, n in enumerate(lengths):
            body = torch.randint(1, VOCAB, (n,), generator=g)
            body[0] = 101  # [CLS]
            body[n - 1] = 102  # [SEP]
            ids[r, :n] = body
            mask[r, :n] = 1
        out.append((ids, mask))
    return out


def write_tiny(name, model, vocab_src):
    d = FIXTURES / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    with open(vocab_src, encoding="utf-8") as f:
        lines = f.read().splitlines()[:VOCAB]
    (d / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    refs = []
    with torch.no_grad():
        for ids, mask in batches():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            refs.append(
                dict(
                    input_ids=ids.tolist(),
                    attention_mask=mask.tolist(),
                    logits=out.logits.tolist(),
                    last_hidden_state=out.hidden_states[-1].tolist(),
                )
            )
    (d / "reference.json").write_text(json.dumps(dict(batches=refs)) + "\n")
    size = (d / "model.safetensors").stat().st_size
    assert size <= 1_000_000, f"{name}: model.safetensors is {size} bytes"
    print(f"wrote {d} ({size} bytes)")


def tiny_distilbert():
    torch.manual_seed(0)
    cfg = DistilBertConfig(
        vocab_size=VOCAB,
        dim=HIDDEN,
        n_layers=LAYERS,
        n_heads=HEADS,
        hidden_dim=FFN,
        max_position_embeddings=MAXPOS,
        activation="gelu",
        dropout=0.1,
        attention_dropout=0.1,
        seq_classif_dropout=0.2,
        pad_token_id=0,
        **labels_kwargs(),
    )
    m = DistilBertForSequenceClassification(cfg)
    randomize(m, 1)
    return m


def tiny_bert():
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=MAXPOS,
        type_vocab_size=2,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        **labels_kwargs(),
    )
    m = BertForSequenceClassification(cfg)
    randomize(m, 2)
    return m


SENTENCES = [
    "i feel like i am still looking at a blank canvas",
    "The quick brown fox jumps over the lazy dog!",
    "edge devices need small, fast models.",
]


def minilm():
    tok = AutoTokenizer.from_pretrained(MINILM)
    model = AutoModel.from_pretrained(MINILM).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    mean = (h * m).sum(1) / m.sum(1)
    ref = dict(
        sentences=SENTENCES,
        input_ids=enc["input_ids"].tolist(),
        attention_mask=enc["attention_mask"].tolist(),
        cls=h[:, 0].tolist(),
        mean=mean.tolist(),
    )
    path = FIXTURES / "minilm_reference.json"
    path.write_text(json.dumps(ref) + "\n")
    print(f"wrote {path}")


def main():
    vocab_src = MINILM / "vocab.txt"
    if not vocab_src.is_file():
        sys.exit(f"{vocab_src} not found: set EDGEBERT_SHARED to the dir holding models/")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    write_tiny("tiny-distilbert", tiny_distilbert(), vocab_src)
    write_tiny("tiny-bert", tiny_bert(), vocab_src)
    minilm()


if __name__ == "__main__":
    main()
