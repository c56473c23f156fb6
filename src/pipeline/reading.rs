//! The study's reading as a map: ADC resampled onto the DSC grid and the voxelwise response map
//! of docs/methods.md §1 (corrected rCBV and ADC read together), written by `paramap run` when a
//! study holds a DSC and a DWI series, into the folder `response/`.
//!
//! The classes are support for a reader, not a diagnosis; every output says so.

use std::path::{Path, PathBuf};

use ndarray::{Array3, ArrayView3};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::dicom::derived::{self, DerivedMap, DerivedOptions, Encoding};
use crate::io::nifti::{self, NiftiFormat};
use crate::io::output::OutputDir;
use crate::maps::Map;
use crate::models::response::{response_map, ReadingThresholds, ResponseClass};
use crate::volume::resample::{check_frames, resample_linear, FrameMatch, GridRef};
use crate::volume::{Geometry, SeriesInfo};

/// The default quality floor: a voxel whose fit leaves an RMS residual above half the curve's
/// scale (DSC: the curve's peak; DWI: S0) is marked indeterminate rather than classified. The
/// fit then explains less of the curve than the noise around it, so its rCBV or ADC rests on
/// noise. paramap's own conservative choice (no published floor exists): on the sample phantoms
/// at their noise the 99.9th percentile of each residual (ADC fit, DSC parametric fit, DSC oSVD
/// deconvolution: 0.28–0.30) is below 0.35.
pub const MAX_FIT_NRMSE: f64 = 0.5;

/// One series' map for the reading.
pub struct ReadingSeries<'a> {
    /// Corrected rCBV (DSC) or ADC in mm²/s (DWI), `[z, y, x]`.
    pub map: ArrayView3<'a, f32>,
    /// The voxels analysed.
    pub mask: ArrayView3<'a, bool>,
    /// The fit's RMS residual over its scale: ADC's and the DSC parametric fit's `fit_nrmse`,
    /// the DSC SVD deconvolutions' `deconvolution_nrmse`.
    pub fit_nrmse: Option<ArrayView3<'a, f32>>,
    pub geometry: &'a Geometry,
    pub info: &'a SeriesInfo,
}

/// The reading on the DSC grid.
pub struct ReadingMaps {
    /// Voxel values [`ResponseClass::code`].
    pub response: Array3<u8>,
    /// ADC (mm²/s) resampled onto the DSC grid (trilinear, NaN-aware).
    pub adc: Array3<f32>,
    /// Voxels per class, in class order 0–3 (0 counts only brain voxels left unclassified).
    pub counts: [usize; 4],
    /// Voxels that failed the quality floor (counted in class 2).
    pub below_quality_floor: usize,
    /// What was assumed about the Frame of Reference, if anything.
    pub frame_note: Option<String>,
}

/// ADC onto the DSC grid, then the response map inside the DSC brain mask, with voxels whose
/// DSC or DWI fit fails `max_fit_nrmse` marked indeterminate.
///
/// Errors: the two series in different Frames of Reference (both UIDs named); thresholds that
/// are not valid; maps whose shapes do not match their grids.
pub fn compute(
    dsc: &ReadingSeries,
    dwi: &ReadingSeries,
    thresholds: &ReadingThresholds,
    max_fit_nrmse: f64,
) -> Result<ReadingMaps> {
    let (dsc_label, dwi_label) = (dsc.info.label(), dwi.info.label());
    let to = GridRef::new(
        dsc.geometry,
        dsc.info.frame_of_reference_uid.as_deref(),
        &dsc_label,
    );
    let from = GridRef::new(
        dwi.geometry,
        dwi.info.frame_of_reference_uid.as_deref(),
        &dwi_label,
    );
    let frame_note = match check_frames(from, to)? {
        FrameMatch::Same => None,
        FrameMatch::Assumed(n) => Some(n),
    };
    // ADC outside the DWI mask is 0 (not a diffusivity): NaN there, so it never mixes in.
    let adc_masked = Array3::from_shape_fn(dwi.map.dim(), |i| {
        if dwi.mask[i] {
            dwi.map[i]
        } else {
            f32::NAN
        }
    });
    let adc = resample_linear(adc_masked.view(), from, to)?;
    let adc_quality = dwi
        .fit_nrmse
        .map(|q| resample_linear(q, from, to))
        .transpose()?;
    let floor = max_fit_nrmse as f32;
    let passes = |q: f32| !(q > floor);
    let quality = Array3::from_shape_fn(dsc.map.dim(), |i| {
        dsc.fit_nrmse.is_none_or(|q| passes(q[i]))
            && adc_quality.as_ref().is_none_or(|q| passes(q[i]))
    });
    let response = response_map(
        dsc.map,
        adc.view(),
        dsc.mask,
        Some(quality.view()),
        thresholds,
    )?;
    let mut counts = [0usize; 4];
    let mut below_quality_floor = 0;
    for ((&c, &b), &ok) in response.iter().zip(dsc.mask.iter()).zip(quality.iter()) {
        if b {
            counts[c as usize] += 1;
            if !ok && c == ResponseClass::Indeterminate.code() {
                below_quality_floor += 1;
            }
        }
    }
    Ok(ReadingMaps {
        response,
        adc,
        counts,
        below_quality_floor,
        frame_note,
    })
}

