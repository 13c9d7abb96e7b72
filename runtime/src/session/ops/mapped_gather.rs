//! The word-embedding lookup reads its rows from the mapped model file.
//!
//! The word-embedding matrix is the largest weight of a BERT-family encoder (MiniLM: 30,522 ×
//! 384, half of the fp32 file) and each text reads a few dozen of its rows. Loaded like any
//! weight it is read into fresh memory at open (page faults, zeroing and a copy of 47 MB for
//! MiniLM fp32) and stays resident. Instead, [`crate::session::weights`] maps the matrix from the
//! file and turns `Gather(matrix, input_ids)` into `EdgebertMappedGather`, which copies the rows
//! of the ids it is given out of the map: the open reads the matrix once only to check the
//! bundle checksum, and only the pages of rows actually used become resident.
//!
//! The map lives as long as the session. A model file replaced by rename (how edgebert writes
//! them) does not affect it; a file rewritten in place while a session uses it changes the rows
//! it reads, and one truncated in place makes the next lookup fault, as with any mapped file.
use std::fs::File;
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_hir::infer::rules::expr::IntoExp;
use tract_onnx::tract_hir::internal::{Expansion, InferenceResult, Solver, TensorProxy};

use super::names::MAPPED_GATHER;
use super::shared::arity;

/// A `rows × cols` matrix of `datum_type` values mapped from a file.
#[derive(Debug)]
pub struct MappedMatrix {
    map: Mmap,
    datum_type: DatumType,
    rows: usize,
    cols: usize,
}

impl MappedMatrix {
    /// Maps the `rows × cols` matrix of `datum_type` values stored row-major at `offset` of
    /// `file` (`len` bytes, which must be exactly its size).
    pub fn map(
        file: &File,
        offset: u64,
        len: u64,
        datum_type: DatumType,
        rows: usize,
        cols: usize,
    ) -> std::io::Result<MappedMatrix> {
        let size = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(datum_type.size_of()));
        if size.map(|s| s as u64) != Some(len) {
            return Err(std::io::Error::other(format!(
                "{rows} x {cols} {datum_type:?} values are not {len} bytes"
            )));
        }
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        // SAFETY: a private read-only map of the model file, whose limits are documented at the
        // top of this module.
        let map = unsafe { MmapOptions::new().offset(offset).len(len).map(file)? };
        Ok(MappedMatrix {
            map,
            datum_type,
            rows,
            cols,
        })
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of one row.
    fn row_bytes(&self) -> usize {
        self.cols * self.datum_type.size_of()
    }

    /// Copies the rows `ids` (negative ids count from the end, as ONNX `Gather` does) into
    /// `out`, `ids.len()` rows long; an id outside the matrix is an error naming it.
    pub fn gather(&self, ids: &[i64], out: &mut [u8]) -> TractResult<()> {
        let width = self.row_bytes();
        ensure!(
            out.len() == ids.len() * width,
            "{MAPPED_GATHER}: output size"
        );
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(width.max(1))) {
            let row = if id < 0 { id + self.rows as i64 } else { id };
            ensure!(
                (0..self.rows as i64).contains(&row),
                "{MAPPED_GATHER}: token id {id} is outside the {} rows of the embedding",
                self.rows
            );
            let at = row as usize * width;
            dst.copy_from_slice(&self.map[at..at + width]);
        }
        Ok(())
    }
}

/// The parsed lookup node: output shape is the ids' shape plus one axis of `cols`. Its first
/// input is a placeholder (the matrix's rows by 0 columns, for checks that count vocabulary
/// rows); only the second, the ids, is read.
#[derive(Debug, Clone)]
pub struct MappedGatherNode(pub Arc<MappedMatrix>);

impl Expansion for MappedGatherNode {
    fn name(&self) -> StaticName {
        MAPPED_GATHER.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        arity(MAPPED_GATHER, inputs, outputs, 2..=2, 1)?;
        s.equals(&outputs[0].datum_type, self.0.datum_type)?;
        s.equals(inputs[1].rank.bex() + 1, &outputs[0].rank)?;
        let cols = self.0.cols;
        s.given(&inputs[1].shape, move |s, shape| {
            let mut out = shape.clone();
            out.push(cols.to_dim());
            s.equals(&outputs[0].shape, out)
        })?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, MappedGather(self.0.clone()), &inputs[1..2])
    }
}

/// `Gather(matrix, ids)` over the mapped matrix.
#[derive(Debug, Clone)]
pub struct MappedGather(pub Arc<MappedMatrix>);

impl PartialEq for MappedGather {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MappedGather {}

impl Op for MappedGather {
    fn name(&self) -> StaticName {
        MAPPED_GATHER.into()
    }

    op_as_typed_op!();
}

impl EvalOp for MappedGather {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let ids = inputs[0].cast_to::<i64>()?;
        let view = ids.try_as_plain_ram()?;
        let ids_slice = view.as_slice::<i64>()?;
        let mut shape: TVec<usize> = ids.shape().into();
        shape.push(self.0.cols);
        // SAFETY: `gather` writes every byte of the tensor or fails, and then it is dropped.
        let mut out = unsafe { Tensor::uninitialized_dt(self.0.datum_type, &shape)? };
        {
            let mut ov = out.try_as_plain_ram_mut()?;
            self.0.gather(ids_slice, ov.as_bytes_mut())?;
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for MappedGather {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape = inputs[0].shape.to_tvec();
        shape.push(self.0.cols.to_dim());
        Ok(tvec!(self.0.datum_type.fact(shape)))
    }

    as_op!();
}
