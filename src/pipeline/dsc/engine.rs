//! The engine of a DSC run's per-voxel steps: `models::dsc::VoxelKernels` on the GPU's WGSL
//! kernels (`gpu::dsc`) when the engine is one, else on the f64 CPU twins
//! (`models::dsc::CpuTwins`). A series beyond a kernel's limits (the parametric fit's frames,
//! the deconvolution's matrix) runs on the twin. The long stages draw their progress bars here.

use crate::error::Result;
use crate::gpu::dsc::{DscKernels, MAX_DECONVOLUTION_L, MAX_RESIDUE_FIT_T};
use crate::gpu::GpuContext;
use crate::models::deconvolution::{deconvolve_cpu_with_progress, Deconvolution, Tissue};
use crate::models::delta_r2star::{DscAcquisition, DscMaps};
use crate::models::dsc::{CpuTwins, VoxelKernels};
use crate::models::gamma_variate::GammaWindow;
use crate::models::leakage_bsw::BswReference;
use crate::models::leakage_leigh::LeighReference;
use crate::models::leakage_residual::LeakageRegressors;
use crate::models::residue_fit::{self, ResidueModel};
use crate::pipeline::Engine;

/// The DSC kernels of an engine: the GPU's (with the largest chunk in voxels, None: as large
/// as the adapter allows), or None for the CPU twins.
pub(super) struct Kernels<'a> {
    gpu: Option<(&'a GpuContext, DscKernels)>,
    chunk: Option<usize>,
}

impl<'a> Kernels<'a> {
    pub fn new(engine: &'a Engine, chunk: Option<usize>) -> Self {
        let gpu = match engine {
            Engine::Gpu(ctx) => Some((ctx.as_ref(), DscKernels::new(ctx))),
            Engine::Cpu => None,
        };
        Kernels { gpu, chunk }
    }
}

impl Kernels<'_> {
    /// [`VoxelKernels::delta_r2star`] taking the signals, which are not needed after: the CPU
    /// twin writes the curves over the first echo's (`compute_cpu_in_place`, no fresh
    /// n_t × n array).
    pub fn delta_r2star_owned(
        &self,
        acq: &DscAcquisition,
        s1: Vec<f32>,
        s2: Vec<f32>,
        n: usize,
    ) -> Result<DscMaps> {
        match &self.gpu {
            Some(_) => self.delta_r2star(acq, &s1, &s2, n),
            None => Ok(crate::models::delta_r2star::compute_cpu_in_place(
                acq, s1, &s2, n,
            )),
        }
    }
}

impl VoxelKernels for Kernels<'_> {
    fn delta_r2star(
        &self,
        acq: &DscAcquisition,
        s1: &[f32],
        s2: &[f32],
        n: usize,
    ) -> Result<DscMaps> {
        match &self.gpu {
            Some((ctx, k)) => k.delta_r2star(ctx, acq, s1, s2, n, self.chunk),
            None => CpuTwins.delta_r2star(acq, s1, s2, n),
        }
    }

    fn leakage_bsw(&self, r: &BswReference, curves: &[f32], cbv: &[f32]) -> Result<Vec<f32>> {
        match &self.gpu {
            Some((ctx, k)) => k.leakage_bsw(ctx, r, curves, cbv, cbv.len(), self.chunk),
            None => CpuTwins.leakage_bsw(r, curves, cbv),
        }
    }

    fn leakage_leigh(&self, r: &LeighReference, curves: &[f32], cbv: &[f32]) -> Result<Vec<f32>> {
        match &self.gpu {
            Some((ctx, k)) => k.leakage_leigh(ctx, r, curves, cbv, cbv.len(), self.chunk),
            None => CpuTwins.leakage_leigh(r, curves, cbv),
        }
    }

    fn leakage_residual(
        &self,
        reg: &LeakageRegressors,
        curves: &[f32],
        k1: &[f32],
        k2: &[f32],
        which: &[u32],
    ) -> Result<Vec<f32>> {
        match &self.gpu {
            Some((ctx, k)) => k.leakage_residual(ctx, reg, curves, k1, k2, which, self.chunk),
            None => CpuTwins.leakage_residual(reg, curves, k1, k2, which),
        }
    }

    fn gamma_variate(
        &self,
        w: &GammaWindow,
        curves: &[f32],
        k2: &[f32],
        cumulative: &[f64],
    ) -> Result<Vec<f32>> {
        match &self.gpu {
            Some((ctx, k)) => k.gamma_variate(ctx, w, curves, k2, cumulative, self.chunk),
            None => CpuTwins.gamma_variate(w, curves, k2, cumulative),
        }
    }

    /// On the GPU when its shader holds the series' frames.
    fn residue_fit(&self, m: &ResidueModel, tissue: &Tissue) -> Result<Vec<f32>> {
        let bar = crate::progress::bar("parametric fit (voxels)", tissue.voxels() as u64);
        Ok(match &self.gpu {
            Some((ctx, k)) if m.n <= MAX_RESIDUE_FIT_T => {
                k.residue_fit_with_progress(ctx, m, tissue, self.chunk, &|d| bar.inc_by(d))?
            }
            _ => residue_fit::fit_cpu_with_progress(m, tissue, &|d| bar.inc_by(d)),
        })
    }

    /// On the GPU when its shader holds the matrix.
    fn deconvolution(&self, d: &Deconvolution, tissue: &Tissue) -> Result<Vec<f32>> {
        match &self.gpu {
            Some((ctx, k)) if d.l <= MAX_DECONVOLUTION_L => {
                k.deconvolution(ctx, d, tissue, self.chunk)
            }
            _ => {
                let bar = crate::progress::bar("deconvolution (voxels)", tissue.voxels() as u64);
                Ok(deconvolve_cpu_with_progress(d, tissue, &|k| bar.inc_by(k)))
            }
        }
    }

    /// On the GPU when its shader holds the matrix.
    fn deconvolution_residual(
        &self,
        d: &Deconvolution,
        tissue: &Tissue,
        components: &[f32],
    ) -> Result<Vec<f32>> {
        match &self.gpu {
            Some((ctx, k)) if d.l <= MAX_DECONVOLUTION_L => {
                k.deconvolution_residual(ctx, d, tissue, components, self.chunk)
            }
            _ => CpuTwins.deconvolution_residual(d, tissue, components),
        }
    }
}
