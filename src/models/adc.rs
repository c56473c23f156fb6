//! Apparent diffusion coefficient: the mono-exponential ln S(b) = ln S0 − b·ADC fitted per voxel
//! (docs/methods.md §2). This file is the f64 CPU twin of `shaders/adc.wgsl`: same inputs, same
//! arithmetic, written to be read. The GPU layer in `gpu::adc` runs the shader.

use rayon::prelude::*;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How the mono-exponential is fitted, and to which points.
///
/// `ols` and `wls` fit every diffusion volume with its own b-value, as MRtrix3 `dwi2adc`
/// (Tournier et al., NeuroImage 2019) and DIPY do: scanners vary b slightly per direction
/// (987–1003 s/mm² in DIPY's small_64D), and averaging b per shell first moves the ADC by ~1%.
/// `trace-ols`, `trace-wls` and `two-point` fit one point per shell, the trace-weighted
/// (geometric-mean) image at the shell's mean b: what scanners display.
///
/// The default is `ols`: it is exactly MRtrix3 `dwi2adc`'s estimator (tested to 1e-6 on
/// small_64D), and because the mean of ln S over a shell's directions is the logarithm of the
/// trace-weighted image, it recovers the mean diffusivity of anisotropic tissue without bias
/// (noise-free). `wls` weights each volume by the square of the signal an OLS pass predicts
/// for it, as DIPY does: directions of one shell weigh alike, so it too gives the mean
/// diffusivity of anisotropic tissue, while noisy high-b volumes weigh less.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FitMethod {
    /// Ordinary least squares on ln S over every volume, each with its own b (MRtrix3
    /// `dwi2adc`). The default.
    Ols,
    /// Weighted least squares on ln S over every volume, each with its own b, w_i = Ŝ_i², the
    /// signal predicted by an OLS pass (var(ln S) ≈ σ²/S²; Veraart et al., NeuroImage 2013), as
    /// DIPY's `wls_fit_tensor` weights.
    Wls,
    /// Ordinary least squares on the trace-weighted images, one per shell at its mean b.
    TraceOls,
    /// Weighted least squares on the trace-weighted images, one per shell, w = measured S²
    /// (normalised by the voxel's largest).
    TraceWls,
    /// ADC = ln(S_low/S_high)/(b_high − b_low) from the lowest and highest shell's
    /// trace-weighted images only.
    TwoPoint,
}

impl FitMethod {
    pub const NAMES: [&'static str; 5] = ["ols", "wls", "trace-ols", "trace-wls", "two-point"];
    pub const ALL: [FitMethod; 5] = [
        FitMethod::Ols,
        FitMethod::Wls,
        FitMethod::TraceOls,
        FitMethod::TraceWls,
        FitMethod::TwoPoint,
    ];

    /// The code the shader's uniform block carries: the weighting, which is all the kernel
    /// needs to know (0 measured w = S², 1 w = 1, 2 two-point, 3 w = Ŝ² predicted by an OLS
    /// pass). Whether the points are volumes or trace-weighted images is decided by what the
    /// caller feeds it ([`FitMethod::per_volume`]).
    pub fn code(self) -> u32 {
        match self {
            FitMethod::TraceWls => 0,
            FitMethod::Ols | FitMethod::TraceOls => 1,
            FitMethod::TwoPoint => 2,
            FitMethod::Wls => 3,
        }
    }

    /// True when every diffusion volume is a point of the fit (with its own b); false when the
    /// points are the shells' trace-weighted images.
    pub fn per_volume(self) -> bool {
        matches!(self, FitMethod::Ols | FitMethod::Wls)
    }

    /// What the points of the fit are, in words (for the JSON record).
    pub fn points(self) -> &'static str {
        if self.per_volume() {
            "every diffusion volume with its own b-value (as MRtrix3 dwi2adc)"
        } else {
            "the trace-weighted image of each shell at the shell's mean b-value"
        }
    }
}

impl fmt::Display for FitMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = Self::ALL.iter().position(|m| m == self).unwrap_or(0);
        f.write_str(Self::NAMES[i])
    }
}

