//! C-STORE service class user (PS3.4 Annex B, PS3.7 §9.1.1): sends a batch of DICOM files to a
//! storage SCP over one association, checks the status of every C-STORE-RSP, and retries the
//! files not yet stored in a fresh association after an exponential backoff.
//!
//! One presentation context is proposed per SOP class found in the batch (Parametric Map, MR,
//! Enhanced MR, Secondary Capture, … whatever the files are), offering Explicit and Implicit VR
//! Little Endian: any uncompressed file is re-encoded in whichever the SCP accepts. A file with
//! encapsulated (compressed) pixel data is offered only in its own transfer syntax, since
//! transcoding pixel data is out of scope here.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu};

use super::{deliver_in_rounds, Delivery, Destination, Outcome, Retry, CALLING_AET};
use crate::error::error_chain;

pub use crate::io::dicom::elements::{EXPLICIT_VR_LE, IMPLICIT_VR_LE};
/// PS3.7 E.1: a command set is always encoded in Implicit VR Little Endian.
const COMMAND_TS: &str = IMPLICIT_VR_LE;
/// Command Field values (PS3.7 §E.1).
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// Command Data Set Type when no data set follows (PS3.7 §E.1).
pub const NO_DATA_SET: u16 = 0x0101;
/// PS3.8 §9.3.1: presentation context IDs are odd integers 1–255, so at most 128 per
/// association; a batch with more distinct SOP classes goes over several associations.
const MAX_CONTEXTS: usize = 128;
/// How long to wait for a response before giving the association up.
const DIMSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What a C-STORE-RSP status means (PS3.4 Annex B.2.3, PS3.7 Annex C).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreStatus {
    Success,
    /// Stored, with a warning the receiver chose to give (coercion, elements discarded…).
    Warning(String),
    /// Not stored; `retry` when the SCP said it is short of resources and might take it later.
    Failure {
        reason: String,
        retry: bool,
    },
}

/// Reads a C-STORE-RSP Status (0000,0900) and its optional Error Comment (0000,0902).
pub fn store_status(status: u16, comment: Option<&str>) -> StoreStatus {
    let with = |text: &str| match comment {
        Some(c) if !c.trim().is_empty() => format!("{text} (status {status:04X}H: {})", c.trim()),
        _ => format!("{text} (status {status:04X}H)"),
    };
    match status {
        0x0000 => StoreStatus::Success,
        0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => {
            StoreStatus::Warning(with("stored with a warning"))
        }
        0xA700..=0xA7FF | 0x0213 => StoreStatus::Failure {
            reason: with("refused: the receiver is out of resources"),
            retry: true,
        },
        0xA900..=0xA9FF => StoreStatus::Failure {
            reason: with("refused: the data set does not match its SOP class"),
            retry: false,
        },
        0xC000..=0xCFFF => StoreStatus::Failure {
            reason: with("refused: the receiver cannot understand the object"),
            retry: false,
        },
        0x0122 => StoreStatus::Failure {
            reason: with("refused: SOP class not supported by the receiver"),
            retry: false,
        },
        0x0124 => StoreStatus::Failure {
            reason: with("refused: not authorised"),
            retry: false,
        },
        0xFE00 => StoreStatus::Failure {
            reason: with("cancelled by the receiver"),
            retry: true,
        },
        _ => StoreStatus::Failure {
            reason: with("refused"),
            retry: false,
        },
    }
}

/// A file of the batch as its File Meta Information describes it.
#[derive(Debug, Clone)]
struct Item {
    path: PathBuf,
    sop_class: String,
    sop_instance: String,
    /// The file's transfer syntax when its pixel data is encapsulated (sent as it is);
    /// `None` for native encodings, re-encoded to what the SCP accepts.
    encapsulated_ts: Option<String>,
}

fn uid(s: &str) -> String {
    s.trim_end_matches(['\0', ' ']).to_string()
}

