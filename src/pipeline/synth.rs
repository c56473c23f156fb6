//! Writing digital reference objects: DICOM series, NIfTI with side files, truth maps.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::io::dicom::write::{write_series, DicomWriteOptions, Flavour};
use crate::io::{fsl, nifti, output::OutputDir};
use crate::synth::dwi::{dwi_phantom, DwiPhantomSpec, Region};

/// The patient of phantoms written into one study.
pub const STUDY_PATIENT: &str = "PARAMAP-PHANTOM";

pub struct SynthDwiOptions {
    pub flavour: Flavour,
    pub enhanced: bool,
    pub shuffle: bool,
    /// Siemens mosaic (one image per volume); implies the Siemens CSA conventions.
    pub mosaic: bool,
}

#[derive(Serialize)]
struct PhantomRecord<'a> {
    kind: &'static str,
    spec: &'a DwiPhantomSpec,
    regions: Vec<RegionRecord<'a>>,
    dicom_vendor_convention: String,
    enhanced: bool,
    note: &'static str,
}

#[derive(Serialize)]
struct RegionRecord<'a> {
    #[serde(flatten)]
    region: &'a Region,
    adc_mm2_per_s: f64,
}

/// Writes the DWI phantom under `out`: dicom/, nifti/, truth/ and phantom.json.
pub fn write_dwi_phantom(
    spec: &DwiPhantomSpec,
    opts: &SynthDwiOptions,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    write_dwi_phantom_in(spec, opts, out, None)
}

/// [`write_dwi_phantom`] into an existing study (`synth --study-uid`): the same patient, study
/// and Frame of Reference as the other phantoms written there, so `paramap run` reads them as
/// one study.
pub fn write_dwi_phantom_in(
    spec: &DwiPhantomSpec,
    opts: &SynthDwiOptions,
    out: &Path,
    study: Option<&crate::io::dicom::write::StudyIds>,
) -> Result<Vec<PathBuf>> {
    let phantom = dwi_phantom(spec);
    let mut dir = OutputDir::create(out)?;
    let g = &phantom.series.geometry;
    let staged_dicom = dir.path("dicom");
    std::fs::create_dir_all(&staged_dicom).map_err(|e| crate::Error::io(&staged_dicom, e))?;
    write_series(
        &phantom.series,
        &staged_dicom,
        &DicomWriteOptions {
            flavour: opts.flavour,
            enhanced: opts.enhanced,
            series_description: "paramap DWI phantom".into(),
            series_number: 1,
            patient_id: if study.is_some() {
                STUDY_PATIENT.into()
            } else {
                "PARAMAP-DWI".into()
            },
            shuffle_instances: opts.shuffle,
            mosaic: opts.mosaic,
            seed: spec.seed,
            study: study.cloned(),
        },
    )?;
    let staged_nifti = dir.path("nifti");
    std::fs::create_dir_all(&staged_nifti).map_err(|e| crate::Error::io(&staged_nifti, e))?;
    nifti::write_series(
        &staged_nifti.join("dwi.nii.gz"),
        &phantom.series.data,
        g,
        "paramap DWI phantom",
        Some(4.0),
    )?;
    let diffusion: Vec<_> = phantom
        .series
        .volumes
        .iter()
        .filter_map(|v| v.diffusion)
        .collect();
    let (bval, bvec) = fsl::bval_bvec_text(&diffusion, g);
    std::fs::write(staged_nifti.join("dwi.bval"), bval)
        .map_err(|e| crate::Error::io(&staged_nifti, e))?;
    std::fs::write(staged_nifti.join("dwi.bvec"), bvec)
        .map_err(|e| crate::Error::io(&staged_nifti, e))?;
    std::fs::write(
        staged_nifti.join("dwi.json"),
        "{\n  \"Manufacturer\": \"paramap\",\n  \"SeriesDescription\": \"paramap DWI phantom\",\n  \"EchoTime\": 0.08,\n  \"RepetitionTime\": 4.0\n}\n",
    )
    .map_err(|e| crate::Error::io(&staged_nifti, e))?;
    let staged_truth = dir.path("truth");
    std::fs::create_dir_all(&staged_truth).map_err(|e| crate::Error::io(&staged_truth, e))?;
    nifti::write_map(
        &staged_truth.join("adc_truth.nii.gz"),
        &phantom.adc_truth,
        g,
        "true ADC mm2/s",
    )?;
    let labels = phantom.labels.mapv(|l| l as f32);
    nifti::write_map(
        &staged_truth.join("labels.nii.gz"),
        &labels,
        g,
        "region labels (phantom.json)",
    )?;
    let record = PhantomRecord {
        kind: "dwi",
        spec,
        regions: phantom
            .regions
            .iter()
            .map(|r| RegionRecord {
                region: r,
                adc_mm2_per_s: r.adc(),
            })
            .collect(),
        dicom_vendor_convention: format!("{:?}", opts.flavour),
        enhanced: opts.enhanced,
        note:
            "true ADC = mean diffusivity of each region's tensor; signal sampled along LPS x, y, z",
    };
    dir.write_text(
        "phantom.json",
        &serde_json::to_string_pretty(&record).unwrap_or_default(),
    )?;
    dir.commit()
}

