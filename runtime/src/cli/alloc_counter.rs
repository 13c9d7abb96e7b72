//! A counting global allocator: wraps the system allocator and counts every allocation
//! (and reallocation), so `edgebert bench` can report heap allocations per call as a number.
//! Blocks of [`HUGE_BLOCK`] bytes or more are advised to use transparent huge pages
//! (see [`edgebert_runtime::memory`]).
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use edgebert_runtime::memory::{advise_heap_growth, advise_huge_pages, HUGE_BLOCK};

/// Advises a fresh large block, and heap growth, to use huge pages; returns the block unchanged.
fn advise(ptr: *mut u8, size: usize) -> *mut u8 {
    if size >= HUGE_BLOCK {
        advise_huge_pages(ptr, size);
    }
    if size >= 64 << 10 {
        advise_heap_growth();
    }
    ptr
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// System allocator plus a relaxed atomic counter.
pub struct CountingAlloc;

// SAFETY: forwards every call unchanged to `System`, which upholds the GlobalAlloc contract.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        advise(unsafe { System.alloc(layout) }, layout.size())
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        advise(unsafe { System.alloc_zeroed(layout) }, layout.size())
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout.
        advise(unsafe { System.realloc(ptr, layout, new_size) }, new_size)
    }
}

/// Allocations (including reallocations) since process start.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}
