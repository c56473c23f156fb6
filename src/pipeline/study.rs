//! `paramap run`'s engine: a study folder in, every DWI and DSC series recognised and processed
//! with the defaults, one folder of results per series, and a record of what was done, what
//! was skipped and why. A series that fails does not stop the others; nothing half-written is
//! ever left in the output folder (each series is staged under a hidden name and renamed into
//! place when complete).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use ndarray::Array3;

use super::reading::{self, ReadingDicom, ReadingOptions, ReadingSeries};
use crate::error::{Error, Result};
use crate::io::dicom::derived::{self, DerivedMap, DerivedOptions, Encoding, Quantity};
use crate::io::dicom::{self, ScannedSeries};
use crate::io::nifti::NiftiFormat;
use crate::io::output::write_file_atomic;
use crate::maps::Map;
use crate::models::response::ResponseClass;
use crate::pipeline::adc::{self, AdcOptions};
use crate::pipeline::dsc::{self, DscOptions};
use crate::pipeline::input::{self, DscInputOptions};
use crate::pipeline::{median_in, BackendChoice, Engine};
use crate::report::{self, MapPreview, PreviewSpec, ReadingThresholds, SeriesReport};
use crate::volume::resample::GridRef;
use crate::volume::{Geometry, SeriesInfo};

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
/// ImageType values of the scanners' own derived maps (paramap's are [`Quantity::label`]s).
const MAP_WORDS: [&str; 9] = [
    "ADC", "EADC", "FA", "EXP", "CBV", "CBF", "MTT", "TTP", "MAP",
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
            .map(str::trim)
            .any(|v| MAP_WORDS.contains(&v) || Quantity::ALL.iter().any(|q| q.label() == v))
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
    let echoes = s.echo_keys().len().max(1);
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
    /// DICOM encoding of the maps (None: NIfTI, previews and report only).
    pub dicom: Option<Encoding>,
    /// Root of the derived series' new UIDs (2.25: UUID-derived, ISO/IEC 9834-8).
    pub uid_root: String,
    /// ROI masks (NIfTI); each is applied to the series whose grid it matches.
    pub rois: Vec<PathBuf>,
    /// The docs/methods.md §1 thresholds for the reading.
    pub thresholds: ReadingThresholds,
    /// `.nii.gz` (default) or `.nii` maps.
    pub format: NiftiFormat,
    /// GPU threads per workgroup (`--workgroup-size`; None: the tuned size, else 64).
    pub workgroup_size: Option<u32>,
    /// The response map's quality floor on the fits' `fit_nrmse` ([`reading::MAX_FIT_NRMSE`]).
    pub max_fit_nrmse: f64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            backend: BackendChoice::Auto,
            dicom: Some(Encoding::Classic),
            uid_root: derived::UUID_UID_ROOT.into(),
            rois: Vec::new(),
            thresholds: ReadingThresholds::default(),
            format: NiftiFormat::Gz,
            workgroup_size: None,
            max_fit_nrmse: reading::MAX_FIT_NRMSE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Processed,
    Skipped,
    Failed,
    /// Abandoned or not started because the run was interrupted (Ctrl-C, SIGTERM).
    Interrupted,
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
    /// The HTML report of each study.
    pub reports: Vec<PathBuf>,
    /// The docs/methods.md §1 reading of each ROI of each study: (study UID, statement).
    pub readings: Vec<(String, String)>,
    /// The key numbers on top of each study's report, in the order of `reports`.
    pub key_numbers: Vec<report::KeyNumbers>,
    /// The voxelwise response map of each study with a DSC and a DWI series.
    pub responses: Vec<ResponseOutcome>,
    /// ROI files that could be placed on no processed series' grid.
    pub unmatched_rois: Vec<String>,
    /// Filled by the caller that delivers the DICOM outputs (`run --send/--stowrs`).
    pub deliveries: Vec<crate::net::Delivery>,
    pub backend_notice: Option<String>,
    /// The engine the maps were computed on, e.g. "CPU (16 threads, f64)" (absent when no
    /// series was processed).
    pub engine: Option<String>,
    /// Set when a signal (Ctrl-C, SIGTERM) stopped the run: what was abandoned and what was
    /// kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
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
            (Status::Interrupted, "INTERRUPTED"),
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

/// Every file under `dir`, in name order.
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

/// One map of a processed series, for DICOM output, previews and ROI statistics.
struct MapOut {
    /// Its registry entry: name, title, unit, colormap and DICOM quantity.
    map: Map,
    data: Array3<f32>,
}

/// What processing one series produced, besides the files already written in its stage.
struct Processed {
    result: String,
    maps: Vec<MapOut>,
    /// Voxels computed (brain or fit mask): previews take their display range from these.
    mask: Array3<bool>,
    geometry: Geometry,
    /// The fit's RMS residual over its scale, for the reading's quality floor.
    fit_nrmse: Option<Array3<f32>>,
    /// The JSON record the pipeline wrote (file name in the stage).
    record: &'static str,
    /// Masks outlined on the maps' previews: (name, colour, mask on the maps' grid).
    outlines: Vec<(&'static str, [u8; 3], Array3<bool>)>,
}

/// An ROI (a NIfTI mask or a SEG segment, [`report::DrawnRoi`]) placed on a series' grid.
struct PlacedRoi {
    /// [`report::DrawnRoi::name`], the ROI's name in the records.
    name: String,
    /// [`report::DrawnRoi::label`], beside its outline.
    label: String,
    mask: Array3<bool>,
}

/// What the study's reading keeps of a processed series: its key map (corrected rCBV or ADC).
struct Kept {
    study: String,
    kind: Recognised,
    map: Array3<f32>,
    mask: Array3<bool>,
    fit_nrmse: Option<Array3<f32>>,
    geometry: Geometry,
    info: SeriesInfo,
    /// The ROIs on this series' grid.
    rois: Vec<PlacedRoi>,
    /// The series' JSON record (`dsc.json`, `adc.json`).
    record: serde_json::Value,
}

fn process_dwi(
    s: &ScannedSeries,
    engine: &Engine,
    notice: Option<String>,
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
            notice,
            ingest_seconds,
            started,
            save_input: false,
            format: opts.format,
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
        maps: vec![MapOut {
            map: Map::Adc,
            data: result.adc,
        }],
        mask: result.mask,
        geometry: series.geometry,
        fit_nrmse: Some(result.nrmse),
        record: "adc.json",
        outlines: Vec::new(),
    })
}