/// The sidecar `response.json`: the classes, their rules with the thresholds in force, the
/// voxel shares and where the inputs came from.
#[derive(Serialize)]
struct ResponseRecord<'a> {
    what: &'static str,
    caution: &'static str,
    classes: Vec<ClassRecord>,
    thresholds: &'a ReadingThresholds,
    max_fit_nrmse: f64,
    below_quality_floor_voxels: usize,
    brain_voxels: usize,
    rcbv_from: String,
    adc_from: String,
    adc_resampling: &'static str,
    frame_of_reference: String,
    outputs: Vec<String>,
}

#[derive(Serialize)]
struct ClassRecord {
    value: u8,
    name: &'static str,
    rule: String,
    voxels: usize,
    share_of_brain: f64,
}

/// The caution every output of the reading carries.
pub const CAUTION: &str = "The classes are support for a reader, not a diagnosis (docs/methods.md §1): read them with the images, the history and the course over time.";

/// Where the DICOM response map goes and how it is encoded.
pub struct ReadingDicom<'a> {
    pub encoding: Encoding,
    pub uid_root: &'a str,
}

/// How the reading is made and written.
pub struct ReadingOptions<'a> {
    pub thresholds: &'a ReadingThresholds,
    /// The quality floor ([`MAX_FIT_NRMSE`] by default).
    pub max_fit_nrmse: f64,
    pub format: NiftiFormat,
    /// `None`: no DICOM.
    pub dicom: Option<ReadingDicom<'a>>,
}

/// Writes `response.nii.gz`, `adc.nii.gz` (on the DSC grid), `response.json`,
/// `preview/response.png` and, with `dicom`, `dicom/response/` (a derived series in the DSC
/// series' study) into `out`, atomically. Returns the files written.
pub fn write(
    maps: &ReadingMaps,
    dsc: &ReadingSeries,
    dwi: &ReadingSeries,
    opts: &ReadingOptions,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let (thresholds, format) = (opts.thresholds, opts.format);
    let mut dir = OutputDir::create(out)?;
    let g = dsc.geometry;
    let response = maps.response.mapv(f32::from);
    let mut outputs = Vec::new();
    for (m, data) in [(Map::Response, &response), (Map::AdcOnDsc, &maps.adc)] {
        let name = format.file(m.stem());
        nifti::write_map(&dir.path(&name), data, g, &m.nifti_description())?;
        outputs.push(name);
    }
    let spec = Map::Response.spec();
    let mut preview = crate::report::PreviewSpec::new(spec.title, spec.unit, spec.colormap);
    preview.range = Some((0.0, 3.0));
    preview.mask = Some(dsc.mask);
    preview.geometry = Some(g);
    let names = ResponseClass::ALL.map(|c| c.name());
    preview.class_names = Some(&names);
    let png = crate::report::montage_png(response.view(), &preview)?;
    // Folders are staged whole and move into place at commit.
    let previews = dir.path("preview");
    std::fs::create_dir_all(&previews).map_err(|e| Error::io(&previews, e))?;
    let png_path = previews.join(format!("{}.png", spec.stem));
    std::fs::write(&png_path, png).map_err(|e| Error::io(&png_path, e))?;
    outputs.push(format!("preview/{}.png", spec.stem));
    if let Some(d) = &opts.dicom {
        let legend: Vec<String> = ResponseClass::ALL
            .iter()
            .map(|c| format!("{} {}", c.code(), c.name()))
            .collect();
        let folder = dir.path("dicom").join(spec.stem);
        derived::write_derived(
            &DerivedMap {
                data: response.view(),
                geometry: g,
                quantity: spec.quantity.expect("the response map has a DICOM quantity"),
                series_description: format!("paramap {}", spec.title),
                series_number: dsc.info.series_number.unwrap_or(0) * 100 + 50,
                derivation: format!(
                    "paramap {} response classes ({}) from corrected rCBV of series {} and ADC of series {}; thresholds rCBV {}/{}, ADC {} mm2/s. {CAUTION}",
                    env!("CARGO_PKG_VERSION"),
                    legend.join(", "),
                    dsc.info.short_label(),
                    dwi.info.short_label(),
                    thresholds.rcbv_low,
                    thresholds.rcbv_high,
                    thresholds.adc_high_mm2_s,
                ),
            },
            dsc.info,
            &DerivedOptions {
                encoding: d.encoding,
                uid_root: d.uid_root.to_string(),
            },
            &folder,
        )?;
        outputs.push(format!("dicom/{}/", spec.stem));
    }
    let brain = dsc.mask.iter().filter(|&&b| b).count();
    let record = ResponseRecord {
        what: "voxelwise reading of corrected rCBV and ADC on the DSC grid (docs/methods.md §1)",
        caution: CAUTION,
        classes: ResponseClass::ALL
            .iter()
            .map(|&c| ClassRecord {
                value: c.code(),
                name: c.name(),
                rule: c.rule(thresholds),
                voxels: maps.counts[c.code() as usize],
                share_of_brain: maps.counts[c.code() as usize] as f64 / brain.max(1) as f64,
            })
            .collect(),
        thresholds,
        max_fit_nrmse: opts.max_fit_nrmse,
        below_quality_floor_voxels: maps.below_quality_floor,
        brain_voxels: brain,
        rcbv_from: dsc.info.label(),
        adc_from: dwi.info.label(),
        adc_resampling: "world geometry, trilinear over finite neighbours; NaN where the DWI voxel holding the centre is NaN or outside its mask (docs/methods.md §5)",
        frame_of_reference: maps
            .frame_note
            .clone()
            .unwrap_or_else(|| "shared by both series".into()),
        outputs,
    };
    let json = serde_json::to_string_pretty(&record).map_err(|e| Error::Invalid(e.to_string()))?;
    dir.write_text("response.json", &json)?;
    dir.commit()
}
