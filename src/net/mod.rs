//! DICOM networking: sending results (C-STORE over the DICOM upper layer, STOW-RS over HTTP)
//! and receiving studies from a scanner (a C-STORE SCP that processes each study once it has
//! gone quiet). Depends on `io` for nothing but paths; the pipeline decides what to send.
//!
//! The rule every sender here keeps: a study is reported as sent only when every one of its
//! files was acknowledged by the receiver; otherwise the files stay where they are and the
//! report says where.

pub mod cstore;
pub mod destination;
pub mod listen;
pub mod stowrs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use destination::{check_stowrs_url, stowrs_endpoint, Destination};

use crate::error::{Error, Result};

/// The AE title paramap calls from when it sends (the listener's own title is its `--aet`).
pub const CALLING_AET: &str = "PARAMAP";

/// How often to try, and how long to wait between tries: the wait doubles each time from
/// `first_delay` up to `max_delay` (a PACS restarting or a network blip clears in minutes).
#[derive(Debug, Clone, Serialize)]
pub struct Retry {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl Retry {
    /// The wait before try number `attempt` (1-based; none before the first).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 2u32.saturating_pow((attempt - 2).min(20));
        self.first_delay
            .saturating_mul(factor)
            .min(self.max_delay.max(self.first_delay))
    }
}

/// What a destination said about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    /// `retry`: worth another round (the connection, a busy receiver), or refused for good.
    Failed {
        reason: String,
        retry: bool,
    },
}

/// The delivery loop both senders share. Files that can't be read fail at once; the rest go in
/// rounds of `send_round`, which returns each item it was given with its outcome, until every
/// file is stored or refused for good or `retry.attempts` rounds are spent, waiting
/// `retry.delay_before` between rounds. Never fails as a whole: the [`Delivery`] says which
/// files went and why the others did not.
pub(crate) fn deliver_in_rounds<I>(
    destination: String,
    files: &[PathBuf],
    retry: &Retry,
    read: impl Fn(&Path) -> std::result::Result<I, String>,
    path_of: impl Fn(&I) -> &Path,
    mut send_round: impl FnMut(Vec<I>) -> Vec<(I, Outcome)>,
) -> Delivery {
    let mut delivery = Delivery::new(destination);
    let mut pending = Vec::new();
    for path in files {
        match read(path) {
            Ok(item) => pending.push(item),
            Err(reason) => delivery.failed.push(Failure {
                file: path.clone(),
                reason,
            }),
        }
    }
    let mut last_reason: std::collections::HashMap<PathBuf, String> = Default::default();
    for attempt in 1..=retry.attempts.max(1) {
        if pending.is_empty() {
            break;
        }
        if attempt > 1 {
            std::thread::sleep(retry.delay_before(attempt));
        }
        delivery.attempts = attempt;
        for (item, outcome) in send_round(std::mem::take(&mut pending)) {
            let file = path_of(&item).to_path_buf();
            match outcome {
                Outcome::Stored => delivery.sent.push(file),
                Outcome::Failed {
                    reason,
                    retry: false,
                } => delivery.failed.push(Failure { file, reason }),
                Outcome::Failed {
                    reason,
                    retry: true,
                } => {
                    last_reason.insert(file, reason);
                    pending.push(item);
                }
            }
        }
    }
    for item in pending {
        let file = path_of(&item).to_path_buf();
        let reason = last_reason
            .remove(&file)
            .unwrap_or_else(|| "not attempted".into());
        delivery.failed.push(Failure {
            file,
            reason: format!("{reason} (gave up after {} attempts)", delivery.attempts),
        });
    }
    delivery
}

/// A file that did not reach the destination, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub file: PathBuf,
    pub reason: String,
}

/// What one destination received of a batch.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// `C-STORE AET@HOST:PORT` or `STOW-RS URL`.
    pub destination: String,
    /// Files the receiver acknowledged (C-STORE success or warning status; STOW-RS listed
    /// as stored).
    pub sent: Vec<PathBuf>,
    pub failed: Vec<Failure>,
    /// Rounds tried (0 when there was nothing to send).
    pub attempts: u32,
}

