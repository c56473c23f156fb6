//! `paramap run`'s engine: a study folder in, every DWI and DSC series recognised and processed
//! with the defaults, one folder of results per series, and a record of what was done, what
//! was skipped and why. A series that fails does not stop the others; nothing half-written is
//! ever left in the output folder (each series is staged under a hidden name and renamed into
//! place when complete).
//!
//! The steps live beside this file: [`recognise`] (which series are DWI or DSC, by rules a
//! reader can check), [`series`] (processing one series into its folder, DICOM maps and
//! previews) and [`findings`] (the study's reading: response map, key numbers, the report).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use ndarray::Array3;

use super::reading::{self};
use crate::error::{Error, Result};
use crate::io::dicom::derived::{self, Encoding};
use crate::io::nifti::NiftiFormat;
use crate::io::output::{files_under, move_into_place, write_file_atomic};
use crate::maps::Map;
use crate::pipeline::input::{self};
use crate::pipeline::{BackendChoice, Engine};
use crate::report::{self, ReadingThresholds, SeriesReport};
use crate::volume::resample::GridRef;

mod findings;
mod recognise;
mod series;

pub use findings::ResponseOutcome;
use findings::*;
pub use recognise::*;
use series::*;

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

/// An ROI (`--roi`) that no processed series' grid could take, and why.
#[derive(Debug, Clone, Serialize)]
pub struct UnmatchedRoi {
    /// The ROI's name (its file name, or a SEG's Segment Label).
    pub roi: String,
    /// One line per processed series: the series and why the ROI could not be placed on its
    /// grid (another Frame of Reference, no voxel inside the field of view, …); a single line
    /// when no series was processed.
    pub reasons: Vec<String>,
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
    /// ROI files that could be placed on no processed series' grid, each with why.
    pub unmatched_rois: Vec<UnmatchedRoi>,
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
    // (ROI name, "series: why not") for every ROI a processed series' grid could not take.
    let mut misses: Vec<(String, String)> = Vec::new();
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
            let mut rois = Vec::new();
            for r in &drawn {
                match report::place_roi(r, grid) {
                    Ok(m) => rois.push(PlacedRoi {
                        name: r.name.clone(),
                        label: r.label.clone(),
                        mask: m.mask,
                    }),
                    Err(e) => {
                        // The record and the warning name the ROI once, beside its reasons.
                        let e = e.to_string();
                        let why = e.strip_prefix(&format!("{}: ", r.name)).unwrap_or(&e);
                        misses.push((r.name.clone(), format!("{}: {why}", s.info.short_label())))
                    }
                }
            }
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
    let unmatched_rois: Vec<UnmatchedRoi> = roi_names
        .iter()
        .filter(|r| !matched.contains(r))
        .map(|r| {
            let mut reasons: Vec<String> = misses
                .iter()
                .filter(|(name, _)| name == r)
                .map(|(_, why)| why.clone())
                .collect();
            if reasons.is_empty() {
                reasons.push("no DSC or DWI series was processed to place it on".into());
            }
            progress(&format!(
                "warning: ROI {r} lies on no processed series' grid and has no statistics: {}",
                reasons.join("; ")
            ));
            UnmatchedRoi {
                roi: r.clone(),
                reasons,
            }
        })
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
            unmatched_rois: unmatched_rois
                .iter()
                .map(|u| (u.roi.clone(), u.reasons.join("; ")))
                .collect(),
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

/// Where a study's DICOM maps go once every file is on disk (`run` and `listen`'s `--send`,
/// `--stowrs`, `--attempts`).
#[derive(Debug, Clone, Default)]
pub struct DeliveryOptions {
    /// C-STORE to this AE.
    pub send: Option<crate::net::Destination>,
    /// STOW-RS to this DICOMweb root URL.
    pub stowrs: Option<String>,
    pub retry: crate::net::Retry,
}

impl DeliveryOptions {
    fn any(&self) -> bool {
        self.send.is_some() || self.stowrs.is_some()
    }
}

/// `run` and `listen`'s one workflow: the study processed by [`run_study`] into `out`, then its
/// DICOM maps delivered (after every file is on disk, so a failed send leaves them there) and
/// `run.json` rewritten with the deliveries. Nothing is sent from an interrupted run.
///
/// Returns the summary and, apart, the delivery's error: an unusable destination, or files not
/// delivered after every attempt ([`crate::net::Delivery::check`]); the maps stay on disk
/// either way. Errors: as [`run_study`].
pub fn run_and_deliver(
    study: &Path,
    out: &Path,
    opts: &RunOptions,
    delivery: &DeliveryOptions,
    progress: &dyn Fn(&str),
) -> Result<(RunSummary, Option<Error>)> {
    let mut summary = run_study(study, out, opts, progress)?;
    if summary.interrupted.is_some() || !delivery.any() {
        return Ok((summary, None));
    }
    progress(&format!(
        "sending {} DICOM files",
        summary.dicom_outputs.len()
    ));
    let mut error = match crate::net::deliver(
        &summary.dicom_outputs,
        delivery.send.as_ref(),
        delivery.stowrs.as_deref(),
        &delivery.retry,
    ) {
        Ok(deliveries) => {
            for d in &deliveries {
                progress(&d.summary());
            }
            summary.deliveries = deliveries;
            summary.deliveries.iter().find_map(|d| d.check().err())
        }
        Err(e) => Some(e),
    };
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::Invalid(format!("cannot encode run.json: {e}")))?;
    if let Err(e) = write_file_atomic(&summary.out.join("run.json"), &text) {
        error.get_or_insert(e);
    }
    Ok((summary, error))
}
