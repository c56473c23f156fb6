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
/// non-positive or non-finite signal) and returns the metrics.
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
            Echo::Single { te } => -(s1(t) / s0).ln() / te,
            Echo::Dual { te1, te2 } => ((s1(t) / s0) / (s2(t) / s0_2)).ln() / (te2 - te1),
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

/// The CPU path over every voxel, on all cores. `s1`/`s2` planar `[t][v]` (s2 empty for a
/// single echo), the layout the shader reads. Each thread takes a block of voxels and writes
/// their curves straight into the planar output: no per-voxel allocation, no second copy.
pub fn compute_cpu(acq: &DscAcquisition, s1: &[f32], s2: &[f32], n: usize) -> DscMaps {
    use ndarray::{ArrayViewMut2, Axis};
    const BLOCK: usize = 256;
    let nt = acq.n_t;
    let mut curves = vec![0f32; nt * n];
    let mut metrics = vec![[0.0f64; 7]; n];
    ArrayViewMut2::from_shape((nt, n), &mut curves)
        .expect("curves are n_t × n")
        .axis_chunks_iter_mut(Axis(1), BLOCK)
        .into_par_iter()
        .zip(metrics.par_chunks_mut(BLOCK))
        .enumerate()
        .for_each_init(
            || {
                let echoes = if s2.is_empty() { 1 } else { 2 };
                (vec![0.0; nt], vec![0f32; echoes * nt * BLOCK])
            },
            |(curve, local), (b, (mut columns, block))| {
                // The block's signals, voxel by voxel (each frame's row read once, in order),
                // so that each voxel's several passes over its frames stay in the cache.
                let (w, v0) = (block.len(), b * BLOCK);
                let (l1, l2) = local.split_at_mut(nt * BLOCK);
                for t in 0..nt {
                    for j in 0..w {
                        l1[j * nt + t] = s1[t * n + v0 + j];
                    }
                    if !s2.is_empty() {
                        for j in 0..w {
                            l2[j * nt + t] = s2[t * n + v0 + j];
                        }
                    }
                }
                for (j, m) in block.iter_mut().enumerate() {
                    let a = &l1[j * nt..(j + 1) * nt];
                    let b2 = l2.get(j * nt..(j + 1) * nt).unwrap_or(&[]);
                    let voxel_metrics = voxel(
                        acq,
                        |t| a[t] as f64,
                        |t| if s2.is_empty() { 1.0 } else { b2[t] as f64 },
                        curve,
                    );
                    // The curve back into the local buffer, then out frame by frame.
                    for (t, &x) in curve.iter().enumerate() {
                        l1[j * nt + t] = x as f32;
                    }
                    *m = voxel_metrics.as_array();
                }
                for t in 0..nt {
                    for j in 0..w {
                        columns[[t, j]] = l1[j * nt + t];
                    }
                }
            },
        );
    DscMaps {
        curves,
        metrics: super::planar(&metrics),
    }
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
}
