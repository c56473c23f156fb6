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
//! failing session is reported with its file and field and the others go on; the exit status is
//! then 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, ValueEnum};
use serde_json::{json, Map as JsonMap, Value};

use crate::error::{Error, Result};
use crate::io::bids::{self, BidsName};
use crate::maps::{Kind, Map, ADC_MAPS, DSC_MAPS};
use crate::pipeline::BackendChoice;

/// BIDS version the derivatives follow.
pub const BIDS_VERSION: &str = "1.10.0";

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

/// One session's worth of inputs.
#[derive(Debug, Clone)]
struct Session {
    subject: String,
    session: Option<String>,
    /// `sub-01/ses-1` (or `sub-01`).
    rel: PathBuf,
    dwi: Vec<PathBuf>,
    dsc: Vec<PathBuf>,
}

impl Session {
    fn label(&self) -> String {
        match &self.session {
            Some(s) => format!("sub-{} ses-{s}", self.subject),
            None => format!("sub-{}", self.subject),
        }
    }
}

fn strip<'a>(label: &'a str, prefix: &str) -> &'a str {
    label.strip_prefix(prefix).unwrap_or(label)
}

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
fn sessions(root: &Path, args: &BidsArgs) -> Result<Vec<Session>> {
    let subjects = dirs_with_prefix(root, "sub-")?;
    let wanted: Vec<&str> = args
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
    let wanted_ses: Vec<&str> = args
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

fn check_dataset(root: &Path) -> Result<PathBuf> {
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

/// The options that change the maps: a session done with other ones is done again.
fn fingerprint(args: &BidsArgs) -> Value {
    json!({
        "paramap": env!("CARGO_PKG_VERSION"),
        "backend": backend_name(args.backend),
        "adc_options": args.adc_options.clone().unwrap_or_default(),
        "dsc_options": args.dsc_options.clone().unwrap_or_default(),
    })
}

/// The command that made the derivatives, without what does not change them (labels, threads,
/// work folder).
fn command_line(args: &BidsArgs, root: &Path, out: &Path) -> String {
    let mut c = format!(
        "paramap bids {} {} participant --backend {}",
        root.display(),
        out.display(),
        backend_name(args.backend)
    );
    if let Some(o) = &args.adc_options {
        c.push_str(&format!(" --adc-options '{o}'"));
    }
    if let Some(o) = &args.dsc_options {
        c.push_str(&format!(" --dsc-options '{o}'"));
    }
    c
}

fn backend_name(b: BackendChoice) -> &'static str {
    match b {
        BackendChoice::Auto => "auto",
        BackendChoice::Gpu => "gpu",
        BackendChoice::Cpu => "cpu",
    }
}

fn deriv_root(out: &Path) -> PathBuf {
    out.join("paramap")
}

/// `paramap bids … participant`: the exit status: 0 when no session failed, 1 when one did,
/// 130 when a signal stopped the run (the sessions finished before it keep their stamps).
fn participant(args: &BidsArgs) -> Result<u8> {
    let root = check_dataset(&args.bids_dir)?;
    let list = sessions(&root, args)?;
    std::fs::create_dir_all(&args.output_dir).map_err(|e| Error::io(&args.output_dir, e))?;
    let out = args
        .output_dir
        .canonicalize()
        .map_err(|e| Error::io(&args.output_dir, e))?;
    if out.starts_with(&root) && !out.starts_with(root.join("derivatives")) {
        return Err(Error::Invalid(format!(
            "OUTPUT_DIR {} lies inside the BIDS dataset: use a folder outside it, or its derivatives/ folder",
            out.display()
        )));
    }
    let deriv = deriv_root(&out);
    let work = match &args.work_dir {
        Some(w) => w.clone(),
        None => out.join("paramap_work"),
    };
    write_dataset_files(&deriv, &root, &command_line(args, &root, &out))?;
    let say = |s: String| {
        if !args.quiet {
            eprintln!("{s}");
        }
    };
    let (mut done, mut skipped, mut failed) = (0usize, 0usize, Vec::<String>::new());
    let fp = fingerprint(args);
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
                eprintln!("{}: FAILED: {e}", s.label());
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
        let cmd = command_line(args, &root, &out);
        match process_session(args, &root, &deriv, &work, s, &cmd) {
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
                eprintln!("{}: FAILED: {e}", s.label());
                failed.push(s.label());
            }
        }
    }
    say(format!(
        "{} session(s) computed, {} skipped as done, {} failed{}",
        done,
        skipped,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        }
    ));
    if crate::interrupt::requested() {
        eprintln!("error: interrupted; the same command finishes the sessions not done yet");
        return Ok(crate::interrupt::EXIT_INTERRUPTED);
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

/// Every input file of a session (images, side files and the sidecars inherited) with its size
/// and modification time: a changed input makes the session be done again.
fn input_list(root: &Path, s: &Session) -> Result<Vec<Value>> {
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
        backend_name(args.backend).into(),
    ]
}

