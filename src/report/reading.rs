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
use crate::volume::Geometry;

/// Statistics of one map inside an ROI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoiStat {
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
}

/// n, mean, median and SD of the finite values of `map` inside `roi` (both `[z, y, x]`, one
/// grid). With no finite value inside, n is 0 and the statistics are NaN.
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
    let mut values = Vec::new();
    let mut excluded = 0;
    for (&v, &inside) in map.iter().zip(roi.iter()) {
        if inside {
            if v.is_finite() {
                values.push(v as f64);
            } else {
                excluded += 1;
            }
        }
    }
    let n = values.len();
    let (mean, median, sd) = if n == 0 {
        (f64::NAN, f64::NAN, f64::NAN)
    } else {
        values.sort_unstable_by(|a, b| a.total_cmp(b));
        let mean = values.iter().sum::<f64>() / n as f64;
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            0.5 * (values[n / 2 - 1] + values[n / 2])
        };
        let sd = if n < 2 {
            f64::NAN
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        (mean, median, sd)
    };
    Ok(RoiStat {
        map: name.to_string(),
        unit: unit.to_string(),
        n,
        excluded,
        mean,
        median,
        sd,
    })
}

/// Reads an ROI mask (NIfTI, non-zero = inside) and checks that it lies on `grid`: same matrix
/// and the same place in the world (within 0.1 mm at the grid's far corner), since an ROI
/// drawn on another series or resampled differently would silently measure other tissue.
pub fn load_roi(path: &Path, grid: &Geometry) -> Result<Array3<bool>> {
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
    let roi = data.index_axis(Axis(0), 0).mapv(|v| v != 0.0);
    if !roi.iter().any(|&b| b) {
        return Err(bad("the ROI mask is empty (no non-zero voxel)".into()));
    }
    Ok(roi)
}

/// The thresholds of the reading (docs/methods.md §1); parameters, never constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReadingThresholds {
    /// rCBV below this (with ADC above `adc_high_mm2_s`) supports treatment effect.
    pub rcbv_low: f64,
    /// rCBV above this supports true progression.
    pub rcbv_high: f64,
    /// ADC above this (mm²/s) is the diffusion half of the treatment-effect criterion.
    pub adc_high_mm2_s: f64,
}

impl Default for ReadingThresholds {
    fn default() -> Self {
        ReadingThresholds {
            rcbv_low: 1.5,
            rcbv_high: 2.0,
            adc_high_mm2_s: 1.0e-3,
        }
    }
}

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
    "This supports a reader; it is not a diagnosis (paramap docs/methods.md §1: published cut-offs vary between software packages).";

/// Reads ROI medians of the leakage-corrected rCBV map and of the ADC map (mm²/s) against the
/// thresholds. NaN medians (an ROI with no finite value) count as missing.
pub fn read_rcbv_adc(
    rcbv_median: Option<f64>,
    adc_median_mm2_s: Option<f64>,
    thresholds: &ReadingThresholds,
) -> Result<Reading> {
    let t = thresholds;
    // Comparisons with NaN are false, so NaN thresholds fail this too; infinities are refused.
    let valid = t.rcbv_low > 0.0
        && t.rcbv_low <= t.rcbv_high
        && t.rcbv_high.is_finite()
        && t.adc_high_mm2_s > 0.0
        && t.adc_high_mm2_s.is_finite();
    if !valid {
        return Err(Error::Invalid(format!(
            "reading thresholds rCBV low {} / high {} and ADC {} mm²/s: they must be positive numbers with low ≤ high",
            t.rcbv_low, t.rcbv_high, t.adc_high_mm2_s
        )));
    }
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
