//! One-line notices on stderr, for what the user should know but that does not stop a run.

pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}

/// Progress of a long-running service (the `listen` receiver), on stderr: one line per event,
/// so a service manager's journal timestamps and keeps them.
pub fn info(message: &str) {
    eprintln!("{message}");
}
