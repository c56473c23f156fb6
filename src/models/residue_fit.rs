//! Model-based deconvolution with leakage in the residue domain: the f64 CPU twin of
//! `shaders/residue_fit.wgsl`.
//!
//! Each tissue curve is fitted, by least squares over every frame, with
//!
//! ```text
//! C(t) = F·(Ca ⊗ R)(t − δ) − K2·G(t),   R(t) = e^(−t/MTT),   G(t) = ∫₀ᵗ Ca(τ) dτ
//! ```
//!
//! - F (s⁻¹) is the flow (CBF before the 6000·kH/ρ scaling), MTT (s) the mean transit time,
//!   δ (s) the bolus delay of the tissue relative to the AIF (negative where the AIF is
//!   measured late). The residue is the one-compartment (exponential) case, shape λ = 1, of the
//!   gamma family of transit times of Mouridsen et al. (NeuroImage 2006); a parametric residue
//!   recovers flow that truncated SVD smooths away (Mouridsen 2006; METHODS §4 in
//!   `docs/methods.md`).
//! - K2 (s⁻¹, relative to the AIF) is the leakage of contrast agent out of the vessels, read in
//!   the residue domain as Bjørnerud et al. (JCBFM 2011) do: deconvolved, extravasation is a
//!   step in the apparent residue (F·R(t) − K2 for t past the transit), and its convolution
//!   with the AIF is −K2·G. K2 > 0: T1-dominant leakage (ΔR2* and CBV underestimated);
//!   K2 < 0: T2*-dominant. Because the leakage is separated from the vascular part by the
//!   residue's shape and not by comparison with a reference curve, it does not depend on the
//!   tissue's MTT or arrival time, which BSW's reference-curve model does (Boxerman et al.,
//!   AJNR 2006; the bias: Bjørnerud 2011). The corrected curve is C + K2·G.
//!
//! F and K2 enter linearly, so for a given (MTT, δ) they are a 2×2 least-squares solve; the
//! non-linear pair (MTT, δ) is found on a grid: the unit-flow curves h = (Ca ⊗ R)(t − δ) are
//! computed once per AIF (the dictionary, [`ResidueModel`]), each voxel is matched first on a
//! coarse sub-grid ([`COARSE`] apart), then on the full grid around the coarse best, and the
//! optimum is refined between grid points by a parabola through the neighbours' scores.
//!
//! The convolution is done in continuous time: the sampled AIF is interpolated linearly
//! between samples (Sourbron et al., Phys Med Biol 2007) and convolved exactly with the
//! exponential on a grid of Δt/[`SUBSTEPS`]; so the rectangular rule's bias (CBF 15–25% low at
//! Δt ≥ 1 s) does not arise.

use rayon::prelude::*;
use serde::Serialize;

use super::deconvolution::Tissue;

mod lanes;
mod prune;
use lanes::*;
use prune::*;

/// Shortest and longest MTT of the grid (s), log-spaced: capillary transit in brain is 2–8 s;
/// the range leaves room for vessels and slow lesions.
pub const MTT_RANGE_S: (f64, f64) = (0.5, 40.0);
/// MTT grid points (log-spaced; about 7% apart).
pub const MTT_STEPS: usize = 64;
/// Earliest and latest delay of the tissue relative to the AIF (s). Negative delays occur when
/// the AIF is measured downstream of the tissue's supply; in stroke, hypoperfused tissue is
/// read at Tmax > 6–10 s, so the grid reaches 20 s.
pub const DELAY_RANGE_S: (f64, f64) = (-8.0, 20.0);
/// Delay grid step (s).
pub const DELAY_STEP_S: f64 = 0.25;
/// The prior on MTT when the fit is weighted by the voxel's noise ([`ResidueModel::with_noise`]):
/// log-normal around `PRIOR_MTT_S`, standard deviation `PRIOR_LOG_SD` in ln MTT. Weak: an MTT a
/// factor e from 4.5 s costs one unit of χ², the noise of one frame. Without it, noise is fitted
/// best by the shortest transit times (white matter's CBF 40% high at SNR 20); a prior is what
/// Bayesian DSC deconvolution adds (Boutelier et al., IEEE TMI 2012; Mouridsen et al. 2006).
/// 4.5 s: healthy grey and white matter's MTT lie between 3.5 and 6 s.
pub const PRIOR_MTT_S: f64 = 4.5;
pub const PRIOR_LOG_SD: f64 = 1.0;

/// The coarse search visits every `COARSE`-th point of each grid axis.
pub const COARSE: usize = 4;
/// Sub-steps per frame of the continuous-time convolution.
pub const SUBSTEPS: usize = 20;

/// What is the same for every voxel: the AIF's dictionary of unit-flow tissue curves.
#[derive(Debug, Clone)]
pub struct ResidueModel {
    /// Samples per curve.
    pub n: usize,
    /// Frame spacing (s).
    pub dt: f64,
    /// MTT grid (s).
    pub mtt: Vec<f64>,
    /// Delay grid (s).
    pub delay: Vec<f64>,
    /// The unit-flow curves h = (Ca ⊗ R)(t − δ) with their component along G removed and
    /// scaled to unit length, q̂ = (h − (h·G/G·G)·G)/|…|, `basis[(a * delays + b) * n + t]` for
    /// MTT `a`, delay `b`. With q̂ ⊥ G the fit of F and K2 splits into two projections, and the
    /// score to maximise is q̂·c alone (no cancellation in f32 on the GPU).
    pub basis: Vec<f64>,
    /// q̂ of an atom minus q̂ of the next MTT (`next_mtt`) and of the next delay (`next_delay`),
    /// same layout, 0 on the last row: the refinement takes the neighbours' scores as
    /// differences (c·(q̂₀ − q̂₁)), exact where the scores themselves agree to many digits, so
    /// that the f32 shader refines as the f64 twin does.
    pub next_mtt: Vec<f64>,
    pub next_delay: Vec<f64>,
    /// |h − (h·G/G·G)·G| per atom: F = (q̂·c)/qnorm.
    pub qnorm: Vec<f64>,
    /// h·G per atom.
    pub hg: Vec<f64>,
    /// G(t) = ∫₀ᵗCa (trapezoid of the samples, exact for a linearly interpolated AIF).
    pub cumulative: Vec<f64>,
    /// G·G.
    pub gg: f64,
    /// Frames `[start, end)` whose spread gives each voxel's noise (the baseline): the fit then
    /// weighs the squared residual by 1/σ² and adds the prior on MTT ([`PRIOR_MTT_S`]). None: an
    /// unweighted least-squares fit, no prior.
    pub noise_frames: Option<(usize, usize)>,
    /// The prior's cost per MTT grid point, ((ln MTT − ln 4.5 s)/1)²; zeros without noise frames.
    pub penalty: Vec<f64>,
}

