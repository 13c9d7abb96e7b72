//! The 32-bit Arm kernels: the NEON int8 GEMM in [`neon_int8`], for armv7 CPUs with NEON
//! (found at run time by [`has_neon`]). The fp32 ops run their portable code there (armv7
//! NEON has no `f64` lanes for LayerNorm's statistics and flushes subnormal `f32` values to
//! zero).

pub(crate) mod neon_int8;

/// Whether this CPU has NEON: the `HWCAP_NEON` bit of the `AT_HWCAP` word the kernel gives
/// the process (`/proc/self/auxv`; the standard library's detection for 32-bit Arm is not
/// stable Rust). `false` when the file cannot be read.
pub(crate) fn has_neon() -> bool {
    const AT_HWCAP: u32 = 16;
    const HWCAP_NEON: u32 = 1 << 12;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return false;
    };
    // (type, value) pairs of native-endian 32-bit words
    auxv.chunks_exact(8)
        .map(|p| {
            let word = |i: usize| u32::from_ne_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
            (word(0), word(4))
        })
        .find(|&(kind, _)| kind == AT_HWCAP)
        .is_some_and(|(_, hwcap)| hwcap & HWCAP_NEON != 0)
}
