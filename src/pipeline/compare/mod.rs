//! `paramap compare`: follow-up visits read together (docs/methods.md §7).
//!
//! Each visit is a `paramap run` output folder (or one series' folder of `paramap dsc` /
//! `paramap adc`). Every later visit is placed on the first visit's DSC grid (the reference):
//! its DSC series by rigid registration of its baseline signal (S0) onto the first visit's
//! ([`crate::models::registration`]), its DWI series by registration of its b = 0 signal onto
//! the first visit's DWI b = 0 (or onto the reference S0 when the first visit has no DWI).
//! Series that share the reference's Frame of Reference UID are placed by their scanner
//! coordinates instead (the within-study shortcut; `--registration always` registers them
//! too).
//!
//! Then, per later visit and map (rCBV, ADC, CBF): the change map `100·(later − first) / first`
//! (%), and the parametric response map (Galbán et al., Nat Med 2009;15:572–576; the
//! functional diffusion map of Moffat et al., PNAS 2005;102:5524–5529): each voxel valid in
//! both visits classed increased (change > +`change` %), decreased (< −`change` %) or unchanged,
//! with the voxel shares inside the brain and the first visit's lesion ROI. At ROI level, each
//! visit's own ROI on its own maps (no registration needed): medians, volume, and the follow-up
//! criterion of docs/methods.md §1 between consecutive visits, worded as support for a reader.
//!
//! The steps, each in its own module: [`visits`] reads (or first processes) the visits and
//! puts them in date order; [`placement`] places every series on the reference grid and
//! resamples it there; the change maps and PRMs ([`crate::models::change`]) and the ROI table
//! are computed here; [`dicom`] writes the DICOM change maps into each later study; [`report`]
//! builds `report.html`; [`records`] holds what `compare.json` says.

mod dicom;
mod placement;
mod records;
mod report;
mod visits;

use std::path::{Path, PathBuf};

use ndarray::{Array3, Zip};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::dicom::derived::{self, Encoding};
use crate::io::nifti::{self, NiftiFormat};
use crate::io::output::OutputDir;
use crate::maps::Map;
use crate::models::change::{change_and_prm, rule, shares};
use crate::models::registration::RegistrationOptions;
use crate::models::response::ReadingThresholds;
use crate::models::roi::roi_summary;
use crate::pipeline::study::RunOptions;
use crate::report::reading::{load_roi_on_grid, NOT_A_DIAGNOSIS};

use placement::OnReference;
use visits::{SeriesMaps, Visit};

pub use crate::models::change::{
    PrmShares, RoiRule, RoiVisit, DENOMINATOR_FLOOR, PRM_DECREASED, PRM_INCREASED,
    PRM_NOT_CLASSIFIED, PRM_UNCHANGED,
};
pub use records::{
    CompareRecord, MapChange, Placement, RegisteredPair, VisitRecord, DICOM_PLACEMENT,
};

/// When later series are registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Series in the reference's Frame of Reference are placed by scanner coordinates; the
    /// others are registered.
    Auto,
    /// Every series is registered.
    Always,
}

/// Options of [`compare`].
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The PRM and ROI rule threshold (%), > 0.
    pub change_pct: f64,
    /// One ROI per visit (visit order), or none.
    pub rois: Vec<PathBuf>,
    pub mode: RegistrationMode,
    pub registration: RegistrationOptions,
    pub thresholds: ReadingThresholds,
    pub format: NiftiFormat,
    /// DICOM encoding of the change maps and PRMs (derived series in each later visit's
    /// study); None: no DICOM.
    pub dicom: Option<Encoding>,
    /// Root of the derived series' new UIDs.
    pub uid_root: String,
    /// How a visit given as a study folder (not a `paramap run` output) is processed first.
    pub run: RunOptions,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            change_pct: 20.0,
            rois: vec![],
            mode: RegistrationMode::Auto,
            registration: RegistrationOptions::default(),
            thresholds: ReadingThresholds::default(),
            format: NiftiFormat::Gz,
            dicom: Some(Encoding::Classic),
            uid_root: derived::UUID_UID_ROOT.into(),
            run: RunOptions::default(),
        }
    }
}

