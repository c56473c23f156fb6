//! Apparent diffusion coefficient: the mono-exponential ln S(b) = ln S0 − b·ADC fitted per voxel
//! (METHODS §2). This file is the f64 CPU twin of `shaders/adc.wgsl`: same inputs, same
//! arithmetic, written to be read. The GPU layer in `gpu::adc` runs the shader.

use rayon::prelude::*;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How the mono-exponential is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FitMethod {
    /// Weighted least squares on ln S with w_i = S_i² (var(ln S) ≈ σ²/S²), as DIPY's WLS
    /// tensor fit (Veraart et al., NeuroImage 2013). The default.
    Wls,
    /// Ordinary least squares on ln S over all b, as MRtrix3 `dwi2adc`.
    Ols,
    /// ADC = ln(S_low/S_high)/(b_high − b_low) from the lowest and highest b only.
    TwoPoint,
}

impl FitMethod {
    pub const NAMES: [&'static str; 3] = ["wls", "ols", "two-point"];

    /// The code the shader's uniform block carries.
    pub fn code(self) -> u32 {
        match self {
            FitMethod::Wls => 0,
            FitMethod::Ols => 1,
            FitMethod::TwoPoint => 2,
        }
    }
}

impl fmt::Display for FitMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::NAMES[self.code() as usize])
    }
}

impl FromStr for FitMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "wls" => Ok(FitMethod::Wls),
            "ols" => Ok(FitMethod::Ols),
            "two-point" | "twopoint" | "2pt" => Ok(FitMethod::TwoPoint),
            other => Err(format!(
                "unknown ADC fit method '{other}': use one of wls, ols, two-point"
            )),
        }
    }
}

/// What is fixed for a whole acquisition: the b-value of each trace-weighted image and the
/// fit method. Built once; every voxel is fitted against it.
#[derive(Debug, Clone, Serialize)]
pub struct AdcModel {
    /// b-values (s/mm²) of the trace-weighted images, in the order their signals are given.
    pub bvalues: Vec<f64>,
    pub method: FitMethod,
    /// Indices of the lowest and highest b (used by the two-point method).
    pub low: usize,
    pub high: usize,
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
        Ok(AdcModel {
            bvalues,
            method,
            low,
            high,
        })
    }

    pub fn n_b(&self) -> usize {
        self.bvalues.len()
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
    /// (0 for a perfect fit; dimensionless).
    pub nrmse: f64,
}

impl AdcVoxel {
    pub const INVALID: AdcVoxel = AdcVoxel {
        adc: f64::NAN,
        s0: f64::NAN,
        nrmse: f64::NAN,
    };
}

/// Fits one voxel; `signal(i)` is the trace-weighted signal at `model.bvalues[i]`.
/// A voxel with any non-positive or non-finite signal is invalid (NaN), never log(0).
pub fn fit_voxel(model: &AdcModel, signal: impl Fn(usize) -> f64) -> AdcVoxel {
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
        FitMethod::Wls | FitMethod::Ols => {
            // Centred weighted regression of y = ln S on x = b; weights normalised by the
            // voxel's largest S² so that they stay O(1) whatever the scanner's scaling.
            let weight = |s: f64| match model.method {
                FitMethod::Wls => (s / max_s) * (s / max_s),
                _ => 1.0,
            };
            let (mut sw, mut swx, mut swy) = (0.0, 0.0, 0.0);
            for i in 0..n {
                let s = signal(i);
                let w = weight(s);
                sw += w;
                swx += w * model.bvalues[i];
                swy += w * ln_signal(i);
            }
            let (xm, ym) = (swx / sw, swy / sw);
            let (mut sxx, mut sxy) = (0.0, 0.0);
            for i in 0..n {
                let s = signal(i);
                let w = weight(s);
                let dx = model.bvalues[i] - xm;
                sxx += w * dx * dx;
                sxy += w * dx * (ln_signal(i) - ym);
            }
            if sxx <= 0.0 {
                return AdcVoxel::INVALID;
            }
            let slope = sxy / sxx;
            (-slope, ym - slope * xm)
        }
    };
    let s0 = ln_s0.exp();
    let mut ss = 0.0;
    for i in 0..n {
        let r = signal(i) - s0 * (-model.bvalues[i] * adc).exp();
        ss += r * r;
    }
    let nrmse = (ss / n as f64).sqrt() / s0;
    if !(adc.is_finite() && s0.is_finite() && nrmse.is_finite()) {
        return AdcVoxel::INVALID;
    }
    AdcVoxel { adc, s0, nrmse }
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
        for method in [FitMethod::Wls, FitMethod::Ols, FitMethod::TwoPoint] {
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
        for method in [FitMethod::Wls, FitMethod::Ols, FitMethod::TwoPoint] {
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
        let wls = fit_voxel(&m, s);
        let ols = fit_voxel(
            &AdcModel {
                method: FitMethod::Ols,
                ..m.clone()
            },
            s,
        );
        assert!((wls.adc - truth).abs() < (ols.adc - truth).abs());
        assert!(wls.nrmse > 0.0);
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
    }
}
