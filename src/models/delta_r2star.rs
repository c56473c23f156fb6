//! ΔR2*(t) and the first-pass metrics of one voxel (METHODS §3). The f64 CPU twin of
//! `shaders/delta_r2star.wgsl`.
//!
//! Single echo: ΔR2*(t) = −ln(S(t)/S0)/TE. Dual echo: ΔR2*(t) = ln[(S1(t)/S1,0)/(S2(t)/S2,0)]
//! /(TE2 − TE1), free of T1 leakage. S0 = mean over the baseline frames. CBV ∝ ∫ΔR2* dt
//! (trapezoid over the integration window; concentration C = ΔR2*/k with k = 1). TTP and peak
//! from the frames after arrival; PSR = 100·(S_post − S_min)/(S0 − S_min) with S_post the mean
//! over the late frames.

use rayon::prelude::*;
use serde::Serialize;

use super::ln_f64::ln;

/// Echo times, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Echo {
    Single { te: f64 },
    Dual { te1: f64, te2: f64 },
}

/// What is fixed for the whole acquisition and analysis: frame windows are `[start, end)`.
#[derive(Debug, Clone, Serialize)]
pub struct DscAcquisition {
    pub n_t: usize,
    /// Sampling interval (s).
    pub dt: f64,
    pub echo: Echo,
    pub baseline: (usize, usize),
    /// Frames after the bolus arrives, searched for TTP and peak (and S_min).
    pub bolus: (usize, usize),
    /// Frames integrated for CBV (first pass or whole curve).
    pub integration: (usize, usize),
    /// Late frames: S_post for PSR, and the leakage reference rule.
    pub late: (usize, usize),
}

