//! One block of memory for the packed codes of many weights (a whole model's), and the bytes of
//! one weight: in such a block, or in a vector of its own.
//!
//! A block of at least one huge page is aligned to 2 MiB and, on Linux and Android, advised onto
//! transparent huge pages (`madvise(MADV_HUGEPAGE)`) before anything touches it. The int8 Linear
//! streams its weights once per call; on 4 KiB pages a DistilBERT-base model's 43 MB of codes
//! span about ten thousand pages, far more than the data TLB holds, so each call walks page
//! tables for most of them. On 2 MiB pages the same codes span about twenty. Where huge pages are
//! off (`never`), or on other systems, the block is ordinary memory and nothing else changes.
use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, Range};
use std::ptr::NonNull;
use std::sync::Arc;

/// Bytes of one huge page on x86-64 and on aarch64 with 4 KiB base pages.
const HUGE_PAGE: usize = 2 << 20;
/// Alignment of each weight in a block: one cache line.
const WEIGHT_ALIGN: usize = 64;

/// Memory for the packed codes of many weights, handed out in disjoint ranges
/// ([`crate::int8_gemm::PackedInt8Weights::pack_in`]). The block lives as long as the last
/// weight in it.
pub struct WeightArena {
    block: Arc<Block>,
    /// First byte not yet handed out.
    next: usize,
}

impl WeightArena {
    /// A block of `bytes` bytes ([`WeightArena::space_for`] the weights it will hold); `None`
    /// when `bytes` is zero or the memory cannot be had.
    pub fn with_capacity(bytes: usize) -> Option<WeightArena> {
        Block::new(bytes).map(|block| WeightArena {
            block: Arc::new(block),
            next: 0,
        })
    }

    /// Bytes a block needs for weights of these packed lengths, each starting on a cache line.
    pub fn space_for(lengths: impl IntoIterator<Item = usize>) -> Option<usize> {
        lengths.into_iter().try_fold(0usize, |total, len| {
            total.checked_add(len.checked_next_multiple_of(WEIGHT_ALIGN)?)
        })
    }

    /// Bytes not yet handed out.
    pub fn remaining(&self) -> usize {
        self.block.len - self.next
    }

    /// Whether the block was advised onto transparent huge pages (Linux and Android, blocks of
    /// at least one huge page; the system still decides whether it gets them).
    pub fn huge_pages_advised(&self) -> bool {
        self.block.huge_pages_advised
    }

    /// The next `len` bytes, zeroed, for `fill` to write; then they are read-only
    /// [`WeightBytes`]. `None` (and nothing reserved) when fewer than `len` bytes are left.
    pub(crate) fn reserve(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [i8]),
    ) -> Option<WeightBytes> {
        let start = self.next;
        let end = start.checked_add(len)?;
        if end > self.block.len {
            return None;
        }
        self.next = end
            .checked_next_multiple_of(WEIGHT_ALIGN)
            .map_or(self.block.len, |next| next.min(self.block.len));
        // SAFETY: `start..end` lies inside the block and was handed out to no one before
        // (`next` only grows), so this is the only reference to these bytes; every earlier
        // range is disjoint from it. The bytes are zeroed before the slice is made.
        let bytes = unsafe {
            let at = self.block.ptr.as_ptr().add(start);
            std::ptr::write_bytes(at, 0, len);
            std::slice::from_raw_parts_mut(at, len)
        };
        fill(bytes);
        Some(WeightBytes(Storage::Shared {
            block: self.block.clone(),
            range: start..end,
        }))
    }
}

impl fmt::Debug for WeightArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightArena")
            .field("bytes", &self.block.len)
            .field("used", &self.next)
            .field("huge_pages_advised", &self.block.huge_pages_advised)
            .finish()
    }
}

/// The packed codes of one weight.
#[derive(Clone)]
pub struct WeightBytes(Storage);

#[derive(Clone)]
enum Storage {
    Owned(Vec<i8>),
    /// Written once by [`WeightArena::reserve`], read-only since.
    Shared {
        block: Arc<Block>,
        range: Range<usize>,
    },
}

impl WeightBytes {
    /// Bytes of their own.
    pub(crate) fn owned(bytes: Vec<i8>) -> WeightBytes {
        WeightBytes(Storage::Owned(bytes))
    }

    /// Whether these bytes lie in a [`WeightArena`]'s block.
    pub fn in_arena(&self) -> bool {
        matches!(self.0, Storage::Shared { .. })
    }
}

impl Deref for WeightBytes {
    type Target = [i8];