fn parse_err(which: &str, e: clap::Error) -> Error {
    Error::Invalid(format!(
        "--{which}-options: {}",
        e.render().to_string().trim()
    ))
}

/// A number of a sidecar field in seconds, with an error naming the file and the field.
fn seconds(
    meta: &JsonMap<String, Value>,
    field: &str,
    what: &str,
    example: &str,
    largest: f64,
    file: &Path,
    from: &[PathBuf],
) -> Result<f64> {
    let whence = if from.is_empty() {
        "no sidecar applies to it".to_string()
    } else {
        format!(
            "sidecars read by BIDS inheritance: {}",
            from.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let side = bids::sibling(file, "json");
    match meta.get(field) {
        None => Err(Error::Sidecar {
            path: side,
            problem: format!(
                "has no {field} ({what} in seconds, e.g. {example}), which DSC needs: add it to this sidecar or one it inherits from ({whence})"
            ),
        }),
        Some(v) => match v.as_f64() {
            Some(x) if x > 0.0 && x <= largest => Ok(x),
            Some(x) if x > largest => Err(Error::Sidecar {
                path: side,
                problem: format!(
                    "{field} {x} is not in seconds (BIDS gives times in s): write e.g. {example} ({whence})"
                ),
            }),
            _ => Err(Error::Sidecar {
                path: side,
                problem: format!("{field} {v} is not a positive number of seconds ({whence})"),
            }),
        },
    }
}

/// Computes a session's series into the work folder as `paramap adc`/`dsc` do, then moves its
/// derivatives into place; returns them (relative to the derivatives' root).
fn process_session(
    args: &BidsArgs,
    root: &Path,
    deriv: &Path,
    work: &Path,
    s: &Session,
    cmd: &str,
) -> Result<Vec<String>> {
    // (source file, datatype folder, work folder, record name, maps)
    let mut made: Vec<(PathBuf, &str, PathBuf, &str, &[Map])> = vec![];
    let name_of = |p: &Path| -> Result<BidsName> {
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        BidsName::parse(&n).ok_or_else(|| Error::Invalid(format!("{}: not a BIDS name", n)))
    };
    // Every input checked before anything is computed: a session fails whole, early.
    let timing: Vec<(f64, f64)> = s
        .dsc
        .iter()
        .map(|p| {
            let (meta, from) = bids::inherited(root, p)?;
            let te = seconds(&meta, "EchoTime", "the echo time", "0.03", 1.0, p, &from)?;
            let tr = seconds(
                &meta,
                "RepetitionTime",
                "the time between two volumes",
                "1.5",
                60.0,
                p,
                &from,
            )?;
            Ok((te, tr))
        })
        .collect::<Result<_>>()?;
    for p in &s.dwi {
        for ext in ["bval", "bvec"] {
            let side = bids::sibling(p, ext);
            if !side.is_file() {
                return Err(Error::Sidecar {
                    path: side,
                    problem: format!(
                        "is missing: a BIDS DWI series has its .bval and .bvec beside {} (as dcm2niix writes them)",
                        p.display()
                    ),
                });
            }
        }
        let name = name_of(p)?;
        let dir = work.join(&s.rel).join(format!("{}_dwi", name.prefix()));
        let mut argv = base_args(p, &dir, args);
        argv.extend(split_options(&args.adc_options));
        let a = AdcCommand::try_parse_from(argv)
            .map_err(|e| parse_err("adc", e))?
            .args;
        super::adc::run(a)?;
        made.push((p.clone(), "dwi", dir, "adc.json", ADC_MAPS));
    }
    for (p, (te, tr)) in s.dsc.iter().zip(timing) {
        // The sidecar beside the file is what `paramap dsc FILE` reads; what it lacks comes from
        // inheritance, given as --te/--dt.
        let beside = bids::sibling(p, "json");
        let own = if beside.is_file() {
            bids::read(&beside)?
        } else {
            bids::Sidecar::default()
        };
        let name = name_of(p)?;
        let dir = work
            .join(&s.rel)
            .join(format!("{}_{}", name.prefix(), name.suffix));
        let mut argv = base_args(p, &dir, args);
        argv.extend(split_options(&args.dsc_options));
        let mut a = DscCommand::try_parse_from(argv)
            .map_err(|e| parse_err("dsc", e))?
            .args;
        if own.echo_time_s.is_none() && a.te.is_none() {
            a.te = Some(te * 1000.0);
        }
        if own.repetition_time_s.is_none() && a.dt.is_none() {
            a.dt = Some(tr);
        }
        let (o, r) = (a.output.clone(), a.record.clone());
        super::claimed(&o, &r, "dsc.json", || super::dsc::run(a))?;
        made.push((p.clone(), "perf", dir, "dsc.json", DSC_MAPS));
    }
    // Stage every derivative of the session, then move them into place.
    let staging = deriv.join(format!(
        ".paramap-staging-{}",
        s.rel.display().to_string().replace('/', "_")
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    crate::io::output::register_staging(&staging);
    let mut moves: Vec<(PathBuf, PathBuf)> = vec![];
    for (source, datatype, dir, record_name, maps) in &made {
        let name = name_of(source)?;
        let record_path = dir.join(record_name);
        let mut record: Value = serde_json::from_str(
            &std::fs::read_to_string(&record_path).map_err(|e| Error::io(&record_path, e))?,
        )
        .map_err(|e| Error::Invalid(format!("{}: {e}", record_path.display())))?;
        // Every choice, not the clock nor the work folder's file names: the same inputs and
        // options give the same sidecars, byte for byte.
        if let Some(r) = record.as_object_mut() {
            for k in ["timing_s", "stages_s", "total_s", "outputs"] {
                r.remove(k);
            }
        }
        let rel_source = source.strip_prefix(root).unwrap_or(source);
        for m in maps.iter() {
            let spec = m.spec();
            let (Some(nii), Some(side)) = (
                m.bids_name(&name.prefix(), ".nii.gz"),
                m.bids_name(&name.prefix(), ".json"),
            ) else {
                continue;
            };
            let from = dir.join(format!("{}.nii.gz", spec.stem));
            if !from.is_file() {
                continue;
            }
            let dest = s.rel.join(datatype);
            let stage = staging.join(datatype);
            std::fs::create_dir_all(&stage).map_err(|e| Error::io(&stage, e))?;
            let staged = stage.join(&nii);
            std::fs::copy(&from, &staged).map_err(|e| Error::io(&from, e))?;
            let source_uri = format!("bids:raw:{}", rel_source.display());
            let mut meta = json!({
                "Description": spec.description,
                "Sources": [source_uri],
                // On the source's own grid (no space- entity): BIDS 1.10 "Spatial references".
                "SpatialReference": source_uri,
                "SkullStripped": false,
                "paramap": {
                    "Map": spec.stem,
                    "Title": spec.title,
                    "Command": cmd,
                    "Record": record,
                }
            });
            match spec.kind {
                Kind::Mask if matches!(m, Map::BrainMask | Map::AdcMask) => {
                    meta["Type"] = json!("Brain")
                }
                Kind::Mask => meta["Type"] = json!("ROI"),
                _ => meta["Units"] = json!(spec.unit),
            }
            let text =
                serde_json::to_string_pretty(&meta).map_err(|e| Error::Invalid(e.to_string()))?;
            std::fs::write(stage.join(&side), text + "\n")
                .map_err(|e| Error::io(stage.join(&side), e))?;
            moves.push((staged, dest.join(&nii)));
            moves.push((stage.join(&side), dest.join(&side)));
        }
    }
    let mut outputs = vec![];
    for (from, rel) in &moves {
        let to = deriv.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::rename(from, &to).map_err(|e| Error::io(&to, e))?;
        outputs.push(rel.display().to_string());
    }
    crate::io::output::unregister_staging(&staging);
    let _ = std::fs::remove_dir_all(&staging);
    outputs.sort();
    Ok(outputs)
}

/// (datatype, suffix) pairs that the BIDS schema names for derivatives; the others are listed
/// in the derivatives' `.bidsignore`, as the BIDS validator asks for files "not yet covered by
/// the specification".
const IN_SPECIFICATION: &[(&str, &str)] = &[("dwi", "ADC"), ("dwi", "S0map"), ("dwi", "mask")];

fn bidsignore() -> String {
    let mut lines = vec![
        "# paramap's maps that the BIDS specification does not yet name (DSC perfusion derivatives)".to_string(),
        "group_stats.tsv".to_string(),
        "group_stats.json".to_string(),
    ];
    for (datatype, maps) in [("dwi", ADC_MAPS), ("perf", DSC_MAPS)] {
        for m in maps.iter() {
            let Some((desc, suffix)) = m.spec().bids else {
                continue;
            };
            if IN_SPECIFICATION.contains(&(datatype, suffix)) {
                continue;
            }
            let pattern = match desc {
                "" => format!("**/{datatype}/*_{suffix}.*"),
                d => format!("**/{datatype}/*_desc-{d}_{suffix}.*"),
            };
            if !lines.contains(&pattern) {
                lines.push(pattern);
            }
        }
    }
    lines.join("\n") + "\n"
}

/// dataset_description.json (BIDS 1.10 "Derived dataset and pipeline description"), README and
/// .bidsignore of the derivatives; rewritten atomically, the same text for the same options.
fn write_dataset_files(deriv: &Path, root: &Path, cmd: &str) -> Result<()> {
    std::fs::create_dir_all(deriv).map_err(|e| Error::io(deriv, e))?;
    let description = json!({
        "Name": "paramap: DSC perfusion and ADC maps",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "paramap",
            "Version": env!("CARGO_PKG_VERSION"),
            "Description": format!("Quantitative DSC perfusion and ADC maps; command: {cmd}"),
        }],
        "SourceDatasets": [{"URL": format!("file://{}", root.display())}],
        "DatasetLinks": {"raw": format!("file://{}", root.display())},
    });
    let text =
        serde_json::to_string_pretty(&description).map_err(|e| Error::Invalid(e.to_string()))?;
    crate::io::output::write_file_atomic(&deriv.join("dataset_description.json"), &(text + "\n"))?;
    crate::io::output::write_file_atomic(
        &deriv.join("README"),
        "Maps computed by paramap (`paramap bids`) from the dataset named in dataset_description.json.\nEach map has a JSON sidecar with its units, description, source and paramap's full record of the choices made.\n",
    )?;
    crate::io::output::write_file_atomic(&deriv.join(".bidsignore"), &bidsignore())?;
    Ok(())
}

fn fmt(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6e}")
    } else {
        "n/a".into()
    }
}