/// Per-voxel metrics, in the order the shader writes them after the curve.
pub const METRICS: [&str; 7] = [
    "s0",
    "cbv",
    "ttp_s",
    "peak",
    "psr",
    "baseline_sd",
    "late_mean",
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DscVoxel {
    /// Baseline signal (echo 1).
    pub s0: f64,
    /// ∫ΔR2* dt over the integration window (s⁻¹·s = dimensionless, ∝ CBV).
    pub cbv: f64,
    /// Time to peak from the first frame (s).
    pub ttp_s: f64,
    /// Largest ΔR2* after arrival (s⁻¹).
    pub peak: f64,
    /// Percentage signal recovery (%).
    pub psr: f64,
    /// Standard deviation of ΔR2* over the baseline (s⁻¹).
    pub baseline_sd: f64,
    /// Mean ΔR2* over the late frames (s⁻¹).
    pub late_mean: f64,
}

impl DscVoxel {
    pub const INVALID: DscVoxel = DscVoxel {
        s0: f64::NAN,
        cbv: f64::NAN,
        ttp_s: f64::NAN,
        peak: f64::NAN,
        psr: f64::NAN,
        baseline_sd: f64::NAN,
        late_mean: f64::NAN,
    };

    pub fn as_array(&self) -> [f64; 7] {
        [
            self.s0,
            self.cbv,
            self.ttp_s,
            self.peak,
            self.psr,
            self.baseline_sd,
            self.late_mean,
        ]
    }
}

/// Trapezoid integral of `y` over frames `[a, b)` (b − a samples), spacing `dt`.
pub fn trapezoid(y: impl Fn(usize) -> f64, a: usize, b: usize, dt: f64) -> f64 {
    let mut sum = 0.0;
    for i in a..b.saturating_sub(1) {
        sum += 0.5 * (y(i) + y(i + 1));
    }
    sum * dt
}

/// One voxel: fills `curve` with ΔR2*(t) (NaN throughout if the voxel is invalid: any
/// non-positive or non-finite signal) and returns the metrics. The natural logarithm is
/// `models::ln_f64::ln` (fdlibm's, within 1 ulp of the C library's): [`compute_cpu`] computes
/// the same expressions in the same order for a block of voxels at once, vectorised, and gives
/// the same bits as this function.
pub fn voxel(
    acq: &DscAcquisition,
    s1: impl Fn(usize) -> f64,
    s2: impl Fn(usize) -> f64,
    curve: &mut [f64],
) -> DscVoxel {
    let n = acq.n_t;
    let dual = matches!(acq.echo, Echo::Dual { .. });
    for t in 0..n {
        let ok = |s: f64| s > 0.0 && s.is_finite();
        if !ok(s1(t)) || (dual && !ok(s2(t))) {
            curve.iter_mut().for_each(|c| *c = f64::NAN);
            return DscVoxel::INVALID;
        }
    }
    let (b0, b1) = acq.baseline;
    let nb = (b1 - b0) as f64;
    let s0 = (b0..b1).map(&s1).sum::<f64>() / nb;
    let s0_2 = if dual {
        (b0..b1).map(&s2).sum::<f64>() / nb
    } else {
        1.0
    };
    for t in 0..n {
        curve[t] = match acq.echo {
            Echo::Single { te } => -ln(s1(t) / s0) / te,
            Echo::Dual { te1, te2 } => ln((s1(t) / s0) / (s2(t) / s0_2)) / (te2 - te1),
        };
    }
    let mean_b = (b0..b1).map(|t| curve[t]).sum::<f64>() / nb;
    let baseline_sd = ((b0..b1).map(|t| (curve[t] - mean_b).powi(2)).sum::<f64>() / nb).sqrt();
    let cbv = trapezoid(|t| curve[t], acq.integration.0, acq.integration.1, acq.dt);
    let (a0, a1) = acq.bolus;
    // The peak's value kept beside its frame (not read back through the index each frame).
    let (mut peak_t, mut peak) = (a0, curve[a0]);
    let mut s_min = f64::INFINITY;
    for t in a0..a1 {
        if curve[t] > peak {
            (peak_t, peak) = (t, curve[t]);
        }
        s_min = s_min.min(s1(t));
    }
    let (l0, l1) = acq.late;
    let nl = (l1 - l0) as f64;
    let s_post = (l0..l1).map(&s1).sum::<f64>() / nl;
    let late_mean = (l0..l1).map(|t| curve[t]).sum::<f64>() / nl;
    // No signal drop at all: PSR is undefined.
    let psr = if s0 - s_min > 0.0 {
        100.0 * (s_post - s_min) / (s0 - s_min)
    } else {
        f64::NAN
    };
    DscVoxel {
        s0,
        cbv,
        ttp_s: peak_t as f64 * acq.dt,
        peak,
        psr,
        baseline_sd,
        late_mean,
    }
}

/// Curves and metrics of a list of voxels, planar: `curves[t * n + v]`, `metrics[k * n + v]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DscMaps {
    pub curves: Vec<f32>,
    pub metrics: Vec<f32>,
}

/// Voxels per block of the CPU path: a block's f64 curves (n_t × BLOCK) stay in the L2 cache.
const BLOCK: usize = 128;

/// The CPU path over every voxel, on all cores. `s1`/`s2` planar `[t][v]` (s2 empty for a
/// single echo), the layout the shader reads. The curves are computed in a copy of `s1`
/// ([`compute_cpu_in_place`]).
pub fn compute_cpu(acq: &DscAcquisition, s1: &[f32], s2: &[f32], n: usize) -> DscMaps {
    compute_cpu_in_place(acq, s1.to_vec(), s2, n)
}