fn read_item(path: &Path) -> Result<Item, String> {
    crate::io::dicom::guard::check_file(path, Some(tags::PIXEL_DATA))
        .map_err(|why| format!("not a readable DICOM file ({why})"))?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| format!("not a readable DICOM file ({})", error_chain(&e)))?;
    let meta = obj.meta();
    let ts_uid = uid(&meta.transfer_syntax);
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    Ok(Item {
        path: path.to_path_buf(),
        sop_class: uid(&meta.media_storage_sop_class_uid),
        sop_instance: uid(&meta.media_storage_sop_instance_uid),
        encapsulated_ts: ts.is_encapsulated_pixel_data().then_some(ts_uid),
    })
}

type ContextKey = (String, Option<String>);

fn key_of(item: &Item) -> ContextKey {
    (item.sop_class.clone(), item.encapsulated_ts.clone())
}

/// Sends `files` to `dest`: one association per batch (more only past 128 SOP classes), up to
/// `retry.attempts` rounds for the files not stored yet. Never fails as a whole: the
/// [`Delivery`] says which files went and why the others did not.
pub fn store(files: &[PathBuf], dest: &Destination, retry: &Retry) -> Delivery {
    let mut message_id: u16 = 0;
    deliver_in_rounds(
        format!("C-STORE {dest}"),
        files,
        retry,
        read_item,
        |item: &Item| &item.path,
        |pending| {
            let mut groups: BTreeMap<ContextKey, Vec<Item>> = BTreeMap::new();
            for item in pending {
                groups.entry(key_of(&item)).or_default().push(item);
            }
            let groups: Vec<(ContextKey, Vec<Item>)> = groups.into_iter().collect();
            let mut done = Vec::new();
            for chunk in groups.chunks(MAX_CONTEXTS) {
                let items: Vec<&Item> = chunk.iter().flat_map(|(_, v)| v.iter()).collect();
                let keys: Vec<&ContextKey> = chunk.iter().map(|(k, _)| k).collect();
                let outcomes = store_once(&items, &keys, dest, &mut message_id);
                done.extend(items.into_iter().cloned().zip(outcomes));
            }
            done
        },
    )
}

/// One association: negotiate, send every item, release. Returns one outcome per item.
fn store_once(
    items: &[&Item],
    keys: &[&ContextKey],
    dest: &Destination,
    message_id: &mut u16,
) -> Vec<Outcome> {
    let fail_all = |reason: String| {
        items
            .iter()
            .map(|_| Outcome::Failed {
                reason: reason.clone(),
                retry: true,
            })
            .collect::<Vec<_>>()
    };
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(CALLING_AET)
        .called_ae_title(dest.aet.as_str())
        .connection_timeout(std::time::Duration::from_secs(30))
        .read_timeout(DIMSE_TIMEOUT)
        .write_timeout(DIMSE_TIMEOUT);
    for (sop_class, encapsulated) in keys {
        let ts = match encapsulated {
            Some(ts) => vec![ts.clone()],
            None => vec![EXPLICIT_VR_LE.to_string(), IMPLICIT_VR_LE.to_string()],
        };
        options = options.with_presentation_context(sop_class.clone(), ts);
    }
    let address = (dest.host.as_str(), dest.port);
    let mut scu = match options.establish(address) {
        Ok(scu) => scu,
        Err(e) => {
            return fail_all(format!(
                "could not open an association with {dest} ({})",
                error_chain(&e)
            ))
        }
    };
    let mut outcomes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let accepted = scu.presentation_contexts().iter().find(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && uid(&pc.abstract_syntax) == item.sop_class
                && match &item.encapsulated_ts {
                    Some(ts) => uid(&pc.transfer_syntax) == *ts,
                    None => {
                        let t = uid(&pc.transfer_syntax);
                        t == EXPLICIT_VR_LE || t == IMPLICIT_VR_LE
                    }
                }
        });
        let Some(pc) = accepted.cloned() else {
            outcomes.push(Outcome::Failed {
                reason: format!(
                    "{dest} accepted no presentation context for SOP class {} in {}",
                    item.sop_class,
                    item.encapsulated_ts
                        .as_deref()
                        .unwrap_or("Explicit or Implicit VR Little Endian")
                ),
                retry: false,
            });
            continue;
        };
        *message_id = message_id.wrapping_add(1).max(1);
        match send_one(
            &mut scu,
            item,
            pc.id,
            &uid(&pc.transfer_syntax),
            *message_id,
        ) {
            Ok(outcome) => outcomes.push(outcome),
            Err(SendError::File(reason)) => outcomes.push(Outcome::Failed {
                reason,
                retry: false,
            }),
            Err(SendError::Link(reason)) => {
                // The association is gone: this file and the rest wait for the next round.
                let _ = scu.abort();
                let rest = items.len() - i;
                outcomes.extend((0..rest).map(|_| Outcome::Failed {
                    reason: reason.clone(),
                    retry: true,
                }));
                return outcomes;
            }
        }
    }
    // Every response is in: a failed release loses nothing, the files are stored.
    let _ = scu.release();
    outcomes
}

