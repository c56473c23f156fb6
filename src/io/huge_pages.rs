//! Large fresh buffers backed by transparent huge pages where the system offers them on
//! request (Linux `transparent_hugepage/enabled` = `madvise`, the default of Debian and
//! Ubuntu): `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned interior of a buffer not yet
//! touched, so that filling it takes one page fault per 2 MiB instead of one per 4 KiB
//! (the input series and the maps of `paramap adc` are 2–14 MB each). Only a hint: where the
//! kernel has none to give, or elsewhere than Linux, nothing changes; the contents never do.

/// Asks for huge pages under `buffer` (best before its first write; after, the contents are
/// kept as well). Buffers shorter than 2 MiB past their first 2 MiB boundary, empty ones and
/// those of zero-sized types have no such interior and are left as they are; the kernel's
/// answer (none where THP is off, or where the range is not anonymous memory) is ignored.
pub fn advise<T>(buffer: &mut [T]) {
    #[cfg(target_os = "linux")]
    if let Some((first, len)) =
        interior(buffer.as_mut_ptr() as usize, std::mem::size_of_val(buffer))
    {
        // SAFETY: [first, first + len) lies inside `buffer` (`interior`), which this call
        // borrows mutably, and `first` is 2 MiB-aligned, so page-aligned for every page size
        // Linux has (4 KiB–64 KiB), as madvise requires; MADV_HUGEPAGE changes how the pages
        // are backed, never their contents (madvise(2)), and touches nothing outside the range.
        unsafe {
            libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

/// Transparent huge pages' size on x86-64 and 4 KiB-page ARM64 Linux.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const HUGE: usize = 2 << 20;

/// The whole 2 MiB blocks inside the `bytes` bytes from address `start`: (first address,
/// length), or None where there is none. Checked arithmetic: no address wraps.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn interior(start: usize, bytes: usize) -> Option<(usize, usize)> {
    let end = start.checked_add(bytes)?;
    let first = start.checked_next_multiple_of(HUGE)?;
    let len = end.checked_sub(first)? / HUGE * HUGE;
    (len > 0).then_some((first, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range asked for is whole 2 MiB blocks inside the buffer, and none where the buffer
    /// holds none (short, empty, near the end of the address space).
    #[test]
    fn the_advised_range_is_whole_blocks_inside_the_buffer() {
        assert_eq!(interior(0, 0), None);
        assert_eq!(interior(8, 0), None);
        assert_eq!(interior(HUGE, HUGE - 1), None);
        assert_eq!(interior(HUGE, HUGE), Some((HUGE, HUGE)));
        assert_eq!(interior(HUGE + 1, 2 * HUGE), Some((2 * HUGE, HUGE)));
        assert_eq!(interior(HUGE + 1, 2 * HUGE - 2), None);
        assert_eq!(interior(HUGE + 1, 3 * HUGE), Some((2 * HUGE, 2 * HUGE)));
        assert_eq!(interior(4096, 5 * HUGE), Some((HUGE, 4 * HUGE)));
        for start in [4096, HUGE - 8, HUGE, 3 * HUGE + 12345] {
            for bytes in [0, 1, HUGE - 1, HUGE, 2 * HUGE + 7, 9 * HUGE] {
                if let Some((first, len)) = interior(start, bytes) {
                    assert!(first >= start && first + len <= start + bytes);
                    assert!(first % HUGE == 0 && len % HUGE == 0 && len > 0);
                    assert!(start + bytes - (first + len) < HUGE && first - start < HUGE);
                } else {
                    assert!(start.next_multiple_of(HUGE) + HUGE > start + bytes);
                }
            }
        }
        assert_eq!(interior(usize::MAX - 10, 5), None);
        assert_eq!(interior(usize::MAX - HUGE, HUGE), None);
        assert_eq!(interior(1, usize::MAX), None);
    }

    /// Empty buffers, zero-sized types, buffers under 2 MiB and over, written before and
    /// after: the contents are what was written.
    #[test]
    fn advising_keeps_the_contents_and_takes_any_buffer() {
        advise::<u64>(&mut []);
        advise(&mut [(); 1 << 40]);
        let mut small = vec![7u8; 1000];
        advise(&mut small);
        assert!(small.iter().all(|&x| x == 7));
        let mut written: Vec<u32> = (0..3_000_000).collect();
        advise(&mut written);
        assert!(written.iter().enumerate().all(|(i, &x)| x == i as u32));
        let mut fresh = vec![0f32; 3_000_000];
        advise(&mut fresh[1..]);
        fresh
            .iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = i as f32);
        assert!(fresh.iter().enumerate().all(|(i, &x)| x == i as f32));
    }
}