/// Compares the visits (folders in time order; at least two) and writes the results into the
/// claimed output folder `out` (atomically; nothing is written when anything fails, a refused
/// registration included).
///
/// Errors: fewer than two visits; a visit folder without paramap results; ROIs not one per
/// visit; a change threshold that is not positive; a registration refused
/// ([`crate::models::registration::register`]); unreadable or inconsistent NIfTI files.
pub fn compare(
    visits: &[PathBuf],
    out: &Path,
    opts: &CompareOptions,
    progress: &dyn Fn(&str),
) -> Result<CompareRecord> {
    check_arguments(visits, opts)?;
    let mut o = OutputDir::create(out)?;
    let mut notices = Vec::new();
    let loaded = visits::load_visits(visits, out, &mut o, &opts.run, progress)?;
    let (loaded, rois) = visits::in_date_order(loaded, &opts.rois, &mut notices);
    let opts = &CompareOptions {
        rois,
        ..opts.clone()
    };
    notices.extend(visits::patient_notice(&loaded));
    let first = &loaded[0];
    let reference = first.dsc.as_ref().or(first.dwi.as_ref()).expect("checked");

    let mut placements =
        placement::place_series(&loaded, reference, opts.mode, &opts.registration)?;
    let (on_ref, mut visit_records) =
        placement::onto_reference(&loaded, &mut placements, reference, opts.format, &mut o)?;
    // The first visit's ROI on the reference grid, for the PRM shares.
    let first_roi = match opts.rois.first() {
        Some(p) => Some(load_roi_on_grid(p, reference.grid())?.mask),
        None => None,
    };
    let changes = change_maps(
        &on_ref,
        reference,
        first_roi.as_ref(),
        opts,
        &mut visit_records,
        &mut notices,
        &mut o,
    )?;
    let (roi_table, roi_rules) = roi_level(&loaded, opts)?;
    if !roi_table.is_empty() {
        o.write_text("roi_table.csv", &records::roi_csv(&roi_table))?;
    }
    if let Some(encoding) = opts.dicom {
        dicom::write_changes(
            &loaded,
            &placements,
            &changes,
            reference,
            opts,
            encoding,
            &mut visit_records,
            &mut notices,
            &mut o,
        )?;
    }
    let html = report::compare_report(
        &loaded,
        &visit_records,
        &on_ref,
        &changes,
        first_roi.as_ref(),
        reference,
        opts,
        &roi_table,
        &roi_rules,
        &notices,
    )?;
    let record = records::record(
        &reference.label,
        opts,
        visit_records,
        roi_table,
        roi_rules,
        notices,
    );
    commit(record, &html, o, out)
}

/// Refuses fewer than two visits, a change threshold that is not a positive percentage, ROIs
/// not one per visit, and invalid reading thresholds.
fn check_arguments(visits: &[PathBuf], opts: &CompareOptions) -> Result<()> {
    if visits.len() < 2 {
        return Err(Error::Invalid(
            "compare needs at least two visits (EARLIER LATER), each a `paramap run` output folder"
                .into(),
        ));
    }
    if !(opts.change_pct > 0.0 && opts.change_pct.is_finite()) {
        return Err(Error::Invalid(format!(
            "--change {}: the change threshold must be a positive percentage (e.g. 20)",
            opts.change_pct
        )));
    }
    if !opts.rois.is_empty() && opts.rois.len() != visits.len() {
        return Err(Error::Invalid(format!(
            "{} --roi given for {} visits: give one ROI per visit, in visit order (each drawn on that visit's own series)",
            opts.rois.len(),
            visits.len()
        )));
    }
    opts.thresholds.validate()?;
    Ok(())
}

/// One later visit's change of one map on the reference grid.
pub(super) struct ChangeOnReference {
    /// The visit's index (0-based; ≥ 1, visit 1 being the reference).
    pub(super) visit: usize,
    pub(super) map: Map,
    /// The change map (%).
    pub(super) change: Array3<f32>,
    /// The PRM (`PRM_*` codes).
    pub(super) prm: Array3<u8>,
}

