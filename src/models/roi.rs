//! Statistics of a map inside a region of interest, and the fractional tumour burden.
//!
//! Pure functions of voxel data: the ROI must already lie on the map's grid (an ROI drawn on
//! another series is resampled there first, by nearest neighbour:
//! [`crate::volume::resample::resample_mask`]).

use ndarray::ArrayView3;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::models::response::ReadingThresholds;

/// Summary statistics of the finite values of a map inside an ROI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoiSummary {
    /// Finite values in the ROI (the statistics are over these).
    pub n: usize,
    /// ROI voxels left out because the map is NaN or infinite there (failed fits).
    pub excluded: usize,
    pub mean: f64,
    pub median: f64,
    /// Sample standard deviation (n − 1 in the denominator); NaN when n < 2.
    pub sd: f64,
    /// 10th and 90th percentiles.
    pub p10: f64,
    pub p90: f64,
}

/// The `q`-quantile (0 ≤ q ≤ 1) of sorted values by linear interpolation between order
/// statistics: position q·(n − 1) from the smallest (Hyndman and Fan, Am Stat 1996, definition
/// 7; the default of numpy's `percentile`, R's `quantile` and Excel's `PERCENTILE`). NaN for no
/// values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => {
            let h = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// n, mean, median, SD, 10th and 90th percentiles ([`quantile_sorted`]) of the finite values of
/// `map` inside `roi` (both `[z, y, x]` on one grid; values in the map's unit). With no finite
/// value inside, n is 0 and the statistics are NaN.
///
/// Errors ([`Error::Invalid`]): the ROI's shape differs from the map's.
pub fn roi_summary(map: ArrayView3<f32>, roi: ArrayView3<bool>) -> Result<RoiSummary> {
    let mut values = roi_values(map, roi, "map")?;
    let excluded = roi.iter().filter(|&&b| b).count() - values.len();
    values.sort_unstable_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let mean = if n == 0 {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / n as f64
    };
    let sd = if n < 2 {
        f64::NAN
    } else {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    Ok(RoiSummary {
        n,
        excluded,
        mean,
        median: quantile_sorted(&values, 0.5),
        sd,
        p10: quantile_sorted(&values, 0.1),
        p90: quantile_sorted(&values, 0.9),
    })
}

/// Fractional tumour burden: the shares of an ROI's finite rCBV voxels below, between and above
/// the reading's thresholds (fractions 0–1 that sum to 1; NaN when n is 0).
///
/// After Hu et al. (Neuro-Oncology 2012;14:919–930), who found the share of a recurrent lesion's
/// voxels above an rCBV threshold to track its histological tumour fraction, and Iv et al.
/// (AJNR 2019;40:1649–1657), whose low / intermediate / high FTB classes (rCBV cut-offs 1.0
/// and 1.75 there) told tumour from treatment effect. Here the cut-offs are the reading's
/// ([`ReadingThresholds`], docs/methods.md §1) so that the map, the FTB and the reading agree;
/// boundaries as [`crate::models::response::classify_voxel`]: below is rCBV < low, above is
/// rCBV > high, between includes both cut-offs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TumourBurden {
    /// Finite rCBV voxels in the ROI.
    pub n: usize,
    /// Share with rCBV < low (treatment-effect range).
    pub below_low: f64,
    /// Share with low ≤ rCBV ≤ high.
    pub between: f64,
    /// Share with rCBV > high (the FTB of Hu et al.: tumour-like perfusion).
    pub above_high: f64,
}

/// The [`TumourBurden`] of a leakage-corrected rCBV map (ratio) inside `roi` (both `[z, y, x]`
/// on one grid). Comparisons are made in f32, the map's precision.
///
/// Errors ([`Error::Invalid`]): shapes differ; thresholds fail [`ReadingThresholds::validate`].
pub fn fractional_tumour_burden(
    rcbv: ArrayView3<f32>,
    roi: ArrayView3<bool>,
    thresholds: &ReadingThresholds,
) -> Result<TumourBurden> {
    thresholds.validate()?;
    let values = roi_values(rcbv, roi, "rCBV map")?;
    let (lo, hi) = (thresholds.rcbv_low as f32, thresholds.rcbv_high as f32);
    let below = values.iter().filter(|&&v| (v as f32) < lo).count();
    let above = values.iter().filter(|&&v| (v as f32) > hi).count();
    let n = values.len();
    let share = |k: usize| {
        if n == 0 {
            f64::NAN
        } else {
            k as f64 / n as f64
        }
    };
    Ok(TumourBurden {
        n,
        below_low: share(below),
        between: share(n - below - above),
        above_high: share(above),
    })
}