/// How the DSC phantom's DICOM is written.
pub struct SynthDscOptions {
    pub flavour: Flavour,
    pub enhanced: bool,
    pub shuffle: bool,
}

#[derive(Serialize)]
struct DscPhantomRecord<'a> {
    kind: &'static str,
    spec: &'a crate::synth::dsc::DscPhantomSpec,
    regions: Vec<DscRegionRecord<'a>>,
    aif_area_per_s_s: f64,
    note: &'static str,
}

#[derive(Serialize)]
struct DscRegionRecord<'a> {
    #[serde(flatten)]
    region: &'a crate::synth::dsc::DscRegion,
    mtt_s: f64,
    tmax_s: f64,
    rcbv_true: f64,
}

/// Writes the DSC phantom under `out`: dicom/, nifti/ (dsc.nii.gz + dsc.json sidecar, and
/// dsc_e2.nii.gz for a dual echo), truth/ (labels.nii.gz and a truth map per output:
/// rcbv_truth, cbv_truth, cbf_truth, mtt_truth, tmax_truth, k2_truth) and phantom.json.
pub fn write_dsc_phantom(
    spec: &crate::synth::dsc::DscPhantomSpec,
    opts: &SynthDscOptions,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    write_dsc_phantom_in(spec, opts, out, None)
}

