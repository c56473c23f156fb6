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

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::Association;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{Pdu, ServerAssociation, ServerAssociationOptions};

use super::cstore::{
    decode_command, encode_command, C_ECHO_RQ, C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP, NO_DATA_SET,
};
use super::destination::check_ae_title;
use crate::error::error_chain;
use crate::error::{Error, Result};
use crate::log;

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

/// Registers studies a previous run left behind: `processing/` ones (interrupted while being
/// processed) go back to `incoming/`, and everything in `incoming/` waits one quiet period.
fn recover(shared: &Shared) -> Result<()> {
    let processing = shared.dir("processing");
    let incoming = shared.dir("incoming");
    for entry in read_dir(&processing)? {
        let study = study_of_folder(&entry);
        let target = incoming.join(&study);
        let _ = std::fs::create_dir_all(&target);
        for file in read_dir(&entry)? {
            if let Some(name) = file.file_name() {
                let _ = std::fs::rename(&file, target.join(name));
            }
        }
        let _ = std::fs::remove_dir(&entry);
    }
    let mut studies = shared.studies();
    for entry in read_dir(&incoming)? {
        let Some(name) = entry.file_name().map(|n| n.to_string_lossy().to_string()) else {
            continue;
        };
        if entry.is_dir() && name != PARTIAL {
            log::info(&format!(
                "study {name}: left in {} by a previous run; it will be processed after the quiet period",
                entry.display()
            ));
            studies.insert(
                name,
                StudyState {
                    last: Instant::now(),
                    rejected: vec![],
                },
            );
        }
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
}

/// Folder names are the Study Instance UID, with `_2`, `_3`… when that name is taken (UIDs
/// hold only digits and dots, so the suffix cannot be mistaken for part of one).
fn study_of_folder(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.split('_').next().unwrap_or_default().to_string()
}

fn free_name(parent: &Path, study: &str) -> PathBuf {
    let first = parent.join(study);
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| parent.join(format!("{study}_{n}")))
        .find(|p| !p.exists())
        .expect("an unused name exists")
}

/// Moves every study quiet for the quiet period to `processing/` and queues it.
fn sweep(shared: &Shared, tx: &mpsc::Sender<CompletedStudy>) {
    let quiet = shared.cfg.quiet_period;
    let mut studies = shared.studies();
    let due: Vec<String> = studies
        .iter()
        .filter(|(_, s)| s.last.elapsed() >= quiet)
        .map(|(uid, _)| uid.clone())
        .collect();
    for uid in due {
        let Some(state) = studies.remove(&uid) else {
            continue;
        };
        let from = shared.dir("incoming").join(&uid);
        let to = free_name(&shared.dir("processing"), &uid);
        if let Err(e) = std::fs::rename(&from, &to) {
            log::warn(&format!(
                "study {uid}: cannot move {} to {} ({e}); trying again after the next quiet period",
                from.display(),
                to.display()
            ));
            studies.insert(
                uid,
                StudyState {
                    last: Instant::now(),
                    rejected: state.rejected,
                },
            );
            continue;
        }
        let n_objects = std::fs::read_dir(&to)
            .map(|d| d.filter_map(|e| e.ok()).count())
            .unwrap_or(0);
        log::info(&format!(
            "study {uid}: complete ({n_objects} objects{}), processing",
            if state.rejected.is_empty() {
                String::new()
            } else {
                format!(", {} refused", state.rejected.len())
            }
        ));
        let _ = tx.send(CompletedStudy {
            study_uid: uid,
            dir: to,
            n_objects,
            rejected: state.rejected,
        });
    }
}

/// Runs the callback and files the study under `done/` or `failed/`.
fn finish_study(
    shared: &Shared,
    study: CompletedStudy,
    on_study: &(impl Fn(CompletedStudy) -> Result<()> + Send + Sync),
) {
    let uid = study.study_uid.clone();
    let dir = study.dir.clone();
    let outcome = match catch_unwind(AssertUnwindSafe(|| on_study(study))) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("processing stopped on an internal error (a bug: please report it)".into()),
    };
    let (sub, verdict) = match &outcome {
        Ok(()) => ("done", "processed".to_string()),
        Err(e) => ("failed", format!("FAILED: {e}")),
    };
    let to = free_name(&shared.dir(sub), &study_of_folder(&dir));
    match std::fs::rename(&dir, &to) {
        Ok(()) => log::info(&bounded(format!(
            "study {uid}: {verdict}; its objects are in {}",
            to.display()
        ))),
        Err(e) => log::warn(&format!(
            "study {uid}: {verdict}; its objects stay in {} (cannot move them to {}: {e})",
            dir.display(),
            to.display()
        )),
    }
}

