//! `--device auto|cpu|cuda[:N]`: picking the candle device, with a clear error when CUDA was not
//! compiled in (build with `--features cuda`).
use crate::error::{Result, TrainError};
use candle_core::Device;

/// True when this binary was built with the `cuda` feature.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Resolves a device spec. `auto` takes CUDA device 0 when built with CUDA and one is present,
/// else the CPU (saying so on stderr when `verbose`).
pub fn parse_device(spec: &str, verbose: bool) -> Result<Device> {
    let spec_l = spec.trim().to_ascii_lowercase();
    match spec_l.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if CUDA_BUILT {
                if let Ok(d) = Device::new_cuda(0) {
                    if verbose {
                        eprintln!("device: auto -> cuda:0");
                    }
                    return Ok(d);
                }
            }
            if verbose {
                eprintln!(
                    "device: auto -> cpu ({})",
                    if CUDA_BUILT {
                        "no CUDA device found"
                    } else {
                        "built without the cuda feature"
                    }
                );
            }
            Ok(Device::Cpu)
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| TrainError::Device {
                    spec: spec.into(),
                    msg: "expected cuda or cuda:N with N a device number".into(),
                })?,
                None => 0,
            };
            if !CUDA_BUILT {
                return Err(TrainError::Device {
                    spec: spec.into(),
                    msg: "this binary was built without CUDA support; rebuild with \
                          `cargo build --release -p edgebert-trainer --features cuda`, or use --device cpu"
                        .into(),
                });
            }
            Device::new_cuda(ordinal).map_err(|e| TrainError::Device {
                spec: spec.into(),
                msg: format!("cannot open CUDA device {ordinal}: {e}"),
            })
        }
        _ => Err(TrainError::Device {
            spec: spec.into(),
            msg: "expected auto, cpu, cuda or cuda:N".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_errors() {
        assert!(parse_device("cpu", false)
            .map(|d| d.is_cpu())
            .unwrap_or(false));
        assert!(parse_device("gpu", false).is_err());
        assert!(parse_device("cuda:x", false).is_err());
        if !CUDA_BUILT {
            let e = parse_device("cuda", false)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("--features cuda"), "{e}");
            assert!(parse_device("auto", false)
                .map(|d| d.is_cpu())
                .unwrap_or(false));
        }
    }
}
