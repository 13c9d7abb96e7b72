#!/usr/bin/env python3
"""Reference peer for the ONNX export tests (models/tests/onnx_*.rs): checks a model with
onnx.checker and runs it with onnxruntime.

Usage: python3 scripts/onnx_check.py MODEL.onnx CASES.json
  CASES.json: [{"input_ids": [[int...]...], "attention_mask": [[int...]...]}, ...]
Prints one JSON object on stdout:
  {"checker": "ok", "opset": {domain: version}, "ops": [[domain, op_type]...],
   "value_info": n, "inputs": [[name, [dims]]...], "outputs": [...],
   "metadata": {key: value}, "logits": [per case: [[float...]...]]}
Exits non-zero (message on stderr) when the checker rejects the model or onnxruntime fails.
Needs onnx, onnxruntime and numpy; never torch.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def dims(value_info):
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        out.append(d.dim_param if d.HasField("dim_param") else d.dim_value)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: onnx_check.py MODEL.onnx CASES.json")
    path, cases_path = sys.argv[1], sys.argv[2]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    with open(cases_path) as f:
        cases = json.load(f)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    logits = []
    for case in cases:
        feeds = {
            "input_ids": np.asarray(case["input_ids"], dtype=np.int64),
            "attention_mask": np.asarray(case["attention_mask"], dtype=np.int64),
        }
        (out,) = sess.run(["logits"], feeds)
        logits.append(out.astype(np.float64).tolist())
    ops = sorted({(n.domain, n.op_type) for n in model.graph.node})
    print(
        json.dumps(
            {
                "checker": "ok",
                "opset": {o.domain: o.version for o in model.opset_import},
                "ops": [list(o) for o in ops],
                "value_info": len(model.graph.value_info),
                "inputs": [[i.name, dims(i)] for i in model.graph.input],
                "outputs": [[o.name, dims(o)] for o in model.graph.output],
                "metadata": {p.key: p.value for p in model.metadata_props},
                "logits": logits,
            }
        )
    )


if __name__ == "__main__":
    main()