/// A UID as PS3.5 §9.1 allows (digits and dots, at most 64 characters, no empty component):
/// checked before it names a file or a folder.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

fn uid_text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.element(tag).ok().and_then(|e| {
        e.to_str()
            .ok()
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
    })
}

/// The C-STORE-RQ being answered: what its command said.
struct StoreRequest {
    message_id: u16,
    sop_class: String,
    sop_instance: String,
    pc_id: u8,
    /// The data set so far, while it is below `spool_threshold`.
    data: Vec<u8>,
    /// Past `spool_threshold`: the data set so far, on disk (an unnamed temporary file).
    spool: Option<std::fs::File>,
    /// Bytes of data set received.
    received: usize,
}

/// What one association did, for its closing log line and for attributing refusals.
#[derive(Default)]
struct Tally {
    stored: usize,
    refused: usize,
    /// Studies this association delivered objects of.
    studies: Vec<String>,
    /// Refusals before any study was seen; attributed to the first one that is.
    unattributed: Vec<(String, String)>,
}

fn association(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let cfg = &shared.cfg;
    // Accepted sockets may inherit non-blocking mode on some systems.
    let _ = stream.set_nonblocking(false);
    let options = ServerAssociationOptions::new()
        .accept_called_ae_title()
        .ae_title(cfg.aet.as_str())
        .with_abstract_syntax(VERIFICATION)
        // Any SOP class: a storage SCP that refuses a new image type loses it.
        .promiscuous(true)
        // Some senders exceed the negotiated PDU size slightly; accept rather than drop.
        .strict(false)
        .max_pdu_length(cfg.max_pdu_length)
        .read_timeout(cfg.first_contact_timeout.min(cfg.idle_timeout))
        .write_timeout(cfg.idle_timeout);
    let mut scp = match options.establish(stream) {
        Ok(a) => a,
        Err(e) => {
            log::warn(&bounded(format!(
                "{peer}: association refused or malformed ({}); still listening",
                error_chain(&e)
            )));
            return;
        }
    };
    // Established: from now on the idle timeout applies.
    let _ = scp.inner_stream().set_read_timeout(Some(cfg.idle_timeout));
    let calling = scp.peer_ae_title().trim().to_string();
    let who = format!("{calling} at {peer}");
    let mut tally = Tally::default();
    let mut command = Vec::new();
    let mut request: Option<StoreRequest> = None;
    let end = loop {
        let pdu = match scp.receive() {
            Ok(pdu) => pdu,
            Err(e) => break format!("connection lost ({})", error_chain(&e)),
        };
        match pdu {
            Pdu::PData { data } => {
                let mut broken = None;
                for pdv in data {
                    match pdv.value_type {
                        PDataValueType::Command => {
                            if command.len() + pdv.data.len() > MAX_COMMAND_BYTES {
                                broken = Some(format!(
                                    "a command set larger than {MAX_COMMAND_BYTES} bytes"
                                ));
                                break;
                            }
                            command.extend_from_slice(&pdv.data);
                            if !pdv.is_last {
                                continue;
                            }
                            let bytes = std::mem::take(&mut command);
                            match on_command(&mut scp, &bytes, pdv.presentation_context_id) {
                                Ok(Some(req)) => request = Some(req),
                                Ok(None) => {}
                                Err(e) => {
                                    broken = Some(e);
                                    break;
                                }
                            }
                        }
                        PDataValueType::Data => {
                            let Some(req) = request.as_mut() else {
                                broken = Some("a data set without a C-STORE request".into());
                                break;
                            };
                            req.received += pdv.data.len();
                            if req.received > cfg.max_object_bytes {
                                broken = Some(format!(
                                    "an object larger than the {} bytes accepted (ListenConfig::max_object_bytes); it was not stored",
                                    cfg.max_object_bytes
                                ));
                                request = None;
                                break;
                            }
                            if let Err(e) = receive_data(req, &pdv.data, cfg, shared) {
                                broken = Some(format!(
                                    "the object cannot be spooled to disk ({e}); it was not stored"
                                ));
                                request = None;
                                break;
                            }
                            if pdv.is_last {
                                let req = request.take().expect("checked above");
                                if let Err(e) = on_data_set(&mut scp, req, &who, shared, &mut tally)
                                {
                                    broken = Some(e);
                                    break;
                                }
                            }
                        }
                    }
                }
                if let Some(reason) = broken {
                    let _ = scp.abort();
                    break format!("aborted: {reason}");
                }
            }
            Pdu::ReleaseRQ => {
                let _ = scp.send(&Pdu::ReleaseRP);
                break "released".into();
            }
            Pdu::AbortRQ { source } => break format!("aborted by the peer ({source:?})"),
            other => {
                let what = other.short_description().to_string();
                let _ = scp.abort();
                break format!("aborted: unexpected {what}");
            }
        }
    };
    if request.is_some() {
        log::warn(&format!(
            "{who}: association ended in the middle of an object; it was not stored and not acknowledged"
        ));
    }
    log::info(&bounded(format!(
        "{who}: association {end}: {} object{} stored, {} refused",
        tally.stored,
        if tally.stored == 1 { "" } else { "s" },
        tally.refused
    )));
}