fn process_dsc(
    s: &ScannedSeries,
    engine: &Engine,
    notice: Option<String>,
    opts: &RunOptions,
    stage: &Path,
) -> Result<Processed> {
    let started = Instant::now();
    let input = input::dsc_from_scanned(s, &DscInputOptions::default())?;
    // The reading's thresholds drive the class map too: one pair of numbers everywhere.
    let options = DscOptions {
        thresholds: opts.thresholds,
        ..DscOptions::default()
    };
    let result = dsc::compute(&input, &options, engine)?;
    dsc::write(
        &result,
        &dsc::DscWriteContext {
            input: &input,
            options: &options,
            requested: opts.backend,
            notice,
            started,
            save_curves: false,
            format: opts.format,
        },
        stage,
    )?;
    let mut line = format!(
        "rCBV (leakage corrected, normalised to {} white-matter voxels)",
        result.reference_corrected.voxels
    );
    if let Some(p) = &result.perfusion {
        line.push_str(&format!(
            "; CBF ({}) white-matter median {:.1} ml/100g/min",
            p.method,
            median_in(&p.cbf, &result.reference_mask)
        ));
    }
    // The maps move out of the result: they are written, nothing else needs them.
    // The reading's quality floor reads the worse of the deconvolution's (or parametric fit's)
    // and the leakage fit's residuals, where both exist.
    let fit_nrmse = match (
        result.perfusion.as_ref().and_then(|p| p.fit_nrmse.clone()),
        result.leakage_nrmse.clone(),
    ) {
        (Some(a), Some(b)) => Some(ndarray::Zip::from(&a).and(&b).map_collect(|&x, &y| {
            if x.is_nan() {
                y
            } else if y.is_nan() {
                x
            } else {
                x.max(y)
            }
        })),
        (a, b) => a.or(b),
    };
    let mut outlines = vec![(
        "white-matter reference",
        report::REFERENCE_OUTLINE,
        result.reference_mask.clone(),
    )];
    if let Some(p) = &result.perfusion {
        outlines.push(("AIF voxels", report::AIF_OUTLINE, p.aif_mask.clone()));
    }
    let map = |map, data| MapOut { map, data };
    let mut maps = vec![
        map(Map::Rcbv, result.rcbv),
        map(Map::K2, result.k2),
        map(Map::Ttp, result.ttp),
    ];
    if let Some(p) = result.perfusion {
        maps.extend([
            map(Map::Cbf, p.cbf),
            map(Map::Cbv, p.cbv),
            map(Map::Mtt, p.mtt),
            map(Map::Tmax, p.tmax),
        ]);
    }
    Ok(Processed {
        result: line,
        maps,
        mask: result.brain,
        geometry: input.echo1.geometry.clone(),
        fit_nrmse,
        record: "dsc.json",
        outlines,
    })
}

