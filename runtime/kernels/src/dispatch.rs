//! The one place that asks the CPU what it has: its features, detected once, and for each op
//! (int8 Linear with its quantizer, LayerNorm, GELU, attention) the kernel that runs here,
//! with the descriptions `edgebert inspect` and `bench` print.
//!
//! Order of preference, fastest first: x86-64 AVX-512 VNNI > AVX2 (int8 only with 7-bit
//! codes) > portable; aarch64 i8mm > dotprod > NEON (every aarch64 CPU has NEON, so an int8
//! model always keeps an int8 kernel there); armv7 with NEON: the NEON int8 kernel, the rest
//! portable; anything else: portable.

use crate::attention::AttentionKernel;
use crate::gelu::GeluKernel;
use crate::int8_gemm::Kernel;
use crate::layer_norm::LayerNormKernel;
use std::sync::OnceLock;

/// The SIMD features of this CPU the kernels use (all `false` on other architectures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    /// x86-64 AVX2.
    pub avx2: bool,
    /// x86-64 FMA (fused multiply-add on 256-bit registers).
    pub fma: bool,
    /// x86-64 AVX-512 F.
    pub avx512f: bool,
    /// x86-64 AVX-512 BW (byte and word operations).
    pub avx512bw: bool,
    /// x86-64 AVX-512 VNNI (`vpdpbusd`).
    pub avx512vnni: bool,
    /// aarch64 Advanced SIMD (NEON).
    pub neon: bool,
    /// aarch64 dot products (`sdot`/`udot`, Armv8.2 FEAT_DotProd).
    pub dotprod: bool,
    /// aarch64 int8 matrix multiply (`smmla`/`usmmla`, Armv8.6 FEAT_I8MM).
    pub i8mm: bool,
    /// 32-bit Arm NEON (every ARMv7 core of a Raspberry Pi 2, 3, 4 or 5 has it): the int8
    /// GEMM only.
    pub armv7_neon: bool,
}

impl CpuFeatures {
    /// Asks the CPU (the standard library's run-time detection).
    fn detect() -> CpuFeatures {
        #[allow(unused_mut)]
        let mut f = CpuFeatures::default();
        #[cfg(target_arch = "x86_64")]
        {
            f.avx2 = std::arch::is_x86_feature_detected!("avx2");
            f.fma = std::arch::is_x86_feature_detected!("fma");
            f.avx512f = std::arch::is_x86_feature_detected!("avx512f");
            f.avx512bw = std::arch::is_x86_feature_detected!("avx512bw");
            f.avx512vnni = std::arch::is_x86_feature_detected!("avx512vnni");
        }
        #[cfg(target_arch = "aarch64")]
        {
            f.neon = std::arch::is_aarch64_feature_detected!("neon");
            f.dotprod = f.neon && std::arch::is_aarch64_feature_detected!("dotprod");
            f.i8mm = f.neon && std::arch::is_aarch64_feature_detected!("i8mm");
        }
        #[cfg(target_arch = "arm")]
        {
            f.armv7_neon = crate::arm::has_neon();
        }
        f
    }

    /// Whether the AVX-512 VNNI int8 kernel runs: AVX-512 F, BW and VNNI, and AVX2 (which
    /// every such CPU has).
    pub fn avx512_vnni(&self) -> bool {
        self.avx512f && self.avx512bw && self.avx512vnni && self.avx2
    }
}

/// This CPU's features, detected on the first call.
pub fn features() -> &'static CpuFeatures {
    static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
    FEATURES.get_or_init(CpuFeatures::detect)
}

/// The int8 Linear kernel (and with it the quantizer) for weights packed by
/// [`crate::int8_gemm::PackedInt8Weights::pack`] on this CPU: `seven_bit` when every code is
/// within ±[`crate::int8_gemm::MAX_EXACT_CODE`] (which the AVX2 kernel needs).
pub fn int8_kernel(seven_bit: bool) -> Kernel {
    let f = features();
    if f.avx512_vnni() {
        Kernel::Avx512Vnni
    } else if f.avx2 && seven_bit {
        Kernel::Avx2
    } else if f.i8mm {
        Kernel::I8mm
    } else if f.dotprod {
        Kernel::Dotprod
    } else if f.neon || f.armv7_neon {
        Kernel::Neon
    } else {
        Kernel::Portable
    }
}

