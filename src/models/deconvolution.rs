//! Deconvolution of DSC tissue curves by the AIF (METHODS §4): C = A·f with f = CBF·R.
//! The f64 CPU reference of the per-voxel projection and truncation search: the twin of
//! `shaders/deconvolution.wgsl`.
//!
//! A is decomposed once (A = UΣVᵀ, f64): sSVD uses the lower-triangular matrix of the AIF (N×N,
//! Østergaard 1996), discretised with the AIF and the residue linear between samples (Sourbron
//! et al. 2007: A_ij = Δt·(Ca_{i−j−1} + 4Ca_{i−j} + Ca_{i−j+1})/6, half hats in the first
//! column and on the diagonal, where the integral starts or ends); cSVD and oSVD the block-circulant matrix of
//! size L = 2N with zero padding, insensitive to bolus delay (Wu et al., MRM 2003). Per voxel,
//! with β_k = w_k·(u_k·c), f_K = Σ_{k<K} β_k v_k: truncated SVD keeps w_k = 1/σ_k for
//! σ_k ≥ P·σ_max (P 0.2 sSVD, 0.1 cSVD); Tikhonov uses w_k = σ_k/(σ_k² + μ²) with μ a
//! fraction of σ_max; oSVD (Wu 2003) adds components from the largest σ down and keeps the
//! most that leave the oscillation index OI = (1/L)(1/max f)·Σ_{k≥2}|f_k − 2f_{k−1} + f_{k−2}|
//! (second differences, as Wu defines it) at or below the target (0.035). The whole search is
//! O(L²) per voxel: each added component updates the residue, its maximum and its second
//! differences in one pass. The CPU runs [`LANES`] voxels side by side so that this pass
//! vectorises across voxels (AVX2 where the CPU has it, with the same operations in the same
//! order, so the maps do not depend on the CPU). [`voxel_by_definition`] is the same method
//! written plainly, one voxel and one sum at a time: the reference the lane search is tested
//! against, and the place to read what the method does.
//!
//! The GPU twin (`shaders/deconvolution.wgsl`, f32) does the same arithmetic in the same order:
//! β_k as one fused multiply-add chain over t ascending times w_k; each sample of the residue
//! as a chain of fused multiply-adds over the components in σ order; the maximum and the sum of
//! |second differences| of each candidate in one pass over i ascending; the same rule for the
//! kept truncation. It takes the components eight per pass over the residue (the chain per
//! sample is unchanged by that), and reports the peak, argmax and OI of the kept candidate from
//! the pass itself instead of summing the residue again; so the two differ only by f32 against
//! f64 rounding, and oSVD's choice only where a candidate's OI lies within that rounding of the
//! target (`tests/gpu_matches_cpu_dsc.rs` bounds it at 0.1% of voxels). The reported OI of the
//! non-oSVD methods is summed in another order here ([`oscillation_index`]).

use nalgebra::DMatrix;
use serde::Serialize;

mod lanes;
pub use lanes::{block, voxel, Scratch, LANES};

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
    /// Model-based: an exponential residue with delay and a leakage term, fitted per voxel
    /// (`models::residue_fit`; Mouridsen et al. 2006, Bjørnerud et al. 2011). Not an SVD:
    /// [`Deconvolution::new`] refuses it.
    Parametric,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Ssvd { p } => write!(f, "sSVD (P {p})"),
            Method::Csvd { p } => write!(f, "cSVD (P {p})"),
            Method::Osvd { oi_target } => write!(f, "oSVD (OI {oi_target})"),
            Method::Tikhonov { fraction } => write!(f, "Tikhonov (μ {fraction}·σmax)"),
            Method::Parametric => write!(f, "parametric (exponential residue, delay, leakage)"),
        }
    }
}

impl Method {
    pub fn circular(&self) -> bool {
        !matches!(self, Method::Ssvd { .. })
    }