/// The derived DICOM series, previews and report section of a processed series, written into
/// its stage (`dicom/<map>/`, `preview/<map>.png`).
fn derive(
    p: &Processed,
    kind: Recognised,
    source: &SeriesInfo,
    opts: &RunOptions,
    stage: &Path,
    report_rois: &[PlacedRoi],
) -> Result<SeriesReport> {
    let number = source.series_number.unwrap_or(0);
    if let Some(encoding) = opts.dicom {
        let derived_opts = DerivedOptions {
            encoding,
            uid_root: opts.uid_root.clone(),
        };
        for (k, m) in p.maps.iter().enumerate() {
            let spec = m.map.spec();
            let quantity = spec.quantity.ok_or_else(|| {
                Error::Invalid(format!("map {} has no DICOM quantity", spec.stem))
            })?;
            derived::write_derived(
                &DerivedMap {
                    data: m.data.view(),
                    geometry: &p.geometry,
                    quantity,
                    series_description: format!("paramap {}", spec.title),
                    series_number: number * 100 + k as i64 + 1,
                    derivation: format!(
                        "paramap {} {kind} {} from series {}; every choice in {}",
                        env!("CARGO_PKG_VERSION"),
                        spec.title,
                        source.short_label(),
                        p.record
                    ),
                },
                source,
                &derived_opts,
                &stage.join("dicom").join(spec.stem),
            )?;
        }
    }
    let preview_dir = stage.join("preview");
    std::fs::create_dir_all(&preview_dir).map_err(|e| Error::io(&preview_dir, e))?;
    let mut maps = Vec::new();
    let roi_names: Vec<String> = report_rois
        .iter()
        .map(|r| format!("ROI {}", r.label))
        .collect();
    let mut outlines: Vec<report::Outline> = report_rois
        .iter()
        .zip(&roi_names)
        .map(|(r, label)| report::Outline {
            mask: r.mask.view(),
            colour: report::ROI_OUTLINE,
            label,
        })
        .collect();
    outlines.extend(
        p.outlines
            .iter()
            .map(|(label, colour, mask)| report::Outline {
                mask: mask.view(),
                colour: *colour,
                label,
            }),
    );
    for m in &p.maps {
        let s = m.map.spec();
        let mut spec = PreviewSpec::new(s.title, s.unit, s.colormap);
        spec.mask = Some(p.mask.view());
        spec.geometry = Some(&p.geometry);
        spec.outlines = outlines.clone();
        let png = report::montage_png(m.data.view(), &spec)?;
        let path = preview_dir.join(format!("{}.png", s.stem));
        std::fs::write(&path, &png).map_err(|e| Error::io(&path, e))?;
        maps.push(MapPreview {
            name: s.title.to_string(),
            unit: s.unit.to_string(),
            png,
        });
    }
    let mut plots = Vec::new();
    let aif = stage.join("aif.png");
    if let Ok(png) = std::fs::read(&aif) {
        plots.push((
            "Arterial input function and tissue curve (ΔR2*)".to_string(),
            png,
        ));
    }
    let record = std::fs::read_to_string(stage.join(p.record))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let mut roi = Vec::new();
    let mut notes = Vec::new();
    for r in report_rois {
        for m in &p.maps {
            let s = m.map.spec();
            let unit = if m.map == Map::Adc { "mm²/s" } else { s.unit };
            let mut stat = report::roi_stat(m.data.view(), r.mask.view(), s.title, unit)?;
            stat.roi = r.name.clone();
            roi.push(stat);
        }
        notes.push(format!("ROI statistics inside {}", r.name));
    }
    Ok(SeriesReport {
        label: source.short_label(),
        kind: kind.to_string(),
        maps,
        plots,
        record,
        roi,
        notes,
    })
}

