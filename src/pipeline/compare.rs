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

use std::path::{Path, PathBuf};

use ndarray::{Array3, Axis, Zip};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::dicom::derived::{self, DerivedMap, DerivedOptions, Encoding};
use crate::io::nifti::{self, NiftiFormat};
use crate::io::output::OutputDir;
use crate::maps::Map;
use crate::models::registration::{
    self, compose, register, RegImage, Registration, RegistrationOptions,
};
use crate::models::response::ReadingThresholds;
use crate::models::roi::roi_summary;
use crate::pipeline::study::{run_study, RunOptions, Status};
use crate::report::reading::{load_roi_on_grid, NOT_A_DIAGNOSIS};
use crate::volume::resample::{resample_linear_through, resample_mask_through, GridRef};
use crate::volume::{Affine, DicomSource, Geometry, SeriesInfo};

/// PRM voxel values.
pub const PRM_NOT_CLASSIFIED: u8 = 0;
pub const PRM_DECREASED: u8 = 1;
pub const PRM_UNCHANGED: u8 = 2;
pub const PRM_INCREASED: u8 = 3;

/// A change map's denominator must exceed this share of the first visit's brain median; below
/// it (near-zero values, where a percentage explodes) the change is NaN.
pub const DENOMINATOR_FLOOR: f64 = 0.05;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum Kind {
    Dsc,
    Dwi,
}

/// One series' results as `paramap run` wrote them.
struct SeriesMaps {
    folder: PathBuf,
    geometry: Geometry,
    s0: Array3<f32>,
    mask: Array3<bool>,
    /// (map, values): rCBV and CBF (DSC) or ADC (DWI), where written.
    maps: Vec<(Map, Array3<f32>)>,
    frame_of_reference_uid: Option<String>,
    patient_id: Option<String>,
    label: String,
    /// The source series as paramap's DICOM outputs of it record it (patient, study, Frame of
    /// Reference, the source instances); `dicom` is None without DICOM outputs.
    info: SeriesInfo,
    /// StudyDate and StudyTime (DICOM DA, TM) of the source study.
    study_date: Option<String>,
    study_time: Option<String>,
}

impl SeriesMaps {
    fn map(&self, m: Map) -> Option<&Array3<f32>> {
        self.maps.iter().find(|(k, _)| *k == m).map(|(_, a)| a)
    }
    fn grid(&self) -> GridRef<'_> {
        GridRef::new(
            &self.geometry,
            self.frame_of_reference_uid.as_deref(),
            &self.label,
        )
    }
}

struct Visit {
    dir: PathBuf,
    /// Position among the arguments (1-based).
    given: usize,
    dsc: Option<SeriesMaps>,
    dwi: Option<SeriesMaps>,
}

fn image_path(dir: &Path, stem: &str) -> Option<PathBuf> {
    [NiftiFormat::Gz, NiftiFormat::Nii]
        .iter()
        .map(|f| dir.join(f.file(stem)))
        .find(|p| p.is_file())
}

fn read3(path: &Path) -> Result<(Array3<f32>, Geometry)> {
    let (data, g, _) = nifti::read(path)?;
    if data.shape()[0] != 1 {
        return Err(Error::Nifti {
            path: path.to_path_buf(),
            problem: format!(
                "a 3-D map was expected; this image has {} volumes",
                data.shape()[0]
            ),
        });
    }
    Ok((data.index_axis(Axis(0), 0).to_owned(), g))
}

fn load_series(folder: &Path, kind: Kind) -> Result<SeriesMaps> {
    let (record, maps, mask_stem) = match kind {
        Kind::Dsc => ("dsc.json", vec![Map::Rcbv, Map::Cbf], Map::BrainMask.stem()),
        Kind::Dwi => ("adc.json", vec![Map::Adc], Map::AdcMask.stem()),
    };
    let need = |stem: &str| {
        image_path(folder, stem).ok_or_else(|| Error::NotFound {
            path: folder.join(NiftiFormat::Gz.file(stem)),
        })
    };
    let (s0, geometry) = read3(&need(Map::DscS0.stem())?)?;
    let fits = |g: &Geometry, p: &Path| -> Result<()> {
        if g.dims != geometry.dims || g.max_corner_distance(&geometry) > 0.1 {
            return Err(Error::Nifti {
                path: p.to_path_buf(),
                problem: format!(
                    "its grid differs from {}'s s0 image; the folder mixes results of different series",
                    folder.display()
                ),
            });
        }
        Ok(())
    };
    let mask_path = need(mask_stem)?;
    let (mask, g) = read3(&mask_path)?;
    fits(&g, &mask_path)?;
    let mut out = Vec::new();
    for m in maps {
        if let Some(p) = image_path(folder, m.stem()) {
            let (a, g) = read3(&p)?;
            fits(&g, &p)?;
            out.push((m, a));
        }
    }
    let input = std::fs::read_to_string(folder.join(record))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| v["input"].clone());
    let text = |k: &str| {
        input
            .as_ref()
            .and_then(|i| i[k].as_str())
            .map(str::to_string)
    };
    let record = dicom_record(folder);
    let (info, study_date, study_time) = match record {
        Some(r) => r,
        None => (
            SeriesInfo {
                source: folder.display().to_string(),
                frame_of_reference_uid: text("frame_of_reference_uid"),
                patient_id: text("patient_id"),
                study_uid: text("study_uid"),
                ..Default::default()
            },
            None,
            None,
        ),
    };
    Ok(SeriesMaps {
        info,
        study_date,
        study_time,
        label: format!("{} ({kind:?})", folder.display()),
        folder: folder.to_path_buf(),
        geometry,
        s0: s0.mapv(|v| if v.is_finite() { v } else { 0.0 }),
        mask: mask.mapv(|v| v != 0.0),
        maps: out,
        frame_of_reference_uid: text("frame_of_reference_uid"),
        patient_id: text("patient_id"),
    })
}

