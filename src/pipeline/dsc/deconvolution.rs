//! CBF, MTT and Tmax (docs/methods.md §4): the tissue curves (leakage corrected) deconvolved
//! by the AIF, by the parametric residue fit (`models::residue_fit`) or an SVD-family method
//! (`models::deconvolution`), each on the GPU when the engine is one and the series fits the
//! kernel's limits, else on its f64 CPU twin; the maps from their output in
//! `models::perfusion`.

use ndarray::Array3;

use super::acquisition::{mask_of, scatter};
use super::arterial::ArterialCurve;
use super::{AifChoice, Curves, DscOptions, Kernels, Perfusion};
use crate::error::{Error, Result};
use crate::models::aif::AifSelection;
use crate::models::deconvolution::{
    deconvolve_cpu_with_progress, index_time, Deconvolution, Method, Tissue,
};
use crate::models::delta_r2star::trapezoid;
use crate::models::perfusion::{self, FlowMaps};
use crate::models::residue_fit::{self, ResidueModel};

/// The parametric residue fit of every voxel of `tissue` (planar, `models::residue_fit`'s
/// layout), on the GPU when it holds the series' frames.
pub(super) fn fit_residue(
    kernels: &Kernels,
    m: &ResidueModel,
    tissue: &Tissue,
    chunk: Option<usize>,
) -> Result<Vec<f32>> {
    let bar = crate::progress::bar("parametric fit (voxels)", tissue.voxels() as u64);
    Ok(match kernels {
        Some((ctx, k)) if m.n <= crate::gpu::dsc::MAX_RESIDUE_FIT_T => {
            k.residue_fit_with_progress(ctx, m, tissue, chunk, &|d| bar.inc_by(d))?
        }
        _ => residue_fit::fit_cpu_with_progress(m, tissue, &|d| bar.inc_by(d)),
    })
}

/// A deconvolution's per-voxel output, before it is put on the grid.
pub(super) struct Flow {
    pub maps: FlowMaps,
    /// Absolute CBV (ml/100 g).
    pub cbv: Vec<f32>,
    /// max f (s⁻¹), or the fitted flow F.
    pub residue_peak: Vec<f32>,
    pub fit_nrmse: Option<Vec<f32>>,
}

/// Deconvolves `tissue` by the AIF `ca` with `method`: `cbv_c` the leakage-corrected CBV,
/// `residue_fits` the parametric fit already made by the residue-domain leakage correction
/// (to the uncorrected curves, with its own leakage term), `residue_model` the model.
#[allow(clippy::too_many_arguments)]
pub(super) fn deconvolve(
    method: Method,
    ca: &[f64],
    tissue: &Tissue,
    cbv_c: &[f32],
    residue_fits: Option<Vec<f32>>,
    residue_model: Option<&ResidueModel>,
    c: &Curves,
    opts: &DscOptions,
    kernels: &Kernels,
    err: &impl Fn(String) -> Error,
) -> Result<Flow> {
    let n = c.n;
    let chunk = opts.chunk_voxels;
    let scale = opts.kh / opts.rho;
    let (i0, i1) = c.integration;
    let ca_area = trapezoid(|t| ca[t], i0, i1, c.dt);
    // (kH/ρ)·100·∫C/∫Ca: the same for every deconvolution.
    let cbv_abs = perfusion::absolute_cbv(cbv_c, ca_area, scale);
    let (maps, residue_peak, fit_nrmse) = if method == Method::Parametric {
        // With the residue-domain correction the model was fitted already; otherwise it fits
        // the curves as corrected by the chosen correction.
        let fits = match residue_fits {
            Some(f) => f,
            None => fit_residue(kernels, residue_model.expect("made for it"), tissue, chunk)?,
        };
        (
            perfusion::from_parametric(&fits, n, scale),
            fits[..n].to_vec(),
            Some(fits[4 * n..5 * n].to_vec()),
        )
    } else {
        let d = Deconvolution::new(ca, c.dt, method).map_err(err)?;
        let on_gpu = |k: &Kernels| k.is_some() && d.l <= crate::gpu::dsc::MAX_DECONVOLUTION_L;
        let out = match kernels {
            Some((ctx, k)) if on_gpu(kernels) => k.deconvolution(ctx, &d, tissue, chunk)?,
            _ => {
                let bar = crate::progress::bar("deconvolution (voxels)", n as u64);
                deconvolve_cpu_with_progress(&d, tissue, &|k| bar.inc_by(k))
            }
        };
        let peak_time = |v: usize| index_time(&d, out[n + v] as usize);
        // The fit's residual with the components each voxel used
        // (models::deconvolution_residual), for the reading's quality floor.
        let components = &out[3 * n..4 * n];
        let nrmse = match kernels {
            Some((ctx, k)) if on_gpu(kernels) => {
                k.deconvolution_residual(ctx, &d, tissue, components, chunk)?
            }
            _ => crate::models::deconvolution_residual::residual_cpu(&d, tissue, components),
        };
        (
            perfusion::from_residue(&out[..n], peak_time, &cbv_abs, scale),
            out[..n].to_vec(),
            Some(nrmse),
        )
    };
    Ok(Flow {
        maps,
        cbv: cbv_abs,
        residue_peak,
        fit_nrmse,
    })
}