/// The response map of one study (docs/methods.md §1), as `run.json` records it.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseOutcome {
    pub study_uid: String,
    pub folder: Option<PathBuf>,
    /// (class name, voxels, share of the brain).
    pub classes: Vec<(String, usize, f64)>,
    /// Why no map was made, when it failed.
    pub failed: Option<String>,
}

/// ADC onto the DSC grid and the response map, written into `folder`; the report's section.
fn study_reading(
    dsc: &Kept,
    dwi: &Kept,
    opts: &RunOptions,
    folder: &Path,
) -> Result<(ResponseOutcome, SeriesReport, Vec<PathBuf>, Array3<u8>)> {
    fn series(k: &Kept) -> ReadingSeries<'_> {
        ReadingSeries {
            map: k.map.view(),
            mask: k.mask.view(),
            fit_nrmse: k.fit_nrmse.as_ref().map(|q| q.view()),
            geometry: &k.geometry,
            info: &k.info,
        }
    }
    let (d, w) = (series(dsc), series(dwi));
    let maps = reading::compute(&d, &w, &opts.thresholds, opts.max_fit_nrmse)?;
    let files = reading::write(
        &maps,
        &d,
        &w,
        &ReadingOptions {
            thresholds: &opts.thresholds,
            max_fit_nrmse: opts.max_fit_nrmse,
            format: opts.format,
            dicom: opts.dicom.map(|encoding| ReadingDicom {
                encoding,
                uid_root: &opts.uid_root,
            }),
        },
        folder,
    )?;
    let brain = dsc.mask.iter().filter(|&&b| b).count().max(1);
    let classes: Vec<(String, usize, f64)> = ResponseClass::ALL
        .iter()
        .map(|c| {
            let n = maps.counts[c.code() as usize];
            (c.name().to_string(), n, n as f64 / brain as f64)
        })
        .collect();
    let spec = Map::Response.spec();
    // The report's montage: the preview's, with the lesion ROIs outlined.
    let png = {
        let response = maps.response.mapv(f32::from);
        let names = ResponseClass::ALL.map(|c| c.name());
        let labels: Vec<String> = dsc
            .rois
            .iter()
            .map(|r| format!("ROI {}", r.label))
            .collect();
        let mut preview = PreviewSpec::new(spec.title, spec.unit, spec.colormap);
        preview.range = Some((0.0, 3.0));
        preview.mask = Some(dsc.mask.view());
        preview.geometry = Some(&dsc.geometry);
        preview.class_names = Some(&names);
        preview.outlines = dsc
            .rois
            .iter()
            .zip(&labels)
            .map(|(r, label)| report::Outline {
                mask: r.mask.view(),
                colour: report::ROI_OUTLINE,
                label,
            })
            .collect();
        report::montage_png(response.view(), &preview)?
    };
    // The classes, their rules and shares are in the legend below the map (the report's).
    let mut notes: Vec<String> = Vec::new();
    notes.push(format!(
        "{} voxels failed the quality floor (fit residual above {} of the curve's scale) and are indeterminate",
        maps.below_quality_floor, opts.max_fit_nrmse
    ));
    if let Some(n) = &maps.frame_note {
        notes.push(n.clone());
    }
    notes.push(reading::CAUTION.to_string());
    let section = SeriesReport {
        label: format!(
            "Response map: rCBV of {} with ADC of {}",
            dsc.info.short_label(),
            dwi.info.short_label()
        ),
        kind: "reading".into(),
        maps: vec![MapPreview {
            name: spec.title.to_string(),
            unit: spec.unit.to_string(),
            png,
        }],
        notes,
        ..Default::default()
    };
    Ok((
        ResponseOutcome {
            study_uid: dsc.study.clone(),
            folder: Some(folder.to_path_buf()),
            classes,
            failed: None,
        },
        section,
        files,
        maps.response,
    ))
}

