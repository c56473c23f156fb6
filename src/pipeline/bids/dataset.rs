//! The BIDS dataset as `paramap bids` reads it: its root checked, its sessions (the DWI and
//! DSC series of each subject and session the labels select), and each session's input files
//! with their sizes and modification times (what a session's stamp compares).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::io::bids::{self, BidsName};

use super::BidsOptions;

/// One session's worth of inputs.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) subject: String,
    pub(super) session: Option<String>,
    /// `sub-01/ses-1` (or `sub-01`).
    pub(super) rel: PathBuf,
    pub(super) dwi: Vec<PathBuf>,
    pub(super) dsc: Vec<PathBuf>,
}

impl Session {
    pub(super) fn label(&self) -> String {
        match &self.session {
            Some(s) => format!("sub-{} ses-{s}", self.subject),
            None => format!("sub-{}", self.subject),
        }
    }
}

/// `label` without its entity prefix (`sub-`, `ses-`), as BIDS-Apps accept either.
pub(super) fn strip<'a>(label: &'a str, prefix: &str) -> &'a str {
    label.strip_prefix(prefix).unwrap_or(label)
}

/// The labels of `dir`'s subfolders named `<prefix><label>`, sorted.
fn dirs_with_prefix(dir: &Path, prefix: &str) -> Result<Vec<String>> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() {
            if let Some(label) = name.strip_prefix(prefix) {
                out.push(label.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// NIfTI files of `folder` whose name has suffix `suffix`.
fn images(folder: &Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return vec![];
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            BidsName::parse(&name).is_some_and(|n| {
                n.suffix == suffix && (n.extension == ".nii.gz" || n.extension == ".nii")
            })
        })
        .collect();
    v.sort();
    v
}

/// The sessions of the dataset that the labels select.
pub(super) fn sessions(root: &Path, opts: &BidsOptions) -> Result<Vec<Session>> {
    let subjects = dirs_with_prefix(root, "sub-")?;
    let wanted: Vec<&str> = opts
        .participant_label
        .iter()
        .map(|l| strip(l, "sub-"))
        .collect();
    for w in &wanted {
        if !subjects.iter().any(|s| s == w) {
            return Err(Error::Invalid(format!(
                "--participant-label {w}: no folder sub-{w} in {} (subjects: {})",
                root.display(),
                subjects.join(" ")
            )));
        }
    }
    let wanted_ses: Vec<&str> = opts
        .session_label
        .iter()
        .map(|l| strip(l, "ses-"))
        .collect();
    let mut out = vec![];
    for sub in subjects {
        if !wanted.is_empty() && !wanted.contains(&sub.as_str()) {
            continue;
        }
        let sub_dir = root.join(format!("sub-{sub}"));
        let ses_labels = dirs_with_prefix(&sub_dir, "ses-")?;
        let list: Vec<Option<String>> = if ses_labels.is_empty() {
            vec![None]
        } else {
            ses_labels.into_iter().map(Some).collect()
        };
        for ses in list {
            if !wanted_ses.is_empty() && !ses.as_deref().is_some_and(|s| wanted_ses.contains(&s)) {
                continue;
            }
            let rel = match &ses {
                Some(s) => PathBuf::from(format!("sub-{sub}")).join(format!("ses-{s}")),
                None => PathBuf::from(format!("sub-{sub}")),
            };
            let dir = root.join(&rel);
            let dwi = images(&dir.join("dwi"), "dwi");
            let mut dsc = images(&dir.join("perf"), "dsc");
            // `_bold` series that are DSC: their sidecar names a contrast agent.
            for folder in ["perf", "func"] {
                for p in images(&dir.join(folder), "bold") {
                    let is_dsc = bids::inherited(root, &p)
                        .map(|(m, _)| m.contains_key("ContrastBolusIngredient"))
                        .unwrap_or(true);
                    if is_dsc {
                        dsc.push(p);
                    }
                }
            }
            out.push(Session {
                subject: sub.clone(),
                session: ses,
                rel,
                dwi,
                dsc,
            });
        }
    }
    Ok(out)
}

/// The dataset's root, canonical, after checking it is a folder with a readable
/// dataset_description.json.
pub(super) fn check_dataset(root: &Path) -> Result<PathBuf> {
    if !root.is_dir() {
        return Err(Error::NotFound {
            path: root.to_path_buf(),
        });
    }
    let dd = root.join("dataset_description.json");
    if !dd.is_file() {
        return Err(Error::Sidecar {
            path: dd,
            problem: "is missing: a BIDS dataset's root holds dataset_description.json (with Name and BIDSVersion); is this the dataset's root folder?".into(),
        });
    }
    bids::read_json(&dd)?;
    root.canonicalize().map_err(|e| Error::io(root, e))
}

/// Every input file of a session (images, side files and the sidecars inherited) with its size
/// and modification time: a changed input makes the session be done again.
pub(super) fn input_list(root: &Path, s: &Session) -> Result<Vec<Value>> {
    let mut files: Vec<PathBuf> = vec![];
    for p in s.dwi.iter().chain(&s.dsc) {
        files.push(p.clone());
        for ext in ["bval", "bvec"] {
            let side = bids::sibling(p, ext);
            if side.exists() {
                files.push(side);
            }
        }
        files.extend(bids::inherited(root, p)?.1);
    }
    files.sort();
    files.dedup();
    Ok(files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok();
            let mtime = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos().to_string());
            json!({
                "path": f.strip_prefix(root).unwrap_or(f).display().to_string(),
                "bytes": meta.map(|m| m.len()),
                "modified_ns": mtime,
            })
        })
        .collect())
}
