//! How a session runs an int8 model ([`Int8Mode`], an option) and how it did ([`Int8Path`], a
//! report); the rewrites behind each path are in [`super::rewrite::int8`].
use edgebert_kernels::dispatch::int8_kernel;
use edgebert_kernels::int8_gemm::Kernel;

/// How a session runs an int8 model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Int8Mode {
    /// The fastest exact path for this CPU: the runtime's kernel on x86-64 (AVX-512 VNNI, or
    /// AVX2 with 7-bit codes), on every aarch64 CPU (NEON, dotprod or i8mm) and on armv7 CPUs
    /// with NEON, dequantized fp32 elsewhere.
    #[default]
    Auto,
    /// Always tract's integer kernels (MatMulInteger).
    Native,
    /// Always dequantize the Linear weights to fp32 at load.
    Dequantize,
    /// Always the runtime's own int8 Linear kernel ([`edgebert_kernels::int8_gemm`]): AVX-512 VNNI where
    /// the CPU has it, AVX2 where it has that and the codes fit 7 bits, a portable (slow) loop
    /// elsewhere.
    Kernel,
}

/// The path a session took for its int8 Linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Path {
    /// The model has no int8 Linear layers.
    NotInt8,
    /// Integer kernels (MatMulInteger).
    Native,
    /// Weights dequantized to fp32 at load; the number of Linear layers rewritten.
    Dequantized(usize),
    /// The runtime's own int8 Linear kernel; the number of Linear layers rewritten.
    Kernel(usize),
}

impl Int8Path {
    /// One-line description for logs and `edgebert inspect`.
    pub fn describe(&self) -> String {
        match self {
            Int8Path::NotInt8 => "fp32 model".into(),
            Int8Path::Native => "int8 kernels (MatMulInteger)".into(),
            Int8Path::Dequantized(n) => format!(
                "int8 weights dequantized to fp32 at load ({n} Linear layers; no exact int8 kernel for this CPU and these codes)"
            ),
            Int8Path::Kernel(n) => {
                let (seven_bit, any) = (int8_kernel(true), int8_kernel(false));
                let kernel = if seven_bit == any {
                    seven_bit.describe().to_string()
                } else {
                    format!(
                        "{} for 7-bit codes, {} otherwise",
                        seven_bit.describe(),
                        any.describe()
                    )
                };
                format!("edgebert int8 kernel ({n} Linear layers, {kernel})")
            }
        }
    }
}

/// Whether `auto` runs an int8 model whose codes are 7-bit (`seven_bit`) or full-range on the
/// runtime's own kernel on this CPU: every CPU whose int8 kernel is not the portable loop
/// (x86-64 with AVX-512 VNNI, or AVX2 for 7-bit codes; every aarch64 CPU: NEON, dotprod or
/// i8mm; armv7 with NEON). The others dequantize.
pub fn auto_takes_kernel(seven_bit: bool) -> bool {
    int8_kernel(seven_bit) != Kernel::Portable
}