/// [`compute_cpu`] with the curves written over the first echo's signals, whose buffer
/// becomes `DscMaps::curves` (the signals are read once, in the same layout; no fresh
/// n_t × n array to fault in, measured in BENCHMARKS.md, tenth session). Each thread takes a
/// block of voxels (columns of the planar arrays) and works frame by frame across it: every
/// per-voxel expression of [`voxel`], in the same order, on `BLOCK` voxels at once, so that
/// LLVM vectorises them (the logarithm included); the same bits as [`voxel`] (tested below).
///
/// # Panics
/// If `s1` is not n_t × n, or `s2` neither empty nor n_t × n.
pub fn compute_cpu_in_place(
    acq: &DscAcquisition,
    mut s1: Vec<f32>,
    s2: &[f32],
    n: usize,
) -> DscMaps {
    use ndarray::{ArrayViewMut2, Axis};
    let nt = acq.n_t;
    assert!(
        s2.is_empty() || s2.len() == nt * n,
        "s2 is n_t × n or empty"
    );
    let mut metrics = vec![0f32; METRICS.len() * n];
    let mut signals = ArrayViewMut2::from_shape((nt, n), &mut s1).expect("s1 is n_t × n");
    let mut out = ArrayViewMut2::from_shape((METRICS.len(), n), &mut metrics).expect("7 × n");
    signals
        .axis_chunks_iter_mut(Axis(1), BLOCK)
        .into_par_iter()
        .zip(out.axis_chunks_iter_mut(Axis(1), BLOCK))
        .enumerate()
        .for_each_init(
            || Scratch::new(nt),
            |scratch, (b, (mut columns, mut out))| {
                let v0 = b * BLOCK;
                let w = columns.ncols();
                let mut rows: Vec<&mut [f32]> = columns
                    .rows_mut()
                    .into_iter()
                    .map(|r| r.into_slice().expect("a row of a block is contiguous"))
                    .collect();
                let second: Vec<&[f32]> = if s2.is_empty() {
                    Vec::new()
                } else {
                    (0..nt).map(|t| &s2[t * n + v0..][..w]).collect()
                };
                let m = block(acq, &mut rows, &second, w, scratch);
                for (k, values) in m.iter().enumerate() {
                    for (j, &x) in values[..w].iter().enumerate() {
                        out[[k, j]] = x as f32;
                    }
                }
            },
        );
    DscMaps {
        curves: s1,
        metrics,
    }
}

/// One thread's working memory: a block's f64 curves `[t * BLOCK + j]`.
struct Scratch {
    curve: Vec<f64>,
}

impl Scratch {
    fn new(nt: usize) -> Self {
        Scratch {
            curve: vec![0.0; nt * BLOCK],
        }
    }
}

/// The block's metrics, `[k][j]` in [`METRICS`] order.
type BlockMetrics = [[f64; BLOCK]; 7];

