//! Large buffers filled once at load (a tensor's bytes as they stream in, a packed matrix) on
//! transparent huge pages where Linux offers them on request (`madvise` mode, the usual
//! default): a 4 GB model otherwise takes a million 4 KiB page faults per copy, which were
//! most of a native CPU load's time.

/// Asks for huge pages under `v`'s allocated capacity (nothing elsewhere, or for buffers
/// smaller than a huge page). Call it before the buffer is written.
pub fn advise<T>(v: &Vec<T>) {
    #[cfg(all(target_os = "linux", not(target_arch = "wasm32")))]
    {
        const HUGE: usize = 2 << 20;
        let (start, len) = (v.as_ptr() as usize, v.capacity() * std::mem::size_of::<T>());
        let first = start.next_multiple_of(HUGE);
        let end = (start + len) / HUGE * HUGE;
        if end > first {
            // SAFETY: the range lies inside the vector's allocation; MADV_HUGEPAGE changes
            // only how its pages are backed, never their contents.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(all(target_os = "linux", not(target_arch = "wasm32"))))]
    let _ = v;
}
