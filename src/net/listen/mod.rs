//! A C-STORE service class provider for the scanner side (PS3.4 Annex B, PS3.7 §9.1.1): it
//! accepts any storage SOP class and C-ECHO, one thread per association, and hands each study
//! to a callback once no object of it has arrived for a quiet period (scanners do not say when
//! a study is finished; PACS routers use the same rule).
//!
//! Nothing received is lost, whatever the peer or the callback does:
//! - an object is written to `WORKDIR/incoming/<StudyUID>/<SOPInstanceUID>.dcm` through a
//!   temporary name, fsync and rename BEFORE the success status goes back, so an acknowledged
//!   object survives a crash;
//! - an object that cannot be parsed or placed is logged and answered with a failure status
//!   (the sender keeps it); a malformed association is logged and dropped; the server goes on;
//! - a quiet study is moved to `WORKDIR/processing/`, and after the callback to `done/` or
//!   `failed/`; on start, studies left in `incoming/` or `processing/` by a previous run are
//!   picked up again.
//!
//! This file serves (the socket, the association cap, the quiet-study sweep and the worker);
//! [`association`] answers one association, and [`spool`] keeps what was received on disk.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::destination::check_ae_title;
use crate::error::{Error, Result};
use crate::log;

mod association;
mod spool;

use association::*;
pub use association::{parse_data_set, MAX_LOG_LINE};
use spool::*;

/// Verification SOP class (C-ECHO), PS3.4 Annex A.
const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Where objects are staged before their rename into `incoming/<StudyUID>/`.
const PARTIAL: &str = ".partial";
/// A command set (PS3.7 §6.3) holds a handful of short elements; more is not a command.
const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub port: u16,
    /// The called AE title senders must use; associations for another title are rejected
    /// (a misconfigured sender learns so at once instead of losing studies).
    pub aet: String,
    pub workdir: PathBuf,
    /// A study is complete when none of its objects arrived for this long.
    pub quiet_period: Duration,
    /// Address to listen on; all interfaces by default, as a scanner-side node must be
    /// reachable from the scanner.
    pub bind: IpAddr,
    /// Largest P-DATA PDU accepted (PS3.8 §9.3.1 maximum length).
    pub max_pdu_length: u32,
    /// An association silent for this long is dropped (a peer that died mid-transfer must
    /// not hold a thread forever).
    pub idle_timeout: Duration,
    /// Largest object (data set bytes) accepted; one that grows past it is refused and its
    /// association aborted, so no sender can fill the node's memory (default 2 GiB: an
    /// Enhanced MR DWI series object of 100 volumes × 70 slices of 256² is 0.9 GiB).
    pub max_object_bytes: usize,
    /// An object's data set is held in memory up to this many bytes (default 64 MiB), and
    /// spooled to a temporary file under `WORKDIR/incoming/.partial` past it.
    pub spool_threshold: usize,
    /// Associations served at once; a connection past it is closed at once and logged.
    pub max_associations: usize,
    /// A connection that has not asked for an association within this time is dropped
    /// (a port scanner or a stuck peer must not hold a thread for `idle_timeout`).
    pub first_contact_timeout: Duration,
}

impl ListenConfig {
    pub fn new(port: u16, aet: &str, workdir: &Path) -> Self {
        ListenConfig {
            port,
            aet: aet.to_string(),
            workdir: workdir.to_path_buf(),
            quiet_period: Duration::from_secs(10),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_pdu_length: 65536,
            idle_timeout: Duration::from_secs(300),
            max_object_bytes: 2 << 30,
            spool_threshold: 64 << 20,
            max_associations: 32,
            first_contact_timeout: Duration::from_secs(30),
        }
    }
}

/// A study that went quiet: its objects are in `dir` (under `WORKDIR/processing/`).
#[derive(Debug, Clone)]
pub struct CompletedStudy {
    pub study_uid: String,
    pub dir: PathBuf,
    /// Objects stored in `dir`.
    pub n_objects: usize,
    /// Objects refused while this study was arriving, in the same associations: (SOP
    /// Instance UID or "unknown", reason). They stay with the sender.
    pub rejected: Vec<(String, String)>,
}

/// A bound listener, ready to [`run`](Listener::run).
pub struct Listener {
    socket: TcpListener,
    shared: Arc<Shared>,
}

struct StudyState {
    last: Instant,
    rejected: Vec<(String, String)>,
}

struct Shared {
    cfg: ListenConfig,
    studies: Mutex<HashMap<String, StudyState>>,
}

impl Shared {
    fn studies(&self) -> MutexGuard<'_, HashMap<String, StudyState>> {
        // A thread that panicked holding the lock left the map usable: keep serving.
        self.studies.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn dir(&self, name: &str) -> PathBuf {
        self.cfg.workdir.join(name)
    }
}

/// Binds the port and prepares `WORKDIR`, then serves until `stop` is set; `on_study` runs
/// (on one worker thread, one study at a time) for each completed study. The study folder
/// goes to `WORKDIR/done/` when `on_study` returns `Ok`, else to `WORKDIR/failed/`.
pub fn serve(
    cfg: ListenConfig,
    on_study: impl Fn(CompletedStudy) -> Result<()> + Send + Sync + 'static,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    Listener::bind(cfg)?.run(on_study, stop)
}