/// Adds received data set bytes to the request: in memory up to `spool_threshold`, then in
/// an unnamed temporary file under `incoming/.partial` (gone when closed).
fn receive_data(
    req: &mut StoreRequest,
    bytes: &[u8],
    cfg: &ListenConfig,
    shared: &Shared,
) -> std::io::Result<()> {
    if req.spool.is_none() && req.received > cfg.spool_threshold {
        let mut f = tempfile::tempfile_in(shared.dir("incoming").join(PARTIAL))?;
        f.write_all(&req.data)?;
        req.data = Vec::new();
        req.spool = Some(f);
    }
    match &mut req.spool {
        Some(f) => f.write_all(bytes),
        None => {
            req.data.extend_from_slice(bytes);
            Ok(())
        }
    }
}

/// One of the `max_associations` places, given back when dropped (also when the thread that
/// holds it panics, or is never started).
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    fn take(active: &Arc<std::sync::atomic::AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::SeqCst);
        Slot(Arc::clone(active))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Longest log line written about a peer's doing (characters): what a peer sends cannot
/// flood the journal.
pub const MAX_LOG_LINE: usize = 1000;

/// `line` cut to [`MAX_LOG_LINE`] characters, saying how much was left out.
fn bounded(line: String) -> String {
    match line.char_indices().nth(MAX_LOG_LINE) {
        None => line,
        Some((at, _)) => format!(
            "{}… ({} more characters)",
            &line[..at],
            line[at..].chars().count()
        ),
    }
}

/// Handles a complete command set: answers C-ECHO, or returns the C-STORE whose data set
/// follows. An unreadable or unsupported command breaks the association (`Err`).
fn on_command(
    scp: &mut ServerAssociation<TcpStream>,
    bytes: &[u8],
    pc_id: u8,
) -> std::result::Result<Option<StoreRequest>, String> {
    let cmd = decode_command(bytes)?;
    let int = |tag| cmd.element(tag).ok().and_then(|e| e.to_int::<u16>().ok());
    let field = int(tags::COMMAND_FIELD).ok_or("a command without a Command Field")?;
    let message_id = int(tags::MESSAGE_ID).ok_or("a command without a Message ID")?;
    match field {
        C_ECHO_RQ => {
            let rsp = InMemDicomObject::command_from_element_iter([
                DataElement::new(
                    tags::AFFECTED_SOP_CLASS_UID,
                    VR::UI,
                    PrimitiveValue::from(VERIFICATION),
                ),
                DataElement::new(
                    tags::COMMAND_FIELD,
                    VR::US,
                    PrimitiveValue::from(C_ECHO_RSP),
                ),
                DataElement::new(
                    tags::MESSAGE_ID_BEING_RESPONDED_TO,
                    VR::US,
                    PrimitiveValue::from(message_id),
                ),
                DataElement::new(
                    tags::COMMAND_DATA_SET_TYPE,
                    VR::US,
                    PrimitiveValue::from(NO_DATA_SET),
                ),
                DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(0u16)),
            ]);
            send_command(scp, &rsp, pc_id)?;
            Ok(None)
        }
        C_STORE_RQ => {
            if int(tags::COMMAND_DATA_SET_TYPE) == Some(NO_DATA_SET) {
                return Err("a C-STORE request without a data set".into());
            }
            Ok(Some(StoreRequest {
                message_id,
                sop_class: uid_text(&cmd, tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default(),
                sop_instance: uid_text(&cmd, tags::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default(),
                pc_id,
                data: Vec::new(),
                spool: None,
                received: 0,
            }))
        }
        other => Err(format!(
            "command {other:04X}H is not offered here (only C-STORE and C-ECHO)"
        )),
    }
}

fn send_command(
    scp: &mut ServerAssociation<TcpStream>,
    command: &InMemDicomObject,
    pc_id: u8,
) -> std::result::Result<(), String> {
    let data = encode_command(command)?;
    scp.send(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data,
        }],
    })
    .map_err(|e| format!("cannot answer ({})", error_chain(&e)))
}