/// The perfusion maps on the grid: CBF, rCBF over the white-matter reference's median CBF
/// (over its brain voxels with flow, as rCBV's reference is over brain voxels), absolute CBV,
/// MTT, Tmax, the vessel masks, and the notice when absolute values rest on an AIF of
/// unknown scale.
#[allow(clippy::too_many_arguments)]
pub(super) fn maps(
    method: Method,
    flow: Flow,
    aif: AifSelection,
    arterial: ArterialCurve,
    c: &Curves,
    reference_mask: &Array3<bool>,
    brain: &Array3<bool>,
    opts: &DscOptions,
) -> Perfusion {
    let (voxels, shape) = (c.voxels, c.shape);
    let aif_mask = mask_of(&aif.voxels, voxels, shape);
    let tissue_curve = perfusion::mean_tissue_curve(c.values, c.n, c.nt);
    let cbf = scatter(&flow.maps.cbf, voxels, shape);
    let with_flow = Array3::from_shape_fn(shape, |i| {
        reference_mask[i] && brain[i] && cbf[i].is_finite() && cbf[i] > 0.0
    });
    let reference_cbf = crate::pipeline::median_in(&cbf, &with_flow) as f32;
    let rcbf = cbf.mapv(|x| x / reference_cbf);
    let ArterialCurve {
        vof, vof_notice, ..
    } = arterial;
    let absolute_notice = match (&opts.aif, &vof) {
        (AifChoice::Curve(..) | AifChoice::File(..), _) | (_, Some(_)) => None,
        _ => Some(format!("absolute CBF and CBV assume the AIF voxels hold whole blood; arterial voxels usually hold less (partial volume), which makes both too high, and the AIF was not rescaled to a venous output function ({}): read rCBV and rCBF, give a vein with --vof-mask, or give the AIF as a curve", vof_notice.as_deref().unwrap_or("none"))),
    };
    let vof_mask = vof
        .as_ref()
        .map(|(sel, _)| mask_of(&sel.voxels, voxels, shape));
    Perfusion {
        method,
        cbf,
        rcbf,
        absolute_notice,
        cbv: scatter(&flow.cbv, voxels, shape),
        mtt: scatter(&flow.maps.mtt, voxels, shape),
        tmax: scatter(&flow.maps.tmax, voxels, shape),
        residue_peak: scatter(&flow.residue_peak, voxels, shape),
        aif_mask,
        aif,
        fit_nrmse: flow.fit_nrmse.map(|x| scatter(&x, voxels, shape)),
        vof,
        vof_mask,
        tissue_curve,
        kh: opts.kh,
        rho: opts.rho,
    }
}
