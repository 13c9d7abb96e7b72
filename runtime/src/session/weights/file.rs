//! [`FileWeights`]: tract's reader of a skeleton's external tensors, straight from the model
//! file, each checked against the checksum taken on its first read.
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tract_onnx::data_resolver::ModelDataResolver;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{anyhow, bail, ensure};

use crate::session::ops::mapped_gather::MappedMatrix;

use super::skeleton::{ExternalTensor, Skeleton};

/// Bytes read per `read` call (and hashed while they are still in cache).
const READ_CHUNK: usize = 1 << 20;

/// tract's reader for the external initializers of a [`Skeleton`]: reads each byte range from
/// the model file, hashing it as it goes. The first read of a tensor records its checksum
/// (what [`PayloadChecksum`] combines into the bundle's), every later read must match it: a
/// file changed after it was opened is an error, never silently different weights.
#[derive(Debug, Clone)]
pub struct FileWeights {
    pub(super) file: PathBuf,
    pub(super) handle: Arc<File>,
    pub(super) tensors: Arc<[ExternalTensor]>,
    pub(super) index: Arc<HashMap<(u64, u64), usize>>,
    pub(super) crcs: Arc<[OnceLock<u32>]>,
    /// Whether [`parse`] maps the word-embedding matrix instead of reading it.
    pub(super) map_embedding: bool,
    /// Whether the mapped matrix is hashed on another thread as soon as it is mapped.
    pub(super) hash_mapped_now: bool,
    /// The mapped matrix, shared by every parse: (tensor index, map).
    pub(super) mapped: Arc<OnceLock<(usize, Arc<MappedMatrix>)>>,
    /// A tensor being hashed on another thread: (tensor index, the thread).
    pub(super) background: Arc<Mutex<Option<BackgroundHash>>>,
    /// Tensors read by [`FileWeights::preload`] and not yet handed to a parse, by index.
    pub(super) preloaded: Arc<Mutex<HashMap<usize, Tensor>>>,
}

/// A tensor index and the thread hashing it.
type BackgroundHash = (usize, std::thread::JoinHandle<std::io::Result<u32>>);

impl FileWeights {
    /// A reader of `skeleton`'s external tensors from `file` (opened now and held, so a file
    /// replaced by rename later is still read from the one opened).
    pub fn open(file: impl Into<PathBuf>, skeleton: &Skeleton) -> std::io::Result<FileWeights> {
        let file = file.into();
        let handle = Arc::new(File::open(&file)?);
        let tensors: Arc<[ExternalTensor]> = skeleton.tensors.clone().into();
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.offset, t.len), i))
            .collect();
        Ok(FileWeights {
            file,
            handle,
            crcs: (0..tensors.len()).map(|_| OnceLock::new()).collect(),
            tensors,
            index: Arc::new(index),
            map_embedding: true,
            hash_mapped_now: false,
            mapped: Arc::new(OnceLock::new()),
            background: Arc::new(Mutex::new(None)),
            preloaded: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Whether [`parse`] maps the word-embedding matrix from the file
    /// ([`super::mapped_embedding`]; the default) or reads it like any weight, and whether the
    /// mapped matrix is hashed right away on a thread of its own (for a bundle checksum that
    /// [`PayloadChecksum::check`] will ask for) or only when asked.
    pub fn with_mapped_embedding(mut self, map: bool, hash_now: bool) -> FileWeights {
        self.map_embedding = map;
        self.hash_mapped_now = hash_now;
        self
    }

    /// The tensor [`FileWeights::preload`] read for external tensor `i`, if it is still held.
    pub(super) fn take_preloaded(&self, i: usize) -> Option<Tensor> {
        self.preloaded.lock().ok()?.remove(&i)
    }

    /// Rows of the word-embedding matrix when a parse mapped it.
    pub fn mapped_embedding_rows(&self) -> Option<usize> {
        self.mapped.get().map(|(_, m)| m.rows())
    }

    /// The checksum of external tensor `i`: recorded by its first read, else the one a
    /// background hash of it gives ([`FileWeights::hash_in_background`]), else read and hashed
    /// now (a tensor tract never asked for).
    pub(super) fn tensor_crc(&self, i: usize) -> std::io::Result<u32> {
        if let Some(&crc) = self.crcs[i].get() {
            return Ok(crc);
        }
        let pending = self
            .background
            .lock()
            .ok()
            .and_then(|mut b| b.take_if(|(j, _)| *j == i));
        let crc = match pending {
            Some((_, job)) => job
                .join()
                .map_err(|_| std::io::Error::other("the checksum thread panicked"))??,
            None => hash_range(&self.handle, &self.tensors[i])?,
        };
        Ok(*self.crcs[i].get_or_init(|| crc))
    }

    /// Starts hashing external tensor `i` on a thread of its own, for a tensor the session maps
    /// instead of reading (its checksum is still part of the bundle's): on a second core the
    /// hash costs the open no time. Where no thread can be started it is hashed when needed.
    pub(super) fn hash_in_background(&self, i: usize) {
        if !cfg!(unix) || !self.hash_mapped_now || self.crcs[i].get().is_some() {
            return;
        }
        let (handle, t) = (self.handle.clone(), self.tensors[i]);
        let job = std::thread::Builder::new()
            .name("edgebert-checksum".into())
            .spawn(move || hash_range(&handle, &t));
        if let (Ok(job), Ok(mut slot)) = (job, self.background.lock()) {
            *slot = Some((i, job));
        }
    }

    /// Reads external tensor `i` straight into a new tract tensor of type `dt` and `shape`
    /// (whose size the caller checked), hashing it as it goes; like a read through tract, a
    /// checksum different from the first read's is an error.
    pub(super) fn read_tensor(
        &self,
        i: usize,
        dt: DatumType,
        shape: &[usize],
    ) -> std::io::Result<Tensor> {
        let t = &self.tensors[i];
        let crc;
        #[cfg(unix)]
        let tensor = {
            let len = usize::try_from(t.len).map_err(std::io::Error::other)?;
            // SAFETY: the bytes are written by `pread` below before anything reads them.
            let mut tensor =
                unsafe { Tensor::uninitialized_dt(dt, shape) }.map_err(std::io::Error::other)?;
            // SAFETY: a `dt` tensor of `shape` holds exactly `t.len` bytes (checked by the caller).
            let ptr = unsafe { tensor.as_ptr_mut_unchecked::<u8>() };
            crate::memory::populate_for_write(ptr, len);
            crc = pread_hashed(&self.handle, ptr, len, t.offset)?;
            tensor
        };
        #[cfg(not(unix))]
        let tensor = {
            let mut buf = Vec::new();
            crc = self.read_hashed(t, &mut buf)?;
            // SAFETY: `buf` holds exactly the bytes of a `dt` tensor of `shape`.
            unsafe { Tensor::from_raw_dt(dt, shape, &buf) }.map_err(std::io::Error::other)?
        };
        let first = *self.crcs[i].get_or_init(|| crc);
        if first != crc {
            return Err(std::io::Error::other(format!(
                "the {} bytes of weights at offset {} changed since the model was opened",
                t.len, t.offset
            )));
        }
        Ok(tensor)
    }

    /// Reads tensor `t` into `buf` chunk by chunk, hashing each chunk right after reading it
    /// (`read_to_end` fills the reserved memory without zeroing it first).
    fn read_hashed(&self, t: &ExternalTensor, buf: &mut Vec<u8>) -> std::io::Result<u32> {
        let len = usize::try_from(t.len).map_err(std::io::Error::other)?;
        buf.clear();
        buf.try_reserve_exact(len)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e))?;
        // Reads are sequential: a session reads weights from one thread at a time.
        let mut file = &*self.handle;
        file.seek(SeekFrom::Start(t.offset))?;
        let mut hasher = crc32fast::Hasher::new();
        while buf.len() < len {
            let start = buf.len();
            let want = (len - start).min(READ_CHUNK);
            file.take(want as u64).read_to_end(buf)?;
            if buf.len() != start + want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} bytes of weights at offset {} run past the end of the file",
                        t.len, t.offset
                    ),
                ));
            }
            hasher.update(&buf[start..]);
        }
        Ok(hasher.finalize())
    }
}

