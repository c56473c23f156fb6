//! One recognised series processed into its folder: the `adc`/`dsc` pipeline with the study's
//! options, staged and moved into place whole, then its DICOM maps, previews and the ROIs placed
//! on its grid.

use std::path::Path;
use std::time::Instant;

use ndarray::Array3;

use crate::error::{Error, Result};
use crate::io::dicom::derived::{self, DerivedMap, DerivedOptions};
use crate::io::dicom::{self, ScannedSeries};
use crate::maps::Map;
use crate::pipeline::adc::{self, AdcOptions};
use crate::pipeline::dsc::{self, DscOptions};
use crate::pipeline::input::{self, DscInputOptions};
use crate::pipeline::{median_in, Engine};
use crate::report::{self, MapPreview, PreviewSpec, SeriesReport};
use crate::volume::{Geometry, SeriesInfo};

use super::*;

/// Folder name for a series' results: number, kind and description, e.g. `s005_dsc_ep2d_perf`.
pub(super) fn folder_name(s: &ScannedSeries, kind: Recognised, taken: &[String]) -> String {
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

/// One map of a processed series, for DICOM output, previews and ROI statistics.
pub(super) struct MapOut {
    /// Its registry entry: name, title, unit, colormap and DICOM quantity.
    pub(super) map: Map,
    pub(super) data: Array3<f32>,
}

/// What processing one series produced, besides the files already written in its stage.
pub(super) struct Processed {
    pub(super) result: String,
    pub(super) maps: Vec<MapOut>,
    /// Voxels computed (brain or fit mask): previews take their display range from these.
    pub(super) mask: Array3<bool>,
    pub(super) geometry: Geometry,
    /// The fit's RMS residual over its scale, for the reading's quality floor.
    pub(super) fit_nrmse: Option<Array3<f32>>,
    /// The JSON record the pipeline wrote (file name in the stage).
    pub(super) record: &'static str,
    /// Masks outlined on the maps' previews: (name, colour, mask on the maps' grid).
    pub(super) outlines: Vec<(&'static str, [u8; 3], Array3<bool>)>,
}

/// An ROI (a NIfTI mask or a SEG segment, [`report::DrawnRoi`]) placed on a series' grid.
pub(super) struct PlacedRoi {
    /// [`report::DrawnRoi::name`], the ROI's name in the records.
    pub(super) name: String,
    /// [`report::DrawnRoi::label`], beside its outline.
    pub(super) label: String,
    pub(super) mask: Array3<bool>,
}

/// What the study's reading keeps of a processed series: its key map (corrected rCBV or ADC).
pub(super) struct Kept {
    pub(super) study: String,
    pub(super) kind: Recognised,
    pub(super) map: Array3<f32>,
    pub(super) mask: Array3<bool>,
    pub(super) fit_nrmse: Option<Array3<f32>>,
    pub(super) geometry: Geometry,
    pub(super) info: SeriesInfo,
    /// The ROIs on this series' grid.
    pub(super) rois: Vec<PlacedRoi>,
    /// The series' JSON record (`dsc.json`, `adc.json`).
    pub(super) record: serde_json::Value,
}

pub(super) fn process_dwi(
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

pub(super) fn process_dsc(
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
pub(super) fn derive(
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
