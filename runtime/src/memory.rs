//! Process memory settings for programs built on the runtime (the `edgebert` CLI, the trainer).
//!
//! Loading a model writes every weight several times into fresh memory (file bytes, protobuf,
//! tract tensors, packed GEMM panels), and on many Linux machines — VMs above all — each 4 KiB
//! page fault costs microseconds: faults, not copies, dominated cold start. Two glibc settings
//! cut them: keep freed blocks in the heap for reuse ([`tune_allocator`]) and back large blocks
//! with transparent huge pages ([`advise_huge_pages`], called by the CLI's global allocator for
//! blocks of [`HUGE_BLOCK`] bytes or more). Both are no-ops off Linux/glibc.

/// Blocks at least this large are advised to use transparent huge pages (the x86-64 and aarch64
/// huge page size with 4 KiB base pages).
pub const HUGE_BLOCK: usize = 2 << 20;

/// Raises glibc's mmap threshold to its ceiling and the trim threshold to 1 GiB, so that freed
/// blocks stay in the heap and are reused instead of being unmapped and faulted in again.
/// Returns whether both settings were accepted (always false off Linux/glibc).
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's ceiling for M_MMAP_THRESHOLD: 4 MiB × sizeof(long) (32 MiB on 64-bit).
        let mmap_max = 4 * 1024 * 1024 * std::mem::size_of::<libc::c_long>() as libc::c_int;
        // SAFETY: mallopt only adjusts allocator parameters; it is safe to call at any time.
        let (a, b, c) = unsafe {
            (
                libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_max),
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30),
                // Grow the heap in huge-page-sized steps, so its growth can be advised whole.
                libc::mallopt(libc::M_TOP_PAD, HUGE_BLOCK as libc::c_int),
            )
        };
        a == 1 && b == 1 && c == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Asks the kernel to back the whole huge pages inside `[ptr, ptr + len)` with transparent huge
/// pages (`madvise(MADV_HUGEPAGE)`); pages not yet touched then fault in 2 MiB at a time. A hint
/// only: errors (THP disabled, an old kernel) are ignored. Returns the bytes advised.
pub fn advise_huge_pages(ptr: *mut u8, len: usize) -> usize {
    #[cfg(target_os = "linux")]
    {
        let start = (ptr as usize).next_multiple_of(HUGE_BLOCK);
        let end = (ptr as usize).saturating_add(len) / HUGE_BLOCK * HUGE_BLOCK;
        if ptr.is_null() || end <= start {
            return 0;
        }
        // SAFETY: the range lies inside an allocation the caller owns; MADV_HUGEPAGE changes
        // only how its pages are backed, never their contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        end - start
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (ptr, len);
        0
    }
}

/// Faults in the whole pages inside `[ptr, ptr + len)` in one call (`madvise(MADV_POPULATE_WRITE)`,
/// Linux 5.14+), ahead of a large write such as a `pread` into fresh memory: one system call
/// instead of one page fault per 4 KiB. A hint only: errors (an older kernel) are ignored and
/// the pages then fault in as usual. Returns the bytes advised.
pub fn populate_for_write(ptr: *mut u8, len: usize) -> usize {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = (ptr as usize).next_multiple_of(PAGE);
        let end = (ptr as usize).saturating_add(len) / PAGE * PAGE;
        if ptr.is_null() || end <= start {
            return 0;
        }
        // SAFETY: the range lies inside memory the caller owns; populating pages never
        // changes their contents.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                end - start,
                libc::MADV_POPULATE_WRITE,
            )
        };
        end - start
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (ptr, len);
        0
    }
}

/// Highest heap address already advised by [`advise_heap_growth`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
static ADVISED_HEAP_TOP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Advises the part of the main heap (`brk`) grown since the last call to use transparent
/// huge pages, the way glibc's `glibc.malloc.hugetlb=1` tunable does; called by the CLI's
/// allocator after each block of 64 KiB or more. Returns the bytes newly advised.
pub fn advise_heap_growth() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::atomic::Ordering;
        // SAFETY: sbrk(0) only reads the current program break.
        let top = unsafe { libc::sbrk(0) } as usize;
        let last = ADVISED_HEAP_TOP.load(Ordering::Relaxed);
        if top <= last || top == usize::MAX {
            return 0;
        }
        if ADVISED_HEAP_TOP
            .compare_exchange(last, top, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        if last == 0 {
            // First call: the heap below the current break was faulted in already.
            return 0;
        }
        advise_huge_pages(last as *mut u8, top - last)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        assert!(tune_allocator());
    }

    #[test]
    fn advises_only_whole_huge_pages_inside_the_block() {
        assert_eq!(advise_huge_pages(std::ptr::null_mut(), 8 << 20), 0);
        let mut block = vec![0u8; 3 * HUGE_BLOCK];
        let ptr = block.as_mut_ptr();
        let advised = advise_huge_pages(ptr, block.len());
        if cfg!(target_os = "linux") {
            // 6 MiB starting anywhere holds at least two aligned 2 MiB pages.
            assert!(
                (2 * HUGE_BLOCK..=3 * HUGE_BLOCK).contains(&advised),
                "{advised}"
            );
        }
        // Too small to hold an aligned huge page.
        assert_eq!(advise_huge_pages(ptr, HUGE_BLOCK - 1), 0);
        assert!(
            block.iter().all(|&b| b == 0),
            "advice must not change contents"
        );
    }
}
