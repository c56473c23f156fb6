//! ROI statistics and the threshold reading of docs/methods.md §1.
//!
//! After radio-/chemo-/immunotherapy, a lesion whose leakage-corrected rCBV is low
//! (< 1.5) while its ADC is high (> 1.0×10⁻³ mm²/s) supports treatment effect
//! (pseudoprogression; reported PPV 93.2%), and an rCBV above 2.0 supports true progression.
//! Published cut-offs differ between software packages (Kelm et al. 2015 found
//! inter-software ICC ≤ 0.8), so the thresholds are parameters, reported with the reading, and
//! the reading is worded as support for a reader, never as a diagnosis. The follow-up criteria
//! of §1 (change > 20% between visits, growth with low rCBV over 8–12 weeks) need several
//! studies and are not read here.

use std::path::Path;

use ndarray::{Array3, ArrayView3, Axis};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::nifti;
use crate::models::roi::roi_summary;
use crate::volume::resample::{check_frames, resample_mask, FrameMatch, GridRef};
use crate::volume::Geometry;

/// Statistics of one map inside an ROI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoiStat {
    /// The ROI's file (empty when the caller has not said).
    pub roi: String,
    pub map: String,
    pub unit: String,
    /// Finite values in the ROI (the statistics are over these).
    pub n: usize,
    /// ROI voxels left out because the map is NaN or infinite there (failed fits).
    pub excluded: usize,
    pub mean: f64,
    pub median: f64,
    /// Sample standard deviation (n − 1 in the denominator); NaN when n < 2.
    pub sd: f64,
    /// 10th and 90th percentiles (linear between order statistics, as numpy's default).
    pub p10: f64,
    pub p90: f64,
}

/// n, mean, median, SD and 10th/90th percentiles of the finite values of `map` inside `roi`
/// (both `[z, y, x]`, one grid; [`crate::models::roi::roi_summary`]). With no finite value
/// inside, n is 0 and the statistics are NaN.
pub fn roi_stat(
    map: ArrayView3<f32>,
    roi: ArrayView3<bool>,
    name: &str,
    unit: &str,
) -> Result<RoiStat> {
    if map.dim() != roi.dim() {
        return Err(Error::Invalid(format!(
            "ROI grid {:?} (z, y, x) differs from the {name} map's {:?}; the ROI must be drawn on the map's grid (resample it there first)",
            roi.dim(),
            map.dim()
        )));
    }
    let s = roi_summary(map, roi)?;
    Ok(RoiStat {
        roi: String::new(),
        map: name.to_string(),
        unit: unit.to_string(),
        n: s.n,
        excluded: s.excluded,
        mean: s.mean,
        median: s.median,
        sd: s.sd,
        p10: s.p10,
        p90: s.p90,
    })
}

/// Reads an ROI mask (NIfTI, non-zero = inside) and checks that it lies on `grid`: same matrix
/// and the same place in the world (within 0.1 mm at the grid's far corner), since an ROI
/// drawn on another series or resampled differently would silently measure other tissue.
pub fn load_roi(path: &Path, grid: &Geometry) -> Result<Array3<bool>> {
    let (roi, g) = read_drawn(path)?;
    let bad = |problem: String| Error::Nifti {
        path: path.to_path_buf(),
        problem,
    };
    if g.dims != grid.dims {
        return Err(bad(format!(
            "ROI matrix {:?} (x, y, z) differs from the maps' {:?}; draw the ROI on the map (or the series it came from) or resample it onto that grid",
            g.dims, grid.dims
        )));
    }
    let off = g.max_corner_distance(grid);
    if off > 0.1 {
        return Err(bad(format!(
            "ROI grid is {off:.2} mm away from the maps' grid at its far corner (same matrix, other position or orientation); draw the ROI on the map's series or resample it"
        )));
    }
    Ok(roi)
}

/// One ROI as drawn: a NIfTI mask, or one segment of a DICOM Segmentation
/// ([`crate::io::dicom::seg`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DrawnRoi {
    /// How records and reports name it: the file's path for a NIfTI mask; the path and the
    /// Segment Label, `FILE [LABEL]`, for a segment.
    pub name: String,
    /// The short name beside its outline: the file name without `.nii[.gz]`, or the Segment
    /// Label.
    pub label: String,
    pub file: std::path::PathBuf,
    /// `[z, y, x]` on `geometry`.
    pub mask: Array3<bool>,
    pub geometry: Geometry,
    /// The SEG's Frame of Reference UID (0020,0052); `None` for NIfTI.
    pub frame_of_reference_uid: Option<String>,
}

