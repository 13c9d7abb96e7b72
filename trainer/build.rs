//! With the `cuda` feature, compiles `cuda/adamw.cu` (the optimizer kernels) to PTX (`$OUT_DIR/adamw.ptx`) with the toolkit's
//! `nvcc` (`$CUDA_HOME/bin/nvcc`, else `nvcc` on `PATH`; `scripts/build-cuda` provides one) for
//! `CUDA_COMPUTE_CAP` (default 80). Without the feature it does nothing: CPU builds need no toolkit.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=cuda/adamw.cu");
    println!("cargo::rerun-if-env-changed=CUDA_HOME");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let nvcc = env::var_os("CUDA_HOME")
        .map(|h| PathBuf::from(h).join("bin").join("nvcc"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("adamw.ptx");
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("cuda/adamw.cu")
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): set CUDA_HOME or use scripts/build-cuda",
                nvcc.display()
            )
        });
    assert!(
        status.success(),
        "{} failed on cuda/adamw.cu ({status})",
        nvcc.display()
    );
}