/// CRC-32 of tensor `t`'s bytes, read through a small buffer (positioned reads where the
/// platform has them, so another thread may read the same file meanwhile).
fn hash_range(file: &File, t: &ExternalTensor) -> std::io::Result<u32> {
    let mut scratch = vec![0u8; READ_CHUNK.min(usize::try_from(t.len).unwrap_or(READ_CHUNK))];
    let mut hasher = crc32fast::Hasher::new();
    let mut done = 0u64;
    #[cfg(not(unix))]
    (&*file).seek(SeekFrom::Start(t.offset))?;
    while done < t.len {
        let n = scratch
            .len()
            .min(usize::try_from(t.len - done).unwrap_or(usize::MAX));
        #[cfg(unix)]
        std::os::unix::fs::FileExt::read_exact_at(file, &mut scratch[..n], t.offset + done)?;
        #[cfg(not(unix))]
        (&*file).read_exact(&mut scratch[..n])?;
        hasher.update(&scratch[..n]);
        done += n as u64;
    }
    Ok(hasher.finalize())
}

/// Reads `len` bytes at `offset` of `file` into `ptr` with `pread`, chunk by chunk, hashing each
/// chunk right after it is read; the memory at `ptr` need not be initialized.
#[cfg(unix)]
fn pread_hashed(file: &File, ptr: *mut u8, len: usize, offset: u64) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut hasher = crc32fast::Hasher::new();
    let mut done = 0usize;
    while done < len {
        let want = (len - done).min(READ_CHUNK);
        let at = libc::off_t::try_from(offset + done as u64).map_err(std::io::Error::other)?;
        // SAFETY: `ptr + done .. + want` lies inside the `len` bytes the caller owns.
        let n = unsafe { libc::pread(file.as_raw_fd(), ptr.add(done).cast(), want, at) };
        match n {
            n if n > 0 => {
                // SAFETY: `pread` initialized these `n` bytes.
                hasher.update(unsafe { std::slice::from_raw_parts(ptr.add(done), n as usize) });
                done += n as usize;
            }
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{len} bytes at offset {offset} run past the end of the file"),
                ))
            }
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(hasher.finalize())
}

impl ModelDataResolver for FileWeights {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        _resolved: &Path,
        offset: usize,
        length: Option<usize>,
    ) -> TractResult<()> {
        let (offset, len) = (offset as u64, length.unwrap_or(0) as u64);
        let Some(&i) = self.index.get(&(offset, len)) else {
            bail!(
                "{}: no external tensor of {len} bytes at offset {offset}",
                self.file.display()
            );
        };
        let crc = self
            .read_hashed(&self.tensors[i], buf)
            .map_err(|e| anyhow!("{}: {e}", self.file.display()))?;
        let first = *self.crcs[i].get_or_init(|| crc);
        ensure!(
            first == crc,
            "{}: the {len} bytes of weights at offset {offset} changed since the model was opened",
            self.file.display()
        );
        Ok(())
    }
}