/// Each later visit's change maps and PRMs against visit 1, on the reference grid, valid inside
/// the reference brain mask and both visits' resampled masks: written as `vN_delta_<map>_pct`
/// and `vN_prm_<map>`, and their PRM shares (brain; visit 1's lesion ROI where given) added to
/// the visit's record. A map visit 1 lacks gets a notice instead.
///
/// Errors: writing fails.
fn change_maps(
    on_ref: &[Vec<OnReference>],
    reference: &SeriesMaps,
    first_roi: Option<&Array3<bool>>,
    opts: &CompareOptions,
    visit_records: &mut [VisitRecord],
    notices: &mut Vec<String>,
    o: &mut OutputDir,
) -> Result<Vec<ChangeOnReference>> {
    let fmt = opts.format;
    let ref_valid = &reference.mask;
    let mut changes = Vec::new();
    for k in 1..on_ref.len() {
        let tag = format!("v{}", k + 1);
        for (map, later, later_mask) in &on_ref[k] {
            let Some((_, earlier, earlier_mask)) = on_ref[0].iter().find(|(m, _, _)| m == map)
            else {
                notices.push(format!(
                    "visit 1 has no {} map: no {} change for visit {}",
                    map.stem(),
                    map.stem(),
                    k + 1
                ));
                continue;
            };
            let valid = Zip::from(ref_valid)
                .and(earlier_mask)
                .and(later_mask)
                .map_collect(|&a, &b, &c| a && b && c);
            let (change, prm) = change_and_prm(earlier, later, &valid, opts.change_pct);
            let change_file = fmt.file(&format!("{tag}_delta_{}_pct", map.stem()));
            let prm_file = fmt.file(&format!("{tag}_prm_{}", map.stem()));
            nifti::write_map(
                &o.path(&change_file),
                &change,
                &reference.geometry,
                &format!("paramap change of {} from visit 1 (%)", map.stem()),
            )?;
            nifti::write_map(
                &o.path(&prm_file),
                &prm.mapv(f32::from),
                &reference.geometry,
                "paramap PRM 1 decreased 2 unchanged 3 increased 0 not classified",
            )?;
            let mut sh = vec![shares("brain", &prm, &change, ref_valid)];
            if let Some(roi) = first_roi {
                sh.push(shares("lesion ROI (visit 1)", &prm, &change, roi));
            }
            visit_records[k].changes.push(MapChange {
                map: map.stem().to_string(),
                unit: "%".into(),
                change_file,
                prm_file,
                shares: sh,
                dicom: vec![],
            });
            changes.push(ChangeOnReference {
                visit: k,
                map: *map,
                change,
                prm,
            });
        }
    }

    Ok(changes)
}

/// Each visit's own ROI on its own maps: volume as drawn and the medians of rCBV, CBF and ADC,
/// and the follow-up rule between consecutive visits. Empty without ROIs.
///
/// Errors: an ROI that can't be read or placed on its visit's grid.
fn roi_level(loaded: &[Visit], opts: &CompareOptions) -> Result<(Vec<RoiVisit>, Vec<RoiRule>)> {
    let mut roi_table = Vec::new();
    for (k, (v, roi)) in loaded.iter().zip(&opts.rois).enumerate() {
        let grid_of = v.dsc.as_ref().or(v.dwi.as_ref()).expect("loaded");
        let volume_ml = load_roi_on_grid(roi, grid_of.grid())?.drawn_ml;
        let (rcbv, cbf) = match &v.dsc {
            Some(s) => (
                roi_median(s.map(Map::Rcbv), s, roi)?,
                roi_median(s.map(Map::Cbf), s, roi)?,
            ),
            None => (None, None),
        };
        let adc = match &v.dwi {
            Some(s) => roi_median(s.map(Map::Adc), s, roi)?,
            None => None,
        };
        roi_table.push(RoiVisit {
            visit: k + 1,
            folder: v.dir.clone(),
            roi: roi.clone(),
            volume_ml,
            rcbv_median: rcbv,
            cbf_median: cbf,
            adc_median_mm2_s: adc,
        });
    }
    let roi_rules: Vec<RoiRule> = roi_table
        .windows(2)
        .map(|w| {
            let mut r = rule(&w[0], &w[1], opts.change_pct, &opts.thresholds);
            r.statement = format!("{} {NOT_A_DIAGNOSIS}", r.statement);
            r
        })
        .collect();
    Ok((roi_table, roi_rules))
}

/// The median of `map` (where the series has it) inside `roi` placed on the series' grid; None
/// when it has no finite value there.
fn roi_median(map: Option<&Array3<f32>>, s: &SeriesMaps, roi: &Path) -> Result<Option<f64>> {
    let Some(map) = map else { return Ok(None) };
    let on = load_roi_on_grid(roi, s.grid())?;
    let m = roi_summary(map.view(), on.mask.view())?.median;
    Ok(m.is_finite().then_some(m))
}

/// Writes `compare.json` and `report.html` and commits the output folder; the record lists
/// the outputs, and the DICOM files among them (rewritten once they are known).
fn commit(
    mut record: CompareRecord,
    html: &str,
    mut o: OutputDir,
    out: &Path,
) -> Result<CompareRecord> {
    let json = serde_json::to_string_pretty(&record)
        .map_err(|e| Error::Invalid(format!("record: {e}")))?;
    o.write_text("compare.json", &json)?;
    o.write_text("report.html", html)?;
    record.outputs = o.commit()?;
    record.dicom_outputs = dicom_files(&out.join("dicom"));
    if !record.dicom_outputs.is_empty() {
        // The record lists them too.
        let json = serde_json::to_string_pretty(&record)
            .map_err(|e| Error::Invalid(format!("record: {e}")))?;
        crate::io::output::write_file_atomic(&out.join("compare.json"), &json)?;
    }
    Ok(record)
}

/// Every `.dcm` below `dir`, sorted.
fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "dcm") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
