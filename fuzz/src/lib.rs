//! What every fuzz target shares: the verdicts of `tests/fuzz_readers.rs`, made fatal so that
//! AFL++ records them as crashes. A target aborts (a crash for AFL++) when
//! - a panic escapes the reader (`afl::fuzz_nohook!` aborts on it; library panics that the
//!   reader catches at the file boundary and turns into errors are not crashes);
//! - the stack overflows (unbounded recursion on nested sequences);
//! - one allocation asks for more than [`ALLOCATION_CAP`] (a length field trusted before it is
//!   checked), whether or not the system could have given it;
//! - an error message does not name the file (or, for a series-level verdict, the series), or
//!   carries Rust debug text.
//!
//! A reader that takes longer than AFL++'s timeout (`-t`) is recorded as a hang.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};

/// Largest single allocation a reader may make on these inputs of a few kB (64 MiB, as in
/// `tests/fuzz_readers.rs`).
pub const ALLOCATION_CAP: usize = 64 << 20;

/// The system allocator, aborting on any single request above [`ALLOCATION_CAP`].
pub struct Capped;

fn over_cap(size: usize) {
    if size > ALLOCATION_CAP {
        let msg = b"paramap-fuzz: an allocation above the 64 MiB cap\n";
        // SAFETY: writing a static buffer to stderr; no allocation.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
        }
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        over_cap(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        over_cap(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        over_cap(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

/// A private folder for this process's inputs (the readers take paths), under `/dev/shm`
/// where it exists so that writing an input costs no disk I/O.
pub fn workdir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("paramap-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a working folder for the fuzz inputs");
    dir
}

/// The verdict on a reader's result: an error must name `name` (the file or folder), or be a
/// series-level verdict ("series …"), and carry no Rust debug text; otherwise abort.
pub fn check_message(result: Result<(), String>, name: &str) {
    let Err(message) = result else { return };
    let names_it = message.contains(name) || message.starts_with("series ");
    let debug = [
        "Custom {",
        "{ kind",
        "Some(",
        "None where",
        "Os {",
        "panicked",
    ]
    .into_iter()
    .find(|bad| message.contains(bad));
    if !names_it || debug.is_some() {
        eprintln!("paramap-fuzz: a bad error message (names {name:?}: {names_it}; debug text: {debug:?}): {message}");
        std::process::abort();
    }
}

/// The marker between files in an input of the folder target.
pub const NEXT_FILE: &[u8] = b"--next-file--";

/// Splits an input of the folder target into at most `max` files.
pub fn split_files(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut files = Vec::new();
    let mut rest = data;
    while files.len() + 1 < max {
        match rest.windows(NEXT_FILE.len()).position(|w| w == NEXT_FILE) {
            Some(at) => {
                files.push(&rest[..at]);
                rest = &rest[at + NEXT_FILE.len()..];
            }
            None => break,
        }
    }
    files.push(rest);
    files
}