/// The ROIs of one `--roi FILE`: a DICOM Segmentation (a file that starts as DICOM Part 10
/// does) gives one ROI per segment, named by its Segment Label; anything else is read as a NIfTI
/// mask (non-zero = inside). Empty segments are left out.
///
/// Errors (naming the file and, for a SEG, the element): unreadable; not a 3-D NIfTI; a
/// DICOM that is not a Segmentation or whose geometry or pixel data is inconsistent
/// ([`crate::io::dicom::seg::read`]); no ROI voxel at all.
pub fn read_rois(path: &Path) -> Result<Vec<DrawnRoi>> {
    if crate::io::dicom::seg::looks_like_dicom(path) {
        let seg = crate::io::dicom::seg::read(path)?;
        let rois: Vec<DrawnRoi> = seg
            .segments
            .into_iter()
            .filter(|s| s.mask.iter().any(|&b| b))
            .map(|s| DrawnRoi {
                name: format!("{} [{}]", path.display(), s.label),
                label: s.label,
                file: path.to_path_buf(),
                mask: s.mask,
                geometry: seg.geometry.clone(),
                frame_of_reference_uid: seg.frame_of_reference_uid.clone(),
            })
            .collect();
        if rois.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: DICOM Segmentation: every segment is empty (no frame marks a pixel); draw the ROI again",
                path.display()
            )));
        }
        return Ok(rois);
    }
    let (mask, geometry) = read_drawn(path)?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok(vec![DrawnRoi {
        name: path.display().to_string(),
        label: file
            .trim_end_matches(".gz")
            .trim_end_matches(".nii")
            .to_string(),
        file: path.to_path_buf(),
        mask,
        geometry,
        frame_of_reference_uid: None,
    }])
}

/// An ROI mask as drawn (non-zero = inside) and its grid; errors (naming the file) for a file
/// that is not a 3-D image or holds no non-zero voxel.
fn read_drawn(path: &Path) -> Result<(Array3<bool>, Geometry)> {
    let (data, g, _) = nifti::read(path)?;
    let bad = |problem: String| Error::Nifti {
        path: path.to_path_buf(),
        problem,
    };
    if data.shape()[0] != 1 {
        return Err(bad(format!(
            "an ROI mask must be a 3-D image; this one has {} volumes",
            data.shape()[0]
        )));
    }
    let roi = data.index_axis(Axis(0), 0).mapv(|v| v != 0.0);
    if !roi.iter().any(|&b| b) {
        return Err(bad("the ROI mask is empty (no non-zero voxel)".into()));
    }
    Ok((roi, g))
}

/// An ROI placed on a map's grid by [`load_roi_on_grid`].
#[derive(Debug, Clone, PartialEq)]
pub struct RoiOnGrid {
    /// `[z, y, x]` on the target grid.
    pub mask: Array3<bool>,
    /// Volume inside the ROI as drawn, in mL.
    pub drawn_ml: f64,
    /// Volume inside the ROI on the target grid, in mL (differs from `drawn_ml` by partial
    /// voxels at the edge, or where the ROI reaches beyond the target grid).
    pub ml: f64,
    /// Whether the ROI was drawn on another grid and resampled (nearest neighbour).
    pub resampled: bool,
    /// What was assumed about the Frame of Reference (a NIfTI ROI carries none), for the
    /// record; `None` when the ROI lies on the target grid already.
    pub frame_note: Option<String>,
}

/// Reads an ROI drawn on any series of the study (a NIfTI mask, or a DICOM Segmentation of
/// one segment: [`read_rois`]) and places it on `target` ([`place_roi`]).
///
/// Errors: those of [`read_rois`] and [`place_roi`]; a SEG of several segments (one ROI is
/// wanted here: the error lists them).
pub fn load_roi_on_grid(path: &Path, target: GridRef) -> Result<RoiOnGrid> {
    let mut rois = read_rois(path)?;
    if rois.len() > 1 {
        let labels: Vec<&str> = rois.iter().map(|r| r.label.as_str()).collect();
        return Err(Error::Invalid(format!(
            "{}: DICOM Segmentation of {} segments ({}); one ROI is wanted here: export the lesion's segment on its own",
            path.display(),
            rois.len(),
            labels.join(", ")
        )));
    }
    place_roi(&rois.remove(0), target)
}

