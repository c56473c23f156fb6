//! Deconvolution of DSC tissue curves by the AIF (METHODS §4): C = A·f with f = CBF·R.
//! The f64 CPU reference of the per-voxel projection and truncation search.
//!
//! A is decomposed once (A = UΣVᵀ, f64): sSVD uses the lower-triangular Toeplitz
//! A_ij = Δt·Ca(t_{i−j}) (N×N, Østergaard 1996); cSVD and oSVD the block-circulant matrix of
//! size L = 2N with zero padding, insensitive to bolus delay (Wu et al., MRM 2003). Per voxel,
//! with β_k = w_k·(u_k·c), f_K = Σ_{k<K} β_k v_k: truncated SVD keeps w_k = 1/σ_k for
//! σ_k ≥ P·σ_max (P 0.2 sSVD, 0.1 cSVD); Tikhonov uses w_k = σ_k/(σ_k² + μ²) with μ a
//! fraction of σ_max; oSVD (Wu 2003) adds components from the largest σ down and keeps the
//! most that leave the oscillation index OI = (1/L)(1/max f)·Σ_{k≥2}|f_k − 2f_{k−1} + f_{k−2}|
//! (second differences, as Wu defines it) at or below the target (0.035). The whole search is
//! O(L²) per voxel.

use nalgebra::DMatrix;
use serde::Serialize;

/// Deconvolution method.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Truncated SVD of the Toeplitz matrix, threshold P (σ_k ≥ P·σ_max).
    Ssvd { p: f64 },
    /// Truncated SVD of the block-circulant matrix.
    Csvd { p: f64 },
    /// Block-circulant with a per-voxel threshold chosen by the oscillation index.
    Osvd { oi_target: f64 },
    /// Tikhonov regularisation of the block-circulant system, μ = fraction·σ_max.
    Tikhonov { fraction: f64 },
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Ssvd { p } => write!(f, "sSVD (P {p})"),
            Method::Csvd { p } => write!(f, "cSVD (P {p})"),
            Method::Osvd { oi_target } => write!(f, "oSVD (OI {oi_target})"),
            Method::Tikhonov { fraction } => write!(f, "Tikhonov (μ {fraction}·σmax)"),
        }
    }
}

impl Method {
    pub fn circular(&self) -> bool {
        !matches!(self, Method::Ssvd { .. })
    }

    /// Parses "ssvd", "csvd", "osvd", "tikhonov" with METHODS' default parameters.
    pub fn from_name(name: &str) -> Result<Method, String> {
        match name.to_ascii_lowercase().as_str() {
            "ssvd" => Ok(Method::Ssvd { p: 0.2 }),
            "csvd" => Ok(Method::Csvd { p: 0.1 }),
            "osvd" => Ok(Method::Osvd { oi_target: 0.035 }),
            "tikhonov" => Ok(Method::Tikhonov { fraction: 0.05 }),
            o => Err(format!(
                "unknown deconvolution '{o}': use osvd, csvd, ssvd or tikhonov"
            )),
        }
    }
}

/// What is the same for every voxel: the AIF's decomposition and the weights.
#[derive(Debug, Clone)]
pub struct Deconvolution {
    pub method: Method,
    /// Samples per curve.
    pub n: usize,
    /// Matrix size (N for sSVD, 2N otherwise).
    pub l: usize,
    pub dt: f64,
    /// u_k and v_k as rows: `u[k * l + i]`.
    pub u: Vec<f64>,
    pub v: Vec<f64>,
    pub sigma: Vec<f64>,
    /// Weight of each component (see the module text); 0 past `k_max`.
    pub weights: Vec<f64>,
    /// Components considered.
    pub k_max: usize,
}