/// [`write_dsc_phantom`] into an existing study, as [`write_dwi_phantom_in`].
pub fn write_dsc_phantom_in(
    spec: &crate::synth::dsc::DscPhantomSpec,
    opts: &SynthDscOptions,
    out: &Path,
    study: Option<&crate::io::dicom::write::StudyIds>,
) -> Result<Vec<PathBuf>> {
    use crate::synth::dsc::{dsc_phantom, AIF_AREA, WHITE_MATTER};
    let phantom = dsc_phantom(spec);
    let mut dir = OutputDir::create(out)?;
    let g = &phantom.series.geometry;
    let staged_dicom = dir.path("dicom");
    std::fs::create_dir_all(&staged_dicom).map_err(|e| crate::Error::io(&staged_dicom, e))?;
    let mut echoes = vec![&phantom.series];
    if let Some(e2) = &phantom.echo2 {
        echoes.push(e2);
    }
    crate::io::dicom::write::write_echoes(
        &echoes,
        &staged_dicom,
        &DicomWriteOptions {
            flavour: opts.flavour,
            enhanced: opts.enhanced,
            series_description: "paramap DSC phantom".into(),
            series_number: 2,
            patient_id: if study.is_some() {
                STUDY_PATIENT.into()
            } else {
                "PARAMAP-DSC".into()
            },
            shuffle_instances: opts.shuffle,
            seed: spec.seed,
            mosaic: false,
            study: study.cloned(),
        },
    )?;
    let staged_nifti = dir.path("nifti");
    std::fs::create_dir_all(&staged_nifti).map_err(|e| crate::Error::io(&staged_nifti, e))?;
    let io_err = |e| crate::Error::io(&staged_nifti, e);
    nifti::write_series(
        &staged_nifti.join("dsc.nii.gz"),
        &phantom.series.data,
        g,
        "paramap DSC phantom",
        Some(spec.dt_s),
    )?;
    let sidecar = |te: f64| {
        format!("{{\n  \"Manufacturer\": \"paramap\",\n  \"SeriesDescription\": \"paramap DSC phantom\",\n  \"EchoTime\": {te},\n  \"RepetitionTime\": {}\n}}\n", spec.dt_s)
    };
    std::fs::write(staged_nifti.join("dsc.json"), sidecar(spec.te_s)).map_err(io_err)?;
    if let (Some(e2), Some(te2)) = (&phantom.echo2, spec.te2_s) {
        nifti::write_series(
            &staged_nifti.join("dsc_e2.nii.gz"),
            &e2.data,
            g,
            "paramap DSC phantom echo 2",
            Some(spec.dt_s),
        )?;
        std::fs::write(staged_nifti.join("dsc_e2.json"), sidecar(te2)).map_err(io_err)?;
    }
    let staged_truth = dir.path("truth");
    std::fs::create_dir_all(&staged_truth).map_err(|e| crate::Error::io(&staged_truth, e))?;
    nifti::write_map(
        &staged_truth.join("labels.nii.gz"),
        &phantom.labels.mapv(f32::from),
        g,
        "region labels (phantom.json)",
    )?;
    let wm = phantom
        .regions
        .iter()
        .find(|r| r.label == WHITE_MATTER)
        .map_or(1.0, |r| r.cbv);
    // A truth map per output: each tissue region's value, 0 outside the head, NaN in vessels
    // (not tissue). CBV and CBF per 100 ml of tissue, as paramap's with kH = ρ = 1.
    type Truth = fn(&crate::synth::dsc::DscRegion, f64) -> f64;
    let truths: [(&str, Truth, &str); 6] = [
        (
            "rcbv_truth",
            |r, wm| r.cbv / wm,
            "true rCBV (ratio to white matter)",
        ),
        (
            "cbv_truth",
            |r, _| r.cbv,
            "true CBV ml/100ml (paramap cbv with kH = rho = 1)",
        ),
        (
            "cbf_truth",
            |r, _| r.cbf,
            "true CBF ml/100ml/min (paramap cbf with kH = rho = 1)",
        ),
        ("mtt_truth", |r, _| r.mtt_s(), "true MTT (s)"),
        (
            "tmax_truth",
            |r, _| r.tmax_s(),
            "true Tmax from the AIF (s)",
        ),
        (
            "k2_truth",
            |r, _| r.k2,
            "true K2 relative to the AIF (s^-1)",
        ),
    ];
    for (stem, value, what) in truths {
        let map = phantom
            .labels
            .mapv(|l| match phantom.regions.iter().find(|r| r.label == l) {
                None => 0.0,
                Some(r) if !r.is_tissue() => f32::NAN,
                Some(r) => value(r, wm) as f32,
            });
        nifti::write_map(&staged_truth.join(format!("{stem}.nii.gz")), &map, g, what)?;
    }
    let record = DscPhantomRecord {
        kind: "dsc",
        spec,
        regions: phantom.regions.iter().map(|r| DscRegionRecord { region: r, mtt_s: r.mtt_s(), tmax_s: r.tmax_s(), rcbv_true: r.cbv / wm }).collect(),
        aif_area_per_s_s: AIF_AREA,
        note: "rcbv_true = CBV / CBV of white matter; leakage follows the BSW model with the mean curve of the non-leaky regions",
    };
    dir.write_text(
        "phantom.json",
        &serde_json::to_string_pretty(&record).unwrap_or_default(),
    )?;
    dir.commit()
}