/// The finite values of `map` inside `roi`, as f64.
fn roi_values(map: ArrayView3<f32>, roi: ArrayView3<bool>, what: &str) -> Result<Vec<f64>> {
    if map.dim() != roi.dim() {
        return Err(Error::Invalid(format!(
            "ROI grid {:?} (z, y, x) differs from the {what}'s {:?}; resample the ROI onto the map's grid first (nearest neighbour)",
            roi.dim(),
            map.dim()
        )));
    }
    Ok(map
        .iter()
        .zip(roi.iter())
        .filter(|&(v, &inside)| inside && v.is_finite())
        .map(|(&v, _)| v as f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn row(values: &[f32]) -> (Array3<f32>, Array3<bool>) {
        let n = values.len();
        (
            Array3::from_shape_vec((1, 1, n), values.to_vec()).unwrap(),
            Array3::from_elem((1, 1, n), true),
        )
    }

    #[test]
    fn summary_of_known_values() {
        // 1..=10 and one NaN: mean 5.5, median 5.5, SD sqrt(55/6); type-7 10th percentile at
        // position 0.9 → 1.9, 90th at 8.1 → 9.1.
        let mut v: Vec<f32> = (1..=10).map(|i| i as f32).collect();
        v.push(f32::NAN);
        let (map, roi) = row(&v);
        let s = roi_summary(map.view(), roi.view()).unwrap();
        assert_eq!((s.n, s.excluded), (10, 1));
        assert_eq!((s.mean, s.median), (5.5, 5.5));
        assert!((s.sd - (55.0f64 / 6.0).sqrt()).abs() < 1e-12);
        assert!(
            (s.p10 - 1.9).abs() < 1e-12 && (s.p90 - 9.1).abs() < 1e-12,
            "{s:?}"
        );
        // Voxels outside the ROI do not count.
        let mut roi = roi;
        roi[[0, 0, 9]] = false;
        let s = roi_summary(map.view(), roi.view()).unwrap();
        assert_eq!((s.n, s.mean, s.median), (9, 5.0, 5.0));
        // One value: no SD; none: all NaN.
        let (one, r1) = row(&[2.0]);
        let s = roi_summary(one.view(), r1.view()).unwrap();
        assert_eq!((s.n, s.median, s.p10, s.p90), (1, 2.0, 2.0, 2.0));
        assert!(s.sd.is_nan());
        let (none, r0) = row(&[f32::NAN]);
        let s = roi_summary(none.view(), r0.view()).unwrap();
        assert_eq!((s.n, s.excluded), (0, 1));
        assert!(s.mean.is_nan() && s.median.is_nan() && s.p90.is_nan());
    }

    #[test]
    fn quantiles_match_numpys_default() {
        // numpy.percentile([3, 1, 4, 1, 5], [0, 10, 25, 50, 90, 100]) = 1, 1, 1, 3, 4.6, 5.
        let s = [1.0, 1.0, 3.0, 4.0, 5.0];
        let q = [0.0, 0.1, 0.25, 0.5, 0.9, 1.0].map(|q| quantile_sorted(&s, q));
        let want = [1.0, 1.0, 1.0, 3.0, 4.6, 5.0];
        for (g, w) in q.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn tumour_burden_of_known_values_with_strict_boundaries() {
        let t = ReadingThresholds::default();
        // 10 finite voxels: 3 below 1.5, 4 between (1.5 and 2.0 included), 3 above; NaN left out.
        let (map, roi) = row(&[0.5, 1.0, 1.49, 1.5, 1.7, 1.9, 2.0, 2.01, 3.0, 6.0, f32::NAN]);
        let f = fractional_tumour_burden(map.view(), roi.view(), &t).unwrap();
        assert_eq!(f.n, 10);
        assert!((f.below_low - 0.3).abs() < 1e-12);
        assert!((f.between - 0.4).abs() < 1e-12);
        assert!((f.above_high - 0.3).abs() < 1e-12);
        // Thresholds move the shares (Iv et al.'s 1.0 / 1.75).
        let iv = ReadingThresholds {
            rcbv_low: 1.0,
            rcbv_high: 1.75,
            ..t
        };
        let f = fractional_tumour_burden(map.view(), roi.view(), &iv).unwrap();
        assert!(
            (f.below_low - 0.1).abs() < 1e-12 && (f.above_high - 0.5).abs() < 1e-12,
            "{f:?}"
        );
        // A lesion built half above the high cut-off.
        let half: Vec<f32> = (0..200)
            .map(|i| if i % 2 == 0 { 2.6 } else { 1.7 })
            .collect();
        let (map, roi) = row(&half);
        let f = fractional_tumour_burden(map.view(), roi.view(), &t).unwrap();
        assert_eq!((f.above_high, f.between, f.below_low), (0.5, 0.5, 0.0));
        let (none, r0) = row(&[f32::NAN]);
        let f = fractional_tumour_burden(none.view(), r0.view(), &t).unwrap();
        assert!(f.n == 0 && f.above_high.is_nan());
        let other = Array3::from_elem((1, 2, 1), true);
        assert!(fractional_tumour_burden(none.view(), other.view(), &t).is_err());
    }
}
