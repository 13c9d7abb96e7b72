// With the `cuda` feature, compiles each `cuda/*.cu` of the crate being built to PTX
// (`$OUT_DIR/<name>.ptx`) with the toolkit's `nvcc` (`$CUDA_HOME/bin/nvcc`, else `nvcc` on
// `PATH`; `scripts/build-cuda` provides one) for `CUDA_COMPUTE_CAP` (default 80). Without the
// feature it does nothing: CPU builds need no toolkit. The trainer's build script is this file
// (`include!`), so both crates build their kernels the same way.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=cuda");
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
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut sources: Vec<PathBuf> = std::fs::read_dir("cuda")
        .expect("the crate has a cuda/ folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    for src in sources {
        let stem = src.file_stem().expect("a .cu file has a name");
        let out = out_dir.join(stem).with_extension("ptx");
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=compute_{cap}"))
            .arg(&src)
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
            "{} failed on {} ({status})",
            nvcc.display(),
            src.display()
        );
    }
}
