//! The bundle checksum, put together from the checksums of the pieces the session reads anyway.
use std::path::Path;

use super::file::FileWeights;
use super::skeleton::ExternalTensor;

/// The bundle checksum, checked without a pass of its own over the weights: the bytes between
/// the external tensors are hashed when the file is opened (they are small), the tensors' own
/// checksums come from [`FileWeights`]' reads, and CRC-32's combination rule joins the pieces
/// in file order into the checksum of the whole payload.
#[derive(Debug, Clone)]
pub struct PayloadChecksum {
    expected: u32,
    /// Checksum and length of the bytes before each external tensor, and after the last one.
    gaps: Vec<(u32, u64)>,
}

impl PayloadChecksum {
    /// Hashes the bytes of `file_bytes` from `payload_start` on that `tensors` (sorted by
    /// offset, as [`skeleton`] lists them) do not cover; `expected` is the payload's checksum.
    /// `None` when the tensors are not sorted, overlap or lie outside the payload.
    pub fn of_gaps(
        file_bytes: &[u8],
        payload_start: u64,
        tensors: &[ExternalTensor],
        expected: u32,
    ) -> Option<PayloadChecksum> {
        let mut gaps = Vec::with_capacity(tensors.len() + 1);
        let mut at = usize::try_from(payload_start).ok()?;
        for t in tensors {
            let start = usize::try_from(t.offset).ok()?;
            let gap = file_bytes.get(at..start)?;
            gaps.push((crc32fast::hash(gap), gap.len() as u64));
            at = start.checked_add(usize::try_from(t.len).ok()?)?;
        }
        let tail = file_bytes.get(at..)?;
        gaps.push((crc32fast::hash(tail), tail.len() as u64));
        Some(PayloadChecksum { expected, gaps })
    }

    /// The checksum the header promised and the one the bytes read give (tensors tract did
    /// not read are read now).
    pub fn check(&self, weights: &FileWeights) -> std::io::Result<(u32, u32)> {
        let mut whole = crc32fast::Hasher::new();
        for (i, &(crc, len)) in self.gaps.iter().enumerate() {
            whole.combine(&crc32fast::Hasher::new_with_initial_len(crc, len));
            if let Some(t) = weights.tensors.get(i) {
                let crc = weights.tensor_crc(i)?;
                whole.combine(&crc32fast::Hasher::new_with_initial_len(crc, t.len));
            }
        }
        Ok((self.expected, whole.finalize()))
    }
}

/// Hashes the payload of the bundle `file` whole: `Ok` when it has the `expected` checksum,
/// else the checksum error (or the error reading it).
pub(crate) fn whole_payload(file: &Path, expected: u32) -> crate::error::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file).map_err(|e| crate::error::Error::io(file, e))?;
    f.seek(SeekFrom::Start(crate::bundle::PREAMBLE_LEN as u64))
        .map_err(|e| crate::error::Error::io(file, e))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| crate::error::Error::io(file, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    crate::model_source::checksum_result(file, expected, hasher.finalize())
}
