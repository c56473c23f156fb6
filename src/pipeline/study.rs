//! `paramap run`'s engine: a study folder in, every DWI and DSC series recognised and processed
//! with the defaults, one folder of results per series, and a record of what was done, what
//! was skipped and why. A series that fails does not stop the others; nothing half-written is
//! ever left in the output folder (each series is staged under a hidden name and renamed into
//! place when complete).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::dicom::{self, ScannedSeries};
use crate::pipeline::adc::{self, AdcOptions};
use crate::pipeline::dsc::{self, DscOptions};
use crate::pipeline::input::{self, DscInputOptions};
use crate::pipeline::{median_in, BackendChoice, Engine};

/// The kinds of series `run` processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Recognised {
    Dwi,
    Dsc,
}

impl std::fmt::Display for Recognised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Recognised::Dwi => "DWI",
            Recognised::Dsc => "DSC",
        })
    }
}

/// Echo times below this are T1-weighted (dynamic contrast-enhanced, DCE) rather than the
/// T2*-weighted gradient echo of DSC (TE 20–50 ms at 1.5–3 T; Boxerman 2020 consensus).
pub const DSC_MIN_TE_MS: f64 = 15.0;
/// DSC needs the baseline, the first pass and the recirculation: at least this many time
/// points per slice (the consensus protocol acquires 60–120).
pub const DSC_MIN_TIME_POINTS: usize = 20;
/// Series descriptions that name a BOLD fMRI time series, which looks like DSC by timing alone.
const FMRI_WORDS: [&str; 4] = ["BOLD", "FMRI", "RESTING", "FUNC"];
/// ImageType values of a derived map (the scanner's own ADC/FA/perfusion maps, or ours).
const MAP_WORDS: [&str; 12] = [
    "ADC", "EADC", "FA", "EXP", "CBV", "CBF", "MTT", "TTP", "TMAX", "PARAMAP", "MAP", "FLOAT",
];

/// What `run` made of one series, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognition {
    pub kind: Option<Recognised>,
    pub reason: String,
}

/// The recognition rules, applied in order (README "paramap run" states them too):
/// 1. ImageType DERIVED with a map word (ADC, FA, CBV, …), or a Parametric Map: a derived map,
///    skipped (Siemens' DERIVED\PRIMARY\DIFFUSION\TRACEW is source data and is kept).
/// 2. Any b > 0 and at least two distinct b-values: DWI. A single b-value: skipped.
/// 3. No diffusion encoding, at least [`DSC_MIN_TIME_POINTS`] timed images per slice position,
///    TE ≥ [`DSC_MIN_TE_MS`], and a description that does not name fMRI: DSC.
/// 4. Anything else is skipped, with the rule that excluded it.
pub fn recognise(s: &ScannedSeries) -> Recognition {
    let skip = |reason: String| Recognition { kind: None, reason };
    let image_type = s.image_type.clone().unwrap_or_default();
    if image_type.starts_with("DERIVED")
        && image_type
            .split('\\')
            .skip(2)
            .any(|v| MAP_WORDS.contains(&v.trim()))
    {
        return skip(format!(
            "a derived map (ImageType {image_type}), not source images"
        ));
    }
    let b = s.b_values();
    if b.iter().any(|&b| b > 0.0) {
        return if b.len() >= 2 {
            Recognition {
                kind: Some(Recognised::Dwi),
                reason: format!(
                    "diffusion-weighted: b-values {} s/mm²",
                    b.iter()
                        .map(|x| crate::io::fsl::format_g(*x))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        } else {
            skip(format!(
                "diffusion-weighted with one b-value ({} s/mm²): ADC needs two",
                b[0]
            ))
        };
    }
    let positions = s.n_positions().max(1);
    let echoes = {
        let mut t: Vec<i64> = s
            .frames
            .iter()
            .filter_map(|f| f.echo_time_ms.map(|t| (t * 100.0).round() as i64))
            .collect();
        t.sort_unstable();
        t.dedup();
        t.len().max(1)
    };
    let per_position = s.frames.len() / positions / echoes;
    let timed = s
        .frames
        .iter()
        .any(|f| f.temporal_position.is_some() || f.acquisition_time.is_some());
    if per_position < 2 {
        return skip("one image per slice position: not a time series or DWI".into());
    }
    if !timed || per_position < DSC_MIN_TIME_POINTS {
        return skip(format!(
            "{per_position} images per slice position{}: DSC needs at least {DSC_MIN_TIME_POINTS} time points",
            if timed { "" } else { " without acquisition times" }
        ));
    }
    let te = s.info.echo_time_ms.unwrap_or(f64::NAN);
    if !(te >= DSC_MIN_TE_MS) {
        return skip(format!(
            "a dynamic series with TE {te:.1} ms: T1-weighted (DCE?), DSC needs TE ≥ {DSC_MIN_TE_MS} ms"
        ));
    }
    let description = s.info.description.clone().unwrap_or_default();
    let upper = description.to_ascii_uppercase();
    if let Some(w) = FMRI_WORDS.iter().find(|w| upper.contains(*w)) {
        return skip(format!(
            "a time series whose description '{description}' names fMRI ({w}), not DSC"
        ));
    }
    Recognition {
        kind: Some(Recognised::Dsc),
        reason: format!(
            "dynamic T2*-weighted: {per_position} time points per slice, TE {te:.1} ms"
        ),
    }
}

/// How `run` processes a study.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub backend: BackendChoice,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            backend: BackendChoice::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Processed,
    Skipped,
    Failed,
}

/// One series of the study and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesOutcome {
    pub label: String,
    pub series_uid: Option<String>,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    pub study_uid: Option<String>,
    pub kind: Option<Recognised>,
    pub status: Status,
    /// Why it was recognised or skipped, or the error that stopped it.
    pub reason: String,
    /// The series' results folder (processed only).
    pub folder: Option<PathBuf>,
    /// A one-line result, e.g. "median brain ADC 0.80×10⁻³ mm²/s".
    pub result: Option<String>,
    pub seconds: f64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub study_dir: PathBuf,
    pub out: PathBuf,
    pub series: Vec<SeriesOutcome>,
    /// Files in the folder that were not usable images (non-DICOM, non-image, unreadable).
    pub not_used: Option<String>,
    /// Every file written, NIfTI, DICOM, previews and records.
    pub outputs: Vec<PathBuf>,
    /// The DICOM files among them (what delivery sends).
    pub dicom_outputs: Vec<PathBuf>,
    pub backend_notice: Option<String>,
    pub seconds: f64,
}