impl Listener {
    /// Checks the configuration, prepares the working folders and binds the port (port 0
    /// picks a free one: see [`Listener::port`]).
    pub fn bind(cfg: ListenConfig) -> Result<Listener> {
        let aet = check_ae_title(&cfg.aet).map_err(|problem| Error::Destination {
            given: cfg.aet.clone(),
            problem: format!("{problem}; choose another --aet"),
        })?;
        if cfg.quiet_period.is_zero() {
            return Err(Error::Invalid(
                "the quiet period must be longer than zero: give --quiet-period in seconds".into(),
            ));
        }
        let cfg = ListenConfig { aet, ..cfg };
        for sub in ["incoming", "processing", "done", "failed"] {
            let dir = cfg.workdir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| Error::Output {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        }
        let partial = cfg.workdir.join("incoming").join(PARTIAL);
        // Objects half-written by a previous run were never acknowledged: their senders
        // still hold them.
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(|e| Error::Output {
            path: partial.clone(),
            reason: e.to_string(),
        })?;
        let address = SocketAddr::new(cfg.bind, cfg.port);
        let socket = TcpListener::bind(address).map_err(|e| Error::Network {
            peer: address.to_string(),
            reason: format!(
                "cannot listen ({e}); is another receiver on this port? Ports below 1024 need privileges: choose another --port (11112 is the registered DICOM port)"
            ),
        })?;
        socket.set_nonblocking(true).map_err(|e| Error::Network {
            peer: address.to_string(),
            reason: e.to_string(),
        })?;
        let shared = Arc::new(Shared {
            cfg,
            studies: Mutex::new(HashMap::new()),
        });
        recover(&shared)?;
        Ok(Listener { socket, shared })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.socket.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `stop` is set; then waits for the study being processed, if any.
    /// Studies still arriving stay in `incoming/` for the next run.
    pub fn run(
        self,
        on_study: impl Fn(CompletedStudy) -> Result<()> + Send + Sync + 'static,
        stop: Arc<AtomicBool>,
    ) -> Result<()> {
        let shared = self.shared;
        log::info(&format!(
            "listening on {} as {}; studies are processed after {} s without a new object; working folder {}",
            self.socket
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            shared.cfg.aet,
            shared.cfg.quiet_period.as_secs_f64(),
            shared.cfg.workdir.display()
        ));
        let (tx, rx) = mpsc::channel::<CompletedStudy>();
        let worker_shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("paramap-study".into())
            .spawn(move || {
                for study in rx {
                    finish_study(&worker_shared, study, &on_study);
                }
            })
            .map_err(|e| Error::Invalid(format!("cannot start the study worker: {e}")))?;
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        while !stop.load(Ordering::SeqCst) {
            match self.socket.accept() {
                Ok((stream, peer)) => {
                    let busy = active.load(Ordering::SeqCst);
                    if busy >= shared.cfg.max_associations {
                        log::warn(&format!(
                            "{peer}: connection closed: {busy} associations are already being served (the most at once)"
                        ));
                        drop(stream);
                    } else {
                        let shared = Arc::clone(&shared);
                        // Counted from here until the thread ends, however it ends.
                        let slot = Slot::take(&active);
                        let spawned = std::thread::Builder::new()
                            .name(format!("paramap-assoc-{peer}"))
                            .spawn(move || {
                                let _slot = slot;
                                association(stream, peer, &shared);
                            });
                        if let Err(e) = spawned {
                            log::warn(&format!("{peer}: association dropped: no thread ({e})"));
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    log::warn(&format!("accepting a connection failed: {e}"));
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            sweep(&shared, &tx);
        }
        drop(tx);
        let _ = worker.join();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_bounded_and_say_how_much_was_cut() {
        assert_eq!(bounded("short".into()), "short");
        let long = bounded("é".repeat(MAX_LOG_LINE + 234));
        assert!(long.ends_with("… (234 more characters)"), "{long}");
        assert_eq!(long.chars().filter(|c| *c == 'é').count(), MAX_LOG_LINE);
    }

    #[test]
    fn only_well_formed_uids_may_name_files() {
        assert!(valid_uid("1.2.840.10008.5.1.4.1.1.4"));
        assert!(valid_uid("2.25.123456789"));
        for bad in [
            "",
            "1..2",
            ".1",
            "1.",
            "../../etc",
            "1.2/3",
            &"1".repeat(65),
        ] {
            assert!(!valid_uid(bad), "{bad}");
        }
    }

    #[test]
    fn a_taken_folder_name_gets_a_suffix_that_maps_back_to_the_study() {
        let root = tempfile::tempdir().unwrap();
        let first = free_name(root.path(), "1.2.3");
        std::fs::create_dir(&first).unwrap();
        let second = free_name(root.path(), "1.2.3");
        assert_eq!(second, root.path().join("1.2.3_2"));
        assert_eq!(study_of_folder(&second), "1.2.3");
        assert_eq!(study_of_folder(&first), "1.2.3");
    }

    #[test]
    fn a_bad_configuration_is_refused_before_binding() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = ListenConfig::new(0, "A_TITLE_FAR_TOO_LONG", root.path());
        let e = Listener::bind(cfg.clone()).err().unwrap().to_string();
        assert!(e.contains("--aet"), "{e}");
        cfg.aet = "PARAMAP".into();
        cfg.quiet_period = Duration::ZERO;
        let e = Listener::bind(cfg).err().unwrap().to_string();
        assert!(e.contains("--quiet-period"), "{e}");
    }
}
