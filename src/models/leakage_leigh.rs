//! Bidirectional leakage correction (METHODS §3): BSW's model (`models::leakage_bsw`) with an
//! efflux rate k_ep, after Leu K, Boxerman JL, et al., AJNR 2016;37:1440–1446 (the
//! bidirectional-exchange extension of Boxerman et al., AJNR 2006; called "Leigh" in
//! paramap's issue #13 and option `--leakage leigh`). The f64 CPU twin of
//! `shaders/leakage_leigh.wgsl`.
//!
//! Per voxel: ΔR2*(t) ≈ K1·R̄(t) − K2·E_k(t), E_k(t) = ∫₀ᵗR̄(τ)·e^(−k_ep·(t−τ))dτ, with R̄ the
//! non-enhancing reference curve BSW builds ([`BswReference`]). k_ep is searched on the fixed
//! grid [`kep_grid`] (0 and 31 values log-spaced 10⁻⁴…10⁻¹ s⁻¹, ten per decade; the range is
//! paramap's choice, docs/methods.md §3); for each k_ep, K1 and K2 are BSW's 2×2 linear
//! least squares on the frames BSW fits, and the k_ep with the smallest residual sum of squares
//! is kept (on a tie, the smaller k_ep). E_k is the trapezoid rule on the frames, recursively:
//! E[t] = E[t−1]·q + ½Δt·(R̄[t−1]·q + R̄[t]), q = e^(−k_ep·Δt), from E = 0 at the first fitted
//! frame; with k_ep = 0 it is BSW's ∫₀ᵗR̄ exactly, so the k_ep = 0 fit is BSW's fit.
//!
//! The corrected curve is ΔR2* + K2·E_k, so the corrected CBV is CBV + K2·∫E_k over the CBV
//! window (as BSW's is CBV + K2·∫(∫R̄)).

use rayon::prelude::*;

use super::delta_r2star::trapezoid;
use super::leakage_bsw::BswReference;

/// Number of k_ep values in [`kep_grid`].
pub const KEP_STEPS: usize = 32;

/// The k_ep grid (s⁻¹): 0, then 10⁻⁴·10^(i/10) for i = 0..=30 (10⁻⁴ … 10⁻¹, ratio 10^0.1 ≈
/// 1.26 between neighbours). paramap's choice (docs/methods.md §3): from an efflux too slow to
/// show within a 90 s series (e^(−10⁻⁴·90) ≈ 0.99) to one that empties the extravascular space
/// within seconds.
pub fn kep_grid() -> Vec<f64> {
    std::iter::once(0.0)
        .chain((0..KEP_STEPS - 1).map(|i| 1e-4 * 10f64.powf(i as f64 / 10.0)))
        .collect()
}

/// What is shared by every voxel's fit: the regressors for every k_ep of the grid.
#[derive(Debug, Clone)]
pub struct LeighReference {
    /// R̄(t), as BSW's (s⁻¹).
    pub rbar: Vec<f64>,
    /// Frames fitted, `[start, end)` (BSW's).
    pub fit: (usize, usize),
    /// The k_ep grid (s⁻¹), [`kep_grid`].
    pub kep: Vec<f64>,
    /// E_k(t) for each k_ep: `weighted[k * n_t + t]` (s⁻¹·s).
    pub weighted: Vec<f64>,
    /// Inverse of the 2×2 normal matrix of (R̄, −E_k), per k_ep: `[inv00, inv01, inv10, inv11]`.
    pub inverse: Vec<[f64; 4]>,
    /// ∫E_k dt over the CBV window, per k_ep: the corrected CBV is CBV + K2 times this.
    pub weighted_integral: Vec<f64>,
}

impl LeighReference {
    /// From BSW's reference (its R̄, fitted frames) with frame interval `dt` (s) and the CBV
    /// window `integration` (frames, `[start, end)`). Errors when a k_ep's regressors are
    /// degenerate (no bolus in R̄).
    pub fn new(bsw: &BswReference, dt: f64, integration: (usize, usize)) -> Result<Self, String> {
        let rbar = bsw.rbar.clone();
        let n = rbar.len();
        let fit = bsw.fit;
        let kep = kep_grid();
        let mut weighted = vec![0.0; kep.len() * n];
        let mut inverse = Vec::with_capacity(kep.len());
        let mut weighted_integral = Vec::with_capacity(kep.len());
        for (k, &rate) in kep.iter().enumerate() {
            let e = &mut weighted[k * n..(k + 1) * n];
            let q = (-rate * dt).exp();
            for t in fit.0 + 1..n {
                e[t] = e[t - 1] * q + 0.5 * dt * (rbar[t - 1] * q + rbar[t]);
            }
            let [[i11, i12], [i21, i22]] = super::leakage_bsw::normal_inverse(&rbar, e, fit).ok_or_else(|| format!("the leakage reference curve is degenerate for k_ep = {rate} 1/s (R̄ and its weighted integral are proportional): no bolus in the reference voxels"))?;
            inverse.push([i11, i12, i21, i22]);
            weighted_integral.push(trapezoid(|t| e[t], integration.0, integration.1, dt));
        }
        Ok(LeighReference {
            rbar,
            fit,
            kep,
            weighted,
            inverse,
            weighted_integral,
        })
    }

