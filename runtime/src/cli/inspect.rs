//! `edgebert inspect`: labels, max_len, sizes, op histogram and checksum of a model.
use std::path::Path;

use anyhow::Result;

use edgebert_runtime::inspect::{fused_attention_blocks, inspect_onnx, int8_path_on_this_cpu};
use edgebert_runtime::{ModelSource, SourceKind};

use super::Format;

/// Prints the description of the model at `path`.
pub fn run(path: &Path, format: Format) -> Result<()> {
    let src = ModelSource::open(path)?;
    let b = &src.bundle;
    let h = &b.header;
    let summary = inspect_onnx(&b.model)?;
    let tok = b.tokenizer()?;
    let checksum = b.checksum()?;
    let kind = match src.kind {
        SourceKind::Bundle => "bundle",
        SourceKind::ExportDir => "export-dir",
    };
    // What a session would do with this model on this CPU (see `classify --int8`).
    let int8_path = int8_path_on_this_cpu(&b.model);
    let attention_blocks = fused_attention_blocks(&b.model);
    // The threads a session would run on (EDGEBERT_THREADS, else one per physical core).
    let threads = super::resolve_threads(std::env::var("EDGEBERT_THREADS").ok().as_deref())?;
    let v = serde_json::json!({
        "path": path.display().to_string(),
        "kind": kind,
        "model_file": src.model_file.display().to_string(),
        "file_bytes": src.file_size,
        "model_bytes": b.model.len(),
        "vocab_size": tok.vocab_size(),
        "labels": h.labels,
        "max_len": h.max_len,
        "input_names": h.input_names,
        "output_name": h.output_name,
        "quantization": h.quantization,
        "int8_path": int8_path,
        "fused_attention_blocks": attention_blocks,
        "threads": threads,
        "model_format": h.model_format,
        "tokenizer": h.tokenizer,
        "metadata": h.metadata,
        "checksum": format!("crc32:{checksum:08x}"),
        "graph": {
            "nodes": summary.nodes,
            "parameters": summary.parameters,
            "inputs": summary.inputs.iter().map(|(n, f)| serde_json::json!({"name": n, "fact": f})).collect::<Vec<_>>(),
            "outputs": summary.outputs.iter().map(|(n, f)| serde_json::json!({"name": n, "fact": f})).collect::<Vec<_>>(),
            "embedding_rows": summary.embedding.as_ref().map(|e| e.1),
            "op_histogram": summary.op_histogram,
        },
    });
    match format {
        Format::Json => println!("{v}"),
        Format::Text => {
            println!(
                "model:        {} ({kind}, {} bytes)",
                src.model_file.display(),
                src.file_size
            );
            println!("labels:       {}", h.labels.join(", "));
            println!("max_len:      {}", h.max_len);
            println!("vocab:        {} tokens", tok.vocab_size());
            println!("quantization: {}", h.quantization);
            println!("int8 path:    {int8_path}");
            println!("attention:    {attention_blocks} blocks fused into one op each");
            println!("threads:      {threads}");
            println!(
                "onnx:         {} bytes, {} nodes, {} parameters",
                b.model.len(),
                summary.nodes,
                summary.parameters
            );
            for (n, f) in &summary.inputs {
                println!("input:        {n} {f}");
            }
            for (n, f) in &summary.outputs {
                println!("output:       {n} {f}");
            }
            println!("checksum:     crc32:{checksum:08x}");
            for (k, val) in &h.metadata {
                println!("meta:         {k} = {val}");
            }
            println!("ops:");
            for (op, n) in &summary.op_histogram {
                println!("  {op:<24} {n}");
            }
        }
    }
    Ok(())
}