impl FromStr for FitMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ols" => Ok(FitMethod::Ols),
            "wls" => Ok(FitMethod::Wls),
            "trace-ols" => Ok(FitMethod::TraceOls),
            "trace-wls" => Ok(FitMethod::TraceWls),
            "two-point" | "twopoint" | "2pt" => Ok(FitMethod::TwoPoint),
            other => Err(format!(
                "unknown ADC fit method '{other}': use one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// What is fixed for a whole acquisition: the b-value of each point of the fit (each volume
/// for `ols`/`wls`, each shell's trace-weighted image otherwise) and the fit method. Built
/// once; every voxel is fitted against it.
#[derive(Debug, Clone, Serialize)]
pub struct AdcModel {
    /// b-values (s/mm²) of the points (volumes or trace-weighted images), in the order their
    /// signals are given.
    pub bvalues: Vec<f64>,
    pub method: FitMethod,
    /// Indices of the lowest and highest b (the two-point method; the mask's reference).
    pub low: usize,
    pub high: usize,
    /// The distinct b-values (equal bits), and for each point the index of its b among them:
    /// `exp(−b·ADC)` and the WLS weights are taken once per distinct b, the same call on the
    /// same argument as once per point, so the same bits.
    #[serde(skip)]
    distinct_b: Vec<f64>,
    #[serde(skip)]
    b_class: Vec<usize>,
    /// The unweighted regression's voxel-independent terms (mean b, b − mean b per point, and
    /// Σ(b − mean b)²), computed as `regress` computes them with every weight 1.
    #[serde(skip)]
    ols: OlsTerms,
}

#[derive(Debug, Clone, Default)]
struct OlsTerms {
    xm: f64,
    dx: Vec<f64>,
    sxx: f64,
}

impl OlsTerms {
    fn of(bvalues: &[f64]) -> Self {
        let (mut sw, mut swx) = (0.0, 0.0);
        for &b in bvalues {
            sw += 1.0;
            swx += 1.0 * b;
        }
        let xm = swx / sw;
        let dx: Vec<f64> = bvalues.iter().map(|&b| b - xm).collect();
        let mut sxx = 0.0;
        for &d in &dx {
            sxx += 1.0 * d * d;
        }
        OlsTerms { xm, dx, sxx }
    }
}

impl AdcModel {
    pub fn new(bvalues: Vec<f64>, method: FitMethod) -> Result<Self> {
        if bvalues.iter().any(|b| !b.is_finite() || *b < 0.0) {
            return Err(Error::Invalid(format!(
                "b-values must be finite and non-negative, got {bvalues:?}"
            )));
        }
        let low = (0..bvalues.len())
            .min_by(|&a, &b| bvalues[a].total_cmp(&bvalues[b]))
            .ok_or_else(|| Error::Invalid("no b-values to fit an ADC to".into()))?;
        let high = (0..bvalues.len())
            .max_by(|&a, &b| bvalues[a].total_cmp(&bvalues[b]))
            .unwrap_or(low);
        if bvalues[high] - bvalues[low] <= 0.0 {
            return Err(Error::Invalid(format!(
                "an ADC needs at least two different b-values, got only b = {} s/mm²",
                bvalues[low]
            )));
        }
        let mut distinct_b: Vec<f64> = vec![];
        let b_class = bvalues
            .iter()
            .map(
                |b| match distinct_b.iter().position(|d| d.to_bits() == b.to_bits()) {
                    Some(j) => j,
                    None => {
                        distinct_b.push(*b);
                        distinct_b.len() - 1
                    }
                },
            )
            .collect();
        let ols = OlsTerms::of(&bvalues);
        Ok(AdcModel {
            bvalues,
            method,
            low,
            high,
            distinct_b,
            b_class,
            ols,
        })
    }

    pub fn n_b(&self) -> usize {
        self.bvalues.len()
    }

    /// `f(b)` for each distinct b into `out` (on the caller's stack, filled in place rather
    /// than returned, which copied the whole array per call); false when there are more than
    /// `LN_CACHE` distinct b-values (the caller then takes `f` per point).
    #[inline]
    fn per_distinct_b(&self, out: &mut [f64; LN_CACHE], f: impl Fn(f64) -> f64) -> bool {
        if self.distinct_b.len() > LN_CACHE {
            return false;
        }
        for (o, &b) in out.iter_mut().zip(&self.distinct_b) {
            *o = f(b);
        }
        true
    }
}

/// b-values whose logarithms `fit_voxel` keeps on the stack; beyond, it takes them again.
const LN_CACHE: usize = 32;

/// One voxel's fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdcVoxel {
    /// mm²/s
    pub adc: f64,
    /// Fitted signal at b = 0, in the input's units.
    pub s0: f64,
    /// Fit quality: root-mean-square residual of the fitted curve over all b, divided by S0
    /// (0 for a perfect fit; dimensionless). NaN in a valid voxel when
    /// [`fit_voxel_with`] was asked not to compute it.
    pub nrmse: f64,
}

impl AdcVoxel {
    pub const INVALID: AdcVoxel = AdcVoxel {
        adc: f64::NAN,
        s0: f64::NAN,
        nrmse: f64::NAN,
    };
}

/// Fits one voxel; `signal(i)` is the signal of point `i` (a volume or a trace-weighted
/// image) at `model.bvalues[i]`.
/// A voxel with any non-positive or non-finite signal is invalid (NaN), never log(0).
pub fn fit_voxel(model: &AdcModel, signal: impl Fn(usize) -> f64) -> AdcVoxel {
    fit_voxel_with(model, signal, true)
}

/// [`fit_voxel`], with the fit-quality map only when `quality` (`paramap adc --maps` without
/// `fit_nrmse`). ADC, S0 and which voxels are invalid are the same bits either way: where the
/// residual's finiteness is not certain from bounds (ADC ≥ 0, so every decay is in [0, 1];
/// S0 in [1e-100, 1e100] and every signal ≤ 1e100, so |residual| ≤ 1e100 and the NRMSE is
/// ≤ 1e200), the NRMSE is computed as always, and a voxel it makes invalid stays invalid.
pub fn fit_voxel_with(model: &AdcModel, signal: impl Fn(usize) -> f64, quality: bool) -> AdcVoxel {
    let n = model.n_b();
    let mut max_s: f64 = 0.0;
    // ln S of each b, taken once (on the stack for up to LN_CACHE b-values).
    let mut cache = [0f64; LN_CACHE];
    for i in 0..n {
        let s = signal(i);
        if !(s > 0.0 && s.is_finite()) {
            return AdcVoxel::INVALID;
        }
        max_s = max_s.max(s);
        if i < LN_CACHE {
            cache[i] = s.ln();
        }
    }
    let ln_signal = |i: usize| {
        if i < LN_CACHE {
            cache[i]
        } else {
            signal(i).ln()
        }
    };
    let (adc, ln_s0) = match model.method {
        FitMethod::TwoPoint => {
            let (bl, bh) = (model.bvalues[model.low], model.bvalues[model.high]);
            let (sl, sh) = (signal(model.low), signal(model.high));
            let adc = (sl / sh).ln() / (bh - bl);
            (adc, ln_signal(model.low) + bl * adc)
        }
        FitMethod::Ols | FitMethod::TraceOls => {
            match regress(model, &signal, &ln_signal, Weights::None) {
                Some(fit) => fit,
                None => return AdcVoxel::INVALID,
            }
        }
        FitMethod::TraceWls => {
            match regress(model, &signal, &ln_signal, Weights::Measured { max_s }) {
                Some(fit) => fit,
                None => return AdcVoxel::INVALID,
            }
        }
        FitMethod::Wls => {
            // DIPY's WLS: an OLS pass, then weights from its predicted signal.
            let Some((adc_ols, _)) = regress(model, &signal, &ln_signal, Weights::None) else {
                return AdcVoxel::INVALID;
            };
            let e_max = model
                .bvalues
                .iter()
                .map(|&b| -2.0 * adc_ols * b)
                .fold(f64::NEG_INFINITY, f64::max);
            match regress(
                model,
                &signal,
                &ln_signal,
                Weights::Predicted { adc_ols, e_max },
            ) {
                Some(fit) => fit,
                None => return AdcVoxel::INVALID,
            }
        }
    };
    let s0 = ln_s0.exp();
    if !quality && adc.is_finite() && adc >= 0.0 && (1e-100..=1e100).contains(&s0) && max_s <= 1e100
    {
        return AdcVoxel {
            adc,
            s0,
            nrmse: f64::NAN,
        };
    }
    let mut ss = 0.0;
    // exp(−0·ADC) is exactly 1 for a finite ADC (a non-finite one is invalid below), so the
    // b = 0 decay skips its call: the same bits.
    let mut decays = [0f64; LN_CACHE];
    let cached = model.per_distinct_b(
        &mut decays,
        |b| {
            if b == 0.0 {
                1.0
            } else {
                (-b * adc).exp()
            }
        },
    );
    for i in 0..n {
        let decay = if cached {
            decays[model.b_class[i]]
        } else {
            (-model.bvalues[i] * adc).exp()
        };
        let r = signal(i) - s0 * decay;
        ss += r * r;
    }
    let nrmse = (ss / n as f64).sqrt() / s0;
    if !(adc.is_finite() && s0.is_finite() && nrmse.is_finite()) {
        return AdcVoxel::INVALID;
    }
    AdcVoxel { adc, s0, nrmse }
}

/// The weights of a least-squares pass on ln S (var(ln S_i) ≈ σ²/S_i², so w_i ∝ S_i²).
#[derive(Clone, Copy)]
enum Weights {
    /// w_i = 1 (OLS).
    None,
    /// w_i = (S_i / max S)²: the measured signal (trace-wls, on trace-weighted images).
    Measured { max_s: f64 },
    /// w_i = (Ŝ_i / max Ŝ)² = exp(−2·ADC_ols·b_i − e_max), Ŝ the signal an OLS pass predicts
    /// (DIPY's `wls_fit_tensor`; Veraart et al. 2013). Directions of one shell weigh alike, so
    /// anisotropic tissue is not pulled towards its slow directions as measured weights would.
    Predicted { adc_ols: f64, e_max: f64 },
}

/// Centred weighted regression of y = ln S on x = b: (ADC, ln S0), or None when the weighted
/// b-values do not spread (no slope can be fitted). Weights are normalised to a largest of ~1
/// so that they stay O(1) whatever the scanner's scaling.
fn regress(
    model: &AdcModel,
    signal: &impl Fn(usize) -> f64,
    ln_signal: &impl Fn(usize) -> f64,
    weights: Weights,
) -> Option<(f64, f64)> {
    let n = model.n_b();
    if let Weights::None = weights {
        // Every weight 1: the same sums as below with w = 1 (1·x is x, the sum of n ones is n),
        // the b-only terms taken once per model.
        let OlsTerms { xm, ref dx, sxx } = model.ols;
        let mut swy = 0.0;
        for i in 0..n {
            swy += ln_signal(i);
        }
        let ym = swy / n as f64;
        let mut sxy = 0.0;
        for (i, &d) in dx.iter().enumerate() {
            sxy += d * (ln_signal(i) - ym);
        }
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        return Some((-slope, ym - slope * xm));
    }
    // WLS weights from the OLS prediction depend on b only: one `exp` per distinct b.
    let mut predicted = [0f64; LN_CACHE];
    let cached = match weights {
        Weights::Predicted { adc_ols, e_max } => {
            model.per_distinct_b(&mut predicted, |b| (-2.0 * adc_ols * b - e_max).exp())
        }
        _ => false,
    };
    let weight = |i: usize| match weights {
        Weights::None => 1.0,
        Weights::Measured { max_s } => (signal(i) / max_s) * (signal(i) / max_s),
        Weights::Predicted { adc_ols, e_max } => {
            if cached {
                predicted[model.b_class[i]]
            } else {
                (-2.0 * adc_ols * model.bvalues[i] - e_max).exp()
            }
        }
    };
    let (mut sw, mut swx, mut swy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let w = weight(i);
        sw += w;
        swx += w * model.bvalues[i];
        swy += w * ln_signal(i);
    }
    let (xm, ym) = (swx / sw, swy / sw);
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for i in 0..n {
        let w = weight(i);
        let dx = model.bvalues[i] - xm;
        sxx += w * dx * dx;
        sxy += w * dx * (ln_signal(i) - ym);
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((-slope, ym - slope * xm))
}

/// Maps over a list of voxels (those inside the mask), in that list's order.
#[derive(Debug, Clone, PartialEq)]
pub struct AdcMaps {
    pub adc: Vec<f32>,
    pub s0: Vec<f32>,
    pub nrmse: Vec<f32>,
}

impl AdcMaps {
    pub fn with_len(n: usize) -> Self {
        AdcMaps {
            adc: vec![0.0; n],
            s0: vec![0.0; n],
            nrmse: vec![0.0; n],
        }
    }

    pub fn len(&self) -> usize {
        self.adc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.adc.is_empty()
    }
}

/// The CPU path: fits every voxel in f64 on all cores. `signals` is planar,
/// `signals[i * n_voxels + v]` = signal of voxel `v` at `model.bvalues[i]`, the same layout the
/// shader reads.
pub fn fit_cpu(model: &AdcModel, signals: &[f32], n_voxels: usize) -> AdcMaps {
    assert_eq!(
        signals.len(),
        model.n_b() * n_voxels,
        "planar signal layout"
    );
    let mut maps = AdcMaps::with_len(n_voxels);
    maps.adc
        .par_iter_mut()
        .zip(maps.s0.par_iter_mut())
        .zip(maps.nrmse.par_iter_mut())
        .enumerate()
        .with_min_len(4096)
        .for_each(|(v, ((adc, s0), nrmse))| {
            let fit = fit_voxel(model, |i| signals[i * n_voxels + v] as f64);
            (*adc, *s0, *nrmse) = (fit.adc as f32, fit.s0 as f32, fit.nrmse as f32);
        });
    maps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(method: FitMethod) -> AdcModel {
        AdcModel::new(vec![0.0, 500.0, 1000.0], method).unwrap()
    }

    #[test]
    fn every_method_recovers_a_noise_free_decay_exactly() {
        for method in FitMethod::ALL {
            let m = model(method);
            let (adc, s0) = (0.8e-3, 1234.0);
            let fit = fit_voxel(&m, |i| s0 * (-m.bvalues[i] * adc).exp());
            assert!((fit.adc - adc).abs() / adc < 1e-12, "{method}: {fit:?}");
            assert!((fit.s0 - s0).abs() / s0 < 1e-12, "{method}: {fit:?}");
            assert!(fit.nrmse < 1e-12);
        }
    }

    #[test]
    fn more_b_values_than_the_log_cache_fit_the_same_decay() {
        // 40 b-values: the first LN_CACHE logarithms come from the cache, the rest are taken
        // again; a noise-free decay is recovered exactly by both weightings.
        let bvalues: Vec<f64> = (0..40).map(|i| 50.0 * i as f64).collect();
        assert!(bvalues.len() > LN_CACHE);
        for method in FitMethod::ALL {
            let m = AdcModel::new(bvalues.clone(), method).unwrap();
            let (adc, s0) = (1.1e-3, 950.0);
            let fit = fit_voxel(&m, |i| s0 * (-m.bvalues[i] * adc).exp());
            assert!((fit.adc - adc).abs() / adc < 1e-12, "{method}: {fit:?}");
            assert!((fit.s0 - s0).abs() / s0 < 1e-12, "{method}: {fit:?}");
        }
    }

    #[test]
    fn non_positive_signal_is_nan_not_a_crash() {
        let m = model(FitMethod::Wls);
        for bad in [0.0, -3.0, f64::NAN] {
            let fit = fit_voxel(&m, |i| if i == 1 { bad } else { 100.0 });
            assert!(fit.adc.is_nan() && fit.s0.is_nan() && fit.nrmse.is_nan());
        }
    }

    #[test]
    fn wls_leans_on_the_high_signal_points() {
        // One low-signal outlier at high b pulls OLS more than WLS.
        let m = AdcModel::new(vec![0.0, 250.0, 500.0, 1000.0], FitMethod::Wls).unwrap();
        let truth = 1.0e-3;
        let s = |i: usize| {
            let clean = 1000.0 * (-m.bvalues[i] * truth).exp();
            if i == 3 {
                clean * 0.6
            } else {
                clean
            }
        };
        let with = |method| {
            fit_voxel(
                &AdcModel {
                    method,
                    ..m.clone()
                },
                s,
            )
        };
        let ols = with(FitMethod::Ols);
        for method in [FitMethod::Wls, FitMethod::TraceWls] {
            let wls = with(method);
            assert!(
                (wls.adc - truth).abs() < (ols.adc - truth).abs(),
                "{method}"
            );
            assert!(wls.nrmse > 0.0);
        }
    }

    #[test]
    fn per_volume_fits_give_the_mean_diffusivity_of_anisotropic_tissue() {
        // White matter with D = diag(1.5, 0.3, 0.3)×10⁻³ mm²/s sampled along its axes at
        // b = 500 and 1000 (one b = 0): ln S_i = ln S0 − b·D_ii. The mean of ln S over a
        // shell's directions is ln S0 − b·MD, so OLS over the volumes recovers MD = 0.7×10⁻³
        // exactly, and so does WLS with predicted weights (equal within a shell); weights from
        // the measured S² would favour the slow (high-signal) directions and read about half.
        let diag = [1.5e-3, 0.3e-3, 0.3e-3];
        let mut b = vec![0.0];
        let mut d = vec![0.0];
        for shell in [500.0, 1000.0] {
            for dii in diag {
                b.push(shell);
                d.push(dii);
            }
        }
        let md = diag.iter().sum::<f64>() / 3.0;
        let signal = |i: usize| 800.0 * (-b[i] * d[i]).exp();
        let ols = fit_voxel(&AdcModel::new(b.clone(), FitMethod::Ols).unwrap(), signal);
        assert!((ols.adc - md).abs() / md < 1e-12, "{ols:?}");
        let wls = fit_voxel(&AdcModel::new(b.clone(), FitMethod::Wls).unwrap(), signal);
        assert!((wls.adc - md).abs() / md < 1e-12, "{wls:?}");
        // The measured-weight regression on these volumes (what trace-wls does on shells).
        let m = AdcModel::new(b.clone(), FitMethod::TraceWls).unwrap();
        let measured = fit_voxel(&m, signal);
        assert!(measured.adc < 0.6 * md, "{measured:?}");
    }

    /// Without the fit-quality map, ADC, S0 and which voxels are invalid are the bits of the
    /// full fit: on noisy decays, rising signals (ADC < 0), signals near f32's limits and
    /// tiny or huge S0 whose residual overflows, for every method and 7 or 3 points.
    #[test]
    fn skipping_the_quality_map_changes_no_other_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(20);
        let b7 = vec![0.0, 500.0, 500.0, 500.0, 1000.0, 1000.0, 1000.0];
        let mut invalid = 0;
        for method in FitMethod::ALL {
            for b in [b7.clone(), vec![0.0, 500.0, 1000.0]] {
                let m = AdcModel::new(b, method).unwrap();
                for k in 0..20_000 {
                    let s0 = 10f64.powf(rng.random_range(-45.0..38.5));
                    let adc = match k % 4 {
                        0 => rng.random_range(-0.8..0.8),
                        1 => rng.random_range(-3e-3..0.0),
                        _ => rng.random_range(0.0..4e-3),
                    };
                    let noise: Vec<f64> = (0..m.n_b())
                        .map(|_| 1.0 + rng.random_range(-0.2..0.2))
                        .collect();
                    let signal =
                        |i: usize| (s0 * (-m.bvalues[i] * adc).exp() * noise[i]) as f32 as f64;
                    let full = fit_voxel_with(&m, signal, true);
                    let fast = fit_voxel_with(&m, signal, false);
                    assert_eq!(
                        full.adc.to_bits(),
                        fast.adc.to_bits(),
                        "{method} {s0} {adc}"
                    );
                    assert_eq!(full.s0.to_bits(), fast.s0.to_bits(), "{method} {s0} {adc}");
                    assert_eq!(full.nrmse.is_nan(), full.adc.is_nan());
                    invalid += full.adc.is_nan() as usize;
                }
            }
        }
        // Some of these voxels are invalid (non-positive f32 signal or an overflow), most not.
        assert!(invalid > 1000 && invalid < 100_000, "{invalid}");
    }

    #[test]
    fn a_single_b_value_is_refused() {
        let err = AdcModel::new(vec![1000.0, 1000.0], FitMethod::Wls).unwrap_err();
        assert!(err.to_string().contains("two different b-values"));
    }

    #[test]
    fn method_names_round_trip() {
        for name in FitMethod::NAMES {
            assert_eq!(name.parse::<FitMethod>().unwrap().to_string(), name);
        }
        assert!("lsq".parse::<FitMethod>().is_err());
        assert!(FitMethod::Ols.per_volume() && FitMethod::Wls.per_volume());
        assert!(!FitMethod::TraceWls.per_volume() && !FitMethod::TwoPoint.per_volume());
    }
}