impl Delivery {
    pub fn new(destination: String) -> Self {
        Delivery {
            destination,
            sent: vec![],
            failed: vec![],
            attempts: 0,
        }
    }

    pub fn n_sent(&self) -> usize {
        self.sent.len()
    }

    pub fn n_failed(&self) -> usize {
        self.failed.len()
    }

    /// Every file went.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }

    /// One line for the log: either "sent N files to X" or the failure with its reasons.
    pub fn summary(&self) -> String {
        match self.check() {
            Ok(()) => format!(
                "sent {} file{} to {}",
                self.n_sent(),
                if self.n_sent() == 1 { "" } else { "s" },
                self.destination
            ),
            Err(e) => e.to_string(),
        }
    }

    /// `Ok` only when every file went; else [`Error::NotDelivered`], which names the folders
    /// the files are still in.
    pub fn check(&self) -> Result<()> {
        if self.is_complete() {
            return Ok(());
        }
        // Several files usually fail for one reason: count them rather than repeat it.
        let mut reasons: Vec<(String, usize)> = vec![];
        for f in &self.failed {
            match reasons.iter_mut().find(|(r, _)| *r == f.reason) {
                Some((_, n)) => *n += 1,
                None => reasons.push((f.reason.clone(), 1)),
            }
        }
        let shown: Vec<String> = reasons
            .iter()
            .take(3)
            .map(|(r, n)| {
                if *n == 1 {
                    r.clone()
                } else {
                    format!("{n} files: {r}")
                }
            })
            .collect();
        let mut reasons_text = shown.join("; ");
        if reasons.len() > 3 {
            reasons_text.push_str(&format!("; and {} other reasons", reasons.len() - 3));
        }
        let mut folders: Vec<&Path> = self
            .sent
            .iter()
            .map(|p| p.as_path())
            .chain(self.failed.iter().map(|f| f.file.as_path()))
            .map(|p| p.parent().unwrap_or(Path::new(".")))
            .collect();
        folders.sort();
        folders.dedup();
        Err(Error::NotDelivered {
            destination: self.destination.clone(),
            sent: self.n_sent(),
            total: self.n_sent() + self.n_failed(),
            reasons: reasons_text,
            kept: folders
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Sends `files` to each destination given (C-STORE to `send`, STOW-RS to the DICOMweb root
/// `stowrs`), one [`Delivery`] per destination. Failing to send is not an error here: read
/// each `Delivery` (or call [`Delivery::check`]) before saying anything was sent. Errors are
/// for a destination that cannot be used at all (a malformed URL).
pub fn deliver(
    files: &[PathBuf],
    send: Option<&Destination>,
    stowrs: Option<&str>,
    retry: &Retry,
) -> Result<Vec<Delivery>> {
    let stowrs = stowrs.map(check_stowrs_url).transpose()?;
    let mut out = vec![];
    if let Some(dest) = send {
        out.push(cstore::store(files, dest, retry));
    }
    if let Some(root) = stowrs {
        out.push(stowrs::store(files, &root, retry));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_delay_up_to_the_cap() {
        let r = Retry {
            attempts: 6,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
        };
        let waits: Vec<u64> = (1..=6).map(|a| r.delay_before(a).as_secs()).collect();
        assert_eq!(waits, vec![0, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn a_partial_delivery_is_an_error_naming_where_the_files_are() {
        let mut d = Delivery::new("C-STORE PACS@h:104".into());
        d.sent.push("/r/s1/a.dcm".into());
        for n in ["b", "c"] {
            d.failed.push(Failure {
                file: format!("/r/s1/{n}.dcm").into(),
                reason: "connection refused".into(),
            });
        }
        assert!(!d.is_complete());
        let e = d.check().unwrap_err().to_string();
        assert!(e.contains("1 of 3 files delivered"), "{e}");
        assert!(e.contains("NOT sent"), "{e}");
        assert!(e.contains("2 files: connection refused"), "{e}");
        assert!(e.contains("/r/s1"), "{e}");
        assert!(!d.summary().starts_with("sent"));
        let mut ok = Delivery::new("STOW-RS http://h/dicom-web".into());
        ok.sent.push("/r/a.dcm".into());
        assert_eq!(ok.summary(), "sent 1 file to STOW-RS http://h/dicom-web");
    }
}
