//! `paramap bids`: the BIDS App's arguments (the BIDS-Apps specification's positional
//! `bids_dir output_dir analysis_level` and `--participant-label`), the series commands it runs
//! (`paramap adc` / `paramap dsc` with `--adc-options` / `--dsc-options`), and what it prints.
//! The workflow (sessions, work folder and stamps, derivatives, group table) is
//! [`crate::pipeline::bids`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, ValueEnum};

use crate::error::{Error, Result};
use crate::pipeline::bids::{self as workflow, BidsOptions, SeriesCommands};
use crate::pipeline::BackendChoice;

pub use crate::pipeline::bids::BIDS_VERSION;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    /// Compute the maps of each session (one session failing does not stop the others)
    Participant,
    /// Gather the sessions' maps into OUTPUT_DIR/paramap/group_stats.tsv
    Group,
}

#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct BidsArgs {
    /// The BIDS dataset's root folder (with dataset_description.json)
    pub bids_dir: PathBuf,
    /// Where the derivatives go: OUTPUT_DIR/paramap/ (created if needed)
    pub output_dir: PathBuf,
    /// participant (per session) or group (across sessions)
    #[arg(value_enum)]
    pub analysis_level: Level,
    /// Subjects to process, with or without "sub-" (default: all)
    #[arg(long, num_args = 1.., value_name = "LABEL")]
    pub participant_label: Vec<String>,
    /// Sessions to process, with or without "ses-" (default: all)
    #[arg(long, num_args = 1.., value_name = "LABEL")]
    pub session_label: Vec<String>,
    /// CPU threads for the CPU paths and the compression (default: all cores)
    #[arg(long, visible_alias = "nthreads", alias = "threads", value_name = "N")]
    pub n_cpus: Option<usize>,
    /// Where to compute: auto, gpu, cpu (as for paramap adc/dsc)
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<BackendChoice>())]
    pub backend: BackendChoice,
    /// Work folder: each session's full paramap adc/dsc output (records, AIF plots) and the
    /// stamps a rerun resumes from (default: OUTPUT_DIR/paramap_work)
    #[arg(short = 'w', long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Options passed to paramap adc for every DWI series, as one string (e.g. "--method wls")
    #[arg(long, value_name = "OPTIONS", allow_hyphen_values = true)]
    pub adc_options: Option<String>,
    /// Options passed to paramap dsc for every DSC series, as one string (e.g. "--leakage bsw")
    #[arg(long, value_name = "OPTIONS", allow_hyphen_values = true)]
    pub dsc_options: Option<String>,
    /// group: ROI masks to measure every map in, as a BIDS derivatives folder:
    /// sub-<label>/[ses-<label>/]<datatype>/…_desc-<roi>_mask.nii[.gz] (in dwi/ or perf/: that
    /// datatype's maps; elsewhere, e.g. anat/: all), on any grid (placed on each map's by world
    /// geometry, nearest neighbour)
    #[arg(long, value_name = "DIR")]
    pub roi_dir: Option<PathBuf>,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

const AFTER_HELP: &str = "Inputs: sub-<label>/[ses-<label>/]dwi/*_dwi.nii[.gz] with .bval/.bvec beside it; sub-<label>/[ses-<label>/]perf/*_dsc.nii[.gz] (or perf/ or func/ *_bold.nii[.gz] whose sidecar has ContrastBolusIngredient) with RepetitionTime and EchoTime in seconds, from its sidecars by BIDS inheritance.\nOutputs: OUTPUT_DIR/paramap/dataset_description.json, sub-<label>/[ses-<label>/]{dwi,perf}/<source entities>[_desc-<desc>]_<suffix>.nii.gz with a JSON sidecar each (Units, Description, Sources, the full paramap record), and for group: group_stats.tsv (+ .json).\nExit status: 0 when every session was computed or skipped as done, 1 when any failed (each is reported with its file and field), 2 for a usage error, 130 after Ctrl-C/SIGTERM (the session in hand is finished first; the same command then does the rest).\n\nExamples:\n  paramap bids /data/bids /data/derivatives participant\n  paramap bids /data/bids /data/derivatives participant --participant-label 01 02 --session-label 1\n  paramap bids /data/bids /data/derivatives participant --backend cpu --dsc-options=--no-vof\n  paramap bids /data/bids /data/derivatives group";

