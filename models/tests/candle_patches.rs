//! The vendored candle-core's patches (vendor/README.md) give the values upstream's code gives.
//! Here: a sum over leading dimensions (how a bias gradient is reduced) adds whole rows, in the
//! same order as upstream's per-element loop, so the result is bit-identical to that loop.
use candle_core::{Device, Tensor};

/// Upstream's order, written out: for each destination element, the source rows in order.
fn sum_leading(values: &[f32], rows: usize, inner: usize) -> Vec<f32> {
    let mut dst = vec![0f32; inner];
    for r in 0..rows {
        for (i, d) in dst.iter_mut().enumerate() {
            *d += values[r * inner + i];
        }
    }
    dst
}

#[test]
fn sums_over_leading_dimensions_add_rows_in_order() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for dims in [vec![7usize, 13], vec![3, 5, 11], vec![64, 33], vec![1, 9]] {
        let n: usize = dims.iter().product();
        // values of very different magnitudes, so that a different summation order would show
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1009) as f32 - 500.0) * if i % 3 == 0 { 1e4 } else { 1e-3 })
            .collect();
        let t = Tensor::from_vec(values.clone(), dims.as_slice(), &dev)?;
        let inner = *dims.last().unwrap_or(&1);
        let rows = n / inner;
        let leading: Vec<usize> = (0..dims.len() - 1).collect();
        let got = t.sum_keepdim(leading)?.flatten_all()?.to_vec1::<f32>()?;
        let want = sum_leading(&values, rows, inner);
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{dims:?}"
        );
    }
    // a middle dimension still goes through upstream's general loop
    let t = Tensor::arange(0f32, 60., &dev)?.reshape((3, 4, 5))?;
    let mid = t.sum_keepdim(1)?.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(mid[0], 0. + 5. + 10. + 15.);
    assert_eq!(mid.len(), 15);
    Ok(())
}