impl ResidueModel {
    /// Builds the dictionary for the AIF `ca` (concentration, baseline 0, sampled every `dt`
    /// s). Errors when the AIF has fewer than 4 samples or no positive value.
    pub fn new(ca: &[f64], dt: f64) -> Result<Self, String> {
        let n = ca.len();
        if n < 4 {
            return Err(format!("the AIF has {n} samples; the fit needs at least 4"));
        }
        if !ca.iter().all(|x| x.is_finite()) || !(ca.iter().cloned().fold(f64::MIN, f64::max) > 0.0)
        {
            return Err(
                "the AIF has no positive concentration (no bolus): choose other arterial voxels"
                    .into(),
            );
        }
        if !(dt > 0.0) {
            return Err(format!("the frame spacing is {dt} s; it must be positive"));
        }
        let (lo, hi) = (MTT_RANGE_S.0.ln(), MTT_RANGE_S.1.ln());
        let mtt: Vec<f64> = (0..MTT_STEPS)
            .map(|a| (lo + (hi - lo) * a as f64 / (MTT_STEPS - 1) as f64).exp())
            .collect();
        let delays = ((DELAY_RANGE_S.1 - DELAY_RANGE_S.0) / DELAY_STEP_S).round() as usize + 1;
        let delay: Vec<f64> = (0..delays)
            .map(|b| DELAY_RANGE_S.0 + b as f64 * DELAY_STEP_S)
            .collect();
        let h = dt / SUBSTEPS as f64;
        let fine = (n - 1) * SUBSTEPS + 1;
        let ca_fine = linear_between_samples(ca, SUBSTEPS);
        let mut atoms = vec![0.0; mtt.len() * delay.len() * n];
        let mut conv = vec![0.0; fine];
        for (a, &m) in mtt.iter().enumerate() {
            // ∫ Ca(τ) e^{−(t−τ)/m} dτ, exact for Ca linear over each sub-step.
            let e = (-h / m).exp();
            let (w0, w1) = exp_linear_weights(h, m);
            conv[0] = 0.0;
            for i in 1..fine {
                conv[i] = conv[i - 1] * e + w0 * ca_fine[i - 1] + w1 * ca_fine[i];
            }
            for (b, &d) in delay.iter().enumerate() {
                let row = &mut atoms[(a * delay.len() + b) * n..][..n];
                for (t, x) in row.iter_mut().enumerate() {
                    // Sampled at t − δ, linearly between sub-steps; 0 before the AIF starts.
                    let s = (t as f64 * dt - d) / h;
                    *x = if s <= 0.0 {
                        0.0
                    } else {
                        let k = s.floor() as usize;
                        if k + 1 >= fine {
                            conv[fine - 1]
                        } else {
                            let r = s - k as f64;
                            conv[k] * (1.0 - r) + conv[k + 1] * r
                        }
                    };
                }
            }
        }
        let mut cumulative = vec![0.0; n];
        for t in 1..n {
            cumulative[t] = cumulative[t - 1] + 0.5 * (ca[t - 1] + ca[t]) * dt;
        }
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
        let gg = dot(&cumulative, &cumulative);
        let mut qnorm = Vec::with_capacity(atoms.len() / n);
        let mut hg = Vec::with_capacity(atoms.len() / n);
        for h in atoms.chunks_exact_mut(n) {
            let p = dot(h, &cumulative);
            for (x, g) in h.iter_mut().zip(&cumulative) {
                *x -= p / gg * g;
            }
            let norm = dot(h, h).sqrt();
            if norm > 0.0 {
                h.iter_mut().for_each(|x| *x /= norm);
            }
            qnorm.push(norm);
            hg.push(p);
        }
        let nb = delay.len();
        let (mut next_mtt, mut next_delay) = (vec![0.0; atoms.len()], vec![0.0; atoms.len()]);
        for k in 0..atoms.len() / n {
            let (a, b) = (k / nb, k % nb);
            for t in 0..n {
                if a + 1 < mtt.len() {
                    next_mtt[k * n + t] = atoms[k * n + t] - atoms[(k + nb) * n + t];
                }
                if b + 1 < nb {
                    next_delay[k * n + t] = atoms[k * n + t] - atoms[(k + 1) * n + t];
                }
            }
        }
        Ok(ResidueModel {
            n,
            dt,
            mtt,
            delay,
            next_mtt,
            next_delay,
            basis: atoms,
            qnorm,
            hg,
            cumulative,
            gg,
            noise_frames: None,
            penalty: vec![0.0; MTT_STEPS],
        })
    }

    /// The same model fitted as a MAP estimate: residuals weighed by the voxel's noise, taken
    /// from the spread of `frames` (the baseline), and the prior on MTT. Frames outside the
    /// series, or fewer than 2, leave the fit unweighted.
    pub fn with_noise(mut self, frames: (usize, usize)) -> Self {
        if frames.0 + 2 <= frames.1 && frames.1 <= self.n {
            self.noise_frames = Some(frames);
            self.penalty = self
                .mtt
                .iter()
                .map(|m| ((m / PRIOR_MTT_S).ln() / PRIOR_LOG_SD).powi(2))
                .collect();
        }
        self
    }

    pub fn delays(&self) -> usize {
        self.delay.len()
    }

    fn atom(&self, a: usize, b: usize) -> &[f64] {
        &self.basis[(a * self.delays() + b) * self.n..][..self.n]
    }
}

/// A sampled curve (`samples`, N ≥ 1 values) on a grid `substeps` times finer, linear between
/// samples ((N − 1)·substeps + 1 values; the last sample held where N = 1): the continuous-time
/// AIF of Sourbron et al. (Phys Med Biol 2007) on which convolutions here are done.
pub fn linear_between_samples(samples: &[f64], substeps: usize) -> Vec<f64> {
    let n = samples.len();
    (0..(n.max(1) - 1) * substeps + 1)
        .map(|i| {
            let (k, r) = (i / substeps, (i % substeps) as f64 / substeps as f64);
            if k + 1 < n {
                samples[k] * (1.0 - r) + samples[k + 1] * r
            } else {
                samples[n - 1]
            }
        })
        .collect()
}

/// Weights (w0, w1) of ∫₀ʰ (x0·(1 − s/h) + x1·s/h)·e^{−(h−s)/m} ds = w0·x0 + w1·x1: the
/// exact step of an exponential convolution of a piecewise-linear input.
fn exp_linear_weights(h: f64, m: f64) -> (f64, f64) {
    let q = h / m;
    let e = (-q).exp();
    // ∫₀ʰ e^{−(h−s)/m} ds = m(1 − e); ∫₀ʰ (s/h) e^{−(h−s)/m} ds = m(1 − m(1 − e)/h).
    let total = m * (1.0 - e);
    let w1 = m * (1.0 - (1.0 - e) / q);
    (total - w1, w1)
}

/// One voxel's fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResidueFit {
    /// F (s⁻¹): CBF before the 6000·kH/ρ scaling; ≤ 0 where the curve shows no flow.
    pub flow: f64,
    /// Mean transit time (s).
    pub mtt: f64,
    /// Delay of the tissue's bolus relative to the AIF (s): Tmax of the exponential residue.
    pub delay: f64,
    /// Leakage (s⁻¹, relative to the AIF): > 0 T1-dominant, < 0 T2*-dominant.
    pub k2: f64,
    /// Root-mean-square residual over the peak of |C|: the fit's quality.
    pub nrmse: f64,
}

impl ResidueFit {
    pub const INVALID: ResidueFit = ResidueFit {
        flow: f64::NAN,
        mtt: f64::NAN,
        delay: f64::NAN,
        k2: f64::NAN,
        nrmse: f64::NAN,
    };
}

/// Fits one curve `c` (length N). A curve with a non-finite sample is invalid.
///
/// The atom with the largest q̂·c (the largest reduction of the squared residual among atoms
/// with positive flow) is found on the coarse grid, then on the full grid around it (ties keep
/// the first in MTT-major order); a parabola through the neighbours' reductions along each axis
/// places the optimum between grid points, and F and K2 follow it quadratically.
pub fn fit_voxel(m: &ResidueModel, c: &[f64]) -> ResidueFit {
    match screen(m, c) {
        Some(early) => early,
        None => {
            let w = weight(m, c);
            finish(m, c, w, coarse_best(m, c, w))
        }
    }
}

