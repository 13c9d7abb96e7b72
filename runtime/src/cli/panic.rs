//! Panics in the device build. The `edge` profile aborts on panic (unwinding tables and landing
//! pads are about 1.4 MB of its binary), so the library's guard around tract cannot catch one
//! there; this hook turns one into a single `edgebert: error:` line and exit code 101 instead
//! of an abort signal and a core dump. CI runs the bad-input suite and the fuzz seeds against
//! the `edge` binary: no input reaches it. Builds that unwind keep the guard's error instead.

/// Installs the hook in a build that aborts on panic; nothing otherwise.
pub fn install() {
    #[cfg(panic = "abort")]
    std::panic::set_hook(Box::new(|info| {
        use std::io::Write;
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
            .replace(['\n', '\r'], " ");
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "edgebert: error: internal error (please report it): {msg}{at}"
        );
        // Rust's own exit code for a panic
        std::process::exit(101);
    }));
}
