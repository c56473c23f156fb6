//! One-line notices on stderr, for what the user should know but that does not stop a run.

pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}

/// Progress of a long-running service (the `listen` receiver), on stderr: one line per event,
/// each starting with the time in UTC as ISO 8601 (RFC 3339, milliseconds), e.g.
/// `2026-11-29T07:44:33.120Z study 1.2.3: …`, so that a log read without a journal's own
/// timestamps (a file, `docker logs`) still says when each thing happened.
pub fn info(message: &str) {
    eprintln!("{} {message}", timestamp(std::time::SystemTime::now()));
}

/// `time` in UTC as ISO 8601 with milliseconds and a `Z`: `2026-11-29T07:44:33.120Z`.
pub fn timestamp(time: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso_8601() {
        // 2001-09-09T01:46:40Z is Unix time 1 000 000 000 (a well-known date).
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_000_000_000_250);
        assert_eq!(timestamp(t), "2001-09-09T01:46:40.250Z");
    }
}