/// The fit of a curve that cannot be fitted: invalid (a non-finite sample), or flat (no flow).
fn screen(m: &ResidueModel, c: &[f64]) -> Option<ResidueFit> {
    if c.len() != m.n || !c.iter().all(|x| x.is_finite()) {
        return Some(ResidueFit::INVALID);
    }
    if !(c.iter().fold(0.0f64, |p, x| p.max(x.abs())) > 0.0) {
        return Some(ResidueFit {
            flow: 0.0,
            mtt: f64::NAN,
            delay: f64::NAN,
            k2: 0.0,
            nrmse: 0.0,
        });
    }
    None
}

/// Sum over t of x[t]·c[t], in order, as every projection here is summed.
fn dot(x: &[f64], c: &[f64]) -> f64 {
    x.iter().zip(c).map(|(a, b)| a * b).sum::<f64>()
}

/// 1/σ² of the curve's noise frames (their variance, floored at 10⁻¹² of the squared peak so
/// that a noise-free curve gets a finite weight), or 1 without noise frames.
fn weight(m: &ResidueModel, c: &[f64]) -> f64 {
    let Some((b0, b1)) = m.noise_frames else {
        return 1.0;
    };
    let base = &c[b0..b1];
    let mean = base.iter().sum::<f64>() / base.len() as f64;
    let var = base.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / base.len() as f64;
    let peak = c.iter().fold(0.0f64, |p, x| p.max(x.abs()));
    1.0 / var.max(1e-12 * peak * peak).max(f64::MIN_POSITIVE)
}

/// What the search maximises for projection `p` on MTT index `a`: the weighted reduction of
/// the squared residual, w·p·|p| (negative flows rank low), less the prior's cost.
#[inline]
fn score(m: &ResidueModel, w: f64, a: usize, p: f64) -> f64 {
    w * p * p.abs() - m.penalty[a]
}

/// `rows[k]·c` for every k, each summed over t in order from −0 as [`dot`] (`Iterator::sum`)
/// sums it (the same bits), side by side so that no addition waits on the one before.
#[inline(always)]
fn dots_in_order<const K: usize>(rows: [&[f64]; K], c: &[f64]) -> [f64; K] {
    let mut acc = [-0.0; K];
    let rows: [&[f64]; K] = rows.map(|r| &r[..c.len()]);
    for (t, &x) in c.iter().enumerate() {
        for k in 0..K {
            acc[k] += rows[k][t] * x;
        }
    }
    acc
}

/// The best grid point so far: (MTT index, delay index, score, q̂·c).
type Best = (usize, usize, f64, f64);

/// The coarse grid's best for a curve of weight `w`; ties keep the first.
fn coarse_best(m: &ResidueModel, c: &[f64], w: f64) -> Best {
    let mut best = (0, 0, f64::MIN, 0.0);
    for a in (0..m.mtt.len()).step_by(COARSE) {
        for b in (0..m.delays()).step_by(COARSE) {
            let p = dot(m.atom(a, b), c);
            let s = score(m, w, a, p);
            if s > best.2 {
                best = (a, b, s, p);
            }
        }
    }
    best
}

/// `atom(a, b)·c` for up to `CHAINS` atoms, each summed in sample order from −0 as [`dot`]
/// sums it (the same bits), side by side so that no addition waits on the one before. A full
/// group takes a fixed-size path (unrolled, no allocation); a shorter last group the general
/// one.
#[inline(always)]
fn dots(m: &ResidueModel, group: &[(usize, usize)], c: &[f64]) -> [f64; CHAINS] {
    let mut acc = [-0.0; CHAINS];
    if group.len() == CHAINS {
        let rows: [&[f64]; CHAINS] =
            std::array::from_fn(|k| &m.atom(group[k].0, group[k].1)[..c.len()]);
        for (t, &x) in c.iter().enumerate() {
            for k in 0..CHAINS {
                acc[k] += rows[k][t] * x;
            }
        }
    } else {
        for (s, &(a, b)) in acc.iter_mut().zip(group) {
            let row = m.atom(a, b);
            for (t, &x) in c.iter().enumerate() {
                *s += row[t] * x;
            }
        }
    }
    acc
}

/// From the coarse best: the full grid around it, the refinement, and the residual.
fn finish(m: &ResidueModel, c: &[f64], w: f64, coarse: Best) -> ResidueFit {
    refine(m, c, w, window_best(m, c, w, coarse))
}

/// The best of the full grid's (2·COARSE − 1)² neighbourhood of the coarse best `coarse`
/// (which it starts from: ties keep it, and then the first in MTT-major order).
fn window_best(m: &ResidueModel, c: &[f64], w: f64, coarse: Best) -> Best {
    let (na, nb) = (m.mtt.len(), m.delays());
    let mut best = coarse;
    let (ca, cb) = (best.0, best.1);
    // The (2·COARSE − 1)² neighbourhood, on the stack (no allocation per voxel).
    let mut window = [(0usize, 0usize); SPAN * SPAN];
    let mut len = 0;
    for a in ca.saturating_sub(COARSE - 1)..(ca + COARSE).min(na) {
        for b in cb.saturating_sub(COARSE - 1)..(cb + COARSE).min(nb) {
            window[len] = (a, b);
            len += 1;
        }
    }
    // Several atoms at a time, each summed in order as `dot` sums it (the same bits), so that
    // no addition waits on the one before.
    for group in window[..len].chunks(CHAINS) {
        let acc = dots(m, group, c);
        for (&(a, b), &p) in group.iter().zip(&acc) {
            let s = score(m, w, a, p);
            if s > best.2 {
                best = (a, b, s, p);
            }
        }
    }
    best
}

/// The rows [`refine`] projects the curve on for the grid point (`a`, `b`): G, and q̂₀ − q̂ₙ
/// for the four neighbours n (a neighbour off the grid projects G again, unused).
fn refine_rows(m: &ResidueModel, a: usize, b: usize) -> [&[f64]; 5] {
    fn row(v: &[f64], k: usize, n: usize) -> &[f64] {
        &v[k * n..][..n]
    }
    let (n, nb) = (m.n, m.delays());
    let k0 = a * nb + b;
    [
        &m.cumulative,
        if a > 0 {
            row(&m.next_mtt, k0 - nb, n)
        } else {
            &m.cumulative
        },
        row(&m.next_mtt, k0, n),
        if b > 0 {
            row(&m.next_delay, k0 - 1, n)
        } else {
            &m.cumulative
        },
        row(&m.next_delay, k0, n),
    ]
}

/// What [`refine`] sums over the frames for the grid point `best`: G·c, c·(q̂₀ − q̂ₙ) for the
/// four neighbours (below, the row of the neighbour), and the squared residual of the grid
/// optimum, c − p·q̂ − (G·c/G·G)·G, each summed in sample order from −0.
fn refine_sums(m: &ResidueModel, c: &[f64], best: Best) -> [f64; 6] {
    let (a, b, _, p) = best;
    let [gc, d_mtt_lo, d_mtt_hi, d_delay_lo, d_delay_hi] = dots_in_order(refine_rows(m, a, b), c);
    let q = m.atom(a, b);
    let sse: f64 = c
        .iter()
        .zip(q)
        .zip(&m.cumulative)
        .map(|((x, qt), g)| {
            let r = x - p * qt - gc / m.gg * g;
            r * r
        })
        .sum();
    [gc, d_mtt_lo, d_mtt_hi, d_delay_lo, d_delay_hi, sse]
}