enum SendError {
    /// This file cannot be sent (unreadable, not encodable); the association is still fine.
    File(String),
    /// The association failed; nothing more can be sent on it.
    Link(String),
}

fn send_one(
    scu: &mut ClientAssociation<std::net::TcpStream>,
    item: &Item,
    pc_id: u8,
    ts_uid: &str,
    message_id: u16,
) -> Result<Outcome, SendError> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| SendError::File(format!("transfer syntax {ts_uid} unknown")))?;
    let obj = crate::io::dicom::guard::open(&item.path, None)
        .map_err(|e| SendError::File(e.to_string()))?;
    let mut data = Vec::new();
    obj.write_dataset_with_ts(&mut data, ts)
        .map_err(|e| SendError::File(format!("cannot encode in {ts_uid}: {}", error_chain(&e))))?;
    drop(obj);

    let command = InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(item.sop_class.as_str()),
        ),
        DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(C_STORE_RQ),
        ),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        // Priority MEDIUM.
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        // Any value other than 0101H says a data set follows.
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0x0000u16),
        ),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(item.sop_instance.as_str()),
        ),
    ]);
    let command_bytes = encode_command(&command).map_err(SendError::File)?;
    let link = |what: &str, e: &dyn std::error::Error| {
        SendError::Link(format!("{what} ({})", error_chain(e)))
    };
    scu.send(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: command_bytes,
        }],
    })
    .map_err(|e| link("the association broke while sending", &e))?;
    {
        let mut writer = scu.send_pdata(pc_id);
        writer
            .write_all(&data)
            .map_err(|e| link("the association broke while sending", &e))?;
        writer
            .finish()
            .map_err(|e| link("the association broke while sending", &e))?;
    }
    let response = receive_command(scu).map_err(SendError::Link)?;
    let field = response
        .element(tags::COMMAND_FIELD)
        .ok()
        .and_then(|e| e.to_int::<u16>().ok());
    let answered = response
        .element(tags::MESSAGE_ID_BEING_RESPONDED_TO)
        .ok()
        .and_then(|e| e.to_int::<u16>().ok());
    if field != Some(C_STORE_RSP) || answered != Some(message_id) {
        return Err(SendError::Link(format!(
            "expected the C-STORE-RSP to message {message_id}, got command {field:?} answering {answered:?}"
        )));
    }
    let Some(status) = response
        .element(tags::STATUS)
        .ok()
        .and_then(|e| e.to_int::<u16>().ok())
    else {
        return Err(SendError::Link("a C-STORE-RSP without a Status".into()));
    };
    let comment = response
        .element(tags::ERROR_COMMENT)
        .ok()
        .and_then(|e| e.to_str().ok().map(|s| s.to_string()));
    Ok(match store_status(status, comment.as_deref()) {
        StoreStatus::Success | StoreStatus::Warning(_) => Outcome::Stored,
        StoreStatus::Failure { reason, retry } => Outcome::Failed { reason, retry },
    })
}