/// The source series of a result folder as paramap's DICOM outputs of it record it: the first
/// file of `dicom/<map>/` carries the source's patient, study and Frame of Reference attributes
/// verbatim (they are inherited, docs/methods.md §6) and references every source instance
/// (Referenced Series Sequence). Returns the series, StudyDate and StudyTime; None without
/// DICOM outputs (NIfTI input, `--dicom none`) or when they can't be read.
fn dicom_record(folder: &Path) -> Option<(SeriesInfo, Option<String>, Option<String>)> {
    use dicom_dictionary_std::tags;
    let sorted = |d: &Path, dirs: bool| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| {
            if dirs {
                p.is_dir()
            } else {
                p.extension().is_some_and(|e| e == "dcm")
            }
        });
        v.sort();
        v
    };
    let file = sorted(&folder.join("dicom"), true)
        .iter()
        .find_map(|d| sorted(d, false).into_iter().next())?;
    let obj = dicom_object::open_file(&file).ok()?;
    let text = |o: &dicom_object::InMemDicomObject, t| {
        o.element(t)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
    };
    let mut inherited = Vec::new();
    for (tag, _) in derived::INHERITED {
        if let Ok(e) = obj.element(*tag) {
            if let Ok(v) = e.to_str() {
                inherited.push((
                    (tag.group(), tag.element()),
                    e.vr().to_string().to_string(),
                    v.trim_end_matches(['\0', ' ']).to_string(),
                ));
            }
        }
    }
    let series = obj
        .element(tags::REFERENCED_SERIES_SEQUENCE)
        .ok()?
        .items()?
        .first()?;
    let mut sop_class_uid = String::new();
    let mut sop_instance_uids = Vec::new();
    for r in series
        .element(tags::REFERENCED_INSTANCE_SEQUENCE)
        .ok()?
        .items()?
    {
        sop_class_uid = text(r, tags::REFERENCED_SOP_CLASS_UID)?;
        sop_instance_uids.push(text(r, tags::REFERENCED_SOP_INSTANCE_UID)?);
    }
    let o: &dicom_object::InMemDicomObject = &obj;
    let info = SeriesInfo {
        source: folder.display().to_string(),
        series_uid: text(series, tags::SERIES_INSTANCE_UID),
        study_uid: text(o, tags::STUDY_INSTANCE_UID),
        frame_of_reference_uid: text(o, tags::FRAME_OF_REFERENCE_UID),
        patient_id: text(o, tags::PATIENT_ID),
        n_files: sop_instance_uids.len(),
        dicom: Some(DicomSource {
            inherited,
            sop_class_uid,
            sop_instance_uids,
        }),
        ..Default::default()
    };
    let date = text(o, tags::STUDY_DATE).filter(|d| !d.is_empty());
    let time = text(o, tags::STUDY_TIME).filter(|d| !d.is_empty());
    Some((info, date, time))
}

/// Whether `dir` holds paramap results (itself or an immediate subfolder): a `run.json`, or a
/// DSC/DWI map with its record. Anything else is taken for a study folder to process first.
fn holds_results(dir: &Path) -> bool {
    let has = |d: &Path| {
        d.join("run.json").is_file()
            || (image_path(d, Map::Rcbv.stem()).is_some() && d.join("dsc.json").is_file())
            || (image_path(d, Map::Adc.stem()).is_some() && d.join("adc.json").is_file())
    };
    has(dir)
        || std::fs::read_dir(dir)
            .map(|r| r.filter_map(|e| e.ok()).any(|e| has(&e.path())))
            .unwrap_or(false)
}