impl RunSummary {
    pub fn count(&self, status: Status) -> usize {
        self.series.iter().filter(|s| s.status == status).count()
    }

    /// The summary line: what was done and what was skipped and why.
    pub fn line(&self) -> String {
        let part = |status: Status| {
            self.series
                .iter()
                .filter(|s| s.status == status)
                .map(|s| {
                    let kind = s.kind.map(|k| format!("{k} "));
                    match status {
                        Status::Processed => format!("{}{}", kind.unwrap_or_default(), s.label),
                        _ => format!("{} ({})", s.label, s.reason),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut line = format!(
            "paramap run: {} processed, {} failed, {} skipped in {:.1} s",
            self.count(Status::Processed),
            self.count(Status::Failed),
            self.count(Status::Skipped),
            self.seconds
        );
        for (status, what) in [
            (Status::Processed, "processed"),
            (Status::Failed, "FAILED"),
            (Status::Skipped, "skipped"),
        ] {
            if self.count(status) > 0 {
                line.push_str(&format!("\n  {what}: {}", part(status)));
            }
        }
        line
    }
}

/// Folder name for a series' results: number, kind and description, e.g. `s005_dsc_ep2d_perf`.
fn folder_name(s: &ScannedSeries, kind: Recognised, taken: &[String]) -> String {
    let desc: String = s
        .info
        .description
        .clone()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect::<String>()
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    let mut name = format!(
        "s{:03}_{}",
        s.info.series_number.unwrap_or(0),
        kind.to_string().to_lowercase()
    );
    if !desc.is_empty() {
        name.push('_');
        name.push_str(&desc.chars().take(40).collect::<String>());
    }
    let base = name.clone();
    let mut k = 2;
    while taken.contains(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    name
}

/// Moves a completed staging folder to `target`, replacing an earlier result of the same name
/// only once the new one is complete.
fn move_into_place(staged: &Path, target: &Path) -> Result<()> {
    let err = |e: std::io::Error| Error::Output {
        path: target.to_path_buf(),
        reason: format!("moving the finished results into place: {e}"),
    };
    if target.exists() {
        let old = target.with_file_name(format!(
            ".paramap-old-{}",
            target.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(target, &old).map_err(err)?;
        std::fs::rename(staged, target).map_err(err)?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(staged, target).map_err(err)?;
    }
    Ok(())
}

/// Every file under `dir`, relative paths made absolute under `target`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// What processing one series wrote (paths inside the staging folder) and its one-line result.
struct Processed {
    result: String,
}

fn process_dwi(
    s: &ScannedSeries,
    engine: &Engine,
    opts: &RunOptions,
    stage: &Path,
) -> Result<Processed> {
    let started = Instant::now();
    let series = dicom::assemble(s)?;
    let ingest_seconds = started.elapsed().as_secs_f64();
    let result = adc::compute(&series, &AdcOptions::default(), engine)?;
    adc::write(
        &result,
        &adc::WriteContext {
            series: &series,
            requested: opts.backend,
            notice: None,
            ingest_seconds,
            started,
            save_input: false,
        },
        stage,
    )?;
    let median = median_in(&result.adc, &result.mask);
    Ok(Processed {
        result: format!(
            "ADC ({}): median {:.3}×10⁻³ mm²/s in {} voxels",
            result.model.method,
            median * 1e3,
            result.mask_record.voxels
        ),
    })
}

fn process_dsc(
    s: &ScannedSeries,
    engine: &Engine,
    opts: &RunOptions,
    stage: &Path,
) -> Result<Processed> {
    let started = Instant::now();
    let input = input::dsc_from_scanned(s, &DscInputOptions::default())?;
    let options = DscOptions::default();
    let result = dsc::compute(&input, &options, engine)?;
    dsc::write(
        &result,
        &dsc::DscWriteContext {
            input: &input,
            options: &options,
            requested: opts.backend,
            notice: None,
            started,
            save_curves: false,
        },
        stage,
    )?;
    let mut line = format!(
        "rCBV (BSW corrected, normalised to {} white-matter voxels)",
        result.reference_corrected.voxels
    );
    if let Some(p) = &result.perfusion {
        line.push_str(&format!(
            "; CBF ({}) white-matter median {:.1} ml/100g/min",
            p.method,
            median_in(&p.cbf, &result.reference_mask)
        ));
    }
    Ok(Processed { result: line })
}

/// Processes every DWI and DSC series found under `dir` into `out` (one folder per series)
/// and writes `out/run.json`. `progress` receives a line per step. Errors only when nothing
/// could be read at all or the output folder can't be written; a series that fails is recorded
/// in the summary as failed and the others go on.
pub fn run_study(
    dir: &Path,
    out: &Path,
    opts: &RunOptions,
    progress: &dyn Fn(&str),
) -> Result<RunSummary> {
    let started = Instant::now();
    progress(&format!("scanning {}", dir.display()));
    let scan = input::scan_folder_lenient(dir)?;
    if out.exists() && !out.is_dir() {
        return Err(Error::Output {
            path: out.to_path_buf(),
            reason: "it exists and is not a folder".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Output {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut not_used = scan.skipped_summary();
    if !scan.corrupt.is_empty() {
        let list: Vec<String> = scan
            .corrupt
            .iter()
            .map(|(p, why)| format!("{} ({why})", p.display()))
            .collect();
        let line = format!(
            "{} unreadable DICOM file(s): {}",
            list.len(),
            list.join("; ")
        );
        not_used = Some(match not_used {
            Some(s) => format!("{s}; {line}"),
            None => line,
        });
    }
    let recognised: Vec<Recognition> = scan.series.iter().map(recognise).collect();
    let mut engine: Option<(Engine, Option<String>)> = None;
    let mut outcomes = Vec::new();
    let mut taken = Vec::new();
    let mut outputs = Vec::new();
    for (s, r) in scan.series.iter().zip(recognised) {
        let t0 = Instant::now();
        let mut outcome = SeriesOutcome {
            label: s.info.short_label(),
            series_uid: s.info.series_uid.clone(),
            series_number: s.info.series_number,
            description: s.info.description.clone(),
            study_uid: s.info.study_uid.clone(),
            kind: r.kind,
            status: Status::Skipped,
            reason: r.reason.clone(),
            folder: None,
            result: None,
            seconds: 0.0,
        };
        let Some(kind) = r.kind else {
            progress(&format!("skipped {}: {}", outcome.label, r.reason));
            outcomes.push(outcome);
            continue;
        };
        if engine.is_none() {
            engine = Some(Engine::select(opts.backend)?);
            if let Some(Some(n)) = engine.as_ref().map(|e| &e.1) {
                progress(n);
            }
        }
        let eng = &engine.as_ref().expect("selected").0;
        let name = folder_name(s, kind, &taken);
        taken.push(name.clone());
        progress(&format!("{kind} {}: computing", outcome.label));
        let staged = tempfile::Builder::new()
            .prefix(".paramap-partial-")
            .tempdir_in(out)
            .map_err(|e| Error::Output {
                path: out.to_path_buf(),
                reason: e.to_string(),
            })?;
        let stage = staged.path().join(&name);
        let done = match kind {
            Recognised::Dwi => process_dwi(s, eng, opts, &stage),
            Recognised::Dsc => process_dsc(s, eng, opts, &stage),
        }
        .and_then(|p| {
            let target = out.join(&name);
            move_into_place(&stage, &target)?;
            Ok((p, target))
        });
        outcome.seconds = t0.elapsed().as_secs_f64();
        match done {
            Ok((p, target)) => {
                progress(&format!(
                    "{kind} {} → {}: {}",
                    outcome.label,
                    target.display(),
                    p.result
                ));
                outputs.extend(files_under(&target));
                outcome.status = Status::Processed;
                outcome.folder = Some(target);
                outcome.result = Some(p.result);
            }
            Err(e) => {
                progress(&format!("FAILED {kind} {}: {e}", outcome.label));
                outcome.status = Status::Failed;
                outcome.reason = e.to_string();
            }
        }
        outcomes.push(outcome);
    }
    let dicom_outputs = outputs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .cloned()
        .collect();
    let mut summary = RunSummary {
        study_dir: dir.to_path_buf(),
        out: out.to_path_buf(),
        series: outcomes,
        not_used,
        outputs,
        dicom_outputs,
        backend_notice: engine.and_then(|e| e.1),
        seconds: started.elapsed().as_secs_f64(),
    };
    let record = out.join("run.json");
    write_atomic(
        &record,
        &serde_json::to_string_pretty(&summary).expect("serialisable"),
    )?;
    summary.outputs.push(record);
    Ok(summary)
}

/// Writes a file under a temporary name beside it, then renames it into place.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let err = |e: std::io::Error| Error::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
