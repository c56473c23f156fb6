//! Quantitative models. Nothing here reads or writes files or knows about the GPU: each model
//! is a plain struct of what is fixed for an acquisition plus functions of voxel data.

pub mod adc;
pub mod aif;
pub mod bolus;
pub mod change;
pub mod deconvolution;
pub mod deconvolution_residual;
pub mod delta_r2star;
pub mod dsc;
pub mod gamma_variate;
pub mod leakage_bsw;
pub mod leakage_leigh;
pub mod leakage_residual;
pub mod ln_f64;
pub mod mask;
pub mod normalisation;
pub mod perfusion;
pub mod prelude;
pub mod registration;
pub mod residue_fit;
pub mod response;
pub mod roi;
pub mod trace_weighted;
pub mod vof_scale;

/// Per-voxel results `[voxel][k]` laid out planar `[k][voxel]` in f32, the layout the shaders
/// write.
pub fn planar<const K: usize>(per_voxel: &[[f64; K]]) -> Vec<f32> {
    let n = per_voxel.len();
    let mut out = vec![0f32; K * n];
    for (v, r) in per_voxel.iter().enumerate() {
        for k in 0..K {
            out[k * n + v] = r[k] as f32;
        }
    }
    out
}
