//! `paramap bids`: a BIDS App (Gorgolewski et al. 2017, "BIDS apps", PLoS Comput Biol 13:
//! e1005209; the BIDS-Apps specification's positional `bids_dir output_dir analysis_level` and
//! `--participant-label`). `participant` computes every DWI and DSC series of each session with
//! the same code as `paramap adc`/`paramap dsc` and writes BIDS derivatives (BIDS 1.10,
//! "Derivatives") into `OUTPUT_DIR/paramap/`; `group` gathers them into one table.
//!
//! Each session is computed into the work folder, then its derivatives are moved into place and
//! a stamp (`WORK/sub-<label>/[ses-<label>/]paramap_done.json`: version, options, inputs and
//! outputs) is written last. A rerun skips a session whose stamp matches and whose outputs all
//! exist, and says so; a run that was stopped finishes the sessions that have no stamp. A
//! failing session is reported with its file and field and the others go on.
//!
//! The workflow is here; `cli::bids` parses the arguments, runs the series commands
//! ([`SeriesCommands`]) and prints. [`dataset`] reads the dataset's sessions, [`session`]
//! computes one and moves its derivatives into place, [`derivatives`] writes the derivatives'
//! own files, [`group`] the group table.

mod dataset;
mod derivatives;
mod group;
mod session;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::pipeline::BackendChoice;

use dataset::{check_dataset, input_list, sessions};
use derivatives::write_dataset_files;
use session::process_session;

pub use derivatives::BIDS_VERSION;
pub use group::{group, GroupSummary};

/// What `paramap bids` is asked to do (the BIDS-Apps arguments, less the analysis level and
/// what only changes the printing).
#[derive(Debug, Clone)]
pub struct BidsOptions {
    /// The BIDS dataset's root folder (with dataset_description.json).
    pub bids_dir: PathBuf,
    /// Where the derivatives go: `OUTPUT_DIR/paramap/`.
    pub output_dir: PathBuf,
    /// Subjects to process, with or without "sub-" (empty: all).
    pub participant_label: Vec<String>,
    /// Sessions to process, with or without "ses-" (empty: all).
    pub session_label: Vec<String>,
    pub backend: BackendChoice,
    /// Work folder (None: `OUTPUT_DIR/paramap_work`).
    pub work_dir: Option<PathBuf>,
    /// Options of `paramap adc` / `paramap dsc` for every series, as one string each.
    pub adc_options: Option<String>,
    pub dsc_options: Option<String>,
    /// group: ROI masks as a BIDS derivatives folder.
    pub roi_dir: Option<PathBuf>,
}

/// How one series is computed: by `paramap adc` / `paramap dsc` with the user's
/// `--adc-options` / `--dsc-options`, which the CLI owns (parsing them is the CLI's).
pub trait SeriesCommands {
    /// Computes the DWI series `input` into the folder `out` (replaced) as `paramap adc`.
    fn adc(&self, input: &Path, out: &Path) -> Result<()>;
    /// Computes the DSC series `input` into the folder `out` (replaced) as `paramap dsc`,
    /// writing `dsc.json` there. `te_s` and `dt_s`: the echo time and sampling interval (s)
    /// that BIDS inheritance gives where the file's own sidecar lacks them; the options' own
    /// `--te` / `--dt` win.
    fn dsc(&self, input: &Path, out: &Path, te_s: Option<f64>, dt_s: Option<f64>) -> Result<()>;
}

/// What [`participant`] did.
#[derive(Debug, Clone)]
pub struct ParticipantSummary {
    /// Sessions computed now.
    pub computed: usize,
    /// Sessions skipped as done.
    pub skipped: usize,
    /// Sessions that failed, by label ("(interrupted)" when a stop request ended the run).
    pub failed: Vec<String>,
    /// A stop request (Ctrl-C, SIGTERM) came.
    pub interrupted: bool,
}

