//! CBF, MTT and Tmax on the grid (docs/methods.md §4): the per-voxel output of
//! `models::dsc::DscModel::deconvolve` scattered onto the series' grid, rCBF over the
//! white-matter reference's median CBF, the vessel masks, and the notice when absolute values
//! rest on an AIF of unknown scale.

use ndarray::Array3;

use super::acquisition::{mask_of, scatter};
use super::arterial::ArterialCurve;
use super::{AifChoice, Curves, DscOptions, Perfusion};
use crate::models::aif::AifSelection;
use crate::models::deconvolution::Method;
use crate::models::dsc::Flow;
use crate::models::perfusion;

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
