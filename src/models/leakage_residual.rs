//! The residual of the leakage fits (BSW, [`super::leakage_bsw`]; the bidirectional model,
//! [`super::leakage_leigh`]) as a per-voxel quality map: how much of the voxel's ΔR2* curve the
//! fitted model K1·R̄(t) − K2·I(t) leaves unexplained over the fitted frames. The f64 CPU twin
//! of `shaders/leakage_residual.wgsl`.
//!
//!   nrmse = √(Σ_{t∈fit} (y(t) − K1·R̄(t) + K2·I(t))² / n_fit) / max_{t∈fit} |y(t)|,
//!
//! with I = ∫₀ᵗR̄ for BSW (Boxerman et al., AJNR 2006, eq. 4) and the voxel's k_ep-weighted
//! integral E_k for the bidirectional model (Leu, Boxerman et al., AJNR 2016): the RMS of the
//! least-squares residual over the curve's peak, the form of the other fits' `fit_nrmse`, so
//! the reading's quality floor (`run --max-fit-nrmse`) reads it too. A voxel the model fits
//! (tissue whose curve has the reference's shape, scaled, with a leakage tail) has nrmse near
//! 0; a curve of another shape (arrival or MTT unlike the reference's, motion, a spike) a
//! large one. NaN where K1, K2 or the curve is not finite, or its peak is 0.

/// The regressors of a leakage fit: R̄(t), one or more integrals I_k(t) (`integrals[k * n_t +
/// t]`; one for BSW, one per k_ep of the grid for the bidirectional model), the frames fitted.
#[derive(Debug, Clone)]
pub struct LeakageRegressors {
    pub rbar: Vec<f64>,
    pub integrals: Vec<f64>,
    pub fit: (usize, usize),
}

impl LeakageRegressors {
    pub fn bsw(r: &super::leakage_bsw::BswReference) -> Self {
        LeakageRegressors {
            rbar: r.rbar.clone(),
            integrals: r.cumulative.clone(),
            fit: r.fit,
        }
    }

    pub fn leigh(r: &super::leakage_leigh::LeighReference) -> Self {
        LeakageRegressors {
            rbar: r.rbar.clone(),
            integrals: r.weighted.clone(),
            fit: r.fit,
        }
    }

    /// Frames per curve.
    pub fn n_t(&self) -> usize {
        self.rbar.len()
    }
}

/// The regressor index of each voxel of a bidirectional fit: the grid index of its k_ep
/// (`kep[v]`, the fit's output, a grid value in f32); 0 where k_ep is not finite.
pub fn leigh_indices(r: &super::leakage_leigh::LeighReference, kep: &[f32]) -> Vec<u32> {
    kep.iter()
        .map(|&k| {
            if !k.is_finite() {
                return 0;
            }
            (0..r.kep.len())
                .min_by(|&a, &b| {
                    (r.kep[a] - k as f64)
                        .abs()
                        .total_cmp(&(r.kep[b] - k as f64).abs())
                })
                .unwrap_or(0) as u32
        })
        .collect()
}

/// The normalised residual of one voxel (module text): ΔR2* `y` (all frames), its fitted K1
/// and K2, and the index `k` of its integral.
pub fn voxel(r: &LeakageRegressors, y: &[f64], k1: f64, k2: f64, k: usize) -> f64 {
    let n_t = r.n_t();
    if !(k1.is_finite() && k2.is_finite()) || (k + 1) * n_t > r.integrals.len() {
        return f64::NAN;
    }
    let integral = &r.integrals[k * n_t..(k + 1) * n_t];
    let (mut sse, mut peak) = (0.0, 0.0f64);
    for t in r.fit.0..r.fit.1 {
        let e = y[t] - k1 * r.rbar[t] + k2 * integral[t];
        sse += e * e;
        peak = peak.max(y[t].abs());
    }
    if !(sse.is_finite() && peak > 0.0) {
        return f64::NAN;
    }
    (sse / (r.fit.1 - r.fit.0) as f64).sqrt() / peak
}

/// The CPU path: `curves[t * n + v]` (ΔR2*), the fit's `k1[v]`, `k2[v]` and regressor index
/// `which[v]` (0 for BSW; [`leigh_indices`]); returns nrmse per voxel.
pub fn residual_cpu(
    r: &LeakageRegressors,
    curves: &[f32],
    k1: &[f32],
    k2: &[f32],
    which: &[u32],
) -> Vec<f32> {
    use rayon::prelude::*;
    let n = k1.len();
    (0..n)
        .into_par_iter()
        .with_min_len(1024)
        .map_init(
            || vec![0.0f64; r.n_t()],
            |y, v| {
                for (t, x) in y.iter_mut().enumerate() {
                    *x = curves[t * n + v] as f64;
                }
                voxel(r, y, k1[v] as f64, k2[v] as f64, which[v] as usize) as f32
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::leakage_bsw::{self, BswReference};

    #[test]
    fn a_curve_of_the_model_has_no_residual_and_another_shape_a_large_one() {
        let (n, dt) = (50, 1.5);
        let bolus = |shift: f64, i: usize| {
            let t = (i as f64 - 10.0 - shift) * dt;
            if t > 0.0 {
                20.0 * (t / 4.0).powi(3) * (-t / 2.0).exp()
            } else {
                0.0
            }
        };
        let rbar: Vec<f64> = (0..n).map(|i| bolus(0.0, i)).collect();
        let r = BswReference::new(rbar.clone(), dt, (2, n), (9, n), 100).unwrap();
        let reg = LeakageRegressors::bsw(&r);
        let model: Vec<f64> = (0..n)
            .map(|t| 1.3 * rbar[t] - 0.004 * r.cumulative[t])
            .collect();
        let [k1, k2, _] = leakage_bsw::fit_voxel(&r, |t| model[t], 1.0);
        assert!(voxel(&reg, &model, k1, k2, 0) < 1e-12);
        // The same bolus 4 frames late: no K1, K2 make it; the residual is the misfit.
        let late: Vec<f64> = (0..n).map(|i| bolus(4.0, i)).collect();
        let [k1, k2, _] = leakage_bsw::fit_voxel(&r, |t| late[t], 1.0);
        let sse: f64 = (2..n)
            .map(|t| (late[t] - k1 * rbar[t] + k2 * r.cumulative[t]).powi(2))
            .sum();
        let peak = late.iter().fold(0.0f64, |m, x| m.max(*x));
        let truth = (sse / (n - 2) as f64).sqrt() / peak;
        let got = voxel(&reg, &late, k1, k2, 0);
        assert!((got - truth).abs() < 1e-9 * truth, "{got} vs {truth}");
        assert!(got > 0.2, "{got}");
        assert!(voxel(&reg, &late, f64::NAN, k2, 0).is_nan());
    }
}
