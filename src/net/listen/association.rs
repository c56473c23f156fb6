//! One association: its commands (C-ECHO, C-STORE), each data set received in bounded memory
//! (spooled to disk past a threshold) and parsed, and the status answered.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::Association;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{Pdu, ServerAssociation, ServerAssociationOptions};

use crate::error::error_chain;
use crate::log;
use crate::net::cstore::{
    decode_command, encode_command, C_ECHO_RQ, C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP, NO_DATA_SET,
};

use super::*;

/// The C-STORE-RQ being answered: what its command said.
pub(super) struct StoreRequest {
    pub(super) message_id: u16,
    pub(super) sop_class: String,
    pub(super) sop_instance: String,
    pub(super) pc_id: u8,
    /// The data set so far, while it is below `spool_threshold`.
    pub(super) data: Vec<u8>,
    /// Past `spool_threshold`: the data set so far, on disk (an unnamed temporary file).
    pub(super) spool: Option<std::fs::File>,
    /// Bytes of data set received.
    pub(super) received: usize,
}

/// What one association did, for its closing log line and for attributing refusals.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) stored: usize,
    pub(super) refused: usize,
    /// Studies this association delivered objects of.
    pub(super) studies: Vec<String>,
    /// Refusals before any study was seen; attributed to the first one that is.
    pub(super) unattributed: Vec<(String, String)>,
}

pub(super) fn association(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
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
pub(super) fn receive_data(
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
pub(super) struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    pub(super) fn take(active: &Arc<std::sync::atomic::AtomicUsize>) -> Slot {
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
pub(super) fn bounded(line: String) -> String {
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
pub(super) fn on_command(
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

pub(super) fn send_command(
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
pub(super) fn on_data_set(
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
