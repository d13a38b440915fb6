//! Allocator settings for a process that allocates tensor-sized blocks over and over.
//!
//! glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
//! `mmap` and returns it with `munmap` on free, so the next batch or activation of that size
//! page-faults and has the kernel zero every page again. A 32 x 3 x 384 x 384 batch is 57 MB:
//! epoch loading at that size spent most of its time in page faults (1,523 img/s for a lone
//! normalise, against 37,000 at 224 x 224, whose 19 MB batches stay under the threshold).
//! Turning mmap off keeps such blocks in the heap, where freed ones are reused as they are;
//! a high trim threshold stops the heap top from being handed back between batches.
//! PyTorch's CPU allocator advice (jemalloc, tcmalloc) comes from the same problem.
//!
//! Left alone: other platforms' allocators (nothing is changed there).

/// Applies the settings; call once at start-up, before threads allocate.
pub fn keep_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; both values are in range.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
