//! What `paramap compare` records: `compare.json` (the placements, change maps and PRM shares
//! per visit, the ROI table and rules, and the conventions they follow) and `roi_table.csv`.

use std::path::PathBuf;

use serde::Serialize;

use crate::models::change::PrmShares;
use crate::models::change::{pct, RoiRule, RoiVisit, DENOMINATOR_FLOOR};
use crate::models::registration::{Registration, RegistrationOptions};
use crate::report::reading::NOT_A_DIAGNOSIS;
use crate::volume::Affine;

use super::{CompareOptions, RegistrationMode};

/// How a series was placed on the reference grid.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    /// "DSC" or "DWI".
    pub series: String,
    pub folder: PathBuf,
    /// "reference", "same Frame of Reference" or "registered".
    pub how: String,
    /// Reference world → this series' world, LPS mm.
    pub matrix_lps: Affine,
    /// The transform files (relative to the output folder), where written.
    pub itk_file: Option<String>,
    pub ras_file: Option<String>,
    /// What was registered onto what, and the quality.
    pub registered: Option<RegisteredPair>,
}

/// A registration: what was registered onto what, and its result.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredPair {
    pub fixed: String,
    pub moving: String,
    #[serde(flatten)]
    pub result: Registration,
}

/// One map's change from visit 1 at a later visit: its files and PRM shares.
#[derive(Debug, Clone, Serialize)]
pub struct MapChange {
    pub map: String,
    pub unit: String,
    pub change_file: String,
    pub prm_file: String,
    pub shares: Vec<PrmShares>,
    /// The DICOM series of the change map and the PRM (folders relative to the output), in
    /// the later visit's study on its DSC grid.
    pub dicom: Vec<String>,
}

/// One visit as the record gives it.
#[derive(Debug, Clone, Serialize)]
pub struct VisitRecord {
    pub visit: usize,
    /// Position among the arguments (visits are taken in date order).
    pub given_position: usize,
    /// StudyDate and StudyTime of the source study (DICOM DA, TM), where recorded.
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub study_uid: Option<String>,
    pub folder: PathBuf,
    pub dsc: Option<PathBuf>,
    pub dwi: Option<PathBuf>,
    pub patient_id: Option<String>,
    pub placements: Vec<Placement>,
    /// Change maps against the first visit (visits 2 on).
    pub changes: Vec<MapChange>,
}

/// The JSON record (`compare.json`).
#[derive(Debug, Clone, Serialize)]
pub struct CompareRecord {
    pub command: String,
    pub reference_grid: String,
    pub change_threshold_pct: f64,
    pub denominator_floor: String,
    pub prm_codes: [&'static str; 4],
    pub registration_mode: RegistrationMode,
    pub registration_method: &'static str,
    pub registration_options: RegistrationOptions,
    pub transform_convention: &'static str,
    pub visits: Vec<VisitRecord>,
    pub roi_table: Vec<RoiVisit>,
    pub roi_rules: Vec<RoiRule>,
    pub notices: Vec<String>,
    pub statement: &'static str,
    /// Which study and grid the DICOM change maps belong to, and why.
    pub dicom_placement: &'static str,
    pub outputs: Vec<PathBuf>,
    /// The DICOM files among the outputs (what `--send`/`--stowrs` deliver).
    pub dicom_outputs: Vec<PathBuf>,
    /// Filled by the caller that delivers the DICOM outputs.
    pub deliveries: Vec<crate::net::Delivery>,
}

/// Where the DICOM change maps go (docs/methods.md §7), as the record says it.
pub const DICOM_PLACEMENT: &str = "Each later visit's change maps and PRMs are derived series in that visit's study (the study being read), on that study's DSC grid with its Frame of Reference: they are computed on visit 1's grid, then resampled onto the later DSC grid through the inverse of the registration, so that a viewer links them with the later study's images by position. Keeping visit 1's grid would need visit 1's Frame of Reference in the later study, which a viewer would link with nothing there. They reference the source series of both visits (Referenced Series Sequence for the later study's, Studies Containing Other Referenced Instances Sequence for visit 1's, and the Source Image Sequence).";

/// `roi_table.csv`: the ROI table over time with each visit's change from visit 1 (ADC in
/// 10⁻³ mm²/s). `rows` is not empty.
pub(super) fn roi_csv(rows: &[RoiVisit]) -> String {
    let f = |v: Option<f64>, scale: f64| v.map(|x| format!("{}", x * scale)).unwrap_or_default();
    let first = &rows[0];
    let mut s = String::from(
        "visit,folder,roi,volume_ml,rcbv_median,cbf_median_ml_100g_min,adc_median_1e-3_mm2_s,rcbv_change_from_visit1_pct,adc_change_from_visit1_pct,volume_change_from_visit1_pct\n",
    );
    for r in rows {
        let rc = first
            .rcbv_median
            .zip(r.rcbv_median)
            .and_then(|(a, b)| pct(a, b));
        let dc = first
            .adc_median_mm2_s
            .zip(r.adc_median_mm2_s)
            .and_then(|(a, b)| pct(a, b));
        s += &format!(
            "{},{},{},{:.3},{},{},{},{},{},{}\n",
            r.visit,
            r.folder.display(),
            r.roi.display(),
            r.volume_ml,
            f(r.rcbv_median, 1.0),
            f(r.cbf_median, 1.0),
            f(r.adc_median_mm2_s, 1e3),
            f(rc, 1.0),
            f(dc, 1.0),
            f(pct(first.volume_ml, r.volume_ml), 1.0),
        );
    }
    s
}

/// The record of a comparison, its outputs still to be listed. `reference_label` is the
/// reference series' label.
pub(super) fn record(
    reference_label: &str,
    opts: &CompareOptions,
    visits: Vec<VisitRecord>,
    roi_table: Vec<RoiVisit>,
    roi_rules: Vec<RoiRule>,
    notices: Vec<String>,
) -> CompareRecord {
    CompareRecord {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        reference_grid: format!("visit 1's {reference_label}"),
        change_threshold_pct: opts.change_pct,
        denominator_floor: format!(
            "change maps are NaN where visit 1's value is below {DENOMINATOR_FLOOR} × its brain median"
        ),
        prm_codes: [
            "0 not classified (outside either brain mask, or not finite in either visit)",
            "1 decreased by more than the threshold",
            "2 unchanged (within ± the threshold)",
            "3 increased by more than the threshold",
        ],
        registration_mode: opts.mode,
        registration_method: "rigid (6 DOF), Mattes mutual information (32 bins), 3 resolution levels, Nelder-Mead (argmin); docs/methods.md §7",
        registration_options: opts.registration.clone(),
        transform_convention: "matrix_lps and the transform files map a point of visit 1's world (the reference) to the same anatomy in the later series' world: ITK/ANTs (antsApplyTransforms -r visit1 -i later -t *_itk.txt) and MRtrix3 (mrtransform later -linear *_ras.txt -template visit1) convention",
        visits,
        roi_table,
        roi_rules,
        notices,
        statement: NOT_A_DIAGNOSIS,
        dicom_placement: DICOM_PLACEMENT,
        outputs: vec![],
        dicom_outputs: vec![],
        deliveries: vec![],
    }
}