/// Stores a complete data set (or refuses it) and answers with the C-STORE-RSP. `Err` only
/// when the answer cannot be sent.
fn on_data_set(
    scp: &mut ServerAssociation<TcpStream>,
    req: StoreRequest,
    who: &str,
    shared: &Shared,
    tally: &mut Tally,
) -> std::result::Result<(), String> {
    let ts = scp
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == req.pc_id)
        .map(|pc| pc.transfer_syntax.trim_end_matches(['\0', ' ']).to_string());
    let peer_aet = scp.peer_ae_title().trim().to_string();
    let (status, comment) = match store_object(shared, &req, ts.as_deref(), &peer_aet) {
        Ok(study) => {
            tally.stored += 1;
            if !tally.studies.contains(&study) {
                tally.studies.push(study.clone());
                let pending = std::mem::take(&mut tally.unattributed);
                if !pending.is_empty() {
                    if let Some(s) = shared.studies().get_mut(&study) {
                        s.rejected.extend(pending);
                    }
                }
            }
            (0x0000u16, None)
        }
        Err((status, reason)) => {
            tally.refused += 1;
            let instance = if req.sop_instance.is_empty() {
                "unknown".to_string()
            } else {
                req.sop_instance.clone()
            };
            log::warn(&bounded(format!(
                "{who}: object {instance} refused (status {status:04X}H): {reason}; the sender keeps it"
            )));
            let entry = (instance, reason.clone());
            if tally.studies.is_empty() {
                tally.unattributed.push(entry);
            } else {
                let mut studies = shared.studies();
                for s in &tally.studies {
                    if let Some(state) = studies.get_mut(s) {
                        state.rejected.push(entry.clone());
                    }
                }
            }
            (status, Some(reason))
        }
    };
    let mut elements = vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(req.sop_class.as_str()),
        ),
        DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(C_STORE_RSP),
        ),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(req.message_id),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(NO_DATA_SET),
        ),
        DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(status)),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(req.sop_instance.as_str()),
        ),
    ];
    if let Some(c) = comment {
        // Error Comment is LO: at most 64 characters.
        let c: String = c.chars().take(64).collect();
        elements.push(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            PrimitiveValue::from(c),
        ));
    }
    let rsp = InMemDicomObject::command_from_element_iter(elements);
    send_command(scp, &rsp, req.pc_id)
}

/// Reads a data set received in memory (no file meta group) in transfer syntax `ts_uid`, as
/// the listener does before it stores an object: the pre-scan
/// ([`crate::io::dicom::guard::check_data_set`]) bounds its nesting and checks its declared
/// lengths against the bytes received before the parser allocates anything, and a panic in
/// the parsing library becomes an error. Also the entry point of the C-STORE fuzz target
/// (`fuzz/`) and of `tests/fuzz_readers.rs`.
///
/// Errors: why the data set cannot be read (the element, offset or limit), in words.
pub fn parse_data_set(data: &[u8], ts_uid: &str) -> std::result::Result<InMemDicomObject, String> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("transfer syntax {ts_uid} unknown"))?;
    crate::io::dicom::guard::check_data_set(data, ts_uid)?;
    match crate::io::dicom::guard::no_panic(|| InMemDicomObject::read_dataset_with_ts(data, ts)) {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(panic) => Err(crate::io::dicom::guard::library_stopped(&panic)),
    }
}

