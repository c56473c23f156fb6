//! Runs `shaders/adc.wgsl` (CPU twin: `models::adc`) through the shared chunked runner
//! (`kernel::run_voxels`): chunks no larger than the adapter's storage-binding limit allows
//! (128 MiB on lavapipe), buffers reused across chunks, transfers overlapped with compute.

use bytemuck::{Pod, Zeroable};

use super::kernel::{chunk_voxels, run_voxels, Input, Kernel};
use super::GpuContext;
use crate::error::{Error, Result};
use crate::models::adc::{AdcMaps, AdcModel};

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Params {
    n_voxels: u32,
    n_b: u32,
    method: u32,
    low: u32,
    high: u32,
    row_threads: u32,
    _pad: [u32; 2],
}

/// The compiled ADC pipeline: binding 1 the b-values, 2 the planar signals, 3 the maps.
pub struct AdcKernel {
    kernel: Kernel,
}

/// Outputs per voxel: ADC, S0, NRMSE.
const MAPS: usize = 3;

impl AdcKernel {
    pub fn new(ctx: &GpuContext) -> Self {
        AdcKernel {
            kernel: Kernel::new(
                ctx,
                "adc",
                &super::wgsl::source(include_str!("../../shaders/adc.wgsl")),
                "fit_adc",
                2,
            ),
        }
    }

    /// The largest number of voxels one chunk may hold on this adapter.
    pub fn max_chunk_voxels(ctx: &GpuContext, n_b: usize) -> usize {
        chunk_voxels(ctx, n_b, MAPS, None)
    }

    /// Fits every voxel of the planar `signals` (`signals[i * n_voxels + v]`, as the CPU twin
    /// takes them). `cap` caps the chunk size below the adapter's own limit (tests
    /// use a tiny one to prove chunking changes nothing).
    pub fn fit(
        &self,
        ctx: &GpuContext,
        model: &AdcModel,
        signals: &[f32],
        n_voxels: usize,
        cap: Option<usize>,
    ) -> Result<AdcMaps> {
        let n_b = model.n_b();
        if signals.len() != n_b * n_voxels {
            return Err(Error::Gpu(format!(
                "ADC input has {} values for {n_b} b-values × {n_voxels} voxels",
                signals.len()
            )));
        }
        let mut maps = AdcMaps::with_len(n_voxels);
        if n_voxels == 0 {
            return Ok(maps);
        }
        let bvalues: Vec<f32> = model.bvalues.iter().map(|&b| b as f32).collect();
        let out = run_voxels(
            ctx,
            &self.kernel,
            n_voxels,
            MAPS,
            cap,
            &[Input::Shared(&bvalues), Input::Planar(signals, n_b)],
            |len, row_threads| Params {
                n_voxels: len as u32,
                n_b: n_b as u32,
                method: model.method.code(),
                low: model.low as u32,
                high: model.high as u32,
                row_threads,
                _pad: [0; 2],
            },
            &|_| {},
        )?;
        maps.adc.copy_from_slice(&out[..n_voxels]);
        maps.s0.copy_from_slice(&out[n_voxels..2 * n_voxels]);
        maps.nrmse.copy_from_slice(&out[2 * n_voxels..]);
        Ok(maps)
    }
}

/// The kernel's uniform block against its Rust twin here (see [`super::wgsl::layout`]).
#[cfg(test)]
mod uniform_block {
    use super::super::wgsl::layout::{assert_same, rust_params};
    use super::*;

    #[test]
    fn adc_params_match_the_wgsl() {
        assert_same(
            "adc",
            include_str!("../../shaders/adc.wgsl"),
            rust_params!(Params {
                n_voxels,
                n_b,
                method,
                low,
                high,
                row_threads,
                _pad
            }),
        );
    }
}
