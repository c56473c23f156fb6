//! Gamma-variate fit of the first pass (an option of DSC CBV; Thompson et al. 1964, linearised
//! as in Madsen, Phys Med Biol 1992). The f64 CPU twin of `shaders/gamma_variate.wgsl`.
//!
//! C(τ) = A·τ^α·e^(−τ/β), τ = t − t0 with t0 the last baseline frame. Linearised:
//! ln C = ln A + α ln τ − τ/β, fitted by weighted least squares (w = C², normalised) over the
//! first-pass frames where C > 0. CBV = ∫C = A·β^(α+1)·Γ(α+1): the first pass without
//! recirculation. The curve fitted is the leakage-corrected ΔR2* (ΔR2* + K2·∫R̄).

use rayon::prelude::*;
use serde::Serialize;

/// What is fixed for all voxels.
#[derive(Debug, Clone, Serialize)]
pub struct GammaWindow {
    /// First-pass frames `[start, end)`; τ = (t − t0_frame)·dt.
    pub start: usize,
    pub end: usize,
    pub t0_frame: usize,
    pub dt: f64,
}

/// ln Γ(x) for x > 0: shifted Stirling series (the shader uses the same).
pub fn ln_gamma(mut x: f64) -> f64 {
    let mut shift = 0.0;
    while x < 8.0 {
        shift -= x.ln();
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    shift + (x - 0.5) * x.ln() - x
        + 0.918_938_533_204_672_8
        + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)))
}

/// (A, α, β, CBV) of one voxel whose concentration curve is `c(t)`; NaN where the fit fails
/// (fewer than 3 positive frames, or a curve that does not rise and fall).
pub fn fit_voxel(w: &GammaWindow, c: impl Fn(usize) -> f64) -> [f64; 4] {
    let nan = [f64::NAN; 4];
    let mut cmax: f64 = 0.0;
    for t in w.start..w.end {
        cmax = cmax.max(c(t));
    }
    if !(cmax > 0.0 && cmax.is_finite()) {
        return nan;
    }
    // Weighted regression of ln C on (ln τ, τ), centred on the weighted means so that f32
    // (the shader) keeps its precision: two passes, then a 2×2 solve.
    let frame = |t: usize| {
        let ct = c(t);
        let tau = (t as f64 - w.t0_frame as f64) * w.dt;
        (ct > 0.0).then(|| ((ct / cmax) * (ct / cmax), tau.ln(), tau, ct.ln()))
    };
    let (mut sw, mut s1, mut s2, mut sy, mut used) = (0.0, 0.0, 0.0, 0.0, 0);
    for t in w.start..w.end {
        if let Some((wt, x1, x2, y)) = frame(t) {
            sw += wt;
            s1 += wt * x1;
            s2 += wt * x2;
            sy += wt * y;
            used += 1;
        }
    }
    if used < 3 {
        return nan;
    }
    let (m1, m2, my) = (s1 / sw, s2 / sw, sy / sw);
    let (mut a11, mut a12, mut a22, mut b1, mut b2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for t in w.start..w.end {
        if let Some((wt, x1, x2, y)) = frame(t) {
            let (d1, d2, dy) = (x1 - m1, x2 - m2, y - my);
            a11 += wt * d1 * d1;
            a12 += wt * d1 * d2;
            a22 += wt * d2 * d2;
            b1 += wt * d1 * dy;
            b2 += wt * d2 * dy;
        }
    }
    let det = a11 * a22 - a12 * a12;
    if !(det > 0.0) {
        return nan;
    }
    let alpha = (a22 * b1 - a12 * b2) / det;
    let slope = (a11 * b2 - a12 * b1) / det;
    let ln_a = my - alpha * m1 - slope * m2;
    if !(slope < 0.0 && alpha > -1.0) {
        return nan;
    }
    let beta = -1.0 / slope;
    let cbv = (ln_a + (alpha + 1.0) * beta.ln() + ln_gamma(alpha + 1.0)).exp();
    if !cbv.is_finite() {
        return nan;
    }
    [ln_a.exp(), alpha, beta, cbv]
}

/// The CPU path: corrected curves ΔR2* + K2·cumulative, planar; returns `[A | α | β | CBV]`.
pub fn fit_cpu(
    w: &GammaWindow,
    curves: &[f32],
    k2: &[f32],
    cumulative: &[f64],
    n: usize,
) -> Vec<f32> {
    let fits: Vec<[f64; 4]> = (0..n)
        .into_par_iter()
        .with_min_len(1024)
        .map(|v| {
            let k = if k2[v].is_finite() { k2[v] as f64 } else { 0.0 };
            fit_voxel(w, |t| curves[t * n + v] as f64 + k * cumulative[t])
        })
        .collect();
    super::planar(&fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_known_values() {
        assert!((ln_gamma(1.0)).abs() < 1e-11);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-11);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-10);
    }

    #[test]
    fn a_sampled_gamma_variate_is_recovered_with_its_area() {
        let w = GammaWindow {
            start: 11,
            end: 40,
            t0_frame: 10,
            dt: 1.0,
        };
        let (a, alpha, beta) = (2.0, 3.0, 1.5);
        let c = |t: usize| {
            let tau = t as f64 - 10.0;
            if tau > 0.0 {
                a * tau.powf(alpha) * (-tau / beta).exp()
            } else {
                0.0
            }
        };
        let [fa, fal, fb, cbv] = fit_voxel(&w, c);
        assert!((fa - a).abs() < 1e-9 && (fal - alpha).abs() < 1e-9 && (fb - beta).abs() < 1e-9);
        let area = a * beta.powf(alpha + 1.0) * 6.0; // Γ(4) = 6
        assert!((cbv - area).abs() < 1e-9 * area);
    }
}