/// Validates and writes one object; `Ok(StudyInstanceUID)` once it is safely on disk, or
/// the failure status (PS3.4 B.2.3) and why.
fn store_object(
    shared: &Shared,
    req: &StoreRequest,
    ts_uid: Option<&str>,
    peer_aet: &str,
) -> std::result::Result<String, (u16, String)> {
    const CANNOT_UNDERSTAND: u16 = 0xC000;
    const DOES_NOT_MATCH: u16 = 0xA900;
    const OUT_OF_RESOURCES: u16 = 0xA700;
    let ts_uid = ts_uid.ok_or((
        CANNOT_UNDERSTAND,
        "unknown presentation context".to_string(),
    ))?;
    TransferSyntaxRegistry.get(ts_uid).ok_or((
        CANNOT_UNDERSTAND,
        format!("transfer syntax {ts_uid} unknown"),
    ))?;
    if !valid_uid(&req.sop_instance) || !valid_uid(&req.sop_class) {
        return Err((
            CANNOT_UNDERSTAND,
            "the request's SOP class or instance UID is not a valid UID".into(),
        ));
    }
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(req.sop_class.as_str())
        .media_storage_sop_instance_uid(req.sop_instance.as_str())
        .transfer_syntax(ts_uid)
        .source_application_entity_title(peer_aet)
        .build()
        .map_err(|e| (CANNOT_UNDERSTAND, format!("file meta: {}", error_chain(&e))))?;
    let incoming = shared.dir("incoming");
    // Written through a temporary name: the data set exactly as received, in the negotiated
    // transfer syntax, from memory or from its spool file.
    let stage = || -> std::result::Result<tempfile::TempPath, (u16, String)> {
        (|| -> std::io::Result<tempfile::TempPath> {
            let mut tmp = tempfile::Builder::new()
                .prefix(&req.sop_instance)
                .suffix(".partial")
                .tempfile_in(incoming.join(PARTIAL))?;
            {
                let f = tmp.as_file_mut();
                let mut w = std::io::BufWriter::new(f);
                w.write_all(&[0u8; 128])?;
                w.write_all(b"DICM")?;
                meta.write(&mut w).map_err(std::io::Error::other)?;
                match &req.spool {
                    None => w.write_all(&req.data)?,
                    Some(spool) => {
                        let mut spool = spool;
                        std::io::Seek::rewind(&mut spool)?;
                        std::io::copy(&mut spool, &mut w)?;
                    }
                }
                w.flush()?;
            }
            tmp.as_file().sync_all()?;
            Ok(tmp.into_temp_path())
        })()
        .map_err(|e| (OUT_OF_RESOURCES, format!("cannot write it to disk ({e})")))
    };
    let uids = |obj: &InMemDicomObject| -> std::result::Result<String, (u16, String)> {
        let study = uid_text(obj, tags::STUDY_INSTANCE_UID)
            .filter(|u| valid_uid(u))
            .ok_or((
                DOES_NOT_MATCH,
                "no valid StudyInstanceUID (0020,000D) in the data set".to_string(),
            ))?;
        if uid_text(obj, tags::SOP_INSTANCE_UID).as_deref() != Some(req.sop_instance.as_str()) {
            return Err((
                DOES_NOT_MATCH,
                "the data set's SOPInstanceUID differs from the request's".into(),
            ));
        }
        Ok(study)
    };
    let unparsable = |why: String| {
        (
            CANNOT_UNDERSTAND,
            format!("the data set cannot be parsed ({why})"),
        )
    };
    // A hostile or broken data set must not take the server down with it: the pre-scan bounds
    // its nesting (the parser is recursive: a deep one would overflow the thread's stack and
    // abort the whole process) and checks its declared lengths before anything is allocated
    // for them; panics are caught.
    let (study, staged) = if req.spool.is_none() {
        let obj = parse_data_set(&req.data, ts_uid).map_err(unparsable)?;
        let study = uids(&obj)?;
        drop(obj);
        (study, stage()?)
    } else {
        // A spooled object is checked on disk, and parsed only up to its pixel data, so that
        // it is never held whole in memory.
        let staged = stage()?;
        crate::io::dicom::guard::check_file(&staged, None).map_err(unparsable)?;
        let obj = crate::io::dicom::guard::no_panic(|| {
            dicom_object::OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .open_file(&staged)
        })
        .map_err(|p| unparsable(crate::io::dicom::guard::library_stopped(&p)))?
        .map_err(|e| unparsable(error_chain(&e)))?;
        (uids(&obj)?, staged)
    };
    let mut studies = shared.studies();
    let dir = incoming.join(&study);
    let target = dir.join(format!("{}.dcm", req.sop_instance));
    std::fs::create_dir_all(&dir)
        .and_then(|_| staged.persist(&target).map_err(|e| e.error))
        .map_err(|e| (OUT_OF_RESOURCES, format!("cannot write it to disk ({e})")))?;
    // The rename is durable only once the folder is synced.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    studies
        .entry(study.clone())
        .and_modify(|s| s.last = Instant::now())
        .or_insert_with(|| StudyState {
            last: Instant::now(),
            rejected: vec![],
        });
    Ok(study)
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