/// Encodes a command set in Implicit VR Little Endian.
pub fn encode_command(command: &InMemDicomObject) -> Result<Vec<u8>, String> {
    let ts = TransferSyntaxRegistry
        .get(COMMAND_TS)
        .ok_or("Implicit VR Little Endian missing from the registry")?;
    let mut bytes = Vec::with_capacity(160);
    command
        .write_dataset_with_ts(&mut bytes, ts)
        .map_err(|e| format!("cannot encode a command ({})", error_chain(&e)))?;
    Ok(bytes)
}

/// Decodes a command set (Implicit VR Little Endian).
pub fn decode_command(bytes: &[u8]) -> Result<InMemDicomObject, String> {
    let ts = TransferSyntaxRegistry
        .get(COMMAND_TS)
        .ok_or("Implicit VR Little Endian missing from the registry")?;
    crate::io::dicom::guard::check_data_set(bytes, COMMAND_TS)
        .map_err(|why| format!("unreadable command set ({why})"))?;
    InMemDicomObject::read_dataset_with_ts(bytes, ts)
        .map_err(|e| format!("unreadable command set ({})", error_chain(&e)))
}

/// Reads P-DATA until a complete command set arrives (it may span several PDVs).
fn receive_command(
    scu: &mut ClientAssociation<std::net::TcpStream>,
) -> Result<InMemDicomObject, String> {
    let mut bytes = Vec::new();
    loop {
        match scu.receive() {
            Ok(Pdu::PData { data }) => {
                for pdv in data {
                    if pdv.value_type == PDataValueType::Command {
                        bytes.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            return decode_command(&bytes);
                        }
                    }
                }
            }
            Ok(Pdu::AbortRQ { source }) => {
                return Err(format!("the receiver aborted the association ({source:?})"))
            }
            Ok(other) => {
                return Err(format!(
                    "unexpected {} while waiting for a C-STORE-RSP",
                    other.short_description()
                ))
            }
            Err(e) => return Err(format!("no C-STORE-RSP received ({})", error_chain(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_statuses_follow_ps3_4_annex_b() {
        assert_eq!(store_status(0x0000, None), StoreStatus::Success);
        // B000H coercion, B007H data set does not match SOP class, B006H elements discarded:
        // the object is stored.
        for w in [0xB000, 0xB006, 0xB007] {
            assert!(matches!(store_status(w, None), StoreStatus::Warning(_)));
        }
        // A7xxH out of resources: worth another try later.
        assert!(matches!(
            store_status(0xA700, Some("disk full")),
            StoreStatus::Failure { retry: true, reason } if reason.contains("disk full") && reason.contains("A700H")
        ));
        // A9xxH and Cxxx: the same object will be refused again.
        for f in [0xA900, 0xC000, 0xC123, 0x0122] {
            assert!(matches!(
                store_status(f, None),
                StoreStatus::Failure { retry: false, .. }
            ));
        }
    }

    #[test]
    fn a_command_set_carries_its_group_length() {
        let command = InMemDicomObject::command_from_element_iter([
            DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(C_ECHO_RQ)),
            DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(7u16)),
        ]);
        let bytes = encode_command(&command).unwrap();
        // (0000,0000) UL, implicit VR: tag (4) + length (4) + value (4), then two US elements
        // of 8 + 2 bytes each. PS3.7 E.1: the group length counts the bytes after itself.
        assert_eq!(bytes.len(), 12 + 10 + 10);
        assert_eq!(&bytes[0..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 20);
        let back = decode_command(&bytes).unwrap();
        assert_eq!(
            back.element(tags::MESSAGE_ID)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            7
        );
    }
}
