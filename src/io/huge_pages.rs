//! Large fresh buffers backed by transparent huge pages where the system offers them on
//! request (Linux `transparent_hugepage/enabled` = `madvise`, the default of Debian and
//! Ubuntu): `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned interior of a buffer not yet
//! touched, so that filling it takes one page fault per 2 MiB instead of one per 4 KiB
//! (the input series and the maps of `paramap adc` are 2–14 MB each). Only a hint: where the
//! kernel has none to give, or elsewhere than Linux, nothing changes; the contents never do.

/// Asks for huge pages under `buffer` (call before its first write).
pub fn advise<T>(buffer: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = buffer.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(buffer);
        let first = start.next_multiple_of(HUGE);
        if end >= first + HUGE {
            let len = (end - first) / HUGE * HUGE;
            // SAFETY: [first, first + len) lies inside `buffer`, which this call borrows
            // mutably; MADV_HUGEPAGE changes how pages are backed, never their contents.
            unsafe {
                libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}