/// [`refine_sums`] of the `LANES` curves `c` (`c[t][lane]`) at their grid points `best`, side
/// by side (the same operations in the same order for each lane, so the same bits): the sums
/// then vectorise across the lanes where each voxel's alone is a chain of dependent additions.
/// Returns `sums[k][lane]`.
#[inline(always)]
fn refine_sums_lanes(m: &ResidueModel, c: &[Lanes], best: &[Best; LANES]) -> [Lanes; 6] {
    let n = m.n;
    assert_eq!(c.len(), n, "one curve sample per frame");
    let rows: [[&[f64]; 5]; LANES] = std::array::from_fn(|j| refine_rows(m, best[j].0, best[j].1));
    let mut acc = [[-0.0; LANES]; 5];
    // One row of each lane at a time, the lanes' sums in registers (each lane's sum in sample
    // order, as `dots_in_order` sums it).
    for (k, out) in acc.iter_mut().enumerate() {
        let r: [&[f64]; LANES] = std::array::from_fn(|j| &rows[j][k][..n]);
        let mut s = [-0.0; LANES];
        for (t, ct) in c.iter().enumerate() {
            let x: Lanes = std::array::from_fn(|j| r[j][t]);
            for j in 0..LANES {
                s[j] += x[j] * ct[j];
            }
        }
        *out = s;
    }
    let gc = acc[0];
    let q: [&[f64]; LANES] = std::array::from_fn(|j| &m.atom(best[j].0, best[j].1)[..n]);
    let p: Lanes = std::array::from_fn(|j| best[j].3);
    let scale: Lanes = std::array::from_fn(|j| gc[j] / m.gg);
    let mut sse = [-0.0; LANES];
    for (t, (ct, &g)) in c.iter().zip(&m.cumulative[..n]).enumerate() {
        let qt: Lanes = std::array::from_fn(|j| q[j][t]);
        for j in 0..LANES {
            let r = ct[j] - p[j] * qt[j] - scale[j] * g;
            sse[j] += r * r;
        }
    }
    [acc[0], acc[1], acc[2], acc[3], acc[4], sse]
}

/// [`refine_sums_lanes`] compiled for AVX2 (no fused multiply-add: the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn refine_sums_lanes_avx2(
    m: &ResidueModel,
    c: &[Lanes],
    best: &[Best; LANES],
) -> [Lanes; 6] {
    refine_sums_lanes(m, c, best)
}

/// [`refine_sums_lanes`], with AVX2 where the CPU has it.
fn refine_sums_dispatch(m: &ResidueModel, c: &[Lanes], best: &[Best; LANES]) -> [Lanes; 6] {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); the function reads only through
        // slices.
        return unsafe { refine_sums_lanes_avx2(m, c, best) };
    }
    refine_sums_lanes(m, c, best)
}

/// From the full grid's best: the refinement between grid points and the residual.
fn refine(m: &ResidueModel, c: &[f64], w: f64, best: Best) -> ResidueFit {
    let peak = c.iter().fold(0.0f64, |p, x| p.max(x.abs()));
    refine_from(m, peak, w, best, refine_sums(m, c, best))
}

/// [`refine`] from the curve's peak |c| and its [`refine_sums`].
fn refine_from(m: &ResidueModel, peak: f64, w: f64, best: Best, sums: [f64; 6]) -> ResidueFit {
    let (na, nb) = (m.mtt.len(), m.delays());
    let (a, b, _, p) = best;
    let k0 = a * nb + b;
    let [gc, d_mtt_lo, d_mtt_hi, d_delay_lo, d_delay_hi, sse] = sums;
    // F and −K2 of atom k for the projection p = q̂·c: c ≈ F·h + K·G with h = |q|q̂ + (h·G/G·G)G.
    let coefficients = |k: usize, p: f64| {
        let f = p / m.qnorm[k];
        (f, (gc - f * m.hg[k]) / m.gg)
    };
    let (f0, kk0) = coefficients(k0, p);
    // The reduction of the squared residual is (q̂·c)² (+ a constant). With d = c·(q̂₀ − q̂ₙ)
    // for a neighbour n, its score is below the centre's by w·d·(2p − d) plus the prior's cost
    // difference (`dpen`, along MTT); the parabola through the three gives the optimum's offset
    // (in grid steps), and F and K2 follow it quadratically.
    type Side = Option<(usize, f64, f64)>;
    let along = |lo: Side, hi: Side| match (lo, hi) {
        (Some((l, dl, pl)), Some((h, dh, ph))) if p > 0.0 && p - dl > 0.0 && p - dh > 0.0 => {
            let (drop_l, drop_h) = (w * dl * (2.0 * p - dl) + pl, w * dh * (2.0 * p - dh) + ph);
            let curv = -drop_l - drop_h;
            let off = if curv < 0.0 {
                (0.5 * (drop_h - drop_l) / curv).clamp(-0.5, 0.5)
            } else {
                0.0
            };
            let ((fl, kl), (fh, kh)) = (coefficients(l, p - dl), coefficients(h, p - dh));
            let step = |x0: f64, xl: f64, xh: f64| {
                off * 0.5 * (xh - xl) + off * off * 0.5 * (xh - 2.0 * x0 + xl)
            };
            (off, step(f0, fl, fh), step(kk0, kl, kh))
        }
        _ => (0.0, 0.0, 0.0),
    };
    let (da, dfa, dka) = along(
        (a > 0).then(|| {
            let dpen = m.penalty[a - 1] - m.penalty[a];
            (k0 - nb, -d_mtt_lo, dpen)
        }),
        (a + 1 < na).then(|| {
            let dpen = m.penalty[a + 1] - m.penalty[a];
            (k0 + nb, d_mtt_hi, dpen)
        }),
    );
    let (db, dfb, dkb) = along(
        (b > 0).then(|| (k0 - 1, -d_delay_lo, 0.0)),
        (b + 1 < nb).then(|| (k0 + 1, d_delay_hi, 0.0)),
    );
    // (`sse`: the residual of the grid optimum, c − p·q̂ − (G·c/G·G)·G.)
    let log_step = (m.mtt[na - 1] / m.mtt[0]).ln() / (na - 1) as f64;
    ResidueFit {
        flow: f0 + dfa + dfb,
        mtt: m.mtt[a] * (da * log_step).exp(),
        delay: m.delay[b] + db * DELAY_STEP_S,
        k2: -(kk0 + dka + dkb),
        nrmse: (sse / m.n as f64).sqrt() / peak,
    }
}

/// Number of maps [`fit_cpu`] returns, in order: F, MTT, delay, K2, NRMSE.
pub const OUTPUTS: usize = 5;

/// Voxels whose coarse search runs side by side, one per lane: the bounds and projections
/// then vectorise across voxels (AVX2 where the CPU has it); the projections are the same
/// operations in the same order as [`coarse_best`]'s, so the fit is the same bit for bit.
pub const LANES: usize = 8;
type Lanes = [f64; LANES];
/// Atoms projected together: independent sums, so no addition waits on the one before.
const CHAINS: usize = 4;

