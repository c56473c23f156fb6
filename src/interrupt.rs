//! Ctrl-C (SIGINT), SIGTERM and SIGHUP: a command stops cleanly instead of dying half-way.
//!
//! `run` and `listen` handle the first signal themselves ([`install`] with `graceful`): `run`
//! abandons the series being processed at its next checkpoint, keeps the series already
//! finished, writes `run.json` saying what was interrupted and exits with 130 (128 + SIGINT, the
//! shell's convention); `listen` stops accepting and finishes the study in hand. Every other
//! command, and a second signal to any command, stops at once: the staging folders of
//! [`crate::io::output`] are removed first, so no `.paramap-partial-*` folder is left behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The exit status after an interruption: 128 + SIGINT, as shells report a Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the handler (once per process; a second call does nothing). With `graceful`, the
/// first signal only sets [`requested`] (and the flag [`shared_flag`] returns), and the command
/// finishes cleanly; without it, or at the second signal, staging is removed and the process
/// exits with [`EXIT_INTERRUPTED`].
pub fn install(graceful: bool) {
    let result = ctrlc::set_handler(move || {
        if graceful && !flag().swap(true, Ordering::SeqCst) {
            eprintln!(
                "interrupted: stopping cleanly after the current step (press Ctrl-C again to stop at once)"
            );
            return;
        }
        flag().store(true, Ordering::SeqCst);
        crate::io::output::abandon_all();
        eprintln!("interrupted: stopped; nothing half-written was left");
        std::process::exit(EXIT_INTERRUPTED as i32);
    });
    if let Err(e) = result {
        crate::log::warn(&format!(
            "cannot watch for Ctrl-C ({e}); an interrupted run may leave a .paramap-partial-* folder"
        ));
    }
}

/// Whether a stop was asked for (a signal arrived).
pub fn requested() -> bool {
    flag().load(Ordering::SeqCst)
}

/// The flag a signal sets, for loops that poll a stop flag (`listen`).
pub fn shared_flag() -> Arc<AtomicBool> {
    Arc::clone(flag())
}
