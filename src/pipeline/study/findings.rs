//! The study's reading and report: rCBV and ADC read together (the response map), the key
//! numbers per ROI, and the report's name and legend.

use std::path::{Path, PathBuf};

use serde::Serialize;

use ndarray::Array3;

use super::reading::{self, ReadingDicom, ReadingOptions, ReadingSeries};
use crate::error::Result;
use crate::maps::Map;
use crate::models::response::ResponseClass;
use crate::report::{self, MapPreview, PreviewSpec, ReadingThresholds, SeriesReport};
use crate::volume::SeriesInfo;

use super::*;

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
pub(super) fn study_reading(
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
pub(super) fn dicom_text(info: &SeriesInfo, tag: (u16, u16)) -> Option<String> {
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
pub(super) fn report_name(
    date: Option<&str>,
    accession: Option<&str>,
    uid: &str,
    taken: &[String],
) -> String {
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
pub(super) fn response_legend(
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
pub(super) fn study_key_numbers(
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