/// The CPU path over every voxel of `tissue` (its curves as the deconvolution reads them: the
/// frames before `first` as zero, plus `k2·cumulative` where a leakage correction was applied
/// before). Returns `[flow | mtt | delay | k2 | nrmse]`, planar, as the shader does. Each
/// voxel's fit equals [`fit_voxel`] bit for bit; the coarse search runs [`LANES`] voxels at a
/// time by branch and bound (a low-rank bound rules out most atoms, the others are projected
/// exactly: `prune.rs`), the fine search projects a voxel's neighbourhood eight delays at a
/// time (from a delay-innermost copy of the dictionary), both with AVX2 where the CPU has it.
pub fn fit_cpu(m: &ResidueModel, tissue: &Tissue) -> Vec<f32> {
    fit_cpu_with_progress(m, tissue, &|_| {})
}

/// [`fit_cpu`], calling `done(k)` from the worker threads as each block of `k` voxels is
/// fitted (the counts add up to the number of voxels): how a progress bar follows the fit.
pub fn fit_cpu_with_progress(
    m: &ResidueModel,
    tissue: &Tissue,
    done: &(dyn Fn(usize) + Sync),
) -> Vec<f32> {
    let n = tissue.voxels();
    // The maps, planar, written by the blocks in place (no per-voxel array to convert).
    let mut maps = vec![0f32; OUTPUTS * n];
    if n == 0 {
        return maps;
    }
    let [flow, mtt, delay, leak, nrmse]: [&mut [f32]; OUTPUTS] = {
        let mut each = maps.chunks_mut(n);
        std::array::from_fn(|_| each.next().expect("OUTPUTS maps of n voxels"))
    };
    let (bound, hood) = (CoarseBound::new(m), Neighbourhoods::new(m));
    flow.par_chunks_mut(LANES)
        .zip(mtt.par_chunks_mut(LANES))
        .zip(delay.par_chunks_mut(LANES))
        .zip(leak.par_chunks_mut(LANES))
        .zip(nrmse.par_chunks_mut(LANES))
        .enumerate()
        .with_min_len(8)
        .for_each_init(
            || (vec![[0.0; LANES]; m.n], vec![vec![0.0; m.n]; LANES]),
            |(lanes, curve), (block, ((((flow, mtt), delay), leak), nrmse))| {
                let v0 = block * LANES;
                let width = flow.len();
                // K2 of each lane (0 where not finite, and for lanes past the last voxel).
                let k2: Lanes = std::array::from_fn(|j| match tissue.k2.get(v0 + j) {
                    Some(k) if j < width && k.is_finite() => *k as f64,
                    _ => 0.0,
                });
                for (t, ct) in lanes.iter_mut().enumerate() {
                    *ct = [0.0; LANES];
                    if t < tissue.first {
                        continue;
                    }
                    let (row, g) = (&tissue.curves[t * n + v0..][..width], tissue.cumulative[t]);
                    // The samples two blocks on (the next cache line; each frame's row is a
                    // page or more from the last), asked for ahead: a hint, no effect on values.
                    #[cfg(target_arch = "x86_64")]
                    if let Some(ahead) = tissue.curves.get(t * n + v0 + 2 * LANES) {
                        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                        // SAFETY: a prefetch reads nothing (any address will do; this one is
                        // in bounds), and SSE is in every x86_64 CPU.
                        unsafe { _mm_prefetch::<_MM_HINT_T0>((ahead as *const f32).cast()) };
                    }
                    if let Ok(row) = <&[f32; LANES]>::try_from(row) {
                        // A full block: the eight lanes in one go.
                        for j in 0..LANES {
                            ct[j] = row[j] as f64 + k2[j] * g;
                        }
                    } else {
                        for (j, &x) in row.iter().enumerate() {
                            ct[j] = x as f64 + k2[j] * g;
                        }
                    }
                }
                // Each lane's curve and weight, as `fit_voxel` takes them for that voxel alone.
                let mut w = [1.0; LANES];
                for (j, wj) in w.iter_mut().enumerate() {
                    for (x, ct) in curve[j].iter_mut().zip(lanes.iter()) {
                        *x = ct[j];
                    }
                    *wj = weight(m, &curve[j]);
                }
                let (coarse, _) = coarse_pruned(&bound, lanes, &w);
                // Each lane's fine best (the coarse best where the curve is screened out or
                // past the last voxel: refined, unused), then the refinement's sums side by
                // side.
                let mut early = [None; LANES];
                let mut best = coarse;
                for (j, one) in curve[..width].iter().enumerate() {
                    early[j] = screen(m, one);
                    if early[j].is_none() {
                        best[j] = hood.best(m, one, w[j], coarse[j]);
                    }
                }
                let sums = refine_sums_dispatch(m, lanes, &best);
                for (j, one) in curve[..width].iter().enumerate() {
                    let r = early[j].unwrap_or_else(|| {
                        let peak = one.iter().fold(0.0f64, |p, x| p.max(x.abs()));
                        refine_from(m, peak, w[j], best[j], sums.map(|s| s[j]))
                    });
                    (flow[j], mtt[j], delay[j], leak[j], nrmse[j]) = (
                        r.flow as f32,
                        r.mtt as f32,
                        r.delay as f32,
                        r.k2 as f32,
                        r.nrmse as f32,
                    );
                }
                done(width);
            },
        );
    maps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A continuous-time gamma-variate AIF sampled every `dt` (arrival 10 s, area 1000).
    fn aif_at(t: f64) -> f64 {
        let tau = t - 10.0;
        if tau <= 0.0 {
            0.0
        } else {
            // α = 3, β = 1.5 s: area β^(α+1)·Γ(α+1) = 5.0625·6.
            1000.0 * tau.powi(3) * (-tau / 1.5).exp() / (1.5f64.powi(4) * 6.0)
        }
    }

    /// The tissue curve of flow F (s⁻¹), MTT and delay, convolved on a fine grid (1 ms
    /// rectangles, independent of the dictionary's construction), minus K2·∫Ca.
    fn tissue(f: f64, mtt: f64, delay: f64, k2: f64, n: usize, dt: f64) -> Vec<f64> {
        let h = 0.001;
        let steps = ((n as f64 * dt + 1.0) / h) as usize;
        let (mut acc, mut g) = (0.0, 0.0);
        let (mut conv, mut cum) = (vec![0.0; steps], vec![0.0; steps]);
        let e = (-h / mtt).exp();
        for i in 0..steps {
            let t = (i as f64 + 0.5) * h;
            acc = acc * e + aif_at(t) * h;
            g += aif_at(t) * h;
            conv[i] = acc;
            cum[i] = g;
        }
        let at = |v: &[f64], t: f64| {
            let i = (t / h).round();
            if i < 1.0 {
                0.0
            } else {
                v[(i as usize - 1).min(steps - 1)]
            }
        };
        (0..n)
            .map(|i| {
                let t = i as f64 * dt;
                f * at(&conv, t - delay) - k2 * at(&cum, t)
            })
            .collect()
    }

    fn model(n: usize, dt: f64) -> ResidueModel {
        let ca: Vec<f64> = (0..n).map(|i| aif_at(i as f64 * dt)).collect();
        ResidueModel::new(&ca, dt).unwrap()
    }

    #[test]
    fn exact_step_weights_integrate_a_linear_input() {
        // Against a fine midpoint sum of the same integral.
        let (h, m) = (0.075, 3.0);
        let (w0, w1) = exp_linear_weights(h, m);
        let (x0, x1) = (2.0, 5.0);
        let k = 100_000;
        let s: f64 = (0..k)
            .map(|i| {
                let s = (i as f64 + 0.5) * h / k as f64;
                (x0 * (1.0 - s / h) + x1 * s / h) * (-(h - s) / m).exp() * h / k as f64
            })
            .sum();
        assert!(((w0 * x0 + w1 * x1) / s - 1.0).abs() < 1e-9);
    }

    #[test]
    fn recovers_flow_mtt_delay_and_leakage_of_continuous_time_curves() {
        let (n, dt) = (60, 1.5);
        let m = model(n, dt);
        // (F, MTT, delay, K2): white matter, grey matter, a slow lesion, a delayed one, an
        // AIF measured 2 s late, and leakage of both signs.
        for &(f, mtt, delay, k2) in &[
            (25.0 / 6000.0, 4.8, 0.0, 0.0),
            (60.0 / 6000.0, 4.0, 0.0, 0.0),
            (30.0 / 6000.0, 6.0, 0.0, 0.0),
            (60.0 / 6000.0, 4.0, 2.0, 0.0),
            (60.0 / 6000.0, 4.0, -2.0, 0.0),
            (75.0 / 6000.0, 4.8, 0.0, 3e-4),
            (30.0 / 6000.0, 3.0, 0.0, -1.5e-4),
        ] {
            let c = tissue(f, mtt, delay, k2, n, dt);
            let r = fit_voxel(&m, &c);
            let what = format!("F {f} MTT {mtt} δ {delay} K2 {k2}: {r:?}");
            assert!((r.flow / f - 1.0).abs() < 0.03, "{what}");
            assert!((r.mtt / mtt - 1.0).abs() < 0.03, "{what}");
            assert!((r.delay - delay).abs() < 0.1, "{what}");
            assert!((r.k2 - k2).abs() < 0.03 * 3e-4, "{what}");
            assert!(r.nrmse < 0.01, "{what}");
        }
    }

    #[test]
    fn flat_curves_have_no_flow_and_non_finite_curves_are_invalid() {
        let m = model(40, 1.5);
        let r = fit_voxel(&m, &vec![0.0; 40]);
        assert_eq!(r.flow, 0.0);
        assert!(r.mtt.is_nan());
        let mut c = vec![1.0; 40];
        c[7] = f64::NAN;
        assert!(fit_voxel(&m, &c).flow.is_nan());
        assert!(ResidueModel::new(&[0.0; 10], 1.0).is_err());
        assert!(ResidueModel::new(&[1.0; 3], 1.0).is_err());
    }

    #[test]
    fn the_lanes_give_each_voxel_its_own_fit_bit_for_bit() {
        let (n, dt) = (60, 1.5);
        // Unweighted, and weighted by the noise of frames 2..8 with the prior on MTT.
        for m in [model(n, dt), model(n, dt).with_noise((2, 8))] {
            lanes_equal_fit_voxel(&m, n, dt);
        }
    }

    /// The portable forms of the vectorised passes (what a CPU without AVX2 runs) and the
    /// AVX2 forms (where this CPU has it) against the per-voxel search, bit for bit: the
    /// coarse best of each lane, and each projection of the fine neighbourhood (also at the
    /// grid's corners, where it reaches into the padding).
    #[test]
    fn the_portable_and_avx2_passes_equal_the_per_voxel_search_bit_for_bit() {
        let (n, dt) = (60, 1.5);
        let m = model(n, dt).with_noise((2, 8));
        let curves: Vec<Vec<f64>> = (0..LANES)
            .map(|v| {
                let c = tissue(
                    (15.0 + 5.0 * v as f64) / 6000.0,
                    1.0 + 3.0 * v as f64,
                    -6.0 + 3.5 * v as f64,
                    (v as f64 - 4.0) * 3e-5,
                    n,
                    dt,
                );
                (0..n)
                    .map(|t| c[t] + 0.01 * (5.1 * t as f64 + v as f64).cos())
                    .collect()
            })
            .collect();
        let lanes: Vec<Lanes> = (0..n)
            .map(|t| std::array::from_fn(|j| curves[j][t]))
            .collect();
        let w: [f64; LANES] = std::array::from_fn(|j| weight(&m, &curves[j]));
        let one: Vec<Best> = (0..LANES)
            .map(|j| coarse_best(&m, &curves[j], w[j]))
            .collect();
        let bits = |b: &Best| (b.0, b.1, b.2.to_bits(), b.3.to_bits());
        let same = |got: &[Best], what: &str| {
            for j in 0..LANES {
                assert_eq!(bits(&got[j]), bits(&one[j]), "{what}, lane {j}");
            }
        };
        let bound = CoarseBound::new(&m);
        same(
            &coarse_pruned_with(&bound, &lanes, &w).0,
            "portable coarse pass",
        );
        same(
            &coarse_pruned(&bound, &lanes, &w).0,
            "dispatched coarse pass",
        );
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            same(
                // SAFETY: the CPU has AVX2 (checked just above).
                &unsafe { coarse_pruned_avx2(&bound, &lanes, &w) }.0,
                "AVX2 coarse pass",
            );
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            same(
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                &unsafe { coarse_pruned_fma(&bound, &lanes, &w) }.0,
                "FMA coarse pass",
            );
        }
        let hood = Neighbourhoods::new(&m);
        let (na, nb) = (m.mtt.len(), m.delays());
        let c = &curves[3];
        // The fine projections themselves: every centre, in
        // `the_fine_neighbourhood_equals_dot_at_every_centre`; here the best they lead to.
        for (ca, cb) in [(0, 0), (na - 1, nb - 1), (0, nb - 1), (na - 1, 0), (20, 50)] {
            let coarse = (ca, cb, f64::MIN, 0.0);
            assert_eq!(
                bits(&hood.best(&m, c, w[3], coarse)),
                bits(&window_best(&m, c, w[3], coarse)),
                "fine best from ({ca}, {cb})"
            );
        }
    }

    fn lanes_equal_fit_voxel(m: &ResidueModel, n: usize, dt: f64) {
        let nv = 21; // two full blocks and a partial one
        let mut curves = vec![0f32; n * nv];
        for v in 0..nv {
            let c = tissue(
                (10.0 + v as f64) / 6000.0,
                2.0 + 0.4 * v as f64,
                -1.0 + 0.3 * v as f64,
                (v as f64 - 10.0) * 2e-5,
                n,
                dt,
            );
            for t in 0..n {
                // A deterministic ripple, so the noise frames have a spread.
                let ripple = 0.01 * (7.3 * t as f64 + v as f64).sin();
                curves[t * nv + v] = (c[t] + ripple) as f32;
            }
        }
        curves[5 * nv + 3] = f32::NAN;
        (0..n).for_each(|t| curves[t * nv + 7] = 0.0);
        let (k2, cumulative) = (vec![0f32; nv], vec![0f64; n]);
        let tissue = Tissue {
            curves: &curves,
            k2: &k2,
            cumulative: &cumulative,
            first: 2,
        };
        let all = fit_cpu(m, &tissue);
        for v in 0..nv {
            let c: Vec<f64> = (0..n)
                .map(|t| {
                    if t < 2 {
                        0.0
                    } else {
                        curves[t * nv + v] as f64
                    }
                })
                .collect();
            let r = fit_voxel(m, &c);
            let one = [r.flow, r.mtt, r.delay, r.k2, r.nrmse];
            for k in 0..OUTPUTS {
                assert_eq!(
                    all[k * nv + v].to_bits(),
                    (one[k] as f32).to_bits(),
                    "voxel {v} output {k}"
                );
            }
        }
    }

    /// A gamma-variate AIF (α = 3, β = 1.5 s) arriving at `t0` s, sampled every `dt` s.
    fn model_arriving(n: usize, dt: f64, t0: f64) -> ResidueModel {
        let ca: Vec<f64> = (0..n).map(|i| aif_at(i as f64 * dt - t0 + 10.0)).collect();
        ResidueModel::new(&ca, dt).unwrap()
    }

    /// A deterministic pseudo-random number in [−1, 1) (a 64-bit LCG).
    fn noise(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// Curves that reach every path of the search for the model `m` (`curves[t * nv + v]`):
    /// atoms of the dictionary at flows, MTTs and delays across the grid (the corners too) with
    /// leakage and noise, pure noise, a flat curve, a negative one, one at f32's largest and
    /// one at its smallest (subnormal) magnitudes, an all-zero one, and NaN and ±inf samples.
    fn hostile_curves(m: &ResidueModel, seed: u64) -> (Vec<f32>, usize) {
        let (n, na, nb) = (m.n, m.mtt.len(), m.delays());
        let mut state = seed;
        let mut list: Vec<Vec<f64>> = Vec::new();
        for (k, &(a, b)) in [
            (0, 0),
            (na - 1, nb - 1),
            (0, nb - 1),
            (na - 1, 0),
            (na / 2, nb / 3),
            (na / 3, nb / 2),
            (1, 1),
            (na - 2, nb - 2),
            (13, 77),
            (40, 5),
        ]
        .iter()
        .enumerate()
        {
            let f = 0.5 + k as f64;
            let k2 = (k as f64 - 5.0) * 1e-4;
            let q = m.atom(a, b);
            let c: Vec<f64> = (0..n)
                .map(|t| {
                    f * (q[t] * m.qnorm[a * nb + b] + m.hg[a * nb + b] / m.gg * m.cumulative[t])
                        - k2 * m.cumulative[t]
                        + 0.02 * f * noise(&mut state)
                })
                .collect();
            list.push(c);
        }
        list.push((0..n).map(|_| noise(&mut state)).collect());
        list.push(vec![0.7; n]);
        list.push((0..n).map(|t| -(m.cumulative[t] + 0.1)).collect());
        list.push(
            (0..n)
                .map(|_| f32::MAX as f64 * noise(&mut state))
                .collect(),
        );
        list.push(
            (0..n)
                .map(|t| if t % 2 == 0 { 1e-45 } else { -1e-45 })
                .collect(),
        );
        list.push(vec![0.0; n]);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut c: Vec<f64> = (0..n).map(|_| noise(&mut state)).collect();
            c[n / 2] = bad;
            list.push(c);
        }
        let nv = list.len();
        let mut curves = vec![0f32; n * nv];
        for (v, c) in list.iter().enumerate() {
            for t in 0..n {
                curves[t * nv + v] = c[t] as f32;
            }
        }
        (curves, nv)
    }

    /// `fit_cpu` against `fit_voxel` of each voxel alone, bit for bit, and the coarse pass's
    /// lanes (portable, dispatched, AVX2) against `coarse_best`, on `curves` (`[t * nv + v]`).
    fn vectorised_equals_per_voxel(m: &ResidueModel, curves: &[f32], nv: usize, first: usize) {
        let n = m.n;
        let k2: Vec<f32> = (0..nv).map(|v| (v as f32 - 8.0) * 1e-5).collect();
        let tissue = Tissue {
            curves,
            k2: &k2,
            cumulative: &m.cumulative,
            first,
        };
        let all = fit_cpu(m, &tissue);
        let one: Vec<Vec<f64>> = (0..nv)
            .map(|v| {
                (0..n)
                    .map(|t| {
                        if t < first {
                            0.0
                        } else {
                            curves[t * nv + v] as f64 + k2[v] as f64 * m.cumulative[t]
                        }
                    })
                    .collect()
            })
            .collect();
        for (v, c) in one.iter().enumerate() {
            let r = fit_voxel(m, c);
            let want = [r.flow, r.mtt, r.delay, r.k2, r.nrmse];
            for k in 0..OUTPUTS {
                assert_eq!(
                    all[k * nv + v].to_bits(),
                    (want[k] as f32).to_bits(),
                    "n {n}, voxel {v}, output {k}: {} against {}",
                    all[k * nv + v],
                    want[k]
                );
            }
        }
        let bound = CoarseBound::new(m);
        let bits = |b: &Best| (b.0, b.1, b.2.to_bits(), b.3.to_bits());
        for block in one.chunks(LANES) {
            let curve = |j: usize| block.get(j).cloned().unwrap_or_else(|| vec![0.0; n]);
            let lanes: Vec<Lanes> = (0..n)
                .map(|t| std::array::from_fn(|j| curve(j)[t]))
                .collect();
            let w: [f64; LANES] = std::array::from_fn(|j| weight(m, &curve(j)));
            let want: Vec<_> = (0..LANES)
                .map(|j| bits(&coarse_best(m, &curve(j), w[j])))
                .collect();
            let mut got = vec![("portable", coarse_pruned_with(&bound, &lanes, &w).0)];
            got.push(("dispatched", coarse_pruned(&bound, &lanes, &w).0));
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above).
                got.push(("AVX2", unsafe { coarse_pruned_avx2(&bound, &lanes, &w) }.0));
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                got.push(("FMA", unsafe { coarse_pruned_fma(&bound, &lanes, &w) }.0));
            }
            for (what, g) in got {
                for j in 0..LANES {
                    assert_eq!(bits(&g[j]), want[j], "n {n}, {what} coarse pass, lane {j}");
                }
            }
        }
    }

    /// Series of 4 to 200 frames (the shader holds 192; longer ones run here) at 0.5 to 3 s,
    /// unweighted and weighted: the vectorised passes give each voxel its per-voxel fit bit
    /// for bit, on curves that reach every path (NaN, ±inf, zero, f32's extremes).
    #[test]
    fn the_vectorised_fit_equals_the_per_voxel_fit_on_any_series_length() {
        for (k, &(n, dt)) in [
            (4, 3.0),
            (7, 2.0),
            (13, 0.5),
            (13, 3.0),
            (61, 1.0),
            (200, 0.5),
            (200, 3.0),
        ]
        .iter()
        .enumerate()
        {
            // The AIF arrives a quarter into the series (at 0 s for the shortest).
            let base = model_arriving(n, dt, 0.25 * (n - 1) as f64 * dt);
            let b1 = (n / 4).max(2);
            for m in [base.clone(), base.with_noise((0, b1))] {
                let (curves, nv) = hostile_curves(&m, 17 + k as u64);
                for first in [0, 1.min(n - 1), b1 - 1] {
                    vectorised_equals_per_voxel(&m, &curves, nv, first);
                }
            }
        }
    }

    /// The fine neighbourhood's projections (portable and dispatched) against `dot` at every
    /// centre of the grid, the padding included, for a short and a long series; and its best
    /// against `window_best`.
    #[test]
    fn the_fine_neighbourhood_equals_dot_at_every_centre() {
        for &(n, dt) in &[(5, 2.5), (37, 1.2)] {
            let m = model_arriving(n, dt, 0.3 * n as f64 * dt).with_noise((0, 3));
            let (curves, nv) = hostile_curves(&m, 5);
            let hood = Neighbourhoods::new(&m);
            let (na, nb) = (m.mtt.len(), m.delays());
            let bits = |b: &Best| (b.0, b.1, b.2.to_bits(), b.3.to_bits());
            for v in [0, 4, 11] {
                let c: Vec<f64> = (0..n).map(|t| curves[t * nv + v] as f64).collect();
                let w = weight(&m, &c);
                for ca in 0..na {
                    for cb in 0..nb {
                        let portable = hood.dots_portable(ca, cb, &c);
                        assert_eq!(hood.dots(ca, cb, &c), portable, "n {n} at ({ca}, {cb})");
                        for (i, q) in portable.iter().enumerate() {
                            for (j, &p) in q[..SPAN].iter().enumerate() {
                                let (a, b) = (
                                    (ca + i).wrapping_sub(COARSE - 1),
                                    (cb + j).wrapping_sub(COARSE - 1),
                                );
                                if a < na && b < nb {
                                    assert_eq!(p.to_bits(), dot(m.atom(a, b), &c).to_bits());
                                }
                            }
                        }
                        let coarse = (ca, cb, f64::MIN, 0.0);
                        assert_eq!(
                            bits(&hood.best(&m, &c, w, coarse)),
                            bits(&window_best(&m, &c, w, coarse)),
                            "n {n}, fine best from ({ca}, {cb})"
                        );
                    }
                }
            }
        }
    }

    /// H3's note: `dot` (`Iterator::sum`) sums from −0, so a projection whose every product is
    /// −0 is −0; the lanes must sum from −0 too, or their coarse best differs from
    /// `coarse_best`'s in the sign of its score and projection. An AIF arriving after 8 s
    /// makes every atom +0 at frame 0; a curve of −1 there and, for the first atom, −0 where
    /// that atom is ≥ 0 and +0 where it is negative, makes all that atom's products −0 (and
    /// every other atom's ±0, so that the first, tied, stays the best).
    #[test]
    fn the_lanes_sum_from_minus_zero_as_dot_does() {
        let m = model_arriving(12, 1.0, 9.0);
        let q = m.atom(0, 0);
        let c: Vec<f64> = (0..m.n)
            .map(|t| match t {
                0 => -1.0,
                _ if q[t] < 0.0 => 0.0,
                _ => -0.0,
            })
            .collect();
        assert!(m
            .basis
            .chunks_exact(m.n)
            .all(|q| q[0] == 0.0 && q[0].is_sign_positive()));
        let p = dot(q, &c);
        assert!(p == 0.0 && p.is_sign_negative(), "{p}");
        let lanes: Vec<Lanes> = c.iter().map(|&x| [x; LANES]).collect();
        let w = [1.0; LANES];
        let want = coarse_best(&m, &c, 1.0);
        let bits = |b: &Best| (b.0, b.1, b.2.to_bits(), b.3.to_bits());
        let bound = CoarseBound::new(&m);
        let mut got = vec![("portable", coarse_pruned_with(&bound, &lanes, &w).0)];
        got.push(("dispatched", coarse_pruned(&bound, &lanes, &w).0));
        for (what, g) in got {
            for j in 0..LANES {
                assert_eq!(bits(&g[j]), bits(&want), "{what} coarse pass, lane {j}");
            }
        }
        // The fine pass sums from −0 too.
        let hood = Neighbourhoods::new(&m);
        let near = hood.dots(COARSE - 1, COARSE - 1, &c);
        assert_eq!(near[0][0].to_bits(), p.to_bits());
        // The fit that follows is the same either way (F = +0, K2 = −0, NRMSE of the residual).
        let r = fit_voxel(&m, &c);
        let via = refine(
            &m,
            &c,
            1.0,
            Neighbourhoods::new(&m).best(&m, &c, 1.0, (0, 0, 0.0, 0.0)),
        );
        assert_eq!(format!("{r:?}"), format!("{via:?}"));
    }

    /// The refinement's sums across the lanes (`refine_sums_lanes`, portable and dispatched)
    /// equal `refine_sums` of each voxel alone (the oracle: `refine`'s own sums) bit for bit, at
    /// grid points on every edge and corner of the grid (where a neighbour's row is G) and
    /// inside, on curves that reach every path (NaN, ±inf, zero, f32's extremes).
    #[test]
    fn the_refinement_sums_across_lanes_equal_each_voxels_own() {
        for &(n, dt) in &[(5, 2.5), (37, 1.2), (61, 1.0)] {
            let m = model_arriving(n, dt, 0.3 * n as f64 * dt).with_noise((0, 3));
            let (curves, nv) = hostile_curves(&m, 11 + n as u64);
            let (na, nb) = (m.mtt.len(), m.delays());
            let points = [
                (0, 0),
                (0, nb - 1),
                (na - 1, 0),
                (na - 1, nb - 1),
                (0, 17),
                (na - 1, 40),
                (30, 0),
                (31, nb - 1),
                (12, 55),
                (45, 3),
            ];
            for v0 in (0..nv).step_by(LANES) {
                let curve = |j: usize| -> Vec<f64> {
                    let v = (v0 + j) % nv;
                    (0..n).map(|t| curves[t * nv + v] as f64).collect()
                };
                let lanes: Vec<Lanes> = (0..n)
                    .map(|t| std::array::from_fn(|j| curve(j)[t]))
                    .collect();
                for shift in 0..points.len() {
                    let best: [Best; LANES] = std::array::from_fn(|j| {
                        let (a, b) = points[(j + shift) % points.len()];
                        let p = dot(m.atom(a, b), &curve(j));
                        (a, b, 0.0, p)
                    });
                    let got = [
                        ("portable", refine_sums_lanes(&m, &lanes, &best)),
                        ("dispatched", refine_sums_dispatch(&m, &lanes, &best)),
                    ];
                    for (what, sums) in got {
                        for j in 0..LANES {
                            let want = refine_sums(&m, &curve(j), best[j]).map(f64::to_bits);
                            assert_eq!(
                                sums.map(|s| s[j].to_bits()),
                                want,
                                "n {n}, {what}, voxel {}, at {:?}",
                                v0 + j,
                                (best[j].0, best[j].1)
                            );
                        }
                    }
                }
            }
        }
    }

    /// The fine pass refuses a centre off the grid (an assertion, not a read out of bounds),
    /// by either path.
    #[test]
    fn the_fine_pass_refuses_a_centre_off_the_grid() {
        let m = model_arriving(6, 2.0, 2.0);
        let hood = Neighbourhoods::new(&m);
        let c = vec![1.0; 6];
        let (na, nb) = (m.mtt.len(), m.delays());
        for (ca, cb) in [(na, 0), (0, nb), (na + 1, nb + 1)] {
            assert!(std::panic::catch_unwind(|| hood.dots(ca, cb, &c)).is_err());
            assert!(std::panic::catch_unwind(|| hood.dots_portable(ca, cb, &c)).is_err());
        }
        assert!(std::panic::catch_unwind(|| hood.dots(0, 0, &c[..5])).is_err());
        // Centres whose offsets would overflow a product pass no comparison either.
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            for (ca, cb) in [
                (usize::MAX - 3, 0),
                (0, usize::MAX - 3),
                (usize::MAX, usize::MAX),
            ] {
                // SAFETY: the CPU has AVX2 (checked just above); the bounds are the test's.
                let r = std::panic::catch_unwind(|| unsafe { hood.dots_avx2(ca, cb, &c) });
                assert!(r.is_err(), "({ca}, {cb})");
            }
        }
    }
}
