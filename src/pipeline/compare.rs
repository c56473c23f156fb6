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
use crate::io::nifti::{self, NiftiFormat};
use crate::io::output::OutputDir;
use crate::maps::Map;
use crate::models::registration::{
    self, compose, register, RegImage, Registration, RegistrationOptions,
};
use crate::models::response::ReadingThresholds;
use crate::models::roi::roi_summary;
use crate::report::reading::{load_roi_on_grid, NOT_A_DIAGNOSIS};
use crate::volume::resample::{resample_linear_through, resample_mask_through, GridRef};
use crate::volume::{Affine, Geometry};

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
    Ok(SeriesMaps {
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
    pub outputs: Vec<PathBuf>,
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
pub fn compare(visits: &[PathBuf], out: &Path, opts: &CompareOptions) -> Result<CompareRecord> {
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
    let loaded: Vec<Visit> = visits
        .iter()
        .map(|v| load_visit(v))
        .collect::<Result<_>>()?;
    let first = &loaded[0];
    let reference = first.dsc.as_ref().or(first.dwi.as_ref()).expect("checked");
    let ref_grid = reference.grid();
    let mut notices = Vec::new();
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
    let mut o = OutputDir::create(out)?;
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
        visit_records.push(VisitRecord {
            visit: k + 1,
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
            });
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
        outputs: vec![],
    };
    let json = serde_json::to_string_pretty(&record)
        .map_err(|e| Error::Invalid(format!("record: {e}")))?;
    o.write_text("compare.json", &json)?;
    let html = compare_html(&record);
    o.write_text("report.html", &html)?;
    record.outputs = o.commit()?;
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A self-contained page: registration quality, PRM shares, the ROI table and statements.
fn compare_html(r: &CompareRecord) -> String {
    let mut h = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>paramap compare</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}th{background:#eee}</style></head><body><h1>paramap compare: follow-up visits</h1>",
    );
    h += &format!(
        "<p>Reference grid: {}. Change threshold ±{}%.</p>",
        esc(&r.reference_grid),
        r.change_threshold_pct
    );
    h += "<h2>Registration</h2><table><tr><th>visit</th><th>series</th><th>placement</th><th>Mattes MI (nats)</th><th>Dice of brain masks</th><th>overlap</th><th>transform</th></tr>";
    for v in &r.visits {
        for p in &v.placements {
            let (mi, dice, ov) = p
                .registered
                .as_ref()
                .map(|x| {
                    let q = &x.result.quality;
                    (
                        format!("{:.3} → {:.3}", q.mattes_mi_start, q.mattes_mi_final),
                        format!("{:.3} → {:.3}", q.dice_identity, q.dice),
                        format!("{:.0}%", q.overlap * 100.0),
                    )
                })
                .unwrap_or_default();
            h += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{mi}</td><td>{dice}</td><td>{ov}</td><td>{}</td></tr>",
                v.visit,
                p.series,
                esc(&p.how),
                p.itk_file.as_deref().unwrap_or("")
            );
        }
    }
    h += "</table><h2>Parametric response maps</h2><table><tr><th>visit</th><th>map</th><th>region</th><th>voxels</th><th>increased</th><th>unchanged</th><th>decreased</th><th>median change</th></tr>";
    for v in &r.visits {
        for c in &v.changes {
            for s in &c.shares {
                h += &format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:.1}%</td><td>{:+.1}%</td></tr>",
                    v.visit, c.map, esc(&s.region), s.n, s.increased * 100.0, s.unchanged * 100.0, s.decreased * 100.0, s.median_change_pct
                );
            }
        }
    }
    h += "</table>";
    if !r.roi_table.is_empty() {
        h += "<h2>ROI over time</h2><table><tr><th>visit</th><th>volume (mL)</th><th>median rCBV</th><th>median CBF (ml/100g/min)</th><th>median ADC (10⁻³ mm²/s)</th></tr>";
        let f = |v: Option<f64>, s: f64| v.map(|x| format!("{:.2}", x * s)).unwrap_or("–".into());
        for t in &r.roi_table {
            h += &format!(
                "<tr><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                t.visit,
                t.volume_ml,
                f(t.rcbv_median, 1.0),
                f(t.cbf_median, 1.0),
                f(t.adc_median_mm2_s, 1e3)
            );
        }
        h += "</table><ul>";
        for rule in &r.roi_rules {
            h += &format!("<li>{}</li>", esc(&rule.statement));
        }
        h += "</ul>";
    }
    for n in &r.notices {
        h += &format!("<p><b>Notice:</b> {}</p>", esc(n));
    }
    h += &format!("<p><i>{}</i></p></body></html>\n", esc(r.statement));
    h
}