/// Places an ROI on `target`, the grid of a map: as it is when it lies on that grid already
/// (same matrix, within 0.1 mm at the far corner), otherwise resampled by world geometry with
/// nearest neighbour ([`crate::volume::resample::resample_mask`]): a target voxel is in the ROI
/// when its centre lies in a voxel drawn as inside. Nearest neighbour rather than a trilinear
/// mask thresholded at 0.5: it needs no threshold, keeps an ROI drawn on a coarse grid at the
/// volume drawn (each fine voxel takes the coarse voxel it lies in), and is what FSL, ANTs and
/// MRtrix3 apply to label images, so the ROI a reader draws is the one measured.
///
/// A NIfTI ROI carries no Frame of Reference UID; it is taken to be in the scanner space of
/// `target` (as for every NIfTI of one session converted by dcm2niix) and `frame_note` says so.
/// A SEG's Frame of Reference UID must equal the target's.
///
/// Errors: another Frame of Reference (naming both UIDs); a singular affine; no ROI voxel on
/// the target grid (it was drawn outside that grid's field of view or in another session).
pub fn place_roi(roi: &DrawnRoi, target: GridRef) -> Result<RoiOnGrid> {
    let (drawn, g) = (&roi.mask, &roi.geometry);
    let n_drawn = drawn.iter().filter(|&&b| b).count();
    let ml = |n: usize, geometry: &Geometry| n as f64 * geometry.det_ras().abs() / 1000.0;
    let drawn_ml = ml(n_drawn, g);
    let from = GridRef::new(g, roi.frame_of_reference_uid.as_deref(), &roi.name);
    let frame_note = match check_frames(from, target)? {
        FrameMatch::Same => None,
        FrameMatch::Assumed(note) => Some(note),
    };
    if g.dims == target.geometry.dims && g.max_corner_distance(target.geometry) <= 0.1 {
        return Ok(RoiOnGrid {
            mask: drawn.clone(),
            drawn_ml,
            ml: drawn_ml,
            resampled: false,
            frame_note: None,
        });
    }
    let mask = resample_mask(drawn.view(), from, target)?;
    let n = mask.iter().filter(|&&b| b).count();
    if n == 0 {
        return Err(Error::Invalid(format!(
            "{}: none of the ROI's {n_drawn} voxels ({drawn_ml:.2} mL) lies on the grid of {} (no voxel centre of that grid falls inside the ROI): the ROI lies outside its field of view, was drawn in another session, or is thinner than its voxels; draw the ROI on a series of this study that covers the lesion",
            roi.name, target.label
        )));
    }
    Ok(RoiOnGrid {
        mask,
        drawn_ml,
        ml: ml(n, target.geometry),
        resampled: true,
        frame_note,
    })
}

/// The thresholds live with the response map they also drive.
pub use crate::models::response::ReadingThresholds;

/// Which row of docs/methods.md §1's table the ROI medians meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingClass {
    /// rCBV < low and ADC > high.
    SupportsTreatmentEffect,
    /// rCBV > high.
    SupportsProgression,
    /// Neither criterion is met (rCBV between the thresholds, or low rCBV without high ADC).
    Indeterminate,
    /// A value the reading needs is missing.
    InsufficientData,
}

/// The reading and the sentence that states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    pub class: ReadingClass,
    pub rcbv_median: Option<f64>,
    pub adc_median_mm2_s: Option<f64>,
    pub thresholds: ReadingThresholds,
    pub statement: String,
}

/// Said with every reading.
pub const NOT_A_DIAGNOSIS: &str =
    "This supports a reader; it is not a diagnosis (published cut-offs vary between software packages).";