/// The ROI masks of `--roi-dir` for a session's maps of `datatype`: (desc label, file).
fn rois(dir: &Path, sub: &str, ses: &str, datatype: &str) -> Vec<(String, PathBuf)> {
    let mut base = dir.join(format!("sub-{sub}"));
    if !ses.is_empty() {
        base = base.join(format!("ses-{ses}"));
    }
    let mut out = vec![];
    for e in walkdir::WalkDir::new(&base)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(n) = BidsName::parse(&name) else {
            continue;
        };
        let folder = e
            .path()
            .parent()
            .and_then(|p| p.file_name())
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let applies = folder == datatype || !["dwi", "perf"].contains(&folder.as_str());
        if n.suffix == "mask"
            && (n.extension == ".nii.gz" || n.extension == ".nii")
            && n.get("sub") == Some(sub)
            && n.get("ses").unwrap_or("") == ses
            && applies
        {
            if let Some(label) = n.get("desc") {
                out.push((label.to_string(), e.path().to_path_buf()));
            }
        }
    }
    out
}

/// (subject, session, datatype, source entities) of a series' derivatives.
type SeriesKey = (String, String, String, String);

/// `paramap bids … group`: one row per session, source series, region and map (n, mean,
/// median, SD, 10th and 90th percentiles by [`crate::models::roi::roi_summary`]) in
/// `OUTPUT_DIR/paramap/group_stats.tsv`, with a JSON sidecar describing its columns (BIDS 1.10
/// "Tabular files"). Regions are the masks the session's maps were computed in: `brain` (the
/// fitted voxels) and, for DSC, `whitematter` (the normalisation reference).
fn group(args: &BidsArgs) -> Result<()> {
    check_dataset(&args.bids_dir)?;
    let deriv = deriv_root(&args.output_dir);
    if !deriv.join("dataset_description.json").is_file() {
        return Err(Error::Invalid(format!(
            "{} holds no paramap derivatives: run `paramap bids {} {} participant` first",
            deriv.display(),
            args.bids_dir.display(),
            args.output_dir.display()
        )));
    }
    let mut rows: Vec<String> = vec![[
        "participant_id",
        "session_id",
        "source",
        "datatype",
        "region",
        "map",
        "units",
        "voxels",
        "nan_voxels",
        "mean",
        "median",
        "sd",
        "p10",
        "p90",
    ]
    .join("\t")];
    // Files by (subject, session, datatype, source prefix).
    let mut groups: BTreeMap<SeriesKey, Vec<(BidsName, PathBuf)>> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&deriv).sort_by_file_name() {
        let entry = entry.map_err(|e| Error::Invalid(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(n) = BidsName::parse(&name) else {
            continue;
        };
        if n.extension != ".nii.gz" {
            continue;
        }
        let datatype = entry
            .path()
            .parent()
            .and_then(|p| p.file_name())
            .map(|d| d.to_string_lossy().to_string())
            .unwrap_or_default();
        let sub = n.get("sub").unwrap_or("").to_string();
        if !args.participant_label.is_empty()
            && !args
                .participant_label
                .iter()
                .any(|l| strip(l, "sub-") == sub)
        {
            continue;
        }
        let ses = n.get("ses").unwrap_or("").to_string();
        let source: Vec<String> = n
            .entities
            .iter()
            .filter(|(k, _)| k != "desc")
            .map(|(k, v)| format!("{k}-{v}"))
            .collect();
        groups
            .entry((sub, ses, datatype, source.join("_")))
            .or_default()
            .push((n, entry.path().to_path_buf()));
    }
    let find = |maps: &[Map], n: &BidsName| -> Option<Map> {
        maps.iter().copied().find(|m| {
            m.spec()
                .bids
                .is_some_and(|(d, s)| s == n.suffix && n.get("desc").unwrap_or("") == d)
        })
    };
    let read3 = |p: &Path| -> Result<ndarray::Array3<f32>> {
        let (a, _, _) = crate::io::nifti::read(p)?;
        Ok(a.index_axis(ndarray::Axis(0), 0).to_owned())
    };
    let mut sessions = 0;
    for ((sub, ses, datatype, source), files) in &groups {
        let (maps, regions): (&[Map], Vec<(&str, Map)>) = match datatype.as_str() {
            "dwi" => (ADC_MAPS, vec![("brain", Map::AdcMask)]),
            "perf" => (
                DSC_MAPS,
                vec![
                    ("brain", Map::BrainMask),
                    ("whitematter", Map::ReferenceMask),
                ],
            ),
            _ => continue,
        };
        sessions += 1;
        // (region, mask file, whether it is one of the maps' own masks)
        let mut regions_files: Vec<(String, PathBuf, bool)> = vec![];
        for (label, m) in &regions {
            if let Some((_, p)) = files.iter().find(|(n, _)| find(maps, n) == Some(*m)) {
                regions_files.push((label.to_string(), p.clone(), true));
            }
        }
        if let Some(dir) = &args.roi_dir {
            for (label, p) in rois(dir, sub, ses, datatype) {
                regions_files.push((label, p, false));
            }
        }
        for (n, p) in files {
            let Some(m) = find(maps, n) else { continue };
            if m.spec().kind != Kind::Map {
                continue;
            }
            let (data, g, _) = crate::io::nifti::read(p)?;
            let map = data.index_axis(ndarray::Axis(0), 0).to_owned();
            let label = p.display().to_string();
            for (region, mask_path, own) in &regions_files {
                let mask = if *own {
                    read3(mask_path)?.mapv(|x| x != 0.0)
                } else {
                    crate::report::reading::load_roi_on_grid(
                        mask_path,
                        crate::volume::resample::GridRef::new(&g, None, &label),
                    )?
                    .mask
                };
                let r = crate::models::roi::roi_summary(map.view(), mask.view())?;
                rows.push(
                    [
                        format!("sub-{sub}"),
                        if ses.is_empty() {
                            "n/a".into()
                        } else {
                            format!("ses-{ses}")
                        },
                        source.clone(),
                        datatype.clone(),
                        region.clone(),
                        m.bids_name("", "")
                            .unwrap_or_default()
                            .trim_start_matches('_')
                            .to_string(),
                        m.spec().unit.to_string(),
                        r.n.to_string(),
                        r.excluded.to_string(),
                        fmt(r.mean),
                        fmt(r.median),
                        fmt(r.sd),
                        fmt(r.p10),
                        fmt(r.p90),
                    ]
                    .join("\t"),
                );
            }
        }
    }
    let tsv = deriv.join("group_stats.tsv");
    crate::io::output::write_file_atomic(&tsv, &(rows.join("\n") + "\n"))?;
    let columns = json!({
        "participant_id": {"Description": "subject"},
        "session_id": {"Description": "session (n/a without sessions)"},
        "source": {"Description": "entities of the source series (its file name without suffix)"},
        "datatype": {"Description": "dwi (ADC) or perf (DSC)"},
        "region": {"Description": "brain: the voxels the maps were computed in (desc-brain_mask); whitematter: the DSC normalisation reference (desc-whitematter_mask); any other: the desc- label of an ROI of --roi-dir"},
        "map": {"Description": "the map, as [desc-<desc>_]<suffix> of its file name"},
        "units": {"Description": "units of the map (paramap's registry of maps, docs/methods.md §6)"},
        "voxels": {"Description": "voxels of the region with a finite value (the statistics are over these)"},
        "nan_voxels": {"Description": "voxels of the region left out: NaN where a voxel could not be fitted"},
        "mean": {"Description": "mean over those voxels"},
        "median": {"Description": "median over those voxels"},
        "sd": {"Description": "sample standard deviation (n - 1)"},
        "p10": {"Description": "10th percentile (linear interpolation between order statistics, Hyndman and Fan 1996 definition 7)"},
        "p90": {"Description": "90th percentile (as p10)"},
    });
    crate::io::output::write_file_atomic(
        &deriv.join("group_stats.json"),
        &(serde_json::to_string_pretty(&columns).map_err(|e| Error::Invalid(e.to_string()))?
            + "\n"),
    )?;
    if !args.quiet {
        eprintln!(
            "wrote {} ({} rows from {} series)",
            tsv.display(),
            rows.len() - 1,
            sessions
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidsignore_lists_what_the_specification_lacks_only() {
        let text = bidsignore();
        assert!(text.contains("**/perf/*_desc-leakagecorrected_rCBV.*"));
        assert!(!text.contains("*_ADC.*"));
        assert!(!text.contains("**/dwi/*_desc-brain_mask.*"));
        assert!(text.contains("**/perf/*_desc-brain_mask.*"));
    }
}