    fn deref(&self) -> &[i8] {
        match &self.0 {
            Storage::Owned(bytes) => bytes,
            // SAFETY: the range lies inside the block, which lives while `block` is held; it was
            // written by `reserve` before this value existed and is never written again.
            Storage::Shared { block, range } => unsafe {
                std::slice::from_raw_parts(block.ptr.as_ptr().add(range.start), range.len())
            },
        }
    }
}

impl PartialEq for WeightBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for WeightBytes {}

impl fmt::Debug for WeightBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes{}",
            self.len(),
            if self.in_arena() { " in an arena" } else { "" }
        )
    }
}

/// One allocation, freed when the last [`WeightBytes`] in it drops.
struct Block {
    ptr: NonNull<i8>,
    len: usize,
    layout: Layout,
    huge_pages_advised: bool,
}

// SAFETY: the block is plain memory; its ranges are written only through the unique slice
// `reserve` hands out, before any reader of that range exists, and only read afterwards.
unsafe impl Send for Block {}
// SAFETY: as above: shared references only ever read ranges that are no longer written.
unsafe impl Sync for Block {}

impl Block {
    fn new(len: usize) -> Option<Block> {
        if len == 0 {
            return None;
        }
        let align = if len >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            WEIGHT_ALIGN
        };
        let layout = Layout::from_size_align(len, align).ok()?;
        // SAFETY: `layout` has a non-zero size. The memory is not read before `reserve` zeroes
        // and fills a range.
        let ptr = NonNull::new(unsafe { alloc::alloc(layout) }.cast::<i8>())?;
        let huge_pages_advised = align == HUGE_PAGE && advise_huge_pages(ptr, len);
        Some(Block {
            ptr,
            len,
            layout,
            huge_pages_advised,
        })
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in `Block::new` with this layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr().cast(), self.layout) }
    }
}

/// Advises the whole huge pages of `len` bytes at `ptr` onto transparent huge pages.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn advise_huge_pages(ptr: NonNull<i8>, len: usize) -> bool {
    // `ptr` is 2 MiB-aligned (so page-aligned, as madvise needs); only whole pages are advised.
    let whole = len / HUGE_PAGE * HUGE_PAGE;
    // SAFETY: the range lies inside one live allocation; the advice changes no contents.
    unsafe { libc::madvise(ptr.as_ptr().cast(), whole, libc::MADV_HUGEPAGE) == 0 }
}

/// No transparent huge pages to ask for here.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn advise_huge_pages(_ptr: NonNull<i8>, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_disjoint_zeroed_and_outlive_the_arena() {
        let space = WeightArena::space_for([100, 64, 1]);
        assert_eq!(space, Some(128 + 64 + 64));
        let mut arena = WeightArena::with_capacity(128 + 64 + 64).expect("memory");
        let a = arena
            .reserve(100, |b| {
                assert!(b.iter().all(|&v| v == 0));
                b.fill(1);
            })
            .expect("room for a");
        let b = arena.reserve(64, |b| b.fill(2)).expect("room for b");
        assert_eq!(arena.remaining(), 64);
        assert!(arena.reserve(65, |_| panic!("no room")).is_none());
        assert_eq!(arena.remaining(), 64);
        let c = arena.reserve(1, |b| b[0] = 3).expect("room for c");
        assert_eq!(arena.remaining(), 0);
        drop(arena);
        assert!(a.iter().all(|&v| v == 1) && a.len() == 100 && a.in_arena());
        assert!(b.iter().all(|&v| v == 2) && b.len() == 64);
        assert_eq!(&*c, &[3]);
        assert_eq!(c.clone(), WeightBytes::owned(vec![3]));
        assert_eq!(a.as_ptr() as usize % WEIGHT_ALIGN, 0);
        assert_eq!(b.as_ptr() as usize % WEIGHT_ALIGN, 0);
    }

    #[test]
    fn big_blocks_start_on_a_huge_page() {
        let mut arena = WeightArena::with_capacity(HUGE_PAGE + 1).expect("memory");
        let w = arena.reserve(HUGE_PAGE + 1, |b| b.fill(-1)).expect("room");
        assert_eq!(w.as_ptr() as usize % HUGE_PAGE, 0);
        // A kernel built without transparent huge pages refuses the advice.
        let has_thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists();
        assert_eq!(
            arena.huge_pages_advised(),
            has_thp && cfg!(any(target_os = "linux", target_os = "android"))
        );
        assert!(w.iter().all(|&v| v == -1));
        assert!(WeightArena::with_capacity(0).is_none());
        assert!(WeightArena::space_for([usize::MAX]).is_none());
    }
}
