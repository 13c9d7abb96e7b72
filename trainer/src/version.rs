//! The text of `edgebert-train --version`: the crate version, the enabled cargo features, and the
//! runtime kernels this CPU selects (what an exported bundle's verification runs on here).
use edgebert_kernels::dispatch;

/// The version, then one fact per line: features, CPU, and each op's kernel.
pub fn long_version() -> String {
    let cuda = if cfg!(feature = "cuda") {
        "cuda (--device cuda)"
    } else {
        "none (CPU only; build with `--features cuda` for --device cuda)"
    };
    let (seven, any) = (dispatch::int8_kernel(true), dispatch::int8_kernel(false));
    let int8 = if seven == any {
        seven.describe().to_string()
    } else {
        format!(
            "{} for 7-bit codes (the exporter's default), {} for 8-bit codes",
            seven.describe(),
            any.describe()
        )
    };
    format!(
        "{version}\nfeatures: {cuda}\nCPU: {arch}, {cpu}\nruntime kernels on this CPU:\n  int8 Linear: {int8}\n  LayerNorm:   {ln}\n  GELU:        {gelu}\n  attention:   {att}",
        version = env!("CARGO_PKG_VERSION"),
        arch = std::env::consts::ARCH,
        cpu = dispatch::cpu(),
        ln = dispatch::layer_norm_kernel().describe(),
        gelu = dispatch::gelu_kernel().describe(),
        att = dispatch::attention_kernel().describe(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_version_features_and_kernels() {
        let v = super::long_version();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        for part in [
            "features: ",
            "CPU: ",
            "int8 Linear: ",
            "LayerNorm: ",
            "GELU: ",
            "attention: ",
        ] {
            assert!(v.contains(part), "{part} missing from {v}");
        }
    }
}