/// A block of `w` ≤ BLOCK voxels: `rows[t][j]` the first echo's signal, overwritten with
/// ΔR2*(t) in f32; `second[t][j]` the second echo's (empty for one echo). On x86-64 with AVX2
/// the same code compiled for it (4 f64 lanes; no FMA, so the same bits).
fn block(
    acq: &DscAcquisition,
    rows: &mut [&mut [f32]],
    second: &[&[f32]],
    w: usize,
    scratch: &mut Scratch,
) -> Box<BlockMetrics> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { block_avx2(acq, rows, second, w, scratch) };
    }
    block_body(acq, rows, second, w, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_avx2(
    acq: &DscAcquisition,
    rows: &mut [&mut [f32]],
    second: &[&[f32]],
    w: usize,
    scratch: &mut Scratch,
) -> Box<BlockMetrics> {
    block_body(acq, rows, second, w, scratch)
}

/// [`voxel`]'s steps for `w` voxels at once, each loop over `j` a vector loop.
#[inline(always)]
fn block_body(
    acq: &DscAcquisition,
    rows: &mut [&mut [f32]],
    second: &[&[f32]],
    w: usize,
    scratch: &mut Scratch,
) -> Box<BlockMetrics> {
    let nt = acq.n_t;
    let dual = !second.is_empty();
    let (b0, b1) = acq.baseline;
    let (a0, a1) = acq.bolus;
    let (l0, l1) = acq.late;
    let (i0, i1) = acq.integration;
    let (nb, nl) = ((b1 - b0) as f64, (l1 - l0) as f64);
    // Sums start from −0.0, as `Iterator::sum` of f64 does (the sign of an all-zero sum).
    let mut valid = [true; BLOCK];
    let mut sum1 = [-0.0f64; BLOCK];
    let mut sum2 = [-0.0f64; BLOCK];
    let mut s_min = [f64::INFINITY; BLOCK];
    let mut post = [-0.0f64; BLOCK];
    let ok = |s: f64| s > 0.0 && s.is_finite();
    // The signals: validity, baseline means, the bolus's minimum and the late mean.
    for t in 0..nt {
        let r1 = &rows[t][..w];
        for (v, &x) in valid[..w].iter_mut().zip(r1) {
            *v &= ok(x as f64);
        }
        if dual {
            for (v, &x) in valid[..w].iter_mut().zip(&second[t][..w]) {
                *v &= ok(x as f64);
            }
        }
        if (b0..b1).contains(&t) {
            for (s, &x) in sum1[..w].iter_mut().zip(r1) {
                *s += x as f64;
            }
            if dual {
                for (s, &x) in sum2[..w].iter_mut().zip(&second[t][..w]) {
                    *s += x as f64;
                }
            }
        }
        if (a0..a1).contains(&t) {
            for (m, &x) in s_min[..w].iter_mut().zip(r1) {
                *m = m.min(x as f64);
            }
        }
        if (l0..l1).contains(&t) {
            for (s, &x) in post[..w].iter_mut().zip(r1) {
                *s += x as f64;
            }
        }
    }
    let mut s0 = [0.0f64; BLOCK];
    let mut s0_2 = [1.0f64; BLOCK];
    for j in 0..w {
        s0[j] = sum1[j] / nb;
        if dual {
            s0_2[j] = sum2[j] / nb;
        }
    }
    // ΔR2*(t), kept in f64 for the metrics and written over the signal in f32.
    let curve = &mut scratch.curve;
    for t in 0..nt {
        let c = &mut curve[t * BLOCK..][..w];
        let r1 = &mut rows[t][..w];
        match acq.echo {
            Echo::Single { te } => {
                for j in 0..w {
                    c[j] = -ln(r1[j] as f64 / s0[j]) / te;
                }
            }
            Echo::Dual { te1, te2 } => {
                let r2 = &second[t][..w];
                for j in 0..w {
                    c[j] = ln((r1[j] as f64 / s0[j]) / (r2[j] as f64 / s0_2[j])) / (te2 - te1);
                }
            }
        }
        for (o, &x) in r1.iter_mut().zip(c.iter()) {
            *o = x as f32;
        }
    }
    let row = |t: usize| &curve[t * BLOCK..][..w];
    let mut m: Box<BlockMetrics> = Box::new([[0.0; BLOCK]; 7]);
    // Baseline mean and SD, the CBV trapezoid, the late mean.
    let mut mean_b = [-0.0f64; BLOCK];
    for t in b0..b1 {
        for (s, &x) in mean_b[..w].iter_mut().zip(row(t)) {
            *s += x;
        }
    }
    let mut sd = [-0.0f64; BLOCK];
    for j in 0..w {
        mean_b[j] /= nb;
    }
    for t in b0..b1 {
        for ((s, &x), &mu) in sd[..w].iter_mut().zip(row(t)).zip(&mean_b[..w]) {
            *s += (x - mu).powi(2);
        }
    }
    let mut area = [0.0f64; BLOCK];
    for i in i0..i1.saturating_sub(1) {
        let (y0, y1) = (row(i), row(i + 1));
        for j in 0..w {
            area[j] += 0.5 * (y0[j] + y1[j]);
        }
    }
    let mut late = [-0.0f64; BLOCK];
    for t in l0..l1 {
        for (s, &x) in late[..w].iter_mut().zip(row(t)) {
            *s += x;
        }
    }
    // The peak after arrival: the first frame of the largest value.
    let mut peak = [0.0f64; BLOCK];
    let mut peak_t = [a0 as f64; BLOCK];
    peak[..w].copy_from_slice(row(a0));
    for t in a0..a1 {
        let (c, tf) = (row(t), t as f64);
        for j in 0..w {
            if c[j] > peak[j] {
                (peak_t[j], peak[j]) = (tf, c[j]);
            }
        }
    }
    for j in 0..w {
        let s_post = post[j] / nl;
        let psr = if s0[j] - s_min[j] > 0.0 {
            100.0 * (s_post - s_min[j]) / (s0[j] - s_min[j])
        } else {
            f64::NAN
        };
        m[0][j] = s0[j];
        m[1][j] = area[j] * acq.dt;
        m[2][j] = peak_t[j] * acq.dt;
        m[3][j] = peak[j];
        m[4][j] = psr;
        m[5][j] = (sd[j] / nb).sqrt();
        m[6][j] = late[j] / nl;
    }
    // Invalid voxels: NaN throughout.
    for j in (0..w).filter(|&j| !valid[j]) {
        for r in rows.iter_mut() {
            r[j] = f32::NAN;
        }
        for k in m.iter_mut() {
            k[j] = f64::NAN;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acq() -> DscAcquisition {
        DscAcquisition {
            n_t: 40,
            dt: 1.5,
            echo: Echo::Single { te: 0.03 },
            baseline: (2, 10),
            bolus: (10, 40),
            integration: (9, 40),
            late: (36, 40),
        }
    }

    #[test]
    fn known_delta_r2star_integrates_to_its_area() {
        let a = acq();
        // ΔR2* a triangle of height 20 s⁻¹ from frame 10 to 20 (peak at 15): area 20·5·1.5 = 150
        let dr2 = |t: usize| {
            if (10..=20).contains(&t) {
                20.0 * (1.0 - (t as f64 - 15.0).abs() / 5.0)
            } else {
                0.0
            }
        };
        let s = |t: usize| 500.0 * (-0.03 * dr2(t)).exp();
        let mut curve = vec![0.0; 40];
        let m = voxel(&a, s, |_| 1.0, &mut curve);
        assert!((m.cbv - 150.0).abs() < 1e-9, "{m:?}");
        assert!((m.peak - 20.0).abs() < 1e-9);
        assert_eq!(m.ttp_s, 15.0 * 1.5);
        assert!((m.s0 - 500.0).abs() < 1e-9);
        assert!(m.baseline_sd < 1e-9);
        assert!((m.psr - 100.0).abs() < 1e-9, "full recovery: {m:?}");
    }

    #[test]
    fn dual_echo_cancels_a_t1_change_common_to_both_echoes() {
        let mut a = acq();
        a.echo = Echo::Dual {
            te1: 0.01,
            te2: 0.04,
        };
        let dr2 = |t: usize| -> f64 {
            if (12..18).contains(&t) {
                10.0
            } else {
                0.0
            }
        };
        // T1 leakage scales both echoes by the same factor from frame 14 on
        let t1 = |t: usize| if t >= 14 { 1.3 } else { 1.0 };
        let s1 = |t: usize| 800.0 * t1(t) * (-0.01 * dr2(t)).exp();
        let s2 = |t: usize| 400.0 * t1(t) * (-0.04 * dr2(t)).exp();
        let mut curve = vec![0.0; 40];
        voxel(&a, s1, s2, &mut curve);
        for t in 0..40 {
            assert!((curve[t] - dr2(t)).abs() < 1e-9, "t={t}: {}", curve[t]);
        }
    }

    #[test]
    fn zero_signal_is_nan_not_a_crash() {
        let mut curve = vec![0.0; 40];
        let m = voxel(
            &acq(),
            |t| if t == 20 { 0.0 } else { 100.0 },
            |_| 1.0,
            &mut curve,
        );
        assert!(m.cbv.is_nan() && curve.iter().all(|c| c.is_nan()));
    }

    /// Signals of `n` voxels over 40 frames, planar: a bolus of depth and delay varying with
    /// the voxel, noise-like wiggles, a constant voxel (ΔR2* exactly −0 throughout) and
    /// invalid voxels (a zero, a negative, a NaN and an infinite sample).
    fn signals(n: usize, scale: f32, seed: usize) -> Vec<f32> {
        let mut s = vec![0f32; 40 * n];
        for v in 0..n {
            for t in 0..40 {
                let depth = 0.2 + 0.5 * ((v * 37 + seed) % 11) as f32 / 11.0;
                let arrival = 10.0 + ((v * 13 + seed) % 7) as f32;
                let x = (t as f32 - arrival) / 3.0;
                let bolus = if x > 0.0 {
                    depth * x * x * (-x).exp()
                } else {
                    0.0
                };
                let wiggle =
                    0.01 * (((v * 7919 + t * 104_729 + seed) % 1000) as f32 / 1000.0 - 0.5);
                s[t * n + v] = scale * (1.0 - bolus + wiggle);
            }
        }
        for t in 0..40 {
            s[t * n + 5] = scale; // constant
        }
        s[20 * n + 7] = 0.0;
        s[3 * n + 8] = -1.0;
        s[39 * n + 9] = f32::NAN;
        s[10] = f32::INFINITY; // frame 0
        s
    }

    /// The per-voxel [`voxel`], run voxel by voxel, laid out as [`compute_cpu`] lays it out.
    fn voxel_by_voxel(a: &DscAcquisition, s1: &[f32], s2: &[f32], n: usize) -> DscMaps {
        let mut curves = vec![0f32; a.n_t * n];
        let mut metrics = vec![[0.0; 7]; n];
        let mut curve = vec![0.0; a.n_t];
        for v in 0..n {
            let m = voxel(
                a,
                |t| s1[t * n + v] as f64,
                |t| {
                    if s2.is_empty() {
                        1.0
                    } else {
                        s2[t * n + v] as f64
                    }
                },
                &mut curve,
            );
            for t in 0..a.n_t {
                curves[t * n + v] = curve[t] as f32;
            }
            metrics[v] = m.as_array();
        }
        DscMaps {
            curves,
            metrics: crate::models::planar(&metrics),
        }
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn the_vectorised_blocks_give_the_per_voxel_bits() {
        // Blocks of 128 voxels: two whole ones and a part.
        let n = 2 * BLOCK + 45;
        let mut a = acq();
        let s1 = signals(n, 800.0, 0);
        let ours = compute_cpu(&a, &s1, &[], n);
        let reference = voxel_by_voxel(&a, &s1, &[], n);
        assert!(same_bits(&ours.curves, &reference.curves), "curves");
        assert!(same_bits(&ours.metrics, &reference.metrics), "metrics");
        // The checks above see something: a bolus, a −0 curve, NaN voxels.
        assert!(ours.metrics[n + 1] > 1.0, "cbv of voxel 1");
        assert_eq!(ours.curves[20 * n + 5].to_bits(), (-0.0f32).to_bits());
        assert!((7..=10).all(|v| ours.curves[v].is_nan() && ours.metrics[v].is_nan()));
        // Two echoes, the second invalid where the first is not; and first-pass integration.
        a.echo = Echo::Dual {
            te1: 0.015,
            te2: 0.045,
        };
        a.integration = (9, 25);
        let mut s2 = signals(n, 300.0, 3);
        s2[15 * n + 11] = 0.0;
        let ours = compute_cpu(&a, &s1, &s2, n);
        let reference = voxel_by_voxel(&a, &s1, &s2, n);
        assert!(same_bits(&ours.curves, &reference.curves), "dual curves");
        assert!(same_bits(&ours.metrics, &reference.metrics), "dual metrics");
        assert!(ours.curves[11].is_nan() && !ours.curves[12].is_nan());
    }
}