impl Deconvolution {
    /// Decomposes the AIF `ca` (concentration, sampled every `dt` s).
    pub fn new(ca: &[f64], dt: f64, method: Method) -> Result<Self, String> {
        let n = ca.len();
        if n < 4 {
            return Err(format!(
                "the AIF has {n} samples; deconvolution needs at least 4"
            ));
        }
        if !ca.iter().all(|x| x.is_finite()) || !(ca.iter().cloned().fold(f64::MIN, f64::max) > 0.0)
        {
            return Err(
                "the AIF has no positive concentration (no bolus): choose other arterial voxels"
                    .into(),
            );
        }
        let l = if method.circular() { 2 * n } else { n };
        let a = DMatrix::from_fn(l, l, |i, j| {
            if method.circular() {
                let k = (i + l - j) % l;
                if k < n {
                    dt * ca[k]
                } else {
                    0.0
                }
            } else if i >= j {
                dt * ca[i - j]
            } else {
                0.0
            }
        });
        let svd = a.svd(true, true);
        let (uu, vt) = (svd.u.ok_or("SVD failed")?, svd.v_t.ok_or("SVD failed")?);
        // nalgebra does not sort singular values: order components by σ, largest first.
        let mut order: Vec<usize> = (0..l).collect();
        order.sort_by(|&x, &y| svd.singular_values[y].total_cmp(&svd.singular_values[x]));
        let sigma: Vec<f64> = order.iter().map(|&k| svd.singular_values[k]).collect();
        let mut u = vec![0.0; l * l];
        let mut v = vec![0.0; l * l];
        for (r, &k) in order.iter().enumerate() {
            for i in 0..l {
                u[r * l + i] = uu[(i, k)];
                v[r * l + i] = vt[(k, i)];
            }
        }
        let smax = sigma[0];
        if !(smax > 0.0) {
            return Err("the AIF matrix is zero".into());
        }
        let (weights, k_max): (Vec<f64>, usize) = match method {
            Method::Ssvd { p } | Method::Csvd { p } => {
                let w: Vec<f64> = sigma
                    .iter()
                    .map(|&s| if s >= p * smax { 1.0 / s } else { 0.0 })
                    .collect();
                let k = w.iter().filter(|&&x| x != 0.0).count();
                (w, k)
            }
            Method::Osvd { .. } => (
                sigma
                    .iter()
                    .map(|&s| if s > 1e-12 * smax { 1.0 / s } else { 0.0 })
                    .collect(),
                sigma.iter().filter(|&&s| s > 1e-12 * smax).count(),
            ),
            Method::Tikhonov { fraction } => {
                let mu = fraction * smax;
                (sigma.iter().map(|&s| s / (s * s + mu * mu)).collect(), l)
            }
        };
        Ok(Deconvolution {
            method,
            n,
            l,
            dt,
            u,
            v,
            sigma,
            weights,
            k_max,
        })
    }
}

/// One voxel's flow-scaled residue f = CBF·R, summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Residue {
    /// max f (s⁻¹): CBF before the 6000·kH/ρ scaling.
    pub peak: f64,
    /// Index of the peak in f (0 ≤ k < L).
    pub argmax: usize,
    /// Oscillation index of the f returned.
    pub oi: f64,
    /// Components used.
    pub components: usize,
}

impl Residue {
    pub const INVALID: Residue = Residue {
        peak: f64::NAN,
        argmax: 0,
        oi: f64::NAN,
        components: 0,
    };
}

