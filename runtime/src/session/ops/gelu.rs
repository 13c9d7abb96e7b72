//! edgebert's one-pass exact GELU as a tract element-wise op ([`edgebert_kernels::gelu`]).
//!
//! tract recognises the ONNX erf-GELU pattern (`x / √2 → Erf → + 1 → × x → × 0.5`) and runs it
//! as `GeluExact`: two scalar passes around its erf kernel and a scratch buffer per call. The
//! pass [`crate::session::passes`] swaps each f32 `GeluExact` for [`EdgebertGelu`], the same function in
//! one vectorised pass (AVX-512, AVX2 or plain Rust, bit-identical to each other). Its erf is a
//! different approximation from tract's (ours within 4.3e-7 of the exact erf), so GELU outputs
//! differ from tract's in the last bits (≤ 5e-6 on [−8, 8], tested); every int8 path and the fp32 path get the same
//! replacement, so they still agree with one another exactly where they did.
use edgebert_kernels::gelu::{gelu_in_place, GeluKernel};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::element_wise::ElementWiseMiniOp;

use super::split;

/// Exact GELU over f32 tensors, in place ([`edgebert_kernels::gelu::gelu`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgebertGelu {
    kernel: GeluKernel,
}

impl EdgebertGelu {
    /// The op with the widest kernel this CPU runs.
    pub fn new() -> EdgebertGelu {
        EdgebertGelu {
            kernel: GeluKernel::best(),
        }
    }
}

impl Default for EdgebertGelu {
    fn default() -> Self {
        EdgebertGelu::new()
    }
}

impl ElementWiseMiniOp for EdgebertGelu {
    fn name(&self) -> String {
        "EdgebertGelu".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, _out_dt: Option<DatumType>) -> TractResult<()> {
        ensure!(
            t.datum_type() == f32::datum_type(),
            "EdgebertGelu: {:?} input, expected f32",
            t.datum_type()
        );
        let mut view = t.try_as_plain_ram_mut()?;
        let xs = view.as_slice_mut::<f32>()?;
        // Spread over the running plan's pool: every kernel gives each value the same result
        // wherever a block starts.
        split::par_rows(xs, 1, |_, xs| {
            gelu_in_place(xs, self.kernel);
            Ok(())
        })
    }

    fn cost_per_element(&self, dt: DatumType) -> TVec<(Cost, usize)> {
        tvec!((Cost::FMA(dt), 14), (Cost::Div(dt), 1))
    }
}