    /// E_k(t) of grid index `k`.
    pub fn regressor(&self, k: usize) -> &[f64] {
        let n = self.rbar.len();
        &self.weighted[k * n..(k + 1) * n]
    }
}

/// The least-squares fit at grid index `k` of a voxel with ΔR2* `ys` (all frames) and
/// b1 = ΣR̄·y over the fitted frames: (K1, K2, bᵀA⁻¹b = b1·K1 + b2·K2, the explained sum of
/// squares; the residual sum of squares is Σy² minus it).
pub fn fit_at(r: &LeighReference, k: usize, ys: &[f64], b1: f64) -> (f64, f64, f64) {
    let e = r.regressor(k);
    let mut b2 = 0.0;
    for t in r.fit.0..r.fit.1 {
        b2 -= e[t] * ys[t];
    }
    let i = &r.inverse[k];
    let k1 = i[0] * b1 + i[1] * b2;
    let k2 = i[2] * b1 + i[3] * b2;
    (k1, k2, b1 * k1 + b2 * k2)
}

/// b1 = ΣR̄·y over the fitted frames, shared by every k_ep's fit.
pub fn b1(r: &LeighReference, ys: &[f64]) -> f64 {
    (r.fit.0..r.fit.1).map(|t| r.rbar[t] * ys[t]).sum()
}

/// (K1, K2, k_ep, corrected CBV) of one voxel with ΔR2* `y(t)` and uncorrected CBV `cbv`:
/// the k_ep of the grid whose fit ([`fit_at`]) explains most, i.e. leaves the least residual
/// (the first, smallest k_ep, on a tie); all NaN when any fit or `cbv` is not finite.
pub fn fit_voxel(r: &LeighReference, y: impl Fn(usize) -> f64, cbv: f64) -> [f64; 4] {
    let n = r.rbar.len();
    let ys: Vec<f64> = (0..n).map(&y).collect();
    let b1 = b1(r, &ys);
    let mut best: Option<(f64, usize, f64, f64)> = None;
    for k in 0..r.kep.len() {
        let (k1, k2, explained) = fit_at(r, k, &ys, b1);
        if !(k1.is_finite() && k2.is_finite() && explained.is_finite()) {
            return [f64::NAN; 4];
        }
        if best.is_none_or(|(s, ..)| explained > s) {
            best = Some((explained, k, k1, k2));
        }
    }
    match best {
        Some((_, k, k1, k2)) if cbv.is_finite() => {
            [k1, k2, r.kep[k], cbv + k2 * r.weighted_integral[k]]
        }
        _ => [f64::NAN; 4],
    }
}

/// The CPU path: `curves[t * n + v]`, `cbv[v]`; returns planar
/// `[K1 | K2 | k_ep | CBV_corrected]`.
pub fn fit_cpu(r: &LeighReference, curves: &[f32], cbv: &[f32], n: usize) -> Vec<f32> {
    let fits: Vec<[f64; 4]> = (0..n)
        .into_par_iter()
        .with_min_len(1024)
        .map(|v| fit_voxel(r, |t| curves[t * n + v] as f64, cbv[v] as f64))
        .collect();
    super::planar(&fits)
}

