//! A whole study in, every map out.
// STUB: replaced by the real run (src/pipeline/study.rs is being written on another branch);
// this stand-in lets `paramap listen` be built and tested meanwhile.

/// What to do besides computing.
pub struct RunOptions {
    pub send: Option<crate::net::Destination>,
    pub stowrs: Option<String>,
}

/// What a run wrote.
pub struct RunSummary {
    pub outputs: Vec<std::path::PathBuf>,
    pub dicom_outputs: Vec<std::path::PathBuf>,
}

pub fn run_study(
    dir: &std::path::Path,
    out: &std::path::Path,
    opts: &RunOptions,
) -> crate::error::Result<RunSummary> {
    // STUB: replaced by the real run
    let _ = (dir, out, opts);
    Ok(RunSummary {
        outputs: vec![],
        dicom_outputs: vec![],
    })
}
