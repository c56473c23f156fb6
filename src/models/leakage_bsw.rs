//! Leakage correction of Boxerman, Schmainda and Weisskoff (AJNR 2006; METHODS §3). The f64 CPU
//! twin of `shaders/leakage_bsw.wgsl`, plus the choice of the reference curve (a whole-brain
//! reduction, done once on the CPU).
//!
//! Per voxel, linear least squares ΔR2*(t) ≈ K1·R̄(t) − K2·∫₀ᵗR̄, over the frames from the start
//! of the baseline to the end; corrected ΔR2*_c = ΔR2* + K2·∫₀ᵗR̄, so the corrected CBV is
//! CBV + K2·∫(∫₀ᵗR̄) over the integration window. K2 > 0: T1-dominant leakage (CBV
//! underestimated without correction); K2 < 0: T2*-dominant.

use rayon::prelude::*;
use serde::Serialize;

use super::delta_r2star::trapezoid;

/// The reference rule: a brain voxel is non-enhancing when its late ΔR2* returns to baseline,
/// |late mean| ≤ 2·(baseline SD) + 2% of its own peak, and it was perfused, peak > 5·(baseline
/// SD). The 2% term keeps noise-free data (SD = 0) usable. Vessels are then left out by
/// [`reference_voxels`].
pub fn is_reference_voxel(peak: f64, baseline_sd: f64, late_mean: f64) -> bool {
    peak.is_finite()
        && peak > 5.0 * baseline_sd
        && peak > 0.0
        && late_mean.abs() <= 2.0 * baseline_sd + 0.02 * peak
}

/// The voxels of the reference curve: those passing [`is_reference_voxel`] whose peak is at
/// most 3× the median peak of those that pass (arteries and veins peak far higher than tissue,
/// and their narrow curves would distort R̄).
pub fn reference_voxels(peak: &[f32], baseline_sd: &[f32], late_mean: &[f32]) -> Vec<usize> {
    let candidates: Vec<usize> = (0..peak.len())
        .filter(|&v| is_reference_voxel(peak[v] as f64, baseline_sd[v] as f64, late_mean[v] as f64))
        .collect();
    if candidates.is_empty() {
        return candidates;
    }
    let mut peaks: Vec<f32> = candidates.iter().map(|&v| peak[v]).collect();
    // The middle rank a sort would give (the same value, `total_cmp` a total order).
    let mid = peaks.len() / 2;
    let limit = 3.0 * *peaks.select_nth_unstable_by(mid, f32::total_cmp).1;
    candidates
        .into_iter()
        .filter(|&v| peak[v] <= limit)
        .collect()
}

/// What is shared by every voxel's fit.
#[derive(Debug, Clone, Serialize)]
pub struct BswReference {
    /// R̄(t): mean ΔR2* of the reference voxels (s⁻¹).
    pub rbar: Vec<f64>,
    /// ∫₀ᵗR̄ (trapezoid from the first fitted frame; s⁻¹·s).
    pub cumulative: Vec<f64>,
    /// Frames fitted, `[start, end)`.
    pub fit: (usize, usize),
    /// Inverse of the 2×2 normal matrix of the regressors (R̄, −∫R̄).
    pub inverse: [[f64; 2]; 2],
    /// ∫(∫₀ᵗR̄)dt over the integration window: the corrected CBV is CBV + K2 times this.
    pub cumulative_integral: f64,
    /// Number of reference voxels.
    pub voxels: usize,
}

/// The inverse of the 2×2 normal matrix of the regressors R̄(t) and −I(t) over the frames `fit`
/// (I is ∫R̄ for BSW, the exponentially weighted ∫R̄ for the bidirectional model); `None` when
/// the two are (numerically) proportional.
pub fn normal_inverse(
    rbar: &[f64],
    integral: &[f64],
    fit: (usize, usize),
) -> Option<[[f64; 2]; 2]> {
    let (mut a11, mut a12, mut a22) = (0.0, 0.0, 0.0);
    for t in fit.0..fit.1 {
        let (x1, x2) = (rbar[t], -integral[t]);
        a11 += x1 * x1;
        a12 += x1 * x2;
        a22 += x2 * x2;
    }
    let det = a11 * a22 - a12 * a12;
    (det.abs() > 1e-12 * (a11 * a22).abs().max(f64::MIN_POSITIVE))
        .then(|| [[a22 / det, -a12 / det], [-a12 / det, a11 / det]])
}

