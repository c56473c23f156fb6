//! From a deconvolution's per-voxel output to the perfusion maps (docs/methods.md §4):
//! CBF = (kH/ρ)·6000·F ml/100 g/min, absolute CBV = (kH/ρ)·100·∫C/∫Ca ml/100 g, MTT by the
//! central volume theorem (Stewart 1894; Meier & Zierler 1954) or from the fitted residue, and
//! Tmax.
//!
//! kH = 0.73 corrects for the lower haematocrit of capillaries than of large vessels, ρ = 1.04 g/ml
//! is brain density (Rempp et al., Radiology 1994; Østergaard et al., MRM 1996): flow per
//! 100 g of tissue from a flow per ml. 6000 = 100 g · 60 s/min. Plain arithmetic on every voxel,
//! no kernel: its inputs come from the kernels and their twins, and these functions are the
//! same on both engines.

/// Flow maps of the voxels (`[n]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowMaps {
    /// ml/100 g/min; NaN where the fit failed, 0 where it shows no flow.
    pub cbf: Vec<f32>,
    /// s; NaN where CBF is 0 or NaN.
    pub mtt: Vec<f32>,
    /// s; NaN where CBF is 0 or NaN.
    pub tmax: Vec<f32>,
}

/// ml/100 g/min of a flow F (s⁻¹) scaled by kH/ρ.
pub fn cbf_of(flow_per_s: f64, kh_over_rho: f64) -> f64 {
    kh_over_rho * 6000.0 * flow_per_s
}

/// Absolute CBV (ml/100 g) of each voxel from the area of its (leakage-corrected) curve and
/// the AIF's area over the same window: (kH/ρ)·100·∫C/∫Ca.
pub fn absolute_cbv(curve_area: &[f32], aif_area: f64, kh_over_rho: f64) -> Vec<f32> {
    curve_area
        .iter()
        .map(|&c| (kh_over_rho * 100.0 * c as f64 / aif_area) as f32)
        .collect()
}

/// The parametric fit's maps from its planar output `[F | MTT | delay | …]` (`n` voxels each,
/// as `models::residue_fit::fit_cpu` returns): CBF from F, MTT and Tmax the fitted residue's
/// own (the exponential residue peaks at its start, so Tmax is the bolus delay).
pub fn from_parametric(fits: &[f32], n: usize, kh_over_rho: f64) -> FlowMaps {
    let mut m = FlowMaps {
        cbf: vec![0.0; n],
        mtt: vec![f32::NAN; n],
        tmax: vec![f32::NAN; n],
    };
    for v in 0..n {
        let flow = fits[v] as f64;
        if flow.is_nan() {
            m.cbf[v] = f32::NAN;
        } else if flow > 0.0 {
            m.cbf[v] = cbf_of(flow, kh_over_rho) as f32;
            m.mtt[v] = fits[n + v];
            m.tmax[v] = fits[2 * n + v];
        }
    }
    m
}

/// An SVD-family deconvolution's maps from each voxel's residue peak max f (s⁻¹), the time of
/// that peak (s), and its absolute CBV: CBF from the peak, MTT = 60·CBV/CBF (central volume
/// theorem).
pub fn from_residue(
    peak: &[f32],
    peak_time_s: impl Fn(usize) -> f64,
    cbv_absolute: &[f32],
    kh_over_rho: f64,
) -> FlowMaps {
    let n = peak.len();
    let mut m = FlowMaps {
        cbf: vec![0.0; n],
        mtt: vec![f32::NAN; n],
        tmax: vec![f32::NAN; n],
    };
    for v in 0..n {
        let p = peak[v] as f64;
        if p.is_nan() {
            m.cbf[v] = f32::NAN;
        } else if p > 0.0 {
            m.cbf[v] = cbf_of(p, kh_over_rho) as f32;
            m.mtt[v] = (60.0 * cbv_absolute[v] as f64 / m.cbf[v] as f64) as f32;
            m.tmax[v] = peak_time_s(v) as f32;
        }
    }
    m
}