/// `paramap bids … participant`: every selected session computed, skipped as done (its stamp
/// matches the options and inputs and its outputs exist), or failed, one after another; a
/// failing session is handed to `failure` (with its file and field) and the others go on. A
/// stop request (Ctrl-C, SIGTERM) ends the run between sessions; those finished keep their
/// stamps. `progress` gets a line per session.
///
/// Errors (the run does not start): an invalid dataset or label, an output folder inside the
/// dataset (outside its derivatives/), the derivatives' own files not writable, a stamp not
/// writable.
pub fn participant(
    opts: &BidsOptions,
    commands: &dyn SeriesCommands,
    progress: &dyn Fn(&str),
    failure: &dyn Fn(&str),
) -> Result<ParticipantSummary> {
    let root = check_dataset(&opts.bids_dir)?;
    let list = sessions(&root, opts)?;
    std::fs::create_dir_all(&opts.output_dir).map_err(|e| Error::io(&opts.output_dir, e))?;
    let out = opts
        .output_dir
        .canonicalize()
        .map_err(|e| Error::io(&opts.output_dir, e))?;
    if out.starts_with(&root) && !out.starts_with(root.join("derivatives")) {
        return Err(Error::Invalid(format!(
            "OUTPUT_DIR {} lies inside the BIDS dataset: use a folder outside it, or its derivatives/ folder",
            out.display()
        )));
    }
    let deriv = deriv_root(&out);
    let work = match &opts.work_dir {
        Some(w) => w.clone(),
        None => out.join("paramap_work"),
    };
    write_dataset_files(&deriv, &root, &command_line(opts, &root, &out))?;
    let say = |s: String| progress(&s);
    let (mut done, mut skipped, mut failed) = (0usize, 0usize, Vec::<String>::new());
    let fp = fingerprint(opts);
    for s in &list {
        if crate::interrupt::requested() {
            say(
                "stopped: the sessions not done yet are finished by running the same command again"
                    .into(),
            );
            failed.push("(interrupted)".into());
            break;
        }
        if s.dwi.is_empty() && s.dsc.is_empty() {
            say(format!(
                "{}: no DWI (dwi/*_dwi.nii[.gz]) or DSC (perf/*_dsc.nii[.gz]) series; nothing to do",
                s.label()
            ));
            continue;
        }
        let stamp = work.join(&s.rel).join("paramap_done.json");
        let inputs = match input_list(&root, s) {
            Ok(i) => i,
            Err(e) => {
                failure(&format!("{}: FAILED: {e}", s.label()));
                failed.push(s.label());
                continue;
            }
        };
        if let Some(prev) = up_to_date(&stamp, &fp, &inputs, &deriv) {
            say(format!(
                "{}: already done with paramap {} and the same options ({} files, stamp {}); skipped",
                s.label(),
                env!("CARGO_PKG_VERSION"),
                prev,
                stamp.display()
            ));
            skipped += 1;
            continue;
        }
        let _ = std::fs::remove_file(&stamp);
        say(format!(
            "{}: computing {} DWI and {} DSC series",
            s.label(),
            s.dwi.len(),
            s.dsc.len()
        ));
        let cmd = command_line(opts, &root, &out);
        match process_session(commands, &root, &deriv, &work, s, &cmd) {
            Ok(outputs) => {
                let text = serde_json::to_string_pretty(&json!({
                    "options": fp,
                    "inputs": inputs,
                    "outputs": outputs,
                }))
                .map_err(|e| Error::Invalid(e.to_string()))?;
                crate::io::output::write_file_atomic(&stamp, &text)?;
                say(format!(
                    "{}: wrote {} files to {}",
                    s.label(),
                    outputs.len(),
                    deriv.join(&s.rel).display()
                ));
                done += 1;
            }
            Err(e) => {
                failure(&format!("{}: FAILED: {e}", s.label()));
                failed.push(s.label());
            }
        }
    }
    Ok(ParticipantSummary {
        computed: done,
        skipped,
        failed,
        interrupted: crate::interrupt::requested(),
    })
}

/// The options that change the maps: a session done with other ones is done again.
fn fingerprint(opts: &BidsOptions) -> Value {
    json!({
        "paramap": env!("CARGO_PKG_VERSION"),
        "backend": opts.backend.name(),
        "adc_options": opts.adc_options.clone().unwrap_or_default(),
        "dsc_options": opts.dsc_options.clone().unwrap_or_default(),
    })
}

/// The command that made the derivatives, without what does not change them (labels, threads,
/// work folder).
fn command_line(opts: &BidsOptions, root: &Path, out: &Path) -> String {
    let mut c = format!(
        "paramap bids {} {} participant --backend {}",
        root.display(),
        out.display(),
        opts.backend.name()
    );
    if let Some(o) = &opts.adc_options {
        c.push_str(&format!(" --adc-options '{o}'"));
    }
    if let Some(o) = &opts.dsc_options {
        c.push_str(&format!(" --dsc-options '{o}'"));
    }
    c
}

/// The derivatives' root: `OUTPUT_DIR/paramap`.
fn deriv_root(out: &Path) -> PathBuf {
    out.join("paramap")
}

/// The number of outputs when the stamp says the session was done with these options and
/// inputs and all its outputs are there; None otherwise.
fn up_to_date(stamp: &Path, fp: &Value, inputs: &[Value], deriv: &Path) -> Option<usize> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(stamp).ok()?).ok()?;
    if v.get("options")? != fp || v.get("inputs")?.as_array()? != inputs {
        return None;
    }
    let outputs = v.get("outputs")?.as_array()?;
    outputs
        .iter()
        .all(|o| o.as_str().is_some_and(|p| deriv.join(p).is_file()))
        .then_some(outputs.len())
}
