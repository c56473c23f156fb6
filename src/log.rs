//! One-line notices on stderr, for what the user should know but that does not stop a run.

pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}
