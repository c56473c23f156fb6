//! Change between visits: the change map, the parametric response map (PRM) and the
//! follow-up rule on ROI medians (docs/methods.md §7, §1).
//!
//! Pure arithmetic on maps already on one grid; placing the visits there (registration,
//! resampling) and writing the results is `pipeline::compare`'s. The change map is
//! `100·(later − first) / first` (%); the PRM (Galbán et al., Nat Med 2009;15:572–576; the
//! functional diffusion map of Moffat et al., PNAS 2005;102:5524–5529) classes each voxel valid
//! in both visits increased (change > +threshold %), decreased (< −threshold %) or unchanged.

use std::path::PathBuf;

use ndarray::{Array3, Zip};
use serde::Serialize;

use crate::models::response::ReadingThresholds;

/// PRM voxel values.
pub const PRM_NOT_CLASSIFIED: u8 = 0;
pub const PRM_DECREASED: u8 = 1;
pub const PRM_UNCHANGED: u8 = 2;
pub const PRM_INCREASED: u8 = 3;

/// A change map's denominator must exceed this share of the first visit's brain median; below
/// it (near-zero values, where a percentage explodes) the change is NaN.
pub const DENOMINATOR_FLOOR: f64 = 0.05;

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

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    crate::models::roi::quantile_sorted(&v, 0.5)
}

/// The change map (%) and the PRM of `later` against `first` on one grid, valid where both are
/// finite and inside `valid`. Both `[z, y, x]` of `first`'s shape; the change is NaN and the
/// PRM [`PRM_NOT_CLASSIFIED`] outside `valid`, where either value is not finite, and where
/// `first` is at or below [`DENOMINATOR_FLOOR`] × its median inside `valid`.
pub fn change_and_prm(
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

/// The PRM class shares and the median change (%) inside `mask` (the classified voxels only).
pub fn shares(
    region: &str,
    prm: &Array3<u8>,
    change: &Array3<f32>,
    mask: &Array3<bool>,
) -> PrmShares {
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

/// The change from `from` to `to` in % of `from`; None unless both are finite and `from` > 0.
pub fn pct(from: f64, to: f64) -> Option<f64> {
    (from.is_finite() && to.is_finite() && from > 0.0).then(|| 100.0 * (to - from) / from)
}

/// The follow-up criterion of docs/methods.md §1 between two ROI measurements, `change` the
/// threshold (%). The statement ends with the finding; the caller adds the caution it says
/// with every reading.
pub fn rule(a: &RoiVisit, b: &RoiVisit, change: f64, t: &ReadingThresholds) -> RoiRule {
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
            "Visit {} → visit {}: {}; {finding}.",
            a.visit,
            b.visit,
            parts.join("; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[f32]) -> Array3<f32> {
        Array3::from_shape_vec((1, 1, v.len()), v.to_vec()).unwrap()
    }

    #[test]
    fn change_and_classes_follow_the_threshold_and_the_denominator_floor() {
        // Brain median of the first visit 100, so the floor is 5: the 1 is below it.
        let first = row(&[100.0, 100.0, 100.0, 1.0, f32::NAN]);
        let later = row(&[130.0, 85.0, 50.0, 2.0, 100.0]);
        let valid = Array3::from_elem((1, 1, 5), true);
        let (change, prm) = change_and_prm(&first, &later, &valid, 20.0);
        assert_eq!(&change.as_slice().unwrap()[..3], &[30.0, -15.0, -50.0]);
        assert!(change[[0, 0, 3]].is_nan() && change[[0, 0, 4]].is_nan());
        assert_eq!(
            prm.as_slice().unwrap(),
            &[
                PRM_INCREASED,
                PRM_UNCHANGED,
                PRM_DECREASED,
                PRM_NOT_CLASSIFIED,
                PRM_NOT_CLASSIFIED
            ]
        );
        let s = shares("brain", &prm, &change, &valid);
        assert_eq!(s.n, 3);
        assert!((s.increased - 1.0 / 3.0).abs() < 1e-12 && (s.decreased - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.median_change_pct, -15.0);
    }

    #[test]
    fn a_rise_of_rcbv_beyond_the_threshold_is_a_worsening() {
        let visit = |k, rcbv, adc| RoiVisit {
            visit: k,
            folder: PathBuf::new(),
            roi: PathBuf::new(),
            volume_ml: 10.0,
            rcbv_median: Some(rcbv),
            cbf_median: None,
            adc_median_mm2_s: Some(adc),
        };
        let t = ReadingThresholds::default();
        let r = rule(&visit(1, 2.0, 1.0e-3), &visit(2, 2.6, 1.0e-3), 20.0, &t);
        assert!(
            r.worsening && r.statement.contains("rCBV rose"),
            "{}",
            r.statement
        );
        assert!((r.rcbv_change_pct.unwrap() - 30.0).abs() < 1e-9);
        let r = rule(&visit(1, 2.0, 1.0e-3), &visit(2, 2.2, 0.9e-3), 20.0, &t);
        assert!(!r.worsening, "{}", r.statement);
        assert_eq!(pct(0.0, 1.0), None);
    }
}
