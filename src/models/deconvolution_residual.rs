//! The residual of an SVD deconvolution (sSVD, cSVD, oSVD, Tikhonov; [`super::deconvolution`])
//! as a per-voxel quality map: how much of the tissue curve the kept components leave
//! unexplained. The f64 CPU twin of `shaders/deconvolution_residual.wgsl`.
//!
//! The deconvolution solves A·f = c (A the AIF's L×L convolution matrix, c the tissue curve
//! zero-padded to L) in A's singular vectors: with p_k = u_k·c, f = Σ_k w_k·p_k·v_k over the
//! components used (w_k = 0 past them). The curve it fits back is
//! ĉ = A·f = Σ_k σ_k·w_k·p_k·u_k, and since U is orthogonal (A is square; its full SVD),
//!
//!   ‖c − ĉ‖² = Σ_{k<L} (1 − σ_k·w_k)²·p_k²,
//!
//! a sum of non-negative terms (no cancellation in f32): for truncated SVD the energy of the
//! dropped components, for Tikhonov each component's share that the filter factor
//! σ²/(σ² + μ²) leaves out (Hansen, *Rank-Deficient and Discrete Ill-Posed Problems*, SIAM
//! 1998, §4.2 and §5.1, the residual of filtered SVD solutions). The map is
//!
//!   nrmse = √(‖c − ĉ‖² / N) / max_t |c(t)|,
//!
//! the RMS residual over the curve's peak, as the parametric fit's `fit_nrmse`
//! ([`super::residue_fit`]), so one quality floor (`run --max-fit-nrmse`) reads both. For the
//! circulant methods the sum runs over all L = 2N samples of the system solved: residual that
//! the fit leaves in the zero padding (a residue that wraps around) counts too. A noise-free
//! curve that the kept components span has nrmse 0; noise or a curve no convolution of the AIF
//! makes (a spike, a step from motion) raises it. NaN where the curve is not finite or its
//! peak is 0.

use super::deconvolution::{Deconvolution, Tissue};

/// The gain σ_k·w_k of each of the L components (0 past `k_max`).
pub fn gains(d: &Deconvolution) -> Vec<f64> {
    (0..d.l)
        .map(|k| {
            if k < d.k_max {
                d.sigma[k] * d.weights[k]
            } else {
                0.0
            }
        })
        .collect()
}

/// The normalised residual (module text) of one curve `c` (N samples) deconvolved with the
/// first `components` components of `d`; `gains` from [`gains`].
pub fn voxel(d: &Deconvolution, gains: &[f64], c: &[f64], components: usize) -> f64 {
    let n = d.n;
    if c.len() != n || !c.iter().all(|x| x.is_finite()) {
        return f64::NAN;
    }
    let peak = c.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if !(peak > 0.0) {
        return f64::NAN;
    }
    let mut sse = 0.0;
    for (k, &g) in gains.iter().enumerate().take(d.l) {
        let u = &d.u[k * d.l..k * d.l + n];
        let p: f64 = u.iter().zip(c).map(|(a, b)| a * b).sum();
        let e = 1.0 - if k < components { g } else { 0.0 };
        sse += e * e * p * p;
    }
    (sse / n as f64).sqrt() / peak
}

/// The CPU path: the nrmse of every voxel of `tissue` (the curves the deconvolution read,
/// [`Tissue`]), with `components[v]` the components its deconvolution used (the fourth plane
/// of [`super::deconvolution::deconvolve_cpu`]'s output).
pub fn residual_cpu(d: &Deconvolution, tissue: &Tissue, components: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let n = tissue.voxels();
    let g = gains(d);
    (0..n)
        .into_par_iter()
        .with_min_len(256)
        .map_init(
            || vec![0.0f64; d.n],
            |c, v| {
                let k = tissue.k2[v];
                let k = if k.is_finite() { k as f64 } else { 0.0 };
                for (t, x) in c.iter_mut().enumerate() {
                    let curve = if t < tissue.first {
                        0.0
                    } else {
                        tissue.curves[t * n + v] as f64
                    };
                    *x = curve + k * tissue.cumulative[t];
                }
                voxel(d, &g, c, components[v].max(0.0) as usize) as f32
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::deconvolution::{self, Method};

    fn aif(n: usize, dt: f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let t = i as f64 * dt - 8.0;
                if t > 0.0 {
                    10.0 * (t / 3.0).powi(3) * (-t / 1.5).exp()
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// ‖c − A·f‖ with A rebuilt as U·Σ·Vᵀ and f the residue the deconvolution returned: the
    /// residual computed the long way, independent of the identity the module uses.
    fn direct(d: &Deconvolution, c: &[f64]) -> (f64, usize) {
        let mut f = vec![0.0; d.l];
        let r = deconvolution::voxel(d, |t| c[t], &mut f);
        let l = d.l;
        let mut sse = 0.0;
        for i in 0..l {
            let mut fit = 0.0;
            for k in 0..l {
                let vf: f64 = (0..l).map(|j| d.v[k * l + j] * f[j]).sum();
                fit += d.u[k * l + i] * d.sigma[k] * vf;
            }
            let target = if i < d.n { c[i] } else { 0.0 };
            sse += (target - fit).powi(2);
        }
        let peak = c.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        ((sse / d.n as f64).sqrt() / peak, r.components)
    }

    #[test]
    fn the_residual_equals_the_long_way_and_is_zero_for_a_curve_the_kept_components_span() {
        let (n, dt) = (40, 1.0);
        let ca = aif(n, dt);
        for name in ["ssvd", "csvd", "osvd", "tikhonov"] {
            let d = Deconvolution::new(&ca, dt, Method::from_name(name).unwrap()).unwrap();
            let g = gains(&d);
            // A realistic curve: the AIF through an exponential residue (MTT 4 s), plus noise.
            let mut c: Vec<f64> = (0..n)
                .map(|i| {
                    (0..=i)
                        .map(|j| 0.01 * ca[j] * (-((i - j) as f64) / 4.0).exp())
                        .sum::<f64>()
                })
                .collect();
            for (i, x) in c.iter_mut().enumerate() {
                *x += 0.002 * ((i * 7919 % 13) as f64 - 6.0) / 6.0;
            }
            let (truth, k) = direct(&d, &c);
            let got = voxel(&d, &g, &c, k);
            assert!(
                (got - truth).abs() < 1e-9 * truth.max(1.0),
                "{name}: {got} vs {truth}"
            );
            // A curve made of the first three components' left singular vectors, which every
            // method keeps unchanged up to its filter: truncated SVD fits it exactly.
            let span: Vec<f64> = (0..n)
                .map(|t| (0..3).map(|k| d.u[k * d.l + t] * (k + 1) as f64).sum())
                .collect();
            if name != "tikhonov" && d.l == n {
                let (truth, k) = direct(&d, &span);
                assert!(truth < 1e-9, "{name}: {truth}");
                assert!(voxel(&d, &g, &span, k) < 1e-9, "{name}");
            }
        }
    }
}
