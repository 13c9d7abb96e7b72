#!/usr/bin/env python3
"""Generate the tiny BERT test fixture used by the edgebert runtime tests.

Writes into runtime/tests/fixtures/tiny-bert/ (relative to the repo root):
  vocab.txt              small WordPiece vocab (specials, chars, ##chars, frequent words)
  config.json            Hugging Face BertConfig with id2label and max_position_embeddings
  tokenizer_config.json  do_lower_case etc. (BERT uncased)
  model.onnx             BertForSequenceClassification, random weights (seeded), opset 17,
                         inputs input_ids/attention_mask [batch, seq] int64, output logits
  reference.json         texts with the ids/mask the HF tokenizer produced and the logits
                         onnxruntime + torch computed for them (runtime tests compare to these)
and runtime/tests/fixtures/tiny-bert-small-vocab/model.onnx: the same network with a
smaller embedding table than vocab.txt (the vocab/ONNX mismatch test).

The runtime tests never run Python: the generated files are committed.
Usage: python3 scripts/make_test_onnx.py
"""
import json
import os
import re
import string
from collections import Counter

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "runtime", "tests", "fixtures", "tiny-bert")
OUT_SMALL = os.path.join(ROOT, "runtime", "tests", "fixtures", "tiny-bert-small-vocab")
MAX_POS = 64
LABELS = ["negative", "neutral", "positive"]
N_WORDS = 700

# A fixed word list (no dependency on the shared data set) of common English words.
WORDS = """the of and to a in is you that it he was for on are as with his they i at be this have from
or one had by word but not what all were we when your can said there use an each which she do how
their if will up other about out many then them these so some her would make like him into time has
look two more write go see number no way could people my than first water been call who oil its now
find long down day did get come made may part feel feeling felt happy sad love hate angry fear joy
good bad great terrible awful wonderful amazing really very much little big small today tomorrow
yesterday morning night work home school friend friends family movie film book music song game food
think know want need help thank thanks please sorry because just still even never always again new
old best worst better worse nothing something everything anything life world man woman child children
day days week year years hour minute minutes moment over under before after while during through
around here where why what's don't can't won't i'm it's that's didn't doesn't isn't wasn't""".split()

PUNCT = list(string.punctuation)


def build_vocab():
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase) + list(string.digits)
    cont = ["##" + c for c in chars]
    subwords = ["##s", "##ed", "##ing", "##ly", "##er", "##est", "##ness", "##ful", "##less", "##tion"]
    words = []
    seen = set(specials + chars + cont + subwords + PUNCT)
    for w in WORDS:
        # BertPreTokenizer splits on punctuation, so keep only alphabetic word pieces.
        for piece in re.findall(r"[a-z]+", w.lower()):
            if piece not in seen:
                seen.add(piece)
                words.append(piece)
    vocab = specials + PUNCT + chars + cont + subwords + words + ["é", "ü", "中", "文"]
    return vocab


def export(model, path, vocab_size):
    ids = torch.randint(5, vocab_size, (1, 12), dtype=torch.long)
    mask = torch.ones_like(ids)
    kwargs = dict(
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"},
        },
        opset_version=17,
        do_constant_folding=True,
    )
    try:
        torch.onnx.export(model, (ids, mask), path, dynamo=False, **kwargs)
    except TypeError:  # older torch without the dynamo switch
        torch.onnx.export(model, (ids, mask), path, **kwargs)


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(OUT_SMALL, exist_ok=True)
    vocab = build_vocab()
    with open(os.path.join(OUT, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")

    torch.manual_seed(20261126)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=len(LABELS),
        max_position_embeddings=MAX_POS,
        # Large enough init that logits differ clearly between texts (1e-4 checks mean something).
        initializer_range=0.3,
        id2label={i: l for i, l in enumerate(LABELS)},
        label2id={l: i for i, l in enumerate(LABELS)},
        # Plain MatMul/Softmax attention (what the models crate emits too), not SDPA.
        attn_implementation="eager",
    )
    model = BertForSequenceClassification(cfg).eval()
    cfg.to_json_file(os.path.join(OUT, "config.json"))
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "do_lower_case": True,
                "tokenize_chinese_chars": True,
                "strip_accents": None,
                "tokenizer_class": "BertTokenizer",
                "model_max_length": MAX_POS,
                "unk_token": "[UNK]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "mask_token": "[MASK]",
            },
            f,
            indent=2,
        )
    export(model, os.path.join(OUT, "model.onnx"), len(vocab))

    tok = BertTokenizer(os.path.join(OUT, "vocab.txt"), do_lower_case=True)
    texts = [
        "",
        "i feel happy today",
        "I really HATE this movie, it's the worst!",
        "nothing",
        "Café über 中文 naïve résumé",
        "what a wonderful morning with my friends and family " * 2,
        # > MAX_POS tokens: truncated to 64 keeping [SEP]
        "i think that this is a very long sentence about my life and work " * 8,
        "   ",
        "unknownwordzzz qqq!!! 12345",
    ]
    import onnxruntime as ort

    sess = ort.InferenceSession(os.path.join(OUT, "model.onnx"), providers=["CPUExecutionProvider"])
    refs = []
    for t in texts:
        enc = tok(t, truncation=True, max_length=MAX_POS)
        ids = np.array([enc["input_ids"]], dtype=np.int64)
        mask = np.array([enc["attention_mask"]], dtype=np.int64)
        with torch.no_grad():
            logits_t = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits[0].numpy()
        logits_o = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0][0]
        assert np.allclose(logits_t, logits_o, atol=1e-5), (t, logits_t, logits_o)
        refs.append(
            {
                "text": t,
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "truncated": len(tok(t)["input_ids"]) > MAX_POS,
                "logits": [float(x) for x in logits_o],
            }
        )
    with open(os.path.join(OUT, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"max_len": MAX_POS, "labels": LABELS, "cases": refs}, f, indent=1, ensure_ascii=False)

    # Same architecture with a smaller embedding table than vocab.txt.
    torch.manual_seed(7)
    small = BertConfig(**{**cfg.to_dict(), "vocab_size": len(vocab) - 50})
    export(BertForSequenceClassification(small).eval(), os.path.join(OUT_SMALL, "model.onnx"), len(vocab) - 50)
    print(f"wrote {OUT} (vocab {len(vocab)}) and {OUT_SMALL}")


if __name__ == "__main__":
    main()
