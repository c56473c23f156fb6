//! BIDS file names and JSON sidecars (as dcm2niix writes them): the acquisition facts a NIfTI
//! lacks, the entities of a name (BIDS 1.10 "Entities", "File name structure") and the
//! Inheritance Principle (BIDS 1.10, "Common principles: The Inheritance Principle").
//!
//! No crate is used for the names: the only BIDS crates on crates.io (`bids`, `bids-core`,
//! 0.0.x, GPL-3.0) are new and under a licence this project's (MIT OR Apache-2.0) cannot take;
//! the parser below is small and tested on the BIDS examples' file names.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The sidecar fields paramap uses. Times in the sidecar are seconds (BIDS).
#[derive(Debug, Clone, Default)]
pub struct Sidecar {
    pub echo_time_s: Option<f64>,
    pub repetition_time_s: Option<f64>,
    pub manufacturer: Option<String>,
    pub series_description: Option<String>,
    pub series_number: Option<i64>,
}

pub fn read(path: &Path) -> Result<Sidecar> {
    Ok(Sidecar::of(&read_json(path)?))
}

/// A JSON file's top-level object; an error naming the file when it is not valid JSON or not
/// an object.
pub fn read_json(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Sidecar {
        path: path.to_path_buf(),
        problem: format!("not valid JSON ({e}): fix or regenerate it (dcm2niix writes it)"),
    })?;
    match v {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(Error::Sidecar {
            path: path.to_path_buf(),
            problem: "is JSON but not an object ({...}), as a BIDS sidecar must be".into(),
        }),
    }
}

impl Sidecar {
    /// The fields paramap uses, from a sidecar's (or merged sidecars') object.
    pub fn of(v: &serde_json::Map<String, serde_json::Value>) -> Sidecar {
        let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Sidecar {
            echo_time_s: num("EchoTime"),
            repetition_time_s: num("RepetitionTime"),
            manufacturer: text("Manufacturer"),
            series_description: text("SeriesDescription"),
            series_number: v.get("SeriesNumber").and_then(|x| x.as_i64()),
        }
    }
}

/// `scan.nii.gz` → `scan.<ext>` beside it.
pub fn sibling(nifti: &Path, ext: &str) -> PathBuf {
    let name = nifti
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .unwrap_or(&name);
    nifti.with_file_name(format!("{stem}.{ext}"))
}

/// A BIDS file name split into its parts: `sub-01_ses-1_dwi.nii.gz` → entities
/// `[("sub", "01"), ("ses", "1")]`, suffix `dwi`, extension `.nii.gz` (BIDS 1.10 "File name
/// structure": key-value pairs joined by `_`, then the suffix, then the extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BidsName {
    /// The key-value entities in the order they appear.
    pub entities: Vec<(String, String)>,
    pub suffix: String,
    /// From the first dot, dot included (`.nii.gz`, `.json`); empty for none.
    pub extension: String,
}

impl BidsName {
    /// Parses a file name (not a path); None when it does not follow the BIDS pattern (labels
    /// and suffix alphanumeric, keys lower-case alphanumeric, `sub-` first).
    pub fn parse(name: &str) -> Option<BidsName> {
        let (stem, extension) = match name.find('.') {
            Some(i) => (&name[..i], name[i..].to_string()),
            None => (name, String::new()),
        };
        let mut parts: Vec<&str> = stem.split('_').collect();
        let suffix = parts.pop()?;
        if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let mut entities = Vec::with_capacity(parts.len());
        for p in parts {
            let (k, v) = p.split_once('-')?;
            let key_ok = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            let value_ok = !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric());
            if !key_ok || !value_ok || entities.iter().any(|(e, _): &(String, String)| e == k) {
                return None;
            }
            entities.push((k.to_string(), v.to_string()));
        }
        Some(BidsName {
            entities,
            suffix: suffix.to_string(),
            extension,
        })
    }

    /// The value of entity `key` (`sub`, `ses`, …).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entities
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The entities joined as in a file name: `sub-01_ses-1_acq-b1000`.
    pub fn prefix(&self) -> String {
        self.entities
            .iter()
            .map(|(k, v)| format!("{k}-{v}"))
            .collect::<Vec<_>>()
            .join("_")
    }
}