/// The LayerNorm kernel of this CPU.
pub fn layer_norm_kernel() -> LayerNormKernel {
    let f = features();
    if f.avx512f {
        LayerNormKernel::Avx512
    } else if f.avx2 {
        LayerNormKernel::Avx2
    } else if f.neon {
        LayerNormKernel::Neon
    } else {
        LayerNormKernel::Portable
    }
}

/// The GELU kernel of this CPU.
pub fn gelu_kernel() -> GeluKernel {
    let f = features();
    if f.avx512f {
        GeluKernel::Avx512
    } else if f.avx2 {
        GeluKernel::Avx2
    } else if f.neon {
        GeluKernel::Neon
    } else {
        GeluKernel::Portable
    }
}

/// The attention kernel of this CPU.
pub fn attention_kernel() -> AttentionKernel {
    let f = features();
    if f.avx512f {
        AttentionKernel::Avx512
    } else if f.avx2 && f.fma {
        AttentionKernel::Fma
    } else if f.neon {
        AttentionKernel::Neon
    } else {
        AttentionKernel::Portable
    }
}

/// The CPU family and its best int8 instructions, e.g. `"x86-64 AVX-512 VNNI"`,
/// `"x86-64 AVX2"`, `"aarch64 NEON i8mm"`, `"portable"`.
pub fn cpu() -> &'static str {
    let f = features();
    if f.avx512_vnni() {
        "x86-64 AVX-512 VNNI"
    } else if f.avx512f {
        "x86-64 AVX-512"
    } else if f.avx2 {
        "x86-64 AVX2"
    } else if f.i8mm {
        "aarch64 NEON i8mm"
    } else if f.dotprod {
        "aarch64 NEON dotprod"
    } else if f.neon {
        "aarch64 NEON"
    } else if f.armv7_neon {
        "armv7 NEON"
    } else {
        "portable"
    }
}

/// One line naming the CPU and each op's kernel, for logs, `edgebert inspect` and `bench`:
/// `"x86-64 AVX2: int8 AVX2 u8×i8 products (7-bit codes; portable loop otherwise),
/// LayerNorm AVX2, GELU AVX2, attention AVX2+FMA"`.
pub fn describe() -> String {
    let (seven, any) = (int8_kernel(true), int8_kernel(false));
    let int8 = if seven == any {
        seven.describe().to_string()
    } else {
        format!(
            "{} (7-bit codes; {} otherwise)",
            seven.describe(),
            any.describe()
        )
    };
    format!(
        "{}: int8 {int8}, LayerNorm {}, GELU {}, attention {}",
        cpu(),
        layer_norm_kernel().describe(),
        gelu_kernel().describe(),
        attention_kernel().describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_detected_once_and_every_pick_runs_here() {
        assert!(std::ptr::eq(features(), features()));
        assert!(int8_kernel(true).available() && int8_kernel(false).available());
        assert!(layer_norm_kernel().available());
        assert!(gelu_kernel().available());
        assert!(attention_kernel().available());
        let line = describe();
        assert!(line.starts_with(cpu()), "{line}");
        eprintln!("{line}");
    }

    /// With `EDGEBERT_EXPECT_INT8_KERNEL` set (`avx512vnni`, `avx2`, `i8mm`, `dotprod`, `neon`
    /// or `portable`), the dispatch must pick that kernel for full-range codes (for `avx2`, for
    /// 7-bit codes): a kernel that silently falls back fails here. Unset, nothing is expected.
    #[test]
    fn the_expected_int8_kernel_is_picked() {
        let Ok(want) = std::env::var("EDGEBERT_EXPECT_INT8_KERNEL") else {
            return;
        };
        let got = if want == "avx2" {
            int8_kernel(true)
        } else {
            int8_kernel(false)
        };
        assert_eq!(got.name(), want, "{}", describe());
        eprintln!("int8 kernel {} as expected ({})", got.name(), describe());
    }
}