impl BswReference {
    pub fn new(
        rbar: Vec<f64>,
        dt: f64,
        fit: (usize, usize),
        integration: (usize, usize),
        voxels: usize,
    ) -> Result<Self, String> {
        let n = rbar.len();
        let mut cumulative = vec![0.0; n];
        for t in fit.0 + 1..n {
            cumulative[t] = cumulative[t - 1] + 0.5 * (rbar[t - 1] + rbar[t]) * dt;
        }
        let inverse = normal_inverse(&rbar, &cumulative, fit).ok_or("the leakage reference curve is degenerate (R̄ and its integral are proportional): no bolus in the reference voxels")?;
        let cumulative_integral = trapezoid(|t| cumulative[t], integration.0, integration.1, dt);
        Ok(BswReference {
            rbar,
            cumulative,
            fit,
            inverse,
            cumulative_integral,
            voxels,
        })
    }
}

/// (K1, K2, corrected CBV) of one voxel with ΔR2* `y(t)` and uncorrected CBV `cbv`.
pub fn fit_voxel(r: &BswReference, y: impl Fn(usize) -> f64, cbv: f64) -> [f64; 3] {
    let (mut b1, mut b2) = (0.0, 0.0);
    for t in r.fit.0..r.fit.1 {
        let yt = y(t);
        b1 += r.rbar[t] * yt;
        b2 -= r.cumulative[t] * yt;
    }
    let k1 = r.inverse[0][0] * b1 + r.inverse[0][1] * b2;
    let k2 = r.inverse[1][0] * b1 + r.inverse[1][1] * b2;
    if !(k1.is_finite() && k2.is_finite() && cbv.is_finite()) {
        return [f64::NAN; 3];
    }
    [k1, k2, cbv + k2 * r.cumulative_integral]
}

/// The CPU path: `curves[t * n + v]`, `cbv[v]`; returns planar `[K1 | K2 | CBV_corrected]`.
pub fn fit_cpu(r: &BswReference, curves: &[f32], cbv: &[f32], n: usize) -> Vec<f32> {
    let fits: Vec<[f64; 3]> = (0..n)
        .into_par_iter()
        .with_min_len(1024)
        .map(|v| fit_voxel(r, |t| curves[t * n + v] as f64, cbv[v] as f64))
        .collect();
    super::planar(&fits)
}

/// BSW's reference curve R̄(t): the mean ΔR2* of `voxels` (indices into the planar curves
/// `[t * n + k]`, `nt` frames), summed voxel after voxel.
pub fn reference_curve(curves: &[f32], n: usize, nt: usize, voxels: &[usize]) -> Vec<f64> {
    let mut rbar = vec![0.0; nt];
    for &v in voxels {
        for (t, r) in rbar.iter_mut().enumerate() {
            *r += curves[t * n + v] as f64;
        }
    }
    rbar.iter_mut().for_each(|x| *x /= voxels.len() as f64);
    rbar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Voxels 0 and 2 of three, two frames: (1 + 3)/2 and (2 + 6)/2.
    #[test]
    fn the_reference_curve_is_the_mean_of_its_voxels() {
        let curves = [1.0, 9.0, 3.0, 2.0, 9.0, 6.0];
        assert_eq!(reference_curve(&curves, 3, 2, &[0, 2]), vec![2.0, 4.0]);
    }

    #[test]
    fn recovers_k1_and_k2_of_a_curve_built_from_the_model() {
        let n = 50;
        let dt = 1.5;
        let rbar: Vec<f64> = (0..n)
            .map(|i| {
                let t = (i as f64 - 10.0) * dt;
                if t > 0.0 {
                    20.0 * (t / 4.0).powi(3) * (-t / 2.0).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let r = BswReference::new(rbar.clone(), dt, (2, n), (9, n), 100).unwrap();
        let (k1, k2) = (1.7, 0.004);
        let y: Vec<f64> = (0..n)
            .map(|t| k1 * rbar[t] - k2 * r.cumulative[t])
            .collect();
        let cbv = trapezoid(|t| y[t], 9, n, dt);
        let [f1, f2, corrected] = fit_voxel(&r, |t| y[t], cbv);
        assert!(
            (f1 - k1).abs() < 1e-9 && (f2 - k2).abs() < 1e-9,
            "{f1} {f2}"
        );
        let truth = trapezoid(|t| k1 * rbar[t], 9, n, dt);
        assert!((corrected - truth).abs() < 1e-9 * truth);
        assert!(
            cbv < truth,
            "T1 leakage (K2 > 0) lowers the uncorrected CBV"
        );
    }

    #[test]
    fn reference_rule() {
        assert!(is_reference_voxel(10.0, 0.5, 0.8));
        assert!(!is_reference_voxel(10.0, 0.5, -1.5), "T1 leak tail");
        assert!(!is_reference_voxel(2.0, 0.5, 0.0), "not perfused");
        assert!(is_reference_voxel(10.0, 0.0, 0.1), "noise-free tissue");
    }
}