/// Reads ROI medians of the leakage-corrected rCBV map and of the ADC map (mm²/s) against the
/// thresholds. NaN medians (an ROI with no finite value) count as missing.
pub fn read_rcbv_adc(
    rcbv_median: Option<f64>,
    adc_median_mm2_s: Option<f64>,
    thresholds: &ReadingThresholds,
) -> Result<Reading> {
    let t = thresholds;
    t.validate()?;
    // Scanners store ADC as integers in 10⁻⁶ mm²/s (docs/methods.md §2); such a value given here as
    // mm²/s would read as an absurdly high diffusivity and always "support" treatment effect.
    // Free water at body temperature is 3×10⁻³ mm²/s; nothing in tissue exceeds 0.01.
    if let Some(adc) = adc_median_mm2_s.filter(|a| a.is_finite()) {
        if !(0.0..=0.01).contains(&adc) {
            return Err(Error::Invalid(format!(
                "ROI median ADC {adc} is not a diffusivity in mm²/s (tissue lies below 0.01 mm²/s); values in 10⁻⁶ mm²/s (µm²/s), as scanners store them, must be multiplied by 10⁻⁶"
            )));
        }
    }
    let rcbv = rcbv_median.filter(|v| v.is_finite());
    let adc = adc_median_mm2_s.filter(|v| v.is_finite());
    let r = |v: f64| format!("{v:.2}");
    let a = |v: f64| format!("{:.2}×10⁻³ mm²/s", v * 1e3);
    let (class, finding) = match (rcbv, adc) {
        (None, _) => (
            ReadingClass::InsufficientData,
            "no ROI median rCBV (no rCBV map, no ROI, or no finite value in it): no reading".to_string(),
        ),
        (Some(v), _) if v > t.rcbv_high => (
            ReadingClass::SupportsProgression,
            format!(
                "ROI median rCBV {} > {}: supports true progression (tumour regrowth)",
                r(v),
                t.rcbv_high
            ),
        ),
        (Some(v), None) if v < t.rcbv_low => (
            ReadingClass::InsufficientData,
            format!(
                "ROI median rCBV {} < {} but no ROI median ADC: the treatment-effect criterion needs ADC too; no reading",
                r(v),
                t.rcbv_low
            ),
        ),
        (Some(v), Some(d)) if v < t.rcbv_low && d > t.adc_high_mm2_s => (
            ReadingClass::SupportsTreatmentEffect,
            format!(
                "ROI median rCBV {} < {} and ADC {} > {}: supports treatment effect (pseudoprogression)",
                r(v),
                t.rcbv_low,
                a(d),
                a(t.adc_high_mm2_s)
            ),
        ),
        (Some(v), Some(d)) if v < t.rcbv_low => (
            ReadingClass::Indeterminate,
            format!(
                "ROI median rCBV {} < {} but ADC {} ≤ {}: low perfusion without raised diffusion meets neither criterion",
                r(v),
                t.rcbv_low,
                a(d),
                a(t.adc_high_mm2_s)
            ),
        ),
        (Some(v), _) => (
            ReadingClass::Indeterminate,
            format!(
                "ROI median rCBV {} lies between {} and {}: meets neither criterion",
                r(v),
                t.rcbv_low,
                t.rcbv_high
            ),
        ),
    };
    Ok(Reading {
        class,
        rcbv_median: rcbv,
        adc_median_mm2_s: adc,
        thresholds: *t,
        statement: format!("{finding}. {NOT_A_DIAGNOSIS}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn roi_statistics_of_known_values() {
        // ROI values 1, 2, 3, 4, NaN; outside the ROI 100.
        let mut map = Array3::from_elem((1, 2, 4), 100.0f32);
        let mut roi = Array3::from_elem((1, 2, 4), false);
        for (k, v) in [1.0, 2.0, 3.0, 4.0, f32::NAN].into_iter().enumerate() {
            map[[0, k / 4, k % 4]] = v;
            roi[[0, k / 4, k % 4]] = true;
        }
        let s = roi_stat(map.view(), roi.view(), "rCBV", "ratio").unwrap();
        assert_eq!((s.n, s.excluded), (4, 1));
        assert_eq!(s.mean, 2.5);
        assert_eq!(s.median, 2.5);
        // sample SD of 1..4 = sqrt(5/3)
        assert!((s.sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn an_roi_of_nans_gives_no_statistics_and_a_wrong_grid_an_error() {
        let map = Array3::from_elem((1, 1, 3), f32::NAN);
        let roi = Array3::from_elem((1, 1, 3), true);
        let s = roi_stat(map.view(), roi.view(), "ADC", "mm2/s").unwrap();
        assert_eq!((s.n, s.excluded), (0, 3));
        assert!(s.median.is_nan());
        let other = Array3::from_elem((1, 3, 1), true);
        let e = roi_stat(map.view(), other.view(), "ADC", "mm2/s").unwrap_err();
        assert!(e.to_string().contains("ROI grid"), "{e}");
    }
}