/// Wu's oscillation index of `f` (second differences), or f32::MAX (undefined) when max f ≤ 0.
pub fn oscillation_index(f: &[f64]) -> f64 {
    // Four running maxima and sums so the loops vectorise (the order of a sum of absolute
    // values changes nothing that matters here).
    let mut m = [f64::MIN; 4];
    for c in f.chunks_exact(4) {
        for i in 0..4 {
            m[i] = m[i].max(c[i]);
        }
    }
    let mut max = m[0].max(m[1]).max(m[2].max(m[3]));
    for &x in f.chunks_exact(4).remainder() {
        max = max.max(x);
    }
    if !(max > 0.0) {
        return f32::MAX as f64;
    }
    let (a, b, c) = (&f[2..], &f[1..f.len() - 1], &f[..f.len() - 2]);
    let mut acc = [0.0f64; 4];
    let chunks = a.len() / 4;
    for j in 0..chunks {
        for i in 0..4 {
            let k = 4 * j + i;
            acc[i] += (a[k] - 2.0 * b[k] + c[k]).abs();
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for k in 4 * chunks..a.len() {
        s += (a[k] - 2.0 * b[k] + c[k]).abs();
    }
    s / f.len() as f64 / max
}

/// Deconvolves one tissue curve `c(t)` (t < N; zero-padded to L). `f` (length L) receives the
/// residue. A curve with a non-finite sample is invalid (NaN); a curve with no positive flow
/// gives peak ≤ 0 (the pipeline reports CBF 0 there).
pub fn voxel(d: &Deconvolution, c: impl Fn(usize) -> f64, f: &mut [f64]) -> Residue {
    let mut scratch = Scratch::new(d);
    voxel_with(d, c, f, &mut scratch)
}

/// Per-thread work space of [`voxel_with`], so that the per-voxel loop allocates nothing.
pub struct Scratch {
    cc: Vec<f64>,
    kept: Vec<f64>,
}

impl Scratch {
    pub fn new(d: &Deconvolution) -> Self {
        Scratch {
            cc: vec![0.0; d.n],
            kept: vec![0.0; d.l],
        }
    }
}

/// u·c with four running sums, so that it vectorises.
fn dot(u: &[f64], c: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (uc, cc) = (u.chunks_exact(4), c.chunks_exact(4));
    let (ur, cr) = (uc.remainder(), cc.remainder());
    for (a, b) in uc.zip(cc) {
        for i in 0..4 {
            acc[i] += a[i] * b[i];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (a, b) in ur.iter().zip(cr) {
        s += a * b;
    }
    s
}

/// [`voxel`] with caller-owned work space.
pub fn voxel_with(
    d: &Deconvolution,
    c: impl Fn(usize) -> f64,
    f: &mut [f64],
    scratch: &mut Scratch,
) -> Residue {
    let (l, n) = (d.l, d.n);
    let Scratch { cc, kept } = scratch;
    for t in 0..n {
        cc[t] = c(t);
        if !cc[t].is_finite() {
            f.iter_mut().for_each(|x| *x = f64::NAN);
            return Residue::INVALID;
        }
    }
    // The tissue curve is zero past its N samples: the projection stops there.
    let beta = |k: usize| d.weights[k] * dot(&d.u[k * l..k * l + n], cc);
    let accumulate = |f: &mut [f64], upto: usize| {
        f.iter_mut().for_each(|x| *x = 0.0);
        for k in 0..upto {
            let b = beta(k);
            let vk = &d.v[k * l..(k + 1) * l];
            for (x, y) in f.iter_mut().zip(vk) {
                *x += b * y;
            }
        }
    };
    let components = match d.method {
        Method::Osvd { oi_target } => {
            // Add components one by one; keep a copy of the residue with the most components
            // whose OI meets the target (the shader does the same).
            f.iter_mut().for_each(|x| *x = 0.0);
            let mut best = 1;
            for k in 0..d.k_max {
                let b = beta(k);
                let vk = &d.v[k * l..(k + 1) * l];
                for (x, y) in f.iter_mut().zip(vk) {
                    *x += b * y;
                }
                if k == 0 || oscillation_index(f) <= oi_target {
                    if k > 0 {
                        best = k + 1;
                    }
                    kept.copy_from_slice(f);
                }
            }
            f.copy_from_slice(kept);
            best
        }
        _ => {
            accumulate(f, d.k_max);
            d.k_max
        }
    };
    let (mut argmax, mut peak) = (0, f64::MIN);
    for (k, &x) in f.iter().enumerate() {
        if x > peak {
            peak = x;
            argmax = k;
        }
    }
    Residue {
        peak,
        argmax,
        oi: oscillation_index(f),
        components,
    }
}

/// The time (s) of residue index `k`: circular methods wrap the second half to negative
/// times (tissue before the AIF).
pub fn index_time(d: &Deconvolution, k: usize) -> f64 {
    if d.method.circular() && k >= d.l / 2 {
        (k as f64 - d.l as f64) * d.dt
    } else {
        k as f64 * d.dt
    }
}

/// The CPU path: tissue concentration c(t) = curve(t) + K2·cumulative(t) (the leakage-corrected
/// ΔR2*, as `models::leakage_bsw` defines it; pass K2 = 0 for none), planar `curves[t * n + v]`.
/// Returns `[peak | argmax | oi | components]`, planar, as the shader does.
pub fn deconvolve_cpu(
    d: &Deconvolution,
    curves: &[f32],
    k2: &[f32],
    cumulative: &[f64],
    n: usize,
) -> Vec<f32> {
    use rayon::prelude::*;
    let fits: Vec<[f64; 4]> = (0..n)
        .into_par_iter()
        .with_min_len(256)
        .map_init(
            || (vec![0.0; d.l], Scratch::new(d)),
            |(f, scratch), v| {
                let k = if k2[v].is_finite() { k2[v] as f64 } else { 0.0 };
                let r = voxel_with(
                    d,
                    |t| curves[t * n + v] as f64 + k * cumulative[t],
                    f,
                    scratch,
                );
                [r.peak, r.argmax as f64, r.oi, r.components as f64]
            },
        )
        .collect();
    super::planar(&fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aif(n: usize, dt: f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let t = i as f64 * dt - 10.0;
                if t > 0.0 {
                    10.0 * (t / 3.0).powi(3) * (-t / 1.5).exp()
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Tissue made with the same discrete model the deconvolution inverts.
    fn tissue(ca: &[f64], dt: f64, cbf: f64, mtt: f64, delay: usize) -> Vec<f64> {
        let n = ca.len();
        (0..n)
            .map(|i| {
                (0..=i)
                    .map(|j| {
                        let k = i - j;
                        let r = if k >= delay {
                            (-((k - delay) as f64) * dt / mtt).exp()
                        } else {
                            0.0
                        };
                        dt * ca[j] * cbf * r
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn noise_free_discrete_model_is_inverted_by_every_method() {
        let dt = 1.0;
        let ca = aif(60, dt);
        let cbf = 0.01; // s⁻¹
        let c = tissue(&ca, dt, cbf, 4.0, 0);
        for name in ["ssvd", "csvd", "osvd", "tikhonov"] {
            let d = Deconvolution::new(&ca, dt, Method::from_name(name).unwrap()).unwrap();
            let mut f = vec![0.0; d.l];
            let r = voxel(&d, |t| c[t], &mut f);
            assert!((r.peak - cbf).abs() / cbf < 0.35, "{name}: {r:?}");
            assert!(
                r.argmax == 0 || r.argmax == 1 || r.argmax == d.l - 1,
                "{name}: {r:?}"
            );
        }
    }

    #[test]
    fn a_delayed_tissue_curve_moves_the_circular_residue_peak_by_the_delay() {
        let dt = 1.0;
        let ca = aif(60, dt);
        let c = tissue(&ca, dt, 0.01, 4.0, 3);
        let d = Deconvolution::new(&ca, dt, Method::from_name("osvd").unwrap()).unwrap();
        let mut f = vec![0.0; d.l];
        let r = voxel(&d, |t| c[t], &mut f);
        let tmax = index_time(&d, r.argmax);
        assert!((2.0..=4.0).contains(&tmax), "Tmax {tmax}");
        assert!(r.oi <= 0.035 + 1e-12);
    }

    #[test]
    fn a_flat_curve_has_no_flow_and_a_nan_curve_is_invalid() {
        let dt = 1.0;
        let ca = aif(40, dt);
        let d = Deconvolution::new(&ca, dt, Method::from_name("csvd").unwrap()).unwrap();
        let mut f = vec![0.0; d.l];
        assert!(voxel(&d, |_| 0.0, &mut f).peak <= 0.0);
        assert!(voxel(&d, |t| if t == 5 { f64::NAN } else { 0.0 }, &mut f)
            .peak
            .is_nan());
    }

    #[test]
    fn an_aif_without_a_bolus_is_refused() {
        let err =
            Deconvolution::new(&[0.0; 30], 1.0, Method::from_name("osvd").unwrap()).unwrap_err();
        assert!(err.contains("no bolus"), "{err}");
    }
}