/// A text attribute of the series' DICOM source (patient, study), where it was read.
fn dicom_text(info: &SeriesInfo, tag: (u16, u16)) -> Option<String> {
    info.dicom
        .as_ref()?
        .inherited
        .iter()
        .find(|(t, _, _)| *t == tag)
        .map(|(_, _, v)| v.clone())
}

/// The report's file name: `report_<StudyDate>_<accession, or the study UID's last 8 digits>.html`
/// (characters other than letters, digits, `-` and `.` become `_`), numbered when two studies
/// would share it.
fn report_name(date: Option<&str>, accession: Option<&str>, uid: &str, taken: &[String]) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let date = date
        .filter(|d| !d.is_empty())
        .map_or("nodate".into(), clean);
    let id = match accession.filter(|a| !a.trim().is_empty()) {
        Some(a) => clean(a.trim()),
        None => {
            let digits: String = uid.chars().filter(|c| c.is_ascii_digit()).collect();
            if digits.is_empty() {
                "nouid".into()
            } else {
                format!("uid{}", &digits[digits.len().saturating_sub(8)..])
            }
        }
    };
    let base = format!("report_{date}_{id}");
    let mut name = format!("{base}.html");
    let mut k = 2;
    while taken.contains(&name) {
        name = format!("{base}_{k}.html");
        k += 1;
    }
    name
}

/// The response map's legend: each class's colour, name, rule and share of the DSC brain mask.
fn response_legend(
    response: &Array3<u8>,
    dsc: Option<&Kept>,
    t: &ReadingThresholds,
) -> Vec<report::LegendRow> {
    let mut counts = [0usize; 4];
    for (i, &c) in response.indexed_iter() {
        if dsc.is_none_or(|d| d.mask[i]) {
            counts[(c as usize).min(3)] += 1;
        }
    }
    let brain = counts.iter().sum::<usize>().max(1);
    ResponseClass::ALL
        .iter()
        .map(|&c| report::LegendRow {
            value: c.code(),
            name: c.name().to_string(),
            rule: c.rule(t),
            colour: report::colormap::CLASS_COLOURS[c.code() as usize],
            voxels: counts[c.code() as usize],
            share_of_brain: counts[c.code() as usize] as f64 / brain as f64,
        })
        .collect()
}

