//! Leakage correction of CBV (docs/methods.md §3): the residue-domain correction fitted
//! jointly with the parametric residue (Bjørnerud et al., JCBFM 2011), BSW against the mean
//! curve of non-enhancing tissue (Boxerman et al., AJNR 2006), or BSW with an efflux rate
//! (Leu, Boxerman et al., AJNR 2016); each on the chosen engine, the per-voxel arithmetic in
//! `models::leakage_*`.

use super::deconvolution::fit_residue;
use super::{Curves, Kernels, Leakage};
use crate::error::{Error, Result};
use crate::models::deconvolution::Tissue;
use crate::models::delta_r2star::trapezoid;
use crate::models::leakage_bsw::{self, BswReference};
use crate::models::leakage_leigh::{self, LeighReference};
use crate::models::leakage_residual::{self, LeakageRegressors};
use crate::models::perfusion::leakage_corrected_cbv;
use crate::models::residue_fit::ResidueModel;

/// BSW's reference curve R̄(t), the mean ΔR2* of the non-enhancing `reference_voxels`
/// (BSW and Leigh only; refused when there is none).
pub(super) fn bsw_reference(
    leakage: Leakage,
    reference_voxels: &[usize],
    c: &Curves,
    err: &impl Fn(String) -> Error,
) -> Result<Option<BswReference>> {
    if !matches!(leakage, Leakage::Bsw | Leakage::Leigh) {
        return Ok(None);
    }
    if reference_voxels.is_empty() {
        return Err(err("no non-enhancing reference voxels for the BSW leakage correction (none returns to baseline after the bolus); check the baseline frames, or use --leakage residue or none".into()));
    }
    let rbar = leakage_bsw::reference_curve(c.values, c.n, c.nt, reference_voxels);
    Ok(Some(
        BswReference::new(
            rbar,
            c.dt,
            (c.baseline.0, c.nt),
            c.integration,
            reference_voxels.len(),
        )
        .map_err(err)?,
    ))
}

/// What a leakage correction gives, per brain voxel.
pub(super) struct LeakageFit {
    /// BSW's K1 (BSW and Leigh).
    pub k1: Option<Vec<f32>>,
    /// K2 (s⁻¹), 0 without correction.
    pub k2: Vec<f32>,
    /// The correction's shared regressor: the tissue curve is corrected as ΔR2* +
    /// K2·cumulative (zeros for Leigh, whose curves are corrected per voxel, and for none).
    pub cumulative: Vec<f64>,
    /// Leakage-corrected CBV (∫ΔR2* over the CBV window).
    pub cbv_corrected: Vec<f32>,
    /// The residue-domain correction's parametric fit (`models::residue_fit` layout).
    pub residue_fits: Option<Vec<f32>>,
    /// Leigh: k_ep (s⁻¹) and the corrected curves (each voxel's regressor is its own k_ep's).
    pub leigh: Option<(Vec<f32>, Vec<f32>)>,
    /// The fit's RMS residual over the curve's peak (`models::leakage_residual`), BSW and Leigh.
    pub nrmse: Option<Vec<f32>>,
}

/// Fits the leakage correction `leakage` to every brain voxel: `cbv` the uncorrected CBV,
/// `bsw` the reference for BSW and Leigh, `residue_model` the parametric model for the
/// residue-domain correction.
#[allow(clippy::too_many_arguments)]
pub(super) fn fit(
    leakage: Leakage,
    bsw: Option<&BswReference>,
    residue_model: Option<&ResidueModel>,
    c: &Curves,
    cbv: &[f32],
    kernels: &Kernels,
    chunk: Option<usize>,
    err: &impl Fn(String) -> Error,
) -> Result<LeakageFit> {
    let (n, nt) = (c.n, c.nt);
    let curves = c.values;
    let zeros32 = vec![0f32; n];
    let zeros64 = vec![0f64; nt];
    let residual = |reg: &LeakageRegressors, fits: &[f32], which: &[u32]| match kernels {
        None => Ok(leakage_residual::residual_cpu(
            reg,
            curves,
            &fits[..n],
            &fits[n..2 * n],
            which,
        )),
        Some((ctx, k)) => {
            k.leakage_residual(ctx, reg, curves, &fits[..n], &fits[n..2 * n], which, chunk)
        }
    };
    Ok(match leakage {
        Leakage::Bsw => {
            let r = bsw.expect("made for BSW");
            let fits = match kernels {
                None => leakage_bsw::fit_cpu(r, curves, cbv, n),
                Some((ctx, k)) => k.leakage_bsw(ctx, r, curves, cbv, n, chunk)?,
            };
            let nrmse = residual(&LeakageRegressors::bsw(r), &fits, &vec![0; n])?;
            LeakageFit {
                k1: Some(fits[..n].to_vec()),
                k2: fits[n..2 * n].to_vec(),
                cumulative: r.cumulative.clone(),
                cbv_corrected: fits[2 * n..].to_vec(),
                residue_fits: None,
                leigh: None,
                nrmse: Some(nrmse),
            }
        }
        Leakage::Leigh => {
            let b = bsw.expect("made for Leigh");
            let r = LeighReference::new(b, c.dt, c.integration).map_err(err)?;
            let fits = match kernels {
                None => leakage_leigh::fit_cpu(&r, curves, cbv, n),
                Some((ctx, k)) => k.leakage_leigh(ctx, &r, curves, cbv, n, chunk)?,
            };
            let corrected = leakage_leigh::corrected_curves(&r, curves, &fits, n);
            let which = leakage_residual::leigh_indices(&r, &fits[2 * n..3 * n]);
            let nrmse = residual(&LeakageRegressors::leigh(&r), &fits, &which)?;
            LeakageFit {
                k1: Some(fits[..n].to_vec()),
                k2: fits[n..2 * n].to_vec(),
                cumulative: zeros64,
                cbv_corrected: fits[3 * n..].to_vec(),
                residue_fits: None,
                leigh: Some((fits[2 * n..3 * n].to_vec(), corrected)),
                nrmse: Some(nrmse),
            }
        }
        Leakage::Residue => {
            let m = residue_model.expect("made for the residue-domain correction");
            let fits = fit_residue(
                kernels,
                m,
                &Tissue {
                    curves,
                    k2: &zeros32,
                    cumulative: &zeros64,
                    first: c.baseline.0,
                },
                chunk,
            )?;
            let k2 = fits[3 * n..4 * n].to_vec();
            // CBV + K2·∫G over the CBV window: the area of the corrected curve.
            let (i0, i1) = c.integration;
            let g_area = trapezoid(|t| m.cumulative[t], i0, i1, c.dt);
            LeakageFit {
                k1: None,
                cbv_corrected: leakage_corrected_cbv(cbv, &k2, g_area),
                k2,
                cumulative: m.cumulative.clone(),
                residue_fits: Some(fits),
                leigh: None,
                nrmse: None,
            }
        }
        Leakage::None => LeakageFit {
            k1: None,
            k2: zeros32,
            cumulative: zeros64,
            cbv_corrected: cbv.to_vec(),
            residue_fits: None,
            leigh: None,
            nrmse: None,
        },
    })
}