/// The DSC and DWI results of one visit folder: the folder itself or its immediate
/// subfolders holding `rcbv.nii.gz` with `dsc.json` (DSC) / `adc.nii.gz` with `adc.json`
/// (DWI). The study's `response/` folder (ADC resampled to the DSC grid, with
/// `response.json`) is not a series result.
fn load_visit(dir: &Path) -> Result<Visit> {
    if !dir.is_dir() {
        return Err(Error::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let mut folders = vec![dir.to_path_buf()];
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subs.sort();
    folders.extend(subs);
    let pick = |stem: &str, record: &str| -> Result<Option<PathBuf>> {
        let found: Vec<&PathBuf> = folders
            .iter()
            .filter(|f| image_path(f, stem).is_some() && f.join(record).is_file())
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found[0].clone())),
            _ => Err(Error::Invalid(format!(
                "{} holds {} results with {stem}: {}; give the series folder you mean as the visit",
                dir.display(),
                found.len(),
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    };
    let dsc = pick(Map::Rcbv.stem(), "dsc.json")?
        .map(|f| load_series(&f, Kind::Dsc))
        .transpose()?;
    let dwi = pick(Map::Adc.stem(), "adc.json")?
        .map(|f| load_series(&f, Kind::Dwi))
        .transpose()?;
    if dsc.is_none() && dwi.is_none() {
        return Err(Error::Invalid(format!(
            "{} holds no paramap results (no rcbv.nii.gz or adc.nii.gz in it or in its subfolders); give a `paramap run` output folder",
            dir.display()
        )));
    }
    Ok(Visit {
        dir: dir.to_path_buf(),
        given: 0,
        dsc,
        dwi,
    })
}

/// A map of one visit on the reference grid, and where that visit's brain mask lies there.
type OnReference = (Map, Array3<f32>, Array3<bool>);

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

#[derive(Debug, Clone, Serialize)]
pub struct RegisteredPair {
    pub fixed: String,
    pub moving: String,
    #[serde(flatten)]
    pub result: Registration,
}

const IDENTITY: Affine = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// Places `s` relative to `onto` (fixed): `onto` world → `s` world.
fn place(
    s: &SeriesMaps,
    onto: &SeriesMaps,
    mode: RegistrationMode,
    opts: &RegistrationOptions,
) -> Result<(Affine, String, Option<RegisteredPair>)> {
    let same = match (&s.frame_of_reference_uid, &onto.frame_of_reference_uid) {
        (Some(a), Some(b)) => a.trim() == b.trim() && !a.trim().is_empty(),
        _ => false,
    };
    if same && mode == RegistrationMode::Auto {
        return Ok((IDENTITY, "same Frame of Reference".into(), None));
    }
    let fixed_label = format!("{} S0", onto.label);
    let moving_label = format!("{} S0", s.label);
    let r = register(
        RegImage {
            data: onto.s0.view(),
            geometry: &onto.geometry,
            mask: Some(onto.mask.view()),
            label: &fixed_label,
        },
        RegImage {
            data: s.s0.view(),
            geometry: &s.geometry,
            mask: Some(s.mask.view()),
            label: &moving_label,
        },
        opts,
    )?;
    Ok((
        r.matrix_lps,
        "registered".into(),
        Some(RegisteredPair {
            fixed: fixed_label,
            moving: moving_label,
            result: r,
        }),
    ))
}

/// Shares of the PRM classes among the classified voxels of a region.
#[derive(Debug, Clone, Serialize)]
pub struct PrmShares {
    pub region: String,
    /// Classified voxels (valid in both visits).
    pub n: usize,
    pub increased: f64,
    pub unchanged: f64,
    pub decreased: f64,
    /// Median voxel change (%).
    pub median_change_pct: f64,
}

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

/// One ROI measured at one visit, on that visit's own maps.
#[derive(Debug, Clone, Serialize)]
pub struct RoiVisit {
    pub visit: usize,
    pub folder: PathBuf,
    pub roi: PathBuf,
    /// Volume as drawn (mL).
    pub volume_ml: f64,
    pub rcbv_median: Option<f64>,
    pub cbf_median: Option<f64>,
    pub adc_median_mm2_s: Option<f64>,
}

/// The follow-up criterion between two consecutive visits.
#[derive(Debug, Clone, Serialize)]
pub struct RoiRule {
    pub from_visit: usize,
    pub to_visit: usize,
    pub rcbv_change_pct: Option<f64>,
    pub adc_change_pct: Option<f64>,
    pub volume_change_pct: f64,
    /// rCBV rose, or ADC fell, by more than the threshold.
    pub worsening: bool,
    pub statement: String,
}

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

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    crate::models::roi::quantile_sorted(&v, 0.5)
}

/// The change map (%) and the PRM of `later` against `first` on one grid, valid where both are
/// finite and inside `valid`.
fn change_and_prm(
    first: &Array3<f32>,
    later: &Array3<f32>,
    valid: &Array3<bool>,
    change_pct: f64,
) -> (Array3<f32>, Array3<u8>) {
    let brain_median = median(
        first
            .iter()
            .zip(valid)
            .filter(|(_, &v)| v)
            .map(|(&a, _)| a as f64)
            .collect(),
    );
    let floor = (DENOMINATOR_FLOOR * brain_median.abs()) as f32;
    let mut change = Array3::from_elem(first.dim(), f32::NAN);
    let mut prm = Array3::<u8>::zeros(first.dim());
    Zip::from(&mut change)
        .and(&mut prm)
        .and(first)
        .and(later)
        .and(valid)
        .for_each(|c, p, &a, &b, &v| {
            if v && a.is_finite() && b.is_finite() && a > floor {
                let d = 100.0 * (b - a) / a;
                *c = d;
                *p = if d > change_pct as f32 {
                    PRM_INCREASED
                } else if d < -change_pct as f32 {
                    PRM_DECREASED
                } else {
                    PRM_UNCHANGED
                };
            }
        });
    (change, prm)
}

fn shares(region: &str, prm: &Array3<u8>, change: &Array3<f32>, mask: &Array3<bool>) -> PrmShares {
    let mut counts = [0usize; 4];
    let mut values = Vec::new();
    for ((&p, &c), &m) in prm.iter().zip(change).zip(mask) {
        if m && p != PRM_NOT_CLASSIFIED {
            counts[p as usize] += 1;
            values.push(c as f64);
        }
    }
    let n = counts[1] + counts[2] + counts[3];
    let share = |k: usize| {
        if n == 0 {
            f64::NAN
        } else {
            counts[k] as f64 / n as f64
        }
    };
    PrmShares {
        region: region.to_string(),
        n,
        increased: share(PRM_INCREASED as usize),
        unchanged: share(PRM_UNCHANGED as usize),
        decreased: share(PRM_DECREASED as usize),
        median_change_pct: median(values),
    }
}

fn pct(from: f64, to: f64) -> Option<f64> {
    (from.is_finite() && to.is_finite() && from > 0.0).then(|| 100.0 * (to - from) / from)
}

/// The follow-up criterion of docs/methods.md §1 between two ROI measurements.
fn rule(a: &RoiVisit, b: &RoiVisit, change: f64, t: &ReadingThresholds) -> RoiRule {
    let r = a
        .rcbv_median
        .zip(b.rcbv_median)
        .and_then(|(x, y)| pct(x, y));
    let d = a
        .adc_median_mm2_s
        .zip(b.adc_median_mm2_s)
        .and_then(|(x, y)| pct(x, y));
    let vol = pct(a.volume_ml, b.volume_ml).unwrap_or(f64::NAN);
    let rcbv_worse = r.is_some_and(|r| r > change);
    let adc_worse = d.is_some_and(|d| d < -change);
    let mut parts = Vec::new();
    match (a.rcbv_median, b.rcbv_median, r) {
        (Some(x), Some(y), Some(p)) => parts.push(format!(
            "ROI median rCBV {x:.2} → {y:.2} ({p:+.0}%{})",
            if p > change {
                format!(", a rise of more than {change}%")
            } else if p < -change {
                format!(", a fall of more than {change}%")
            } else {
                format!(", within ±{change}%")
            }
        )),
        _ => parts.push("no rCBV in one of the visits".into()),
    }
    match (a.adc_median_mm2_s, b.adc_median_mm2_s, d) {
        (Some(x), Some(y), Some(p)) => parts.push(format!(
            "ADC {:.2} → {:.2}×10⁻³ mm²/s ({p:+.0}%{})",
            x * 1e3,
            y * 1e3,
            if p < -change {
                format!(", a fall of more than {change}%")
            } else if p > change {
                format!(", a rise of more than {change}%")
            } else {
                format!(", within ±{change}%")
            }
        )),
        _ => parts.push("no ADC in one of the visits".into()),
    }
    parts.push(format!(
        "ROI volume {:.1} → {:.1} mL ({vol:+.0}%)",
        a.volume_ml, b.volume_ml
    ));
    let finding = if rcbv_worse || adc_worse {
        format!(
            "a worsening of more than {change}% ({}) between visits suggests true progression (docs/methods.md §1, §7)",
            [(rcbv_worse, "rCBV rose"), (adc_worse, "ADC fell")]
                .iter()
                .filter(|(w, _)| *w)
                .map(|(_, s)| *s)
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if vol > change
        && a.rcbv_median.is_some_and(|x| x < t.rcbv_low)
        && b.rcbv_median.is_some_and(|x| x < t.rcbv_low)
    {
        format!(
            "the lesion grows while its rCBV stays below {}: if this persists over 8–12 weeks it is typical of pseudoprogression (docs/methods.md §1)",
            t.rcbv_low
        )
    } else {
        format!("no worsening of rCBV or ADC by more than {change}%")
    };
    RoiRule {
        from_visit: a.visit,
        to_visit: b.visit,
        rcbv_change_pct: r,
        adc_change_pct: d,
        volume_change_pct: vol,
        worsening: rcbv_worse || adc_worse,
        statement: format!(
            "Visit {} → visit {}: {}; {finding}. {NOT_A_DIAGNOSIS}",
            a.visit,
            b.visit,
            parts.join("; ")
        ),
    }
}

fn roi_median(map: Option<&Array3<f32>>, s: &SeriesMaps, roi: &Path) -> Result<Option<f64>> {
    let Some(map) = map else { return Ok(None) };
    let on = load_roi_on_grid(roi, s.grid())?;
    let m = roi_summary(map.view(), on.mask.view())?.median;
    Ok(m.is_finite().then_some(m))
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
    let mut o = OutputDir::create(out)?;
    let mut notices = Vec::new();
    // Visits given as study folders are processed first, as `paramap run` would, into
    // OUT/visits/<position>/.
    let mut loaded: Vec<Visit> = Vec::new();
    for (k, v) in visits.iter().enumerate() {
        let mut visit = if v.is_dir() && !holds_results(v) {
            let name = format!("visits/{}", k + 1);
            let staged = o.path("visits").join((k + 1).to_string());
            progress(&format!(
                "visit {}: {} is a study folder: processing it as `paramap run` would, into {}",
                k + 1,
                v.display(),
                out.join(&name).display()
            ));
            let summary = run_study(v, &staged, &opts.run, progress)?;
            if summary.count(Status::Processed) == 0 {
                return Err(Error::Invalid(format!(
                    "visit {}: {} is neither a `paramap run` output nor a study with a DWI or DSC series paramap could process ({}); `paramap info {}` lists its series",
                    k + 1,
                    v.display(),
                    summary.line(),
                    v.display()
                )));
            }
            let mut visit = load_visit(&staged)?;
            // The record names the folders where they will be, not the staging ones.
            let fin = out.join(&name);
            let rebase = |p: &mut PathBuf| {
                if let Ok(rest) = p.strip_prefix(&staged) {
                    *p = fin.join(rest);
                }
            };
            rebase(&mut visit.dir);
            for s in [&mut visit.dsc, &mut visit.dwi].into_iter().flatten() {
                rebase(&mut s.folder);
                s.label = format!(
                    "{} ({})",
                    s.folder.display(),
                    s.label
                        .rsplit('(')
                        .next()
                        .map(|t| t.trim_end_matches(')'))
                        .unwrap_or("")
                );
            }
            visit
        } else {
            load_visit(v)?
        };
        visit.given = k + 1;
        loaded.push(visit);
    }
    // Visit dates (StudyDate/StudyTime of each visit's source study): the visits are taken in
    // date order, and a given order that disagrees is said.
    let date_of = |v: &Visit| -> Option<String> {
        let s = v.dsc.as_ref().or(v.dwi.as_ref())?;
        Some(format!(
            "{}{}",
            s.study_date.clone()?,
            s.study_time.clone().unwrap_or_default()
        ))
    };
    let mut rois = opts.rois.clone();
    let dates: Vec<Option<String>> = loaded.iter().map(date_of).collect();
    if dates.iter().all(Option::is_some) {
        let mut order: Vec<usize> = (0..loaded.len()).collect();
        order.sort_by_key(|&i| dates[i].clone());
        if order.iter().enumerate().any(|(i, &j)| i != j) {
            let given: Vec<String> = loaded
                .iter()
                .map(|v| format!("{} ({})", v.dir.display(), visit_date(v)))
                .collect();
            let line = format!(
                "the visits were not given in date order ({}): they are taken in date order, so visit 1 (the reference) is the earliest, {}",
                given.join(", "),
                loaded[order[0]].dir.display()
            );
            crate::log::warn(&line);
            notices.push(line);
            let mut taken: Vec<Option<Visit>> = loaded.into_iter().map(Some).collect();
            loaded = order
                .iter()
                .map(|&i| taken[i].take().expect("once"))
                .collect();
            if !rois.is_empty() {
                rois = order.iter().map(|&i| opts.rois[i].clone()).collect();
            }
        }
    } else {
        notices.push(format!(
            "visit dates unknown for {} (no DICOM records in the results): the visits are taken in the order given",
            loaded
                .iter()
                .zip(&dates)
                .filter(|(_, d)| d.is_none())
                .map(|(v, _)| v.dir.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let opts = &CompareOptions {
        rois,
        ..opts.clone()
    };
    let first = &loaded[0];
    let reference = first.dsc.as_ref().or(first.dwi.as_ref()).expect("checked");
    let ref_grid = reference.grid();
    let ids: Vec<&str> = loaded
        .iter()
        .flat_map(|v| [&v.dsc, &v.dwi])
        .flatten()
        .filter_map(|s| s.patient_id.as_deref())
        .collect();
    if ids.windows(2).any(|w| w[0] != w[1]) {
        notices.push(format!(
            "the visits carry different Patient IDs ({}): check that they are one patient's",
            ids.join(", ")
        ));
    }

    // Placement of every series: reference world → series world.
    let mut placements: Vec<Vec<(Kind, Affine, Placement)>> = Vec::new();
    // The first visit's DWI relative to the reference (same visit).
    let first_dwi = match (&first.dsc, &first.dwi) {
        (Some(d), Some(w)) => Some(place(w, d, RegistrationMode::Auto, &opts.registration)?),
        (None, Some(_)) => Some((IDENTITY, "reference".into(), None)),
        _ => None,
    };
    for (k, v) in loaded.iter().enumerate() {
        let mut list = Vec::new();
        if let Some(s) = &v.dsc {
            let (m, how, reg) = if k == 0 {
                (IDENTITY, "reference".to_string(), None)
            } else {
                let onto = first.dsc.as_ref().unwrap_or(reference);
                place(s, onto, opts.mode, &opts.registration)?
            };
            list.push((Kind::Dsc, m, how, reg, s));
        }
        if let Some(s) = &v.dwi {
            let (m, how, reg) = if k == 0 {
                first_dwi.clone().expect("the first visit's DWI was placed")
            } else if let (Some(fw), Some((to_fw, _, _))) = (&first.dwi, &first_dwi) {
                // b = 0 onto the first visit's b = 0, then that visit's DWI onto the reference.
                let (m, how, reg) = place(s, fw, opts.mode, &opts.registration)?;
                (compose(&m, to_fw), how, reg)
            } else {
                place(s, reference, opts.mode, &opts.registration)?
            };
            list.push((Kind::Dwi, m, how, reg, s));
        }
        placements.push(
            list.into_iter()
                .map(|(kind, m, how, reg, s)| {
                    (
                        kind,
                        m,
                        Placement {
                            series: format!("{kind:?}").to_uppercase(),
                            folder: s.folder.clone(),
                            how,
                            matrix_lps: m,
                            itk_file: None,
                            ras_file: None,
                            registered: reg,
                        },
                    )
                })
                .collect(),
        );
    }

    // Everything on the reference grid.
    let fmt = opts.format;
    let ref_valid = &reference.mask;
    let mut on_ref: Vec<Vec<OnReference>> = Vec::new();
    let mut visit_records = Vec::new();
    for (k, v) in loaded.iter().enumerate() {
        let tag = format!("v{}", k + 1);
        let mut maps = Vec::new();
        for (kind, m, placement) in placements[k].iter_mut() {
            let s = match kind {
                Kind::Dsc => v.dsc.as_ref(),
                Kind::Dwi => v.dwi.as_ref(),
            }
            .expect("placed");
            let from = s.grid();
            let mask = resample_mask_through(s.mask.view(), from, ref_grid, m)?;
            for (map, data) in &s.maps {
                let r = resample_linear_through(data.view(), from, ref_grid, m)?;
                let name = fmt.file(&format!("{tag}_{}", map.stem()));
                nifti::write_map(
                    &o.path(&name),
                    &r,
                    &reference.geometry,
                    &format!("{} on visit 1's grid", map.nifti_description()),
                )?;
                maps.push((*map, r, mask.clone()));
            }
            let series = placement.series.to_lowercase();
            let s0 = resample_linear_through(s.s0.view(), from, ref_grid, m)?;
            nifti::write_map(
                &o.path(&fmt.file(&format!("{tag}_{series}_s0"))),
                &s0,
                &reference.geometry,
                "paramap baseline signal on visit 1's grid",
            )?;
            nifti::write_mask(
                &o.path(&fmt.file(&format!("{tag}_{series}_mask"))),
                &mask,
                &reference.geometry,
                "paramap brain mask on visit 1's grid",
            )?;
            if placement.how == "registered" {
                let base = format!("{tag}_{series}");
                let itk = format!("{base}_itk.txt");
                let ras = format!("{base}_ras.txt");
                o.write_text(&itk, &registration::itk_text(m))?;
                o.write_text(&ras, &registration::ras_text(m))?;
                placement.itk_file = Some(itk);
                placement.ras_file = Some(ras);
            }
        }
        on_ref.push(maps);
        let main = v.dsc.as_ref().or(v.dwi.as_ref()).expect("loaded");
        visit_records.push(VisitRecord {
            visit: k + 1,
            given_position: v.given,
            study_date: main.study_date.clone(),
            study_time: main.study_time.clone(),
            study_uid: main.info.study_uid.clone(),
            folder: v.dir.clone(),
            dsc: v.dsc.as_ref().map(|s| s.folder.clone()),
            dwi: v.dwi.as_ref().map(|s| s.folder.clone()),
            patient_id: v
                .dsc
                .as_ref()
                .or(v.dwi.as_ref())
                .and_then(|s| s.patient_id.clone()),
            placements: placements[k].iter().map(|(_, _, p)| p.clone()).collect(),
            changes: vec![],
        });
    }

    // The first visit's ROI on the reference grid, for the PRM shares.
    let mut change_maps: Vec<(usize, Map, Array3<f32>, Array3<u8>)> = Vec::new();
    let first_roi = match opts.rois.first() {
        Some(p) => Some(load_roi_on_grid(p, ref_grid)?.mask),
        None => None,
    };
    for k in 1..loaded.len() {
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
            if let Some(roi) = &first_roi {
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
            change_maps.push((k, *map, change, prm));
        }
    }

    // ROI level: each visit's own ROI on its own maps.
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
        .map(|w| rule(&w[0], &w[1], opts.change_pct, &opts.thresholds))
        .collect();
    if !roi_table.is_empty() {
        o.write_text("roi_table.csv", &roi_csv(&roi_table))?;
    }

    // DICOM: each later visit's change maps and PRMs as derived series in that visit's study.
    if let Some(encoding) = opts.dicom {
        for k in 1..loaded.len() {
            let v = &loaded[k];
            let (target, m) = match (
                &v.dsc,
                placements[k].iter().find(|(kd, _, _)| *kd == Kind::Dsc),
            ) {
                (Some(s), Some((_, m, _))) => (s, *m),
                _ => match (
                    &v.dwi,
                    placements[k].iter().find(|(kd, _, _)| *kd == Kind::Dwi),
                ) {
                    (Some(s), Some((_, m, _))) => (s, *m),
                    _ => continue,
                },
            };
            if target.info.dicom.is_none() {
                notices.push(format!(
                    "visit {}: {} has no DICOM records (a NIfTI input, or run with --dicom none): its change maps are written as NIfTI only",
                    k + 1,
                    target.folder.display()
                ));
                continue;
            }
            let back = registration::invert(&m).ok_or_else(|| {
                Error::Invalid(format!("visit {}: the placement is not invertible", k + 1))
            })?;
            let to = target.grid();
            for (n, (_, map, change, prm)) in change_maps
                .iter()
                .filter(|(kk, _, _, _)| *kk == k)
                .enumerate()
            {
                let kind = if *map == Map::Adc {
                    Kind::Dwi
                } else {
                    Kind::Dsc
                };
                fn series_of(v: &Visit, kind: Kind) -> Option<&SeriesInfo> {
                    match kind {
                        Kind::Dsc => v.dsc.as_ref().map(|s| &s.info),
                        Kind::Dwi => v.dwi.as_ref().map(|s| &s.info),
                    }
                }
                let refs: Vec<&SeriesInfo> = [series_of(v, kind), series_of(&loaded[0], kind)]
                    .into_iter()
                    .flatten()
                    .collect();
                let change_on = resample_linear_through(change.view(), ref_grid, to, &back)?;
                let mut prm_on = Array3::<f32>::zeros(change_on.dim());
                for c in [PRM_DECREASED, PRM_UNCHANGED, PRM_INCREASED] {
                    let is = prm.mapv(|p| p == c);
                    let on = resample_mask_through(is.view(), ref_grid, to, &back)?;
                    Zip::from(&mut prm_on).and(&on).for_each(|p, &b| {
                        if b {
                            *p = f32::from(c)
                        }
                    });
                }
                let from_date = visit_date(&loaded[0]);
                let title = map.spec().title;
                let stem = map.stem();
                let common = format!(
                    "between visit 1 (study {}, {from_date}) and this study (visit {}, {}); computed on visit 1's {} grid after rigid registration (Mattes mutual information, docs/methods.md §7), then resampled onto this study's grid (trilinear; PRM nearest neighbour) through the inverse transform. Support for a reader, not a diagnosis",
                    loaded[0].dsc.as_ref().or(loaded[0].dwi.as_ref()).and_then(|s| s.info.study_uid.clone()).unwrap_or_else(|| "unknown".into()),
                    k + 1,
                    visit_date(v),
                    if reference.label.ends_with("(Dsc)") { "DSC" } else { "DWI" },
                );
                let base = 7000 + 100 * (k as i64 + 1) + 10 * n as i64;
                let mut folders = Vec::new();
                for (quantity, data, name, descr, derivation, num) in [
                    (
                        derived::Quantity::Change,
                        &change_on,
                        format!("v{}_delta_{stem}_pct", k + 1),
                        format!("paramap {title} change % from visit 1"),
                        format!("change of {title} in % of visit 1's value {common}"),
                        base,
                    ),
                    (
                        derived::Quantity::Prm,
                        &prm_on,
                        format!("v{}_prm_{stem}", k + 1),
                        format!("paramap {title} PRM vs visit 1"),
                        format!(
                            "parametric response map of {title} (Galban et al. Nat Med 2009): 1 decreased, 2 unchanged, 3 increased by more than {}%, 0 not classified; {common}",
                            opts.change_pct
                        ),
                        base + 1,
                    ),
                ] {
                    let folder = format!("dicom/{name}");
                    let dir = o.path("dicom").join(&name);
                    derived::write_derived_referencing(
                        &DerivedMap {
                            data: data.view(),
                            geometry: &target.geometry,
                            quantity,
                            series_description: descr,
                            series_number: num,
                            derivation,
                        },
                        &target.info,
                        &refs,
                        &DerivedOptions {
                            encoding,
                            uid_root: opts.uid_root.clone(),
                        },
                        &dir,
                    )?;
                    folders.push(folder);
                }
                if let Some(c) = visit_records[k].changes.iter_mut().find(|c| c.map == stem) {
                    c.dicom = folders;
                }
            }
        }
    }
    let html = compare_report(
        &loaded,
        &visit_records,
        &on_ref,
        &change_maps,
        first_roi.as_ref(),
        reference,
        opts,
        &roi_table,
        &roi_rules,
        &notices,
    )?;

    let mut record = CompareRecord {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        reference_grid: format!("visit 1's {}", reference.label),
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
        visits: visit_records,
        roi_table,
        roi_rules,
        notices,
        statement: NOT_A_DIAGNOSIS,
        dicom_placement: DICOM_PLACEMENT,
        outputs: vec![],
        dicom_outputs: vec![],
        deliveries: vec![],
    };
    let json = serde_json::to_string_pretty(&record)
        .map_err(|e| Error::Invalid(format!("record: {e}")))?;
    o.write_text("compare.json", &json)?;
    o.write_text("report.html", &html)?;
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

fn roi_csv(rows: &[RoiVisit]) -> String {
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

/// Where the DICOM change maps go (docs/methods.md §7), as the record says it.
pub const DICOM_PLACEMENT: &str = "Each later visit's change maps and PRMs are derived series in that visit's study (the study being read), on that study's DSC grid with its Frame of Reference: they are computed on visit 1's grid, then resampled onto the later DSC grid through the inverse of the registration, so that a viewer links them with the later study's images by position. Keeping visit 1's grid would need visit 1's Frame of Reference in the later study, which a viewer would link with nothing there. They reference the source series of both visits (Referenced Series Sequence for the later study's, Studies Containing Other Referenced Instances Sequence for visit 1's, and the Source Image Sequence).";

/// "2026-01-05 09:00:00" from a visit's StudyDate/StudyTime, or "date unknown".
fn visit_date(v: &Visit) -> String {
    let Some(s) = v.dsc.as_ref().or(v.dwi.as_ref()) else {
        return "date unknown".into();
    };
    match &s.study_date {
        Some(d) if d.len() == 8 => {
            let mut t = format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]);
            if let Some(tm) = s.study_time.as_deref().filter(|t| t.len() >= 4) {
                t += &format!(" {}:{}", &tm[..2], &tm[2..4]);
            }
            t
        }
        Some(d) => d.clone(),
        None => "date unknown".into(),
    }
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

/// Up to 6 slices, evenly spaced over the brain's extent, and the geometry of that sub-stack
/// (so that the montages' captions give each slice's position).
fn shown_slices(mask: &Array3<bool>, g: &Geometry) -> (Vec<usize>, Geometry) {
    let nz = mask.dim().0;
    let zs: Vec<usize> = (0..nz)
        .filter(|&z| mask.index_axis(Axis(0), z).iter().any(|&b| b))
        .collect();
    let (lo, hi) = match (zs.first(), zs.last()) {
        (Some(&a), Some(&b)) => (a, b),
        _ => (0, nz.saturating_sub(1)),
    };
    let step = ((hi - lo) / 5).max(1);
    let chosen: Vec<usize> = (lo..=hi).step_by(step).take(6).collect();
    let mut sub = g.clone();
    let origin = g.index_to_lps([0.0, 0.0, lo as f64]);
    for r in 0..3 {
        sub.affine_lps[r][2] *= step as f64;
        sub.affine_lps[r][3] = origin[r];
    }
    sub.dims[2] = chosen.len();
    (chosen, sub)
}

/// The follow-up report (src/report/compare.rs) from the maps on the reference grid.
#[allow(clippy::too_many_arguments)]
fn compare_report(
    loaded: &[Visit],
    records: &[VisitRecord],
    on_ref: &[Vec<OnReference>],
    changes: &[(usize, Map, Array3<f32>, Array3<u8>)],
    roi: Option<&Array3<bool>>,
    reference: &SeriesMaps,
    opts: &CompareOptions,
    roi_table: &[RoiVisit],
    roi_rules: &[RoiRule],
    notices: &[String],
) -> Result<String> {
    use crate::report::colormap::CLASS_COLOURS;
    use crate::report::compare::{CompareReport, Panel, SideBySide, TimeSeries, VisitHeader};
    use crate::report::montage::{percentile, Outline, PreviewSpec, ROI_OUTLINE};
    use crate::report::{montage_png, Colormap};
    let (zs, sub_g) = shown_slices(&reference.mask, &reference.geometry);
    let pick = |a: &Array3<f32>| a.select(Axis(0), &zs);
    let pick_b = |a: &Array3<bool>| a.select(Axis(0), &zs);
    let roi_sub = roi.map(pick_b);
    let positions: Vec<String> = zs
        .iter()
        .map(|&z| crate::report::montage::slice_position(&reference.geometry, z))
        .collect();
    let classes = ["not classified", "decreased", "unchanged", "increased"];
    let mut side = Vec::new();
    for map in [Map::Rcbv, Map::Cbf, Map::Adc] {
        let Some((_, first, first_mask)) = on_ref[0].iter().find(|(m, _, _)| *m == map) else {
            continue;
        };
        let spec = map.spec();
        let mut vals: Vec<f32> = first
            .iter()
            .zip(first_mask)
            .filter(|(v, &b)| b && v.is_finite())
            .map(|(v, _)| *v)
            .collect();
        vals.sort_by(f32::total_cmp);
        let range = (!vals.is_empty())
            .then(|| (percentile(&vals, 0.02), percentile(&vals, 0.98)))
            .filter(|(a, b)| b > a);
        let mut panels = Vec::new();
        fn outline<'a>(spec: &mut PreviewSpec<'a>, roi: Option<&'a Array3<bool>>) {
            if let Some(r) = roi {
                spec.outlines.push(Outline {
                    mask: r.view(),
                    colour: ROI_OUTLINE,
                    label: "lesion ROI (visit 1)",
                });
            }
        }
        for (k, maps) in on_ref.iter().enumerate() {
            let Some((_, data, mask)) = maps.iter().find(|(m, _, _)| *m == map) else {
                continue;
            };
            let caption = format!(
                "visit {} ({}): {} ({})",
                k + 1,
                visit_date(&loaded[k]),
                spec.title,
                spec.unit
            );
            let d = pick(data);
            let m = pick_b(mask);
            let mut p = PreviewSpec::new(&caption, spec.unit, spec.colormap);
            p.range = range;
            p.mask = Some(m.view());
            p.geometry = Some(&sub_g);
            outline(&mut p, roi_sub.as_ref());
            panels.push(Panel {
                png: montage_png(d.view(), &p)?,
                caption: caption.clone(),
            });
        }
        for (k, _, change, prm) in changes.iter().filter(|(_, m, _, _)| *m == map) {
            let c = opts.change_pct as f32;
            let caption = format!("visit {} − visit 1: {} change (%)", k + 1, spec.title);
            let d = pick(change);
            let mut p = PreviewSpec::new(&caption, "%", Colormap::Viridis);
            p.range = Some((-2.5 * c, 2.5 * c));
            p.geometry = Some(&sub_g);
            outline(&mut p, roi_sub.as_ref());
            panels.push(Panel {
                png: montage_png(d.view(), &p)?,
                caption,
            });
            let caption = format!(
                "visit {} vs visit 1: {} PRM (±{}%)",
                k + 1,
                spec.title,
                opts.change_pct
            );
            let d = pick(&prm.mapv(f32::from));
            let mut p = PreviewSpec::new(&caption, "class", Colormap::Classes);
            p.range = Some((0.0, 3.0));
            p.class_names = Some(&classes);
            p.geometry = Some(&sub_g);
            outline(&mut p, roi_sub.as_ref());
            panels.push(Panel {
                png: montage_png(d.view(), &p)?,
                caption,
            });
        }
        side.push(SideBySide {
            map: spec.title.to_string(),
            slices: format!("slices {}", positions.join(", ")),
            panels,
        });
    }
    let f = |v: Option<f64>| v.map(crate::report::html::number).unwrap_or("–".into());
    let mut registration = Vec::new();
    for v in records {
        for p in &v.placements {
            let q = p.registered.as_ref().map(|x| &x.result.quality);
            registration.push(vec![
                v.visit.to_string(),
                p.series.clone(),
                p.how.clone(),
                q.map(|q| format!("{:.3} → {:.3}", q.mattes_mi_start, q.mattes_mi_final))
                    .unwrap_or("–".into()),
                q.map(|q| format!("{:.3} → {:.3}", q.dice_identity, q.dice))
                    .unwrap_or("–".into()),
                q.map(|q| format!("{:.0}%", q.overlap * 100.0))
                    .unwrap_or("–".into()),
                p.itk_file.clone().unwrap_or("–".into()),
            ]);
        }
    }
    let mut prm_shares = Vec::new();
    for v in records {
        for c in &v.changes {
            for s in &c.shares {
                prm_shares.push(vec![
                    v.visit.to_string(),
                    c.map.clone(),
                    s.region.clone(),
                    s.n.to_string(),
                    format!("{:.1}%", s.increased * 100.0),
                    format!("{:.1}%", s.unchanged * 100.0),
                    format!("{:.1}%", s.decreased * 100.0),
                    format!("{:+.1}%", s.median_change_pct),
                ]);
            }
        }
    }
    let first_row = roi_table.first();
    let change = |a: Option<f64>, b: Option<f64>| a.zip(b).and_then(|(a, b)| pct(a, b));
    let roi_rows = roi_table
        .iter()
        .map(|r| {
            let rc = first_row.and_then(|fr| change(fr.rcbv_median, r.rcbv_median));
            let dc = first_row.and_then(|fr| change(fr.adc_median_mm2_s, r.adc_median_mm2_s));
            vec![
                r.visit.to_string(),
                visit_date(&loaded[r.visit - 1]),
                r.roi
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                format!("{:.2}", r.volume_ml),
                f(r.rcbv_median),
                rc.map(|x| format!("{x:+.1}%")).unwrap_or("–".into()),
                f(r.cbf_median),
                f(r.adc_median_mm2_s.map(|x| x * 1e3)),
                dc.map(|x| format!("{x:+.1}%")).unwrap_or("–".into()),
            ]
        })
        .collect();
    let series_of = |label: &str, get: &dyn Fn(&RoiVisit) -> Option<f64>| TimeSeries {
        label: label.to_string(),
        change_pct: roi_table
            .iter()
            .map(|r| first_row.and_then(|fr| change(get(fr), get(r))))
            .collect(),
    };
    let roi_name = opts
        .rois
        .first()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let plot = if roi_table.is_empty() {
        vec![]
    } else {
        vec![
            series_of(&format!("{roi_name} rCBV"), &|r| r.rcbv_median),
            series_of(&format!("{roi_name} CBF"), &|r| r.cbf_median),
            series_of(&format!("{roi_name} ADC"), &|r| r.adc_median_mm2_s),
        ]
    };
    let report = CompareReport {
        title: "paramap compare: follow-up visits".into(),
        generated_by: format!("paramap {}", env!("CARGO_PKG_VERSION")),
        visits: loaded
            .iter()
            .zip(records)
            .map(|(v, r)| VisitHeader {
                visit: r.visit,
                date: visit_date(v),
                folder: v.dir.display().to_string(),
                study_uid: r.study_uid.clone(),
            })
            .collect(),
        notices: notices.to_vec(),
        change_pct: opts.change_pct,
        registration_header: [
            "visit", "series", "placement", "Mattes MI (nats) start → final",
            "Dice of brain masks identity → final", "overlap", "transform",
        ]
        .map(String::from)
        .to_vec(),
        registration,
        side_by_side: side,
        prm_legend: (0..4u8)
            .map(|c| (c, classes[c as usize].to_string(), CLASS_COLOURS[c as usize]))
            .collect(),
        prm_header: [
            "visit", "map", "region", "voxels", "increased", "unchanged", "decreased",
            "median change",
        ]
        .map(String::from)
        .to_vec(),
        prm_shares,
        roi_header: [
            "visit", "date", "ROI", "volume (mL)", "median rCBV", "rCBV change from visit 1",
            "median CBF (ml/100g/min)", "median ADC (10⁻³ mm²/s)", "ADC change from visit 1",
        ]
        .map(String::from)
        .to_vec(),
        roi_rows,
        plot_visits: roi_table
            .iter()
            .map(|r| format!("visit {} {}", r.visit, visit_date(&loaded[r.visit - 1])))
            .collect(),
        plot,
        statements: roi_rules.iter().map(|r| r.statement.clone()).collect(),
        methods: vec![
            format!("Every later visit is placed on visit 1's grid: series in visit 1's Frame of Reference by scanner coordinates, others by rigid registration (6 degrees of freedom, Mattes mutual information, 3 resolution levels; docs/methods.md §7). The registration table gives the mutual information and the Dice overlap of the brain masks before and after."),
            format!("Change maps: 100 × (later − visit 1) / visit 1, in %. Parametric response map (Galbán et al., Nat Med 2009; the functional diffusion map of Moffat et al., PNAS 2005): each voxel valid in both visits is increased or decreased when it changed by more than {}%, else unchanged.", opts.change_pct),
            format!("The ROI rule (docs/methods.md §1): each visit's own ROI on its own maps; an ROI median rCBV rising, or ADC falling, by more than {}% between consecutive visits supports true progression; growth with rCBV below {} over 8–12 weeks is typical of pseudoprogression.", opts.change_pct, opts.thresholds.rcbv_low),
            DICOM_PLACEMENT.to_string(),
        ],
        caution: NOT_A_DIAGNOSIS.to_string(),
    };
    Ok(crate::report::compare::render_compare(&report))
}