pub fn run(args: BidsArgs) -> ExitCode {
    if let Some(n) = args.n_cpus {
        // Only the first call in a process sets the pool; this is it.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global();
    }
    let result = match args.analysis_level {
        Level::Participant => participant(&args),
        Level::Group => group(&args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => super::exit_for(&e),
    }
}

fn options(args: &BidsArgs) -> BidsOptions {
    BidsOptions {
        bids_dir: args.bids_dir.clone(),
        output_dir: args.output_dir.clone(),
        participant_label: args.participant_label.clone(),
        session_label: args.session_label.clone(),
        backend: args.backend,
        work_dir: args.work_dir.clone(),
        adc_options: args.adc_options.clone(),
        dsc_options: args.dsc_options.clone(),
        roi_dir: args.roi_dir.clone(),
    }
}

/// `paramap bids … participant`: the exit status: 0 when no session failed, 1 when one did,
/// 130 when a signal stopped the run (the sessions finished before it keep their stamps).
fn participant(args: &BidsArgs) -> Result<u8> {
    let say = |s: &str| {
        if !args.quiet {
            eprintln!("{s}");
        }
    };
    let summary = workflow::participant(&options(args), args, &say, &|s| eprintln!("{s}"))?;
    let failed = &summary.failed;
    say(&format!(
        "{} session(s) computed, {} skipped as done, {} failed{}",
        summary.computed,
        summary.skipped,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        }
    ));
    if summary.interrupted {
        eprintln!("error: interrupted; the same command finishes the sessions not done yet");
        return Ok(crate::interrupt::EXIT_INTERRUPTED);
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

/// `paramap bids … group`: [`workflow::group`], and a line saying what it wrote.
fn group(args: &BidsArgs) -> Result<()> {
    let summary = workflow::group(&options(args))?;
    if !args.quiet {
        eprintln!(
            "wrote {} ({} rows from {} series)",
            summary.table.display(),
            summary.rows,
            summary.series
        );
    }
    Ok(())
}

/// A CLI args struct parsed as its subcommand would be.
#[derive(Parser)]
struct AdcCommand {
    #[command(flatten)]
    args: super::adc::AdcArgs,
}

#[derive(Parser)]
struct DscCommand {
    #[command(flatten)]
    args: super::dsc::DscArgs,
}

fn split_options(text: &Option<String>) -> Vec<String> {
    text.as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn base_args(input: &Path, out: &Path, args: &BidsArgs) -> Vec<String> {
    vec![
        "paramap".into(),
        input.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--force".into(),
        "--quiet".into(),
        "--backend".into(),
        args.backend.name().into(),
    ]
}

fn parse_err(which: &str, e: clap::Error) -> Error {
    Error::Invalid(format!(
        "--{which}-options: {}",
        e.render().to_string().trim()
    ))
}

/// The series commands as `paramap adc` / `paramap dsc` run them, with the options of the
/// `paramap bids` command line.
impl SeriesCommands for BidsArgs {
    fn adc(&self, input: &Path, out: &Path) -> Result<()> {
        let mut argv = base_args(input, out, self);
        argv.extend(split_options(&self.adc_options));
        let a = AdcCommand::try_parse_from(argv)
            .map_err(|e| parse_err("adc", e))?
            .args;
        super::adc::run(a)
    }

    fn dsc(&self, input: &Path, out: &Path, te_s: Option<f64>, dt_s: Option<f64>) -> Result<()> {
        let mut argv = base_args(input, out, self);
        argv.extend(split_options(&self.dsc_options));
        let mut a = DscCommand::try_parse_from(argv)
            .map_err(|e| parse_err("dsc", e))?
            .args;
        if let Some(te) = te_s {
            if a.te.is_none() {
                a.te = Some(te * 1000.0);
            }
        }
        if let Some(tr) = dt_s {
            if a.dt.is_none() {
                a.dt = Some(tr);
            }
        }
        let (o, r) = (a.output.clone(), a.record.clone());
        super::claimed(&o, &r, "dsc.json", || super::dsc::run(a))
    }
}
