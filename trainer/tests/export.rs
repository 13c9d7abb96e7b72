//! `edgebert-train export` on a tiny fine-tuned model: the files of the contract, the runtime's
//! fp32 accuracy equal to candle's, the int8 bundle as `model.edgebert`, and clear errors.
mod common;
use common::tiny_finetuned;
use edgebert_runtime::{Int8Mode, Int8Path, Session, SessionOptions};
use edgebert_trainer::export::{export, ExportOpts};
use edgebert_trainer::Quantization;

#[test]
fn int8_export_writes_the_contract_and_verifies_with_the_runtime() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (model, _data) = tiny_finetuned(tmp.path());
    let out = tmp.path().join("export");
    // No --data: the validation file comes from the run's training_args.json.
    let s = export(&ExportOpts {
        model: model.display().to_string(),
        out: out.clone(),
        max_len: 32,
        progress: false,
        ..Default::default()
    })
    .expect("export");
    for f in [
        "model.fp32.onnx",
        "model.int8.onnx",
        "model.edgebert",
        "model.fp32.edgebert",
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "export_report.json",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let fp32 = s.fp32.expect("fp32 verification");
    assert_eq!(fp32.n, 48);
    assert!((fp32.runtime_accuracy - fp32.candle_accuracy).abs() <= 0.001);
    assert!(
        fp32.max_abs_logit_diff < 1e-4,
        "{}",
        fp32.max_abs_logit_diff
    );
    let int8 = s.int8.expect("int8 verification");
    assert!(int8.max_abs_logit_diff > 0.0, "int8 identical to fp32?");
    // This tiny model is near chance (one short epoch), so its labels sit on near-ties and label
    // agreement says little: the int8 error is checked on the logits (7-bit weights on a
    // 32-wide model: ≈ 13% of the largest logit here, 6% with full range); the MiniLM smoke
    // test checks label agreement on a trained model.
    assert!(
        int8.max_abs_logit_diff < 0.2 * int8.max_abs_candle_logit,
        "int8 logits off by {} (largest |logit| {})",
        int8.max_abs_logit_diff,
        int8.max_abs_candle_logit
    );

    let int8_bytes = std::fs::metadata(out.join("model.edgebert"))
        .expect("int8 bundle")
        .len();
    let fp32_bytes = std::fs::metadata(out.join("model.fp32.edgebert"))
        .expect("fp32 bundle")
        .len();
    assert!(int8_bytes < fp32_bytes, "{int8_bytes} vs {fp32_bytes}");
    // Every int8 path runs it; edgebert's kernel gives exactly tract's integer results, in every
    // bucket (the first plan from the graph parsed at open, later ones from a fresh parse and the
    // shared symbolic graph), from the file or from memory.
    let texts = [
        "kalolo mimine".to_string(),
        "mimine kalolo ".repeat(6),
        "kalolo ".repeat(40),
    ];
    let mut logits = Vec::new();
    for (mode, in_memory) in [
        (Int8Mode::Native, false),
        (Int8Mode::Dequantize, false),
        (Int8Mode::Kernel, false),
        (Int8Mode::Kernel, true),
    ] {
        let mut session = Session::open_with(
            out.join("model.edgebert"),
            SessionOptions::default()
                .with_int8(mode)
                .with_file_weights_min_bytes(if in_memory { usize::MAX } else { 1024 }),
        )
        .expect("open int8 bundle");
        assert_eq!(session.header().quantization, "int8");
        let path = session.int8_path();
        match mode {
            Int8Mode::Native => assert_eq!(path, Int8Path::Native),
            Int8Mode::Dequantize => assert!(matches!(path, Int8Path::Dequantized(n) if n > 0)),
            _ => assert!(matches!(path, Int8Path::Kernel(n) if n > 0), "{path:?}"),
        }
        let mut per_text = Vec::new();
        for t in &texts {
            let c = session.classify(t).expect("classify");
            assert_eq!(c.probs.len(), 6);
            per_text.push(c.logits);
        }
        assert!(session.buckets().iter().filter(|b| b.1).count() >= 3);
        logits.push(per_text);
    }
    assert_eq!(
        logits[2], logits[0],
        "kernel (file) vs tract's MatMulInteger"
    );
    assert_eq!(
        logits[3], logits[0],
        "kernel (in memory) vs tract's MatMulInteger"
    );
    assert_ne!(
        logits[1], logits[0],
        "the dequantized path has no activation quantization"
    );

    // The fused attention (forced on: its portable kernel runs on CPUs without AVX2+FMA) and
    // tract's own op sequence agree to f32 rounding on the fp32 bundle, in every bucket.
    let fp32_logits = |fuse_attention| {
        let mut session = Session::open_with(
            out.join("model.fp32.edgebert"),
            SessionOptions::default().with_fuse_attention(fuse_attention),
        )
        .expect("open fp32 bundle");
        texts
            .iter()
            .map(|t| session.classify(t).expect("classify").logits)
            .collect::<Vec<_>>()
    };
    let (fused, unfused) = (fp32_logits(true), fp32_logits(false));
    // Two code paths (on an AVX-512 CPU they can agree bit for bit: the kernel's exp is
    // tract's), so check that the fused one exists: every layer's block matches.
    let onnx = std::fs::read(out.join("model.fp32.onnx")).expect("read model.fp32.onnx");
    assert_eq!(
        edgebert_runtime::inspect::fused_attention_blocks(&onnx),
        2,
        "one fused attention block per layer of the tiny model"
    );
    for (a, b) in fused.iter().flatten().zip(unfused.iter().flatten()) {
        assert!((a - b).abs() <= 1e-5, "fused {a} vs tract {b}");
    }
}

#[test]
fn quantize_none_ships_fp32_and_bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (model, data) = tiny_finetuned(tmp.path());
    let out = tmp.path().join("export-fp32");
    let s = export(&ExportOpts {
        model: model.display().to_string(),
        out: out.clone(),
        data: Some(data.join("validation.txt")),
        quantize: Quantization::None,
        max_verify_samples: Some(10),
        progress: false,
        ..Default::default()
    })
    .expect("export");
    assert!(s.int8.is_none());
    assert_eq!(s.fp32.expect("fp32").n, 10);
    assert!(!out.join("model.int8.onnx").exists());
    let session = Session::open(out.join("model.edgebert")).expect("open");
    assert_eq!(session.header().quantization, "none");
    assert_eq!(session.int8_path(), Int8Path::NotInt8);

    // A directory without a fine-tuned model, and a data file with a malformed line.
    let e = export(&ExportOpts {
        model: tmp.path().join("nothing-here").display().to_string(),
        out: tmp.path().join("x"),
        progress: false,
        ..Default::default()
    })
    .expect_err("missing model");
    assert!(e.to_string().contains("nothing-here"), "{e}");
    let bad = tmp.path().join("bad.txt");
    std::fs::write(&bad, "kalolo;joy\nno separator here\n").expect("write");
    let e = export(&ExportOpts {
        model: model.display().to_string(),
        out: tmp.path().join("y"),
        data: Some(bad.clone()),
        progress: false,
        ..Default::default()
    })
    .expect_err("malformed line");
    let msg = e.to_string();
    assert!(msg.contains("bad.txt") && msg.contains('2'), "{msg}");
}
