//! Error types of the library. Every variant names the file, tag or series at fault and says
//! what the user can do about it; the CLI prints them as they are.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error with its causes, "outer (inner (innermost))" flattened to "outer: inner: …",
/// since the libraries' top-level messages ("failed to send pdu") rarely say enough.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("input {path} does not exist: check the path")]
    NotFound { path: PathBuf },

    #[error("{path}: no DICOM image files found ({detail}); point paramap at the folder that holds the series, or give a .nii/.nii.gz file")]
    NoDicom { path: PathBuf, detail: String },

    #[error("{path}: not a readable DICOM file ({reason}); the file looks truncated or corrupt: re-export or re-send it, or move it out of the folder")]
    CorruptDicom { path: PathBuf, reason: String },

    #[error("{path}: missing or unreadable tag {tag} ({name}); this file cannot be placed in a volume: {hint}")]
    MissingTag {
        path: PathBuf,
        tag: &'static str,
        name: &'static str,
        hint: &'static str,
    },

    #[error("series {series}: {problem}")]
    Series { series: String, problem: String },

    #[error("{path}: several image series found, and this command needs one:\n{listing}\nchoose one with --series NUMBER (or its SeriesInstanceUID)")]
    AmbiguousSeries { path: PathBuf, listing: String },

    #[error("{path}: no series matches --series {wanted}; series found:\n{listing}")]
    SeriesNotFound {
        path: PathBuf,
        wanted: String,
        listing: String,
    },

    #[error("series {series}: no diffusion b-values found in any image (looked at (0018,9087) DiffusionBValue incl. Enhanced MR per-frame groups, Siemens (0019,100C) and CSA B_value, GE (0043,1039), Philips (2001,1003)); give the b-values with --bval FILE (FSL format, one per volume) or convert with dcm2niix and pass the .nii.gz with its .bval/.bvec")]
    NoBValues { series: String },

    #[error("{path}: {problem}")]
    Nifti { path: PathBuf, problem: String },

    #[error("{path}: {problem}")]
    Sidecar { path: PathBuf, problem: String },

    #[error("cannot write output in {path}: {reason}; choose another folder with -o or fix its permissions")]
    Output { path: PathBuf, reason: String },

    #[error("output folder {path} is not empty: choose another folder with -o, or add --force to replace its whole content with the new results")]
    OutputNotEmpty { path: PathBuf },

    #[error("{0}")]
    Invalid(String),

    #[error("GPU: {0}")]
    Gpu(String),

    #[error("{given:?} is not a usable destination: {problem}")]
    Destination { given: String, problem: String },

    #[error("{destination}: {sent} of {total} files delivered, so the results were NOT sent ({reasons}). Nothing was removed: the files are in {kept}; send them again when the destination is reachable")]
    NotDelivered {
        destination: String,
        sent: usize,
        total: usize,
        reasons: String,
        kept: String,
    },

    #[error("{peer}: {reason}")]
    Network { peer: String, reason: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn series(series: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Series {
            series: series.into(),
            problem: problem.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