/// The leakage-corrected curves ΔR2*(t) + K2·E_kep(t) of every voxel (`[t * n + v]`), from
/// [`fit_cpu`]'s (or the kernel's) output `fits`; NaN where the fit is.
pub fn corrected_curves(r: &LeighReference, curves: &[f32], fits: &[f32], n: usize) -> Vec<f32> {
    let nt = r.rbar.len();
    let mut out = vec![f32::NAN; nt * n];
    for v in 0..n {
        let (k2, kep) = (fits[n + v], fits[2 * n + v]);
        if !(k2.is_finite() && kep.is_finite()) {
            continue;
        }
        // The grid index of this k_ep (the value is one of the grid's, as f32).
        let k = r
            .kep
            .iter()
            .enumerate()
            .min_by(|a, b| {
                (a.1 - kep as f64)
                    .abs()
                    .total_cmp(&(b.1 - kep as f64).abs())
            })
            .map_or(0, |(k, _)| k);
        let e = r.regressor(k);
        for t in 0..nt {
            out[t * n + v] = (curves[t * n + v] as f64 + k2 as f64 * e[t]) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::leakage_bsw;

    fn reference() -> (BswReference, f64, usize) {
        let n = 60;
        let dt = 1.5;
        let rbar: Vec<f64> = (0..n)
            .map(|i| {
                let t = (i as f64 - 10.0) * dt;
                if t > 0.0 {
                    20.0 * (t / 4.0).powi(3) * (-t / 2.0).exp() + 0.5 * (1.0 - (-t / 20.0).exp())
                } else {
                    0.0
                }
            })
            .collect();
        (
            BswReference::new(rbar, dt, (2, n), (9, n), 100).unwrap(),
            dt,
            n,
        )
    }

    /// E_k by direct quadrature on a fine grid (R̄ linear between frames), independent of the
    /// recursion: the recursion is the trapezoid rule of the same integral, so they agree to
    /// the trapezoid's error.
    fn weighted_direct(rbar: &[f64], dt: f64, first: usize, kep: f64, t: usize) -> f64 {
        let sub = 200;
        let mut s = 0.0;
        for i in first..t {
            for j in 0..sub {
                let u = (j as f64 + 0.5) / sub as f64;
                let r = rbar[i] * (1.0 - u) + rbar[i + 1] * u;
                let tau = (i as f64 + u) * dt;
                s += r * (-kep * (t as f64 * dt - tau)).exp() * dt / sub as f64;
            }
        }
        s
    }

    #[test]
    fn weighted_integrals_match_direct_quadrature() {
        let (b, dt, n) = reference();
        let r = LeighReference::new(&b, dt, (9, n)).unwrap();
        for k in [0, 10, 20, 31] {
            for t in [15, 30, 59] {
                let d = weighted_direct(&r.rbar, dt, 2, r.kep[k], t);
                let e = r.regressor(k)[t];
                let kdt = r.kep[k] * dt;
                let tol = 1e-6 + 0.1 * kdt;
                assert!((e - d).abs() < tol * d.abs(), "k {k} t {t}: {e} {d}");
            }
        }
    }

    #[test]
    fn recovers_k1_k2_and_kep_of_a_curve_built_from_the_model() {
        let (b, dt, n) = reference();
        let r = LeighReference::new(&b, dt, (9, n)).unwrap();
        // k_ep between grid points (0.004 s⁻¹; grid has 3.98e-3 and 5.01e-3).
        let (k1, k2, kep) = (1.3, 0.02, 0.0042);
        let y: Vec<f64> = (0..n)
            .map(|t| k1 * r.rbar[t] - k2 * weighted_direct(&r.rbar, dt, 2, kep, t))
            .collect();
        let cbv = trapezoid(|t| y[t], 9, n, dt);
        let [f1, f2, fk, corrected] = fit_voxel(&r, |t| y[t], cbv);
        let step = 10f64.powf(0.1);
        assert!(fk >= kep / step && fk <= kep * step, "k_ep {fk} vs {kep}");
        assert!((f2 - k2).abs() < 0.01 * k2, "K2 {f2} vs {k2}");
        assert!((f1 - k1).abs() < 0.01 * k1, "K1 {f1} vs {k1}");
        let truth = trapezoid(|t| k1 * r.rbar[t], 9, n, dt);
        assert!(
            (corrected - truth).abs() < 0.01 * truth,
            "{corrected} {truth}"
        );
        // On the grid exactly: exact recovery.
        let kg = r.kep[17];
        let y: Vec<f64> = (0..n)
            .map(|t| k1 * r.rbar[t] - k2 * r.regressor(17)[t])
            .collect();
        let [f1, f2, fk, _] = fit_voxel(&r, |t| y[t], 1.0);
        assert_eq!(fk, kg);
        assert!((f1 - k1).abs() < 1e-9 && (f2 - k2).abs() < 1e-9);
    }

    #[test]
    fn without_efflux_it_is_bsw() {
        let (b, dt, n) = reference();
        let r = LeighReference::new(&b, dt, (9, n)).unwrap();
        assert_eq!(r.regressor(0), b.cumulative.as_slice());
        assert!((r.weighted_integral[0] - b.cumulative_integral).abs() < 1e-12);
        let (k1, k2) = (0.9, -0.01);
        let y: Vec<f64> = (0..n)
            .map(|t| k1 * b.rbar[t] - k2 * b.cumulative[t])
            .collect();
        let cbv = trapezoid(|t| y[t], 9, n, dt);
        let leigh = fit_voxel(&r, |t| y[t], cbv);
        let bsw = leakage_bsw::fit_voxel(&b, |t| y[t], cbv);
        assert_eq!(leigh[2], 0.0, "k_ep");
        for (l, b) in [(leigh[0], bsw[0]), (leigh[1], bsw[1]), (leigh[3], bsw[2])] {
            assert!((l - b).abs() < 1e-9 * b.abs().max(1.0), "{l} {b}");
        }
    }

    #[test]
    fn not_finite_input_gives_nan() {
        let (b, dt, n) = reference();
        let r = LeighReference::new(&b, dt, (9, n)).unwrap();
        assert!(fit_voxel(&r, |_| f64::NAN, 1.0)[0].is_nan());
        assert!(fit_voxel(&r, |t| r.rbar[t], f64::NAN)[3].is_nan());
        let fits = fit_cpu(&r, &vec![f32::NAN; n], &[1.0], 1);
        assert!(fits.iter().all(|x| x.is_nan()));
    }
}