/// The key numbers of one study: per ROI, corrected rCBV on the DSC grid with its fractional
/// tumour burden and response classes, ADC on the DWI grid, and the reading of their medians;
/// the white-matter reference and the AIF from the DSC record.
fn study_key_numbers(
    study_uid: &str,
    dsc: Option<&Kept>,
    dwi: Option<&Kept>,
    response: Option<&Array3<u8>>,
    opts: &RunOptions,
    roi_names: &[String],
) -> Result<report::KeyNumbers> {
    let t = &opts.thresholds;
    fn roi_on<'a>(k: Option<&'a Kept>, name: &str) -> Option<&'a Array3<bool>> {
        k.and_then(|k| k.rois.iter().find(|r| r.name == name).map(|r| &r.mask))
    }
    let mut rois = Vec::new();
    for name in roi_names {
        let on_dsc = roi_on(dsc, name);
        let on_dwi = roi_on(dwi, name);
        if on_dsc.is_none() && on_dwi.is_none() {
            continue;
        }
        let rcbv = match (dsc, on_dsc) {
            (Some(d), Some(m)) => Some(report::roi_stat(
                d.map.view(),
                m.view(),
                Map::Rcbv.spec().title,
                Map::Rcbv.spec().unit,
            )?),
            _ => None,
        };
        let ftb = match (dsc, on_dsc) {
            (Some(d), Some(m)) => Some(crate::models::roi::fractional_tumour_burden(
                d.map.view(),
                m.view(),
                t,
            )?),
            _ => None,
        };
        let adc = match (dwi, on_dwi) {
            (Some(w), Some(m)) => Some(report::roi_stat(
                w.map.view(),
                m.view(),
                Map::Adc.spec().title,
                "mm²/s",
            )?),
            _ => None,
        };
        let response_classes = match (response, on_dsc) {
            (Some(r), Some(m)) => {
                let mut c = [0usize; 4];
                for (&v, &inside) in r.iter().zip(m.iter()) {
                    if inside {
                        c[(v as usize).min(3)] += 1;
                    }
                }
                let n = c.iter().sum::<usize>().max(1);
                Some(c.map(|k| k as f64 / n as f64))
            }
            _ => None,
        };
        let median = |s: &Option<report::RoiStat>| s.as_ref().filter(|s| s.n > 0).map(|s| s.median);
        let reading = report::read_rcbv_adc(median(&rcbv), median(&adc), t)?;
        rois.push(report::RoiKeyNumbers {
            roi: name.clone(),
            rcbv,
            adc,
            ftb,
            response_classes,
            reading,
        });
    }
    let record = dsc.map(|d| &d.record);
    let get = |path: &[&str]| {
        let mut v = record?;
        for p in path {
            v = v.get(p)?;
        }
        Some(v.clone())
    };
    Ok(report::KeyNumbers {
        study_uid: study_uid.to_string(),
        rois,
        reference_cbv: get(&["normalisation", "reference_cbv_corrected"]).and_then(|v| v.as_f64()),
        reference_voxels: get(&["normalisation", "reference_voxels"])
            .and_then(|v| v.as_u64())
            .map(|v| v as usize),
        aif_voxels: get(&["perfusion", "aif_voxels"])
            .and_then(|v| v.as_u64())
            .map(|v| v as usize),
        aif_rule: get(&["perfusion", "aif_rule"]).and_then(|v| v.as_str().map(str::to_string)),
        thresholds: *t,
    })
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
    // Every ROI file read once (a SEG gives one ROI per segment); a file that cannot be read
    // stops the run before anything is read or written.
    let mut drawn: Vec<report::DrawnRoi> = Vec::new();
    for path in &opts.rois {
        drawn.extend(report::read_rois(path)?);
    }
    let roi_names: Vec<String> = drawn.iter().map(|r| r.name.clone()).collect();
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
    let mut interrupted_series: Vec<String> = Vec::new();
    let bar = crate::progress::bar(
        "series processed",
        recognised.iter().filter(|r| r.kind.is_some()).count() as u64,
    );
    let mut outcomes = Vec::new();
    let mut taken = Vec::new();
    let mut outputs = Vec::new();
    let mut matched: Vec<String> = Vec::new();
    let mut kept: Vec<Kept> = Vec::new();
    // Report sections per study UID, in the order the studies were met.
    let mut studies: Vec<(String, Vec<(Recognised, SeriesReport)>)> = Vec::new();
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
        if crate::interrupt::requested() {
            outcome.status = Status::Interrupted;
            outcome.reason = format!("not started: the run was interrupted ({})", r.reason);
            interrupted_series.push(outcome.label.clone());
            outcomes.push(outcome);
            continue;
        }
        if engine.is_none() {
            let (chosen, notice) = Engine::select(opts.backend)?;
            engine = Some((chosen.with_workgroup_size(opts.workgroup_size)?, notice));
            if let Some(Some(n)) = engine.as_ref().map(|e| &e.1) {
                progress(n);
            }
            if let Some((e, _)) = &engine {
                progress(&format!("computing on {}", e.summary()));
            }
        }
        let (eng, notice) = engine.as_ref().expect("selected");
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
        crate::io::output::register_staging(staged.path());
        let stage = staged.path().join(&name);
        // A signal abandons the series at the next checkpoint: its stage is removed, the
        // series already finished stay.
        let checkpoint = || {
            if crate::interrupt::requested() {
                Err(Error::Invalid(
                    "abandoned: the run was interrupted while this series was processed".into(),
                ))
            } else {
                Ok(())
            }
        };
        let done = match kind {
            Recognised::Dwi => process_dwi(s, eng, notice.clone(), opts, &stage),
            Recognised::Dsc => process_dsc(s, eng, notice.clone(), opts, &stage),
        }
        .and_then(|p| {
            checkpoint()?;
            // Every ROI, drawn on any series of the study, on this series' grid.
            let label = s.info.label();
            let grid = GridRef::new(
                &p.geometry,
                s.info.frame_of_reference_uid.as_deref(),
                &label,
            );
            let rois: Vec<PlacedRoi> = drawn
                .iter()
                .filter_map(|r| {
                    report::place_roi(r, grid).ok().map(|m| PlacedRoi {
                        name: r.name.clone(),
                        label: r.label.clone(),
                        mask: m.mask,
                    })
                })
                .collect();
            let section = derive(&p, kind, &s.info, opts, &stage, &rois)?;
            checkpoint()?;
            let target = out.join(&name);
            move_into_place(&stage, &target)?;
            Ok((p, target, section, rois))
        });
        outcome.seconds = t0.elapsed().as_secs_f64();
        match done {
            Ok((p, target, section, rois)) => {
                matched.extend(rois.iter().map(|r| r.name.clone()));
                let study = s.info.study_uid.clone().unwrap_or_default();
                let result_line = p.result;
                let key = match kind {
                    Recognised::Dsc => Map::Rcbv,
                    Recognised::Dwi => Map::Adc,
                };
                if let Some(m) = p.maps.into_iter().find(|m| m.map == key) {
                    kept.push(Kept {
                        study: study.clone(),
                        kind,
                        map: m.data,
                        mask: p.mask,
                        fit_nrmse: p.fit_nrmse,
                        geometry: p.geometry,
                        info: s.info.clone(),
                        rois,
                        record: section.record.clone(),
                    });
                }
                match studies.iter_mut().find(|(uid, _)| *uid == study) {
                    Some((_, sections)) => sections.push((kind, section)),
                    None => studies.push((study, vec![(kind, section)])),
                }
                progress(&format!(
                    "{kind} {} → {}: {}",
                    outcome.label,
                    target.display(),
                    result_line
                ));
                outputs.extend(files_under(&target));
                outcome.status = Status::Processed;
                outcome.folder = Some(target);
                outcome.result = Some(result_line);
            }
            Err(e) if crate::interrupt::requested() => {
                progress(&format!("INTERRUPTED {kind} {}: {e}", outcome.label));
                outcome.status = Status::Interrupted;
                outcome.reason = e.to_string();
                interrupted_series.push(outcome.label.clone());
            }
            Err(e) => {
                progress(&format!("FAILED {kind} {}: {e}", outcome.label));
                outcome.status = Status::Failed;
                outcome.reason = e.to_string();
            }
        }
        crate::io::output::unregister_staging(staged.path());
        drop(staged);
        bar.inc();
        outcomes.push(outcome);
    }
    drop(bar);
    let interrupted = crate::interrupt::requested().then(|| {
        let kept: Vec<&str> = outcomes
            .iter()
            .filter(|o| o.status == Status::Processed)
            .map(|o| o.label.as_str())
            .collect();
        format!(
            "interrupted by a signal (Ctrl-C or SIGTERM): not processed: {}; kept: {}",
            if interrupted_series.is_empty() {
                "none (the signal came after the last series)".to_string()
            } else {
                interrupted_series.join(", ")
            },
            if kept.is_empty() {
                "none".to_string()
            } else {
                kept.join(", ")
            }
        )
    });
    let skipped: Vec<(String, String)> = outcomes
        .iter()
        .filter(|o| o.status != Status::Processed)
        .map(|o| (o.label.clone(), o.reason.clone()))
        .collect();
    // The voxelwise reading of each study that holds a DSC and a DWI series.
    let mut responses = Vec::new();
    let mut response_maps: Vec<(String, Array3<u8>)> = Vec::new();
    for (k, (study_uid, sections)) in studies.iter_mut().enumerate() {
        let first = |kind: Recognised| {
            kept.iter()
                .find(|x| x.study == *study_uid && x.kind == kind)
        };
        let (Some(dsc), Some(dwi)) = (first(Recognised::Dsc), first(Recognised::Dwi)) else {
            continue;
        };
        let folder = out.join(if k == 0 {
            "response".to_string()
        } else {
            format!("response_{}", k + 1)
        });
        progress(&format!(
            "reading: response map of {} and {} → {}",
            dsc.info.short_label(),
            dwi.info.short_label(),
            folder.display()
        ));
        match study_reading(dsc, dwi, opts, &folder) {
            Ok((outcome, section, _, response)) => {
                // Every file, those inside dicom/ and preview/ too (delivery sends the .dcm).
                outputs.extend(files_under(&folder));
                response_maps.push((study_uid.clone(), response));
                sections.push((Recognised::Dsc, section));
                responses.push(outcome);
            }
            Err(e) => {
                progress(&format!("FAILED reading of study {study_uid}: {e}"));
                responses.push(ResponseOutcome {
                    study_uid: study_uid.clone(),
                    folder: None,
                    classes: Vec::new(),
                    failed: Some(e.to_string()),
                });
            }
        }
    }
    let mut reports = Vec::new();
    let mut readings = Vec::new();
    let mut key_numbers = Vec::new();
    let mut names_taken: Vec<String> = Vec::new();
    for (study_uid, sections) in studies.into_iter() {
        let first = |kind: Recognised| kept.iter().find(|x| x.study == study_uid && x.kind == kind);
        let response = response_maps
            .iter()
            .find(|(uid, _)| *uid == study_uid)
            .map(|(_, r)| r);
        let key = study_key_numbers(
            &study_uid,
            first(Recognised::Dsc),
            first(Recognised::Dwi),
            response,
            opts,
            &roi_names,
        )?;
        for r in &key.rois {
            readings.push((study_uid.clone(), r.reading.statement.clone()));
        }
        let reading = key.rois.first().map(|r| r.reading.clone());
        let source = scan
            .series
            .iter()
            .find(|s| s.info.study_uid.as_deref() == Some(study_uid.as_str()));
        let tag = |t: (u16, u16)| source.and_then(|s| dicom_text(&s.info, t));
        let patient_id = source.and_then(|s| s.info.patient_id.clone());
        let study_date = tag((0x0008, 0x0020));
        let accession = tag((0x0008, 0x0050));
        let legend = response
            .map(|r| response_legend(r, first(Recognised::Dsc), &opts.thresholds))
            .unwrap_or_default();
        let html = report::render(&report::StudyReport {
            title: match tag((0x0008, 0x1030)) {
                Some(d) if !d.is_empty() => format!("paramap: {d}"),
                _ => format!("paramap maps of {}", dir.display()),
            },
            patient_name: tag((0x0010, 0x0010)),
            patient_id,
            study_date: study_date.clone(),
            accession: accession.clone(),
            study_description: tag((0x0008, 0x1030)),
            study_uid: (!study_uid.is_empty()).then(|| study_uid.clone()),
            key: Some(key.clone()),
            legend,
            generated_by: format!("paramap {}", env!("CARGO_PKG_VERSION")),
            series: sections.into_iter().map(|(_, s)| s).collect(),
            skipped: skipped.clone(),
            reading,
        });
        let name = report_name(
            study_date.as_deref(),
            accession.as_deref(),
            &study_uid,
            &names_taken,
        );
        names_taken.push(name.clone());
        let path = out.join(name);
        write_file_atomic(&path, &html)?;
        reports.push(path);
        key_numbers.push(key);
    }
    drop(kept);
    let unmatched_rois = roi_names
        .iter()
        .filter(|r| !matched.contains(r))
        .cloned()
        .collect();
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
        reports: reports.clone(),
        readings,
        key_numbers,
        responses,
        unmatched_rois,
        deliveries: Vec::new(),
        engine: engine.as_ref().map(|e| e.0.summary().to_string()),
        backend_notice: engine.and_then(|e| e.1),
        interrupted,
        seconds: started.elapsed().as_secs_f64(),
    };
    let record = out.join("run.json");
    write_file_atomic(
        &record,
        &serde_json::to_string_pretty(&summary).expect("serialisable"),
    )?;
    summary.outputs.push(record);
    summary.outputs.extend(reports);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_named_after_its_study() {
        let uid = "1.2.826.0.1.3680043.8.498.12345678901";
        assert_eq!(
            report_name(Some("20240315"), Some("ACC 42/7"), uid, &[]),
            "report_20240315_ACC_42_7.html"
        );
        // No accession: the UID's last eight digits; no date: said so.
        assert_eq!(
            report_name(Some("20240315"), Some("  "), uid, &[]),
            "report_20240315_uid45678901.html"
        );
        assert_eq!(report_name(None, None, "", &[]), "report_nodate_nouid.html");
        // Two studies that would share a name are numbered.
        let first = report_name(Some("20240315"), Some("A1"), uid, &[]);
        assert_eq!(
            report_name(Some("20240315"), Some("A1"), uid, &[first]),
            "report_20240315_A1_2.html"
        );
    }
}
