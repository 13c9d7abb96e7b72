//! Symmetric int8 weight quantization: per output channel or per tensor for Linear weights,
//! per row for embedding tables. Zero points are always 0; codes lie in [-qmax, qmax], where
//! `qmax` is 127 (full range) or 63 (reduced range, see `WeightRange`) for Linear weights and
//! always 127 for embedding tables.

/// Largest code of full-range int8.
pub(crate) const QMAX_FULL: i8 = 127;
/// Largest code of reduced-range (7-bit) int8: `2 × 255 × 64 < 32768`, so a u8 × s8 pair sum
/// fits int16 (no saturation in AVX2's `vpmaddubsw`).
pub(crate) const QMAX_REDUCED: i8 = 63;

/// Scale of one symmetric quantization (`x ≈ q * scale`) whose largest magnitude maps to `qmax`.
fn scale_for(max_abs: f32, qmax: i8) -> f32 {
    if max_abs > 0.0 && max_abs.is_finite() {
        max_abs / f32::from(qmax)
    } else {
        1.0
    }
}

fn code(v: f32, inv_scale: f32, qmax: i8) -> i8 {
    let qmax = f32::from(qmax);
    // round half to even, as ONNX QuantizeLinear does
    (v * inv_scale).round_ties_even().clamp(-qmax, qmax) as i8
}

/// Quantizes a `[rows, cols]` row-major matrix (a Linear weight laid out `[in, out]`) with one
/// scale per column (`per_channel`) or a single scale, codes in [-qmax, qmax]; returns the codes
/// and the scales.
pub(crate) fn quantize_columns(
    w: &[f32],
    rows: usize,
    cols: usize,
    per_channel: bool,
    qmax: i8,
) -> (Vec<i8>, Vec<f32>) {
    let scales: Vec<f32> = if per_channel {
        let mut max = vec![0f32; cols];
        for r in 0..rows {
            for (m, v) in max.iter_mut().zip(&w[r * cols..(r + 1) * cols]) {
                *m = m.max(v.abs());
            }
        }
        max.into_iter().map(|m| scale_for(m, qmax)).collect()
    } else {
        vec![scale_for(w.iter().fold(0f32, |m, v| m.max(v.abs())), qmax)]
    };
    let inv: Vec<f32> = scales.iter().map(|s| 1.0 / s).collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| code(v, if per_channel { inv[i % cols] } else { inv[0] }, qmax))
        .collect();
    (q, scales)
}

/// Quantizes a `[rows, cols]` row-major table (an embedding) with one scale per row.
pub(crate) fn quantize_rows(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows);
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let s = scale_for(row.iter().fold(0f32, |m, v| m.max(v.abs())), QMAX_FULL);
        let inv = 1.0 / s;
        q.extend(row.iter().map(|&v| code(v, inv, QMAX_FULL)));
        scales.push(s);
    }
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_within_half_a_step() {
        let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.37).collect();
        for qmax in [QMAX_FULL, QMAX_REDUCED] {
            for per_channel in [false, true] {
                let (q, s) = quantize_columns(&w, 4, 3, per_channel, qmax);
                assert_eq!(s.len(), if per_channel { 3 } else { 1 });
                for (i, (&v, &c)) in w.iter().zip(&q).enumerate() {
                    let scale = if per_channel { s[i % 3] } else { s[0] };
                    assert!((v - c as f32 * scale).abs() <= scale / 2.0 + 1e-6);
                }
                // the largest magnitude maps to ±qmax, nothing beyond
                assert!(q.iter().any(|&c| c.unsigned_abs() == qmax.unsigned_abs()));
                assert!(q.iter().all(|&c| c.unsigned_abs() <= qmax.unsigned_abs()));
            }
        }
    }

    #[test]
    fn rows_have_their_own_scale_and_zero_rows_are_safe() {
        let w = vec![0.0, 0.0, 1.0, -2.0, 0.01, 0.02];
        let (q, s) = quantize_rows(&w, 3, 2);
        assert_eq!(s[0], 1.0);
        assert_eq!(&q[0..2], &[0, 0]);
        assert_eq!(q[3], -127);
        assert_eq!(q[5], 127);
        assert!((s[2] - 0.02 / 127.0).abs() < 1e-9);
    }
}