/// The residue-domain leakage correction of CBV (Bjørnerud et al., JCBFM 2011): the area
/// of the corrected curve ΔR2* + K2·G, CBV + K2·∫G over the CBV window, with `g_area` = ∫G
/// (G(t) = ∫₀ᵗ Ca, `models::residue_fit`'s cumulative AIF). NaN where K2 is not finite.
pub fn leakage_corrected_cbv(cbv: &[f32], k2: &[f32], g_area: f64) -> Vec<f32> {
    cbv.iter()
        .zip(k2)
        .map(|(&c, &k)| {
            if k.is_finite() {
                (c as f64 + k as f64 * g_area) as f32
            } else {
                f32::NAN
            }
        })
        .collect()
}

/// The mean over the voxels of planar curves (`[t * n + k]`, `nt` frames), finite values
/// summed and divided by all `n` (the mean tissue curve of the AIF plot).
pub fn mean_tissue_curve(curves: &[f32], n: usize, nt: usize) -> Vec<f64> {
    use rayon::prelude::*;
    // One frame per task, each summed in voxel order as before: the same values.
    (0..nt)
        .into_par_iter()
        .map(|t| {
            curves[t * n..(t + 1) * n]
                .iter()
                .filter(|x| x.is_finite())
                .map(|&x| x as f64)
                .sum::<f64>()
                / n as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CBV 2 + K2 0.01 × ∫G 50 = 2.5; K2 −0.02 → 1; a NaN K2 leaves no value.
    #[test]
    fn the_residue_domain_correction_adds_k2_times_the_cumulative_aifs_area() {
        let got = leakage_corrected_cbv(&[2.0, 2.0, 2.0], &[0.01, -0.02, f32::NAN], 50.0);
        assert!(
            (got[0] - 2.5).abs() < 1e-6 && (got[1] - 1.0).abs() < 1e-6,
            "{got:?}"
        );
        assert!(got[2].is_nan());
    }

    /// Two voxels, two frames; a NaN counts as 0 over all voxels.
    #[test]
    fn the_mean_tissue_curve_skips_non_finite_values() {
        let got = mean_tissue_curve(&[1.0, 3.0, f32::NAN, 4.0], 2, 2);
        assert_eq!(got, vec![2.0, 2.0]);
    }

    const SCALE: f64 = 0.73 / 1.04;

    /// A voxel of grey matter by hand: F = 0.01 s⁻¹ → 0.7019·6000·0.01 = 42.12 ml/100 g/min;
    /// ∫C/∫Ca = 0.05 → CBV 3.51 ml/100 g; MTT = 60·3.51/42.12 = 5 s (= CBV/F·… as the
    /// residue's area over its peak: 0.05/0.01 s).
    #[test]
    fn a_voxel_worked_by_hand() {
        assert!((cbf_of(0.01, SCALE) - 42.115_384_6).abs() < 1e-6);
        let cbv = absolute_cbv(&[5.0], 100.0, SCALE);
        assert!((cbv[0] as f64 - 3.509_615).abs() < 1e-5);
        let m = from_residue(&[0.01], |_| 2.5, &cbv, SCALE);
        assert!((m.cbf[0] as f64 - 42.115_38).abs() < 1e-4);
        assert!((m.mtt[0] - 5.0).abs() < 1e-5, "{m:?}");
        assert_eq!(m.tmax[0], 2.5);
    }

    #[test]
    fn no_flow_is_zero_cbf_and_a_failed_voxel_is_nan() {
        let m = from_residue(&[0.0, f32::NAN, -0.001], |_| 1.0, &[1.0, 1.0, 1.0], SCALE);
        assert_eq!(m.cbf[0], 0.0);
        assert!(m.cbf[1].is_nan());
        assert_eq!(m.cbf[2], 0.0);
        assert!(m.mtt.iter().chain(&m.tmax).all(|x| x.is_nan()));
    }

    /// The parametric output keeps the fit's own MTT and delay; F ≤ 0 gives no MTT.
    #[test]
    fn parametric_maps_take_the_fitted_residue() {
        // Planar [F | MTT | delay] for 3 voxels.
        let fits = [0.02, 0.0, f32::NAN, 4.0, 9.0, 9.0, 1.5, 9.0, 9.0];
        let m = from_parametric(&fits, 3, SCALE);
        assert!((m.cbf[0] as f64 - 84.230_77).abs() < 1e-4);
        assert_eq!((m.mtt[0], m.tmax[0]), (4.0, 1.5));
        assert_eq!(m.cbf[1], 0.0);
        assert!(m.mtt[1].is_nan() && m.tmax[1].is_nan());
        assert!(m.cbf[2].is_nan() && m.mtt[2].is_nan());
    }
}