/// The metadata of data file `data` in the dataset at `root` by the Inheritance Principle
/// (BIDS 1.10): every `.json` from the root down to the file's folder whose suffix is the
/// file's and whose entities are all the file's, merged top-down so that a deeper file's keys
/// replace a shallower one's. Returns the merged object and the files it came from (shallowest
/// first). Errors name the file: invalid JSON, or two applicable sidecars in one folder (the
/// specification forbids it).
pub fn inherited(
    root: &Path,
    data: &Path,
) -> Result<(serde_json::Map<String, serde_json::Value>, Vec<PathBuf>)> {
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let Some(target) = BidsName::parse(&name) else {
        return Err(Error::Sidecar {
            path: data.to_path_buf(),
            problem: "is not a BIDS file name (sub-<label>[_<key>-<value>…]_<suffix>.<ext>)".into(),
        });
    };
    // The folders from the root to the file's, shallowest first.
    let mut folders = vec![];
    let mut dir = data.parent();
    while let Some(d) = dir {
        folders.push(d.to_path_buf());
        if d == root {
            break;
        }
        dir = d.parent();
    }
    folders.reverse();
    let mut merged = serde_json::Map::new();
    let mut sources = vec![];
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut applicable: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                // A sidecar names no subject (a dataset-wide one) or the file's.
                let n = if n.starts_with("sub-") || n.contains('_') {
                    n
                } else {
                    format!("x-x_{n}")
                };
                BidsName::parse(&n).is_some_and(|s| {
                    s.extension == ".json"
                        && s.suffix == target.suffix
                        && s.entities
                            .iter()
                            .filter(|(k, _)| k != "x")
                            .all(|(k, v)| target.get(k) == Some(v.as_str()))
                })
            })
            .collect();
        applicable.sort();
        if applicable.len() > 1 {
            return Err(Error::Sidecar {
                path: applicable[1].clone(),
                problem: format!(
                    "and {} both apply to {} at the same level of the dataset, which BIDS's inheritance principle forbids: merge them or add the entity that tells them apart",
                    applicable[0].display(),
                    data.display()
                ),
            });
        }
        if let Some(p) = applicable.pop() {
            for (k, v) in read_json(&p)? {
                merged.insert(k, v);
            }
            sources.push(p);
        }
    }
    Ok((merged, sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// File names from the BIDS examples (ds001, ds114, eeg_*, qmri_*, asl*, dwi_deriv).
    #[test]
    fn parses_the_bids_examples_names() {
        let n = BidsName::parse("sub-01_ses-retest_task-fingerfootlips_bold.nii.gz").unwrap();
        assert_eq!(n.get("sub"), Some("01"));
        assert_eq!(n.get("ses"), Some("retest"));
        assert_eq!(n.get("task"), Some("fingerfootlips"));
        assert_eq!(n.suffix, "bold");
        assert_eq!(n.extension, ".nii.gz");
        assert_eq!(n.prefix(), "sub-01_ses-retest_task-fingerfootlips");
        let n = BidsName::parse("sub-01_acq-AP_dir-PA_run-1_dwi.bval").unwrap();
        assert_eq!(n.get("dir"), Some("PA"));
        assert_eq!(n.get("run"), Some("1"));
        assert_eq!(n.extension, ".bval");
        let n = BidsName::parse("sub-Sub103_ses-01_asl.nii").unwrap();
        assert_eq!((n.suffix.as_str(), n.extension.as_str()), ("asl", ".nii"));
        let n = BidsName::parse("sub-01_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz").unwrap();
        assert_eq!(n.get("desc"), Some("brain"));
        assert_eq!(n.suffix, "mask");
        // Dataset-level sidecars have only a suffix.
        let n = BidsName::parse("task-rest_bold.json").unwrap();
        assert_eq!(n.get("task"), Some("rest"));
        assert_eq!(BidsName::parse("dwi.json").unwrap().suffix, "dwi");
        // Not BIDS.
        for bad in [
            "sub-01_ses-1_dwi_.nii.gz",
            "sub-01_ses_1_dwi.nii.gz",
            "sub-01_sub-02_dwi.nii.gz",
            "sub-0 1_dwi.nii.gz",
            "sub-01_ses-1-dwi.nii.gz",
            "sub-01_Ses-1_dwi.nii.gz",
        ] {
            assert_eq!(BidsName::parse(bad), None, "{bad}");
        }
    }

    /// The example of BIDS 1.10's Inheritance Principle: a dataset-level `task-rest_bold.json`
    /// overridden by a subject's, and a sidecar with an entity the file lacks ignored.
    #[test]
    fn inherits_sidecars_top_down() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let func = r.join("sub-01/ses-1/func");
        std::fs::create_dir_all(&func).unwrap();
        std::fs::write(
            r.join("task-rest_bold.json"),
            r#"{"RepetitionTime": 2.0, "EchoTime": 0.03}"#,
        )
        .unwrap();
        std::fs::write(
            r.join("sub-01/sub-01_task-rest_bold.json"),
            r#"{"RepetitionTime": 1.5}"#,
        )
        .unwrap();
        std::fs::write(
            func.join("sub-01_ses-1_task-rest_acq-other_bold.json"),
            r#"{"EchoTime": 9}"#,
        )
        .unwrap();
        let data = func.join("sub-01_ses-1_task-rest_bold.nii.gz");
        std::fs::write(&data, b"").unwrap();
        let (m, from) = inherited(r, &data).unwrap();
        assert_eq!(m["RepetitionTime"], 1.5);
        assert_eq!(m["EchoTime"], 0.03);
        assert_eq!(from.len(), 2);
        // Two applicable sidecars at one level: an error naming both.
        std::fs::write(r.join("bold.json"), "{}").unwrap();
        let e = inherited(r, &data).unwrap_err().to_string();
        assert!(e.contains("bold.json") && e.contains("inheritance"), "{e}");
    }
}
