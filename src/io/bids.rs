//! BIDS JSON sidecars (as dcm2niix writes them): the acquisition facts a NIfTI lacks.

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
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Sidecar {
        path: path.to_path_buf(),
        problem: format!("not valid JSON ({e})"),
    })?;
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Ok(Sidecar {
        echo_time_s: num("EchoTime"),
        repetition_time_s: num("RepetitionTime"),
        manufacturer: text("Manufacturer"),
        series_description: text("SeriesDescription"),
        series_number: v.get("SeriesNumber").and_then(|x| x.as_i64()),
    })
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