    /// Parses "parametric", "ssvd", "csvd", "osvd", "tikhonov" with the default parameters
    /// of `docs/methods.md` §4.
    pub fn from_name(name: &str) -> Result<Method, String> {
        match name.to_ascii_lowercase().as_str() {
            "parametric" => Ok(Method::Parametric),
            "ssvd" => Ok(Method::Ssvd { p: 0.2 }),
            "csvd" => Ok(Method::Csvd { p: 0.1 }),
            "osvd" => Ok(Method::Osvd { oi_target: 0.035 }),
            "tikhonov" => Ok(Method::Tikhonov { fraction: 0.05 }),
            o => Err(format!(
                "unknown deconvolution '{o}': use parametric, osvd, csvd, ssvd or tikhonov"
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
        if method == Method::Parametric {
            return Err("the parametric method is not an SVD: use models::residue_fit".into());
        }
        let l = if method.circular() { 2 * n } else { n };
        // Sourbron et al. (Phys Med Biol 2007): with the AIF and the residue both linear
        // between samples, C(t_i) = Σ_j A_ij f_j with A_ij = Δt·(Ca_{m−1} + 4Ca_m + Ca_{m+1})/6,
        // m = i − j (the overlap of two hat functions). The rectangular rule Δt·Ca_m assumes Ca
        // constant over each interval and reads CBF 15–25% low at Δt ≥ 1 s on a bolus sampled
        // from continuous time. The AIF is zero before its first sample and over the padding,
        // so the circulant form stays circulant (delay-insensitive, Wu et al. 2003).
        let ca_at = |m: i64| -> f64 {
            if m >= 0 && (m as usize) < n {
                ca[m as usize]
            } else {
                0.0
            }
        };
        let kernel = |m: i64| dt * (ca_at(m - 1) + 4.0 * ca_at(m) + ca_at(m + 1)) / 6.0;
        let a = DMatrix::from_fn(l, l, |i, j| {
            let m = i as i64 - j as i64;
            if method.circular() {
                // Periodic: lag m and m ± L are the same column shift; the residue's hat at
                // t = 0 reaches back over the zero padding, as a periodic residue does.
                kernel(m.rem_euclid(l as i64)) + kernel(m.rem_euclid(l as i64) - l as i64)
            } else if m < 0 || i == 0 {
                0.0
            } else if j == 0 {
                // Causal (Sourbron 2007): the residue starts at t = 0, so the first hat is
                // half a hat, ∫₀^Δt Ca(t_i − τ)(1 − τ/Δt)dτ.
                dt * (ca_at(m - 1) + 2.0 * ca_at(m)) / 6.0
            } else if m == 0 {
                // The last hat ends at t_i: half a hat on the AIF's first interval.
                dt * (2.0 * ca_at(0) + ca_at(1)) / 6.0
            } else {
                kernel(m)
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
            Method::Parametric => unreachable!("refused above"),
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

/// The deconvolution of one curve written as the method reads (docs/methods.md §4), the
/// readable reference that the lane search ([`voxel`], [`block`]) is tested against:
/// β_k = w_k·(u_k·c) over the curve's N samples; f_K = Σ_{k<K} β_k v_k, summed from scratch for
/// each K; sSVD, cSVD and Tikhonov keep all [`Deconvolution::k_max`] weighted components, oSVD
/// the most K ≥ 2 whose f_K has Wu's OI at or below the target (else 1). Plain f64 sums in the
/// natural order, O(K·L²) per voxel: slow, and different from the lane search only by rounding
/// (its fused multiply-adds and four interleaved chains). `c` holds N samples; the residue
/// (length L) is returned beside its summary. A curve with a non-finite sample is invalid.
pub fn voxel_by_definition(d: &Deconvolution, c: &[f64]) -> (Residue, Vec<f64>) {
    let (l, n) = (d.l, d.n);
    if c.len() < n || !c[..n].iter().all(|x| x.is_finite()) {
        return (Residue::INVALID, vec![f64::NAN; l]);
    }
    let beta: Vec<f64> = (0..d.k_max)
        .map(|k| d.weights[k] * (0..n).map(|t| d.u[k * l + t] * c[t]).sum::<f64>())
        .collect();
    let residue = |components: usize| -> Vec<f64> {
        (0..l)
            .map(|i| (0..components).map(|k| beta[k] * d.v[k * l + i]).sum())
            .collect()
    };
    let components = match d.method {
        Method::Osvd { oi_target } => (2..=d.k_max)
            .filter(|&k| oscillation_index(&residue(k)) <= oi_target)
            .max()
            .unwrap_or(1),
        _ => d.k_max,
    };
    let f = residue(components);
    let (mut argmax, mut peak) = (0, f64::MIN);
    for (k, &x) in f.iter().enumerate() {
        if x > peak {
            peak = x;
            argmax = k;
        }
    }
    let summary = Residue {
        peak,
        argmax,
        oi: oscillation_index(&f),
        components,
    };
    (summary, f)
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

/// What the deconvolution reads: per voxel the tissue concentration
/// c(t) = curve(t) + K2·cumulative(t), the leakage-corrected ΔR2* as `models::leakage_bsw`
/// defines it (K2 = 0 for none; a non-finite K2 counts as 0). The curve's frames before `first`
/// (the steady state before the baseline) count as zero. Curves planar `curves[t * n + v]`, with
/// n = `k2.len()`.
#[derive(Debug, Clone, Copy)]
pub struct Tissue<'a> {
    pub curves: &'a [f32],
    pub k2: &'a [f32],
    pub cumulative: &'a [f64],
    pub first: usize,
}

impl Tissue<'_> {
    pub fn voxels(&self) -> usize {
        self.k2.len()
    }
}

/// The CPU path. Returns `[peak | argmax | oi | components]`, planar, as the shader does.
pub fn deconvolve_cpu(d: &Deconvolution, tissue: &Tissue) -> Vec<f32> {
    deconvolve_cpu_with_progress(d, tissue, &|_| {})
}

/// [`deconvolve_cpu`], calling `done(k)` from the worker threads as each block of `k` voxels
/// is deconvolved (the counts add up to the number of voxels), for a progress bar.
pub fn deconvolve_cpu_with_progress(
    d: &Deconvolution,
    tissue: &Tissue,
    done: &(dyn Fn(usize) + Sync),
) -> Vec<f32> {
    use rayon::prelude::*;
    let n = tissue.voxels();
    let (curves, k2, cumulative, first) =
        (tissue.curves, tissue.k2, tissue.cumulative, tissue.first);
    let mut fits = vec![[0.0f64; 4]; n];
    fits.par_chunks_mut(LANES)
        .enumerate()
        .with_min_len(64)
        .for_each_init(
            || Scratch::new(d),
            |scratch, (b, out)| {
                let v0 = b * LANES;
                let mut k = [0.0; LANES];
                for (j, kj) in k.iter_mut().enumerate().take(out.len()) {
                    let x = k2[v0 + j];
                    *kj = if x.is_finite() { x as f64 } else { 0.0 };
                }
                let curve = |j: usize, t: usize| {
                    if t < first {
                        0.0
                    } else {
                        curves[t * n + v0 + j] as f64
                    }
                };
                let r = block(
                    d,
                    out.len(),
                    |j, t| curve(j, t) + k[j] * cumulative[t],
                    scratch,
                );
                for (o, r) in out.iter_mut().zip(r) {
                    *o = [r.peak, r.argmax as f64, r.oi, r.components as f64];
                }
                done(out.len());
            },
        );
    super::planar(&fits)
}

#[cfg(test)]
mod tests {
    use super::lanes::*;
    use super::*;

    fn aif_at(t: f64) -> f64 {
        let t = t - 10.0;
        if t > 0.0 {
            10.0 * (t / 3.0).powi(3) * (-t / 1.5).exp()
        } else {
            0.0
        }
    }

    fn aif(n: usize, dt: f64) -> Vec<f64> {
        (0..n).map(|i| aif_at(i as f64 * dt)).collect()
    }

    /// Tissue of flow `cbf` (s⁻¹) with an exponential residue, convolved in continuous time
    /// (1 ms steps, not the deconvolution's own discretisation), delayed by `delay` frames.
    fn tissue(ca: &[f64], dt: f64, cbf: f64, mtt: f64, delay: usize) -> Vec<f64> {
        let h = 0.001;
        let steps = (ca.len() as f64 * dt / h) as usize + 1;
        let mut conv = vec![0.0; steps];
        let (mut acc, e) = (0.0, (-h / mtt).exp());
        for (i, x) in conv.iter_mut().enumerate() {
            acc = acc * e + aif_at((i as f64 + 0.5) * h) * h;
            *x = acc;
        }
        (0..ca.len())
            .map(|i| {
                let t = (i as f64 - delay as f64) * dt;
                if t <= 0.0 {
                    0.0
                } else {
                    cbf * conv[((t / h).round() as usize - 1).min(steps - 1)]
                }
            })
            .collect()
    }

    /// Truncated SVD smooths the residue's step at t = 0, so on a curve convolved in continuous
    /// time (MTT 4 s, Δt 1 s) it reads the flow low by a known margin (METHODS §4); the
    /// linear-interpolation matrix keeps that margin to the truncation's share. The peak stays
    /// at the start of the residue. `models::residue_fit` is the method that recovers it.
    #[test]
    fn svd_methods_read_continuous_time_flow_within_their_known_truncation_bias() {
        let dt = 1.0;
        let ca = aif(60, dt);
        let cbf = 0.01; // s⁻¹
        let c = tissue(&ca, dt, cbf, 4.0, 0);
        for name in ["ssvd", "csvd", "osvd", "tikhonov"] {
            let d = Deconvolution::new(&ca, dt, Method::from_name(name).unwrap()).unwrap();
            let mut f = vec![0.0; d.l];
            let r = voxel(&d, |t| c[t], &mut f);
            assert!((0.55..1.1).contains(&(r.peak / cbf)), "{name}: {r:?}");
            assert!(r.argmax <= 3 || r.argmax == d.l - 1, "{name}: {r:?}");
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
    fn the_lane_search_keeps_the_components_the_definition_keeps() {
        let dt = 1.0;
        let ca = aif(40, dt);
        let d = Deconvolution::new(&ca, dt, Method::from_name("osvd").unwrap()).unwrap();
        // Noisy tissue curves of different flows and delays, deconvolved LANES at a time.
        let mut state = 12345u64;
        let mut noise = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.02
        };
        let curves: Vec<Vec<f64>> = (0..3 * LANES)
            .map(|v| {
                let clean = tissue(&ca, dt, 0.005 + 0.002 * v as f64, 3.0 + v as f64, v % 4);
                clean.iter().map(|x| x + noise()).collect()
            })
            .collect();
        let mut scratch = Scratch::new(&d);
        let mut chosen = std::collections::BTreeSet::new();
        for group in curves.chunks(LANES) {
            let r = block(&d, group.len(), |j, t| group[j][t], &mut scratch);
            for (j, c) in group.iter().enumerate() {
                let (expected, f) = voxel_by_definition(&d, c);
                assert_eq!(
                    r[j].components, expected.components,
                    "voxel {j}: {:?}",
                    r[j]
                );
                assert!(r[j].oi <= 0.035 + 1e-12 || r[j].components == 1);
                // The residue itself, to rounding: fused multiply-adds and other sum orders.
                for (i, y) in scratch.f.iter().enumerate() {
                    assert!((y[j] - f[i]).abs() <= 1e-9 * expected.peak.abs(), "{i}");
                }
                assert_eq!(r[j].argmax, expected.argmax);
                chosen.insert(expected.components);
            }
        }
        // The test means something only if the voxels chose different truncations.
        assert!(chosen.len() >= 3, "{chosen:?}");
    }

    #[test]
    fn a_lane_gives_the_same_residue_whatever_its_neighbours() {
        let dt = 1.0;
        let ca = aif(40, dt);
        let d = Deconvolution::new(&ca, dt, Method::from_name("osvd").unwrap()).unwrap();
        let good = tissue(&ca, dt, 0.01, 4.0, 2);
        let mut alone = vec![0.0; d.l];
        let single = voxel(&d, |t| good[t], &mut alone);
        // Neighbours: an invalid curve, a flat one and unused lanes.
        let mut scratch = Scratch::new(&d);
        let r = block(
            &d,
            3,
            |j, t| match j {
                0 => f64::NAN,
                1 => good[t],
                _ => 0.0,
            },
            &mut scratch,
        );
        assert!(r[0].peak.is_nan() && r[0].components == 0);
        assert_eq!(r[1], single);
        assert!(r[2].peak <= 0.0);
        for (i, x) in scratch.f.iter().enumerate() {
            assert_eq!(x[1], alone[i]);
            assert!(x[0].is_nan());
        }
    }

    #[test]
    fn the_avx2_search_and_the_portable_one_agree_bit_for_bit() {
        let dt = 1.0;
        let ca = aif(40, dt);
        let d = Deconvolution::new(&ca, dt, Method::from_name("osvd").unwrap()).unwrap();
        let mut state = 99u64;
        let mut noise = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.02
        };
        let (mut a, mut b) = (Scratch::new(&d), Scratch::new(&d));
        for (t, ct) in a.c.iter_mut().enumerate() {
            for (j, x) in ct.iter_mut().enumerate() {
                *x = tissue(&ca, dt, 0.004 * (j + 1) as f64, 4.0, j % 3)[t] + noise();
            }
        }
        b.c.clone_from(&a.c);
        // `search` takes the AVX2 path where the CPU has it; `search_lanes` is the portable code.
        let (used_a, used_b) = (search(&d, &mut a), search_lanes(&d, &mut b));
        assert_eq!(used_a, used_b);
        for (x, y) in a.f.iter().zip(&b.f) {
            for j in 0..LANES {
                assert_eq!(x[j].to_bits(), y[j].to_bits());
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn one_avx2_pass_equals_the_portable_pass_for_odd_and_even_lengths() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            eprintln!("no AVX2 and FMA on this CPU: the portable pass is the only one");
            return;
        }
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for l in [2, 3, 4, 5, 119, 120] {
            let mut f: Vec<Lanes> = (0..l).map(|_| std::array::from_fn(|_| next())).collect();
            // The maximum's odd cases in the first two samples: NaN, and zeros of both signs.
            (f[0][0], f[1][1], f[0][2], f[1][2]) = (f64::NAN, f64::NAN, 0.0, -0.0);
            let v: Vec<f64> = (0..l).map(|_| next()).collect();
            let b: Lanes = std::array::from_fn(|_| 1e3 * next());
            let (mut fa, mut fb) = (f.clone(), f);
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            let ra = unsafe { pass_avx2(&mut fa, &b, &v) };
            let rb = pass(&mut fb, &b, &v);
            let bits = |x: &Lanes| x.map(f64::to_bits);
            assert_eq!(
                (bits(&ra.0), bits(&ra.1)),
                (bits(&rb.0), bits(&rb.1)),
                "L = {l}"
            );
            for (x, y) in fa.iter().zip(&fb) {
                assert_eq!(bits(x), bits(y), "L = {l}");
            }
        }
    }

    #[test]
    fn projection_and_residue_in_four_chains_equal_one_sum_at_a_time_for_any_length() {
        // Lengths that leave a remainder after groups of four: sSVD with N = 37 (L = 37) and
        // Tikhonov with N = 37 (L = 74, every component kept).
        let dt = 1.0;
        let ca = aif(37, dt);
        let c = tissue(&ca, dt, 0.01, 4.0, 1);
        for method in ["ssvd", "tikhonov"] {
            let d = Deconvolution::new(&ca, dt, Method::from_name(method).unwrap()).unwrap();
            let (n, l) = (d.n, d.l);
            assert!(l % CHAINS != 0 && (d.k_max % CHAINS != 0 || method == "ssvd"));
            // One fused multiply-add at a time, in the order the module text defines.
            let beta: Vec<f64> = (0..d.k_max)
                .map(|k| {
                    let acc = (0..n).fold(0.0, |acc, t| c[t].mul_add(d.u[k * l + t], acc));
                    d.weights[k] * acc
                })
                .collect();
            let expected: Vec<f64> = (0..l)
                .map(|i| (0..d.k_max).fold(0.0, |acc, k| beta[k].mul_add(d.v[k * l + i], acc)))
                .collect();
            let mut f = vec![0.0; l];
            let r = voxel(&d, |t| c[t], &mut f);
            assert_eq!(r.components, d.k_max);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&f), bits(&expected), "{method}");
        }
    }

    #[test]
    fn frames_before_first_count_as_zero_whatever_they_hold() {
        // Two voxels whose curves differ only before frame 5 (one holds NaN there): with
        // first = 5 both give the residue of the curve zeroed by hand.
        let dt = 1.0;
        let (nt, n) = (40, 2);
        let ca = aif(nt, dt);
        let d = Deconvolution::new(&ca, dt, Method::from_name("osvd").unwrap()).unwrap();
        let c = tissue(&ca, dt, 0.01, 4.0, 1);
        let mut curves = vec![0f32; nt * n];
        for t in 0..nt {
            curves[t * n] = if t < 5 { 7.0 } else { c[t] as f32 };
            curves[t * n + 1] = if t < 5 { f32::NAN } else { c[t] as f32 };
        }
        let (k2, cumulative) = (vec![0f32; n], vec![0f64; nt]);
        let out = deconvolve_cpu(
            &d,
            &Tissue {
                curves: &curves,
                k2: &k2,
                cumulative: &cumulative,
                first: 5,
            },
        );
        let mut f = vec![0.0; d.l];
        let zeroed = voxel(&d, |t| if t < 5 { 0.0 } else { c[t] as f32 as f64 }, &mut f);
        for v in 0..n {
            assert_eq!(out[v], zeroed.peak as f32, "voxel {v}");
            assert_eq!(out[3 * n + v], zeroed.components as f32, "voxel {v}");
        }
    }

    #[test]
    fn an_aif_without_a_bolus_is_refused() {
        let err =
            Deconvolution::new(&[0.0; 30], 1.0, Method::from_name("osvd").unwrap()).unwrap_err();
        assert!(err.contains("no bolus"), "{err}");
    }

    #[test]
    fn every_svd_method_equals_its_definition_to_rounding() {
        let dt = 1.5;
        let ca = aif(50, dt);
        for name in ["ssvd", "csvd", "tikhonov", "osvd"] {
            let d = Deconvolution::new(&ca, dt, Method::from_name(name).unwrap()).unwrap();
            for v in 0..12 {
                let c = tissue(&ca, dt, 0.004 + 0.001 * v as f64, 2.0 + v as f64, v % 3);
                let mut f = vec![0.0; d.l];
                let r = voxel(&d, |t| c[t], &mut f);
                let (expected, f_def) = voxel_by_definition(&d, &c);
                assert_eq!(r.components, expected.components, "{name} voxel {v}");
                assert_eq!(r.argmax, expected.argmax, "{name} voxel {v}");
                let scale = expected.peak.abs();
                assert!(scale > 0.0, "{name} voxel {v}: no flow");
                for (a, b) in f.iter().zip(&f_def) {
                    assert!((a - b).abs() <= 1e-9 * scale, "{name} voxel {v}: {a} {b}");
                }
                assert!((r.oi - expected.oi).abs() <= 1e-9, "{name} voxel {v}");
            }
        }
        let d = Deconvolution::new(&ca, dt, Method::from_name("osvd").unwrap()).unwrap();
        let mut bad = vec![0.01; 50];
        bad[7] = f64::NAN;
        assert!(voxel_by_definition(&d, &bad).0.peak.is_nan());
    }
}
