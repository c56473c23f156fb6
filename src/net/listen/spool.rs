//! The spool: objects written to `incoming/<StudyUID>/` safely before they are acknowledged,
//! quiet studies moved on to `processing/`, `done/` or `failed/`, and what a previous run left
//! behind picked up again.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::error::error_chain;
use crate::error::{Error, Result};
use crate::log;

use super::*;

/// Registers studies a previous run left behind: `processing/` ones (interrupted while being
/// processed) go back to `incoming/`, and everything in `incoming/` waits one quiet period.
pub(super) fn recover(shared: &Shared) -> Result<()> {
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

pub(super) fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
}

/// Folder names are the Study Instance UID, with `_2`, `_3`… when that name is taken (UIDs
/// hold only digits and dots, so the suffix cannot be mistaken for part of one).
pub(super) fn study_of_folder(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.split('_').next().unwrap_or_default().to_string()
}

pub(super) fn free_name(parent: &Path, study: &str) -> PathBuf {
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
pub(super) fn sweep(shared: &Shared, tx: &mpsc::Sender<CompletedStudy>) {
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
pub(super) fn finish_study(
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
pub(super) fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

pub(super) fn uid_text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.element(tag).ok().and_then(|e| {
        e.to_str()
            .ok()
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
    })
}

/// Validates and writes one object; `Ok(StudyInstanceUID)` once it is safely on disk, or
/// the failure status (PS3.4 B.2.3) and why.
pub(super) fn store_object(
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
