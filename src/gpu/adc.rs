//! Runs `shaders/adc.wgsl` (CPU twin: `models::adc`). Voxels are processed in chunks no larger
//! than the adapter's storage-binding limit allows (128 MiB on lavapipe); the buffers are made
//! once for the largest chunk and reused.

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use super::{dispatch_grid, GpuContext};
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

/// The compiled ADC pipeline.
pub struct AdcKernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// Outputs per voxel: ADC, S0, NRMSE.
const MAPS: u64 = 3;

impl AdcKernel {
    pub fn new(ctx: &GpuContext) -> Self {
        let module = ctx
            .device
            .create_shader_module(wgpu::include_wgsl!("../../shaders/adc.wgsl"));
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        };
        let storage = |read_only| wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        };
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("adc"),
                entries: &[
                    entry(
                        0,
                        wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Uniform,
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                    ),
                    entry(1, storage(true)),
                    entry(2, storage(true)),
                    entry(3, storage(false)),
                ],
            });
        let pipeline_layout = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("adc"),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("adc"),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some("fit_adc"),
                compilation_options: Default::default(),
                cache: None,
            });
        AdcKernel { pipeline, layout }
    }

    /// The largest number of voxels one chunk may hold on this adapter.
    pub fn max_chunk_voxels(ctx: &GpuContext, n_b: usize) -> usize {
        let per_voxel = 4 * (n_b as u64).max(MAPS);
        let by_binding = ctx.max_binding_bytes() / per_voxel;
        let by_dispatch = ctx.limits.max_compute_workgroups_per_dimension as u64
            * ctx.limits.max_compute_workgroups_per_dimension as u64
            * super::WORKGROUP as u64;
        by_binding.min(by_dispatch).min(u32::MAX as u64) as usize
    }

    /// Fits every voxel of the planar `signals` (`signals[i * n_voxels + v]`, as the CPU twin
    /// takes them). `chunk_voxels` caps the chunk size below the adapter's own limit (tests
    /// use a tiny one to prove chunking changes nothing).
    pub fn fit(
        &self,
        ctx: &GpuContext,
        model: &AdcModel,
        signals: &[f32],
        n_voxels: usize,
        chunk_voxels: Option<usize>,
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
        let limit = Self::max_chunk_voxels(ctx, n_b);
        let chunk = chunk_voxels.unwrap_or(limit).clamp(1, limit).min(n_voxels);
        let device = &ctx.device;

        let bvalues: Vec<f32> = model.bvalues.iter().map(|&b| b as f32).collect();
        let b_buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("adc b-values"),
            contents: bytemuck::cast_slice(&bvalues),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let params_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("adc params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let in_bytes = (n_b * chunk * 4) as u64;
        let out_bytes = MAPS * chunk as u64 * 4;
        let input = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("adc signals"),
            size: in_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let output = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("adc maps"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("adc readback"),
            size: out_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("adc"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params_buffer.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: b_buffer.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: input.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: output.as_entire_binding(),
                },
            ],
        });

        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        let mut start = 0;
        while start < n_voxels {
            let len = chunk.min(n_voxels - start);
            let (gx, gy, row_threads) = dispatch_grid(len as u32, max_dim);
            let params = Params {
                n_voxels: len as u32,
                n_b: n_b as u32,
                method: model.method.code(),
                low: model.low as u32,
                high: model.high as u32,
                row_threads,
                _pad: [0; 2],
            };
            let clock = std::time::Instant::now();
            ctx.queue
                .write_buffer(&params_buffer, 0, bytemuck::bytes_of(&params));
            // The chunk is planar too: b-row i of this chunk goes at offset i * len.
            for i in 0..n_b {
                let row = &signals[i * n_voxels + start..i * n_voxels + start + len];
                ctx.queue
                    .write_buffer(&input, (i * len * 4) as u64, bytemuck::cast_slice(row));
            }
            ctx.queue.submit(None);
            ctx.wait()?;
            let upload_s = clock.elapsed().as_secs_f64();
            let clock = std::time::Instant::now();
            let mut encoder = device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("adc") });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("adc"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(gx, gy, 1);
            }
            ctx.queue.submit(Some(encoder.finish()));
            ctx.wait()?;
            let kernel_s = clock.elapsed().as_secs_f64();
            let clock = std::time::Instant::now();
            let bytes = MAPS * len as u64 * 4;
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("adc readback"),
            });
            encoder.copy_buffer_to_buffer(&output, 0, &readback, 0, bytes);
            ctx.queue.submit(Some(encoder.finish()));
            let raw = ctx.read_back(&readback, bytes)?;
            super::record_stages(
                upload_s,
                kernel_s,
                clock.elapsed().as_secs_f64(),
                (n_b * len * 4) as u64,
                bytes,
            );
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
            maps.adc[start..start + len].copy_from_slice(&values[..len]);
            maps.s0[start..start + len].copy_from_slice(&values[len..2 * len]);
            maps.nrmse[start..start + len].copy_from_slice(&values[2 * len..3 * len]);
            start += len;
        }
        Ok(maps)
    }
}
