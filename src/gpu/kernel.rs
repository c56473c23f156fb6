//! A compute kernel with the binding layout every per-voxel shader here uses: binding 0 a
//! uniform block, bindings 1..=k read-only storage inputs, binding k+1 the read-write output.

use super::GpuContext;
use crate::error::{Error, Result};

pub struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    n_inputs: u32,
    label: &'static str,
}

impl Kernel {
    pub fn new(
        ctx: &GpuContext,
        label: &'static str,
        source: &str,
        entry: &str,
        n_inputs: u32,
    ) -> Self {
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for b in 1..=n_inputs + 1 {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: b,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: b <= n_inputs,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries: &entries,
            });
        let pipeline_layout = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        Kernel {
            pipeline,
            layout,
            n_inputs,
            label,
        }
    }

    /// One dispatch of `groups` workgroups over `inputs`, returning `out_len` floats.
    pub fn run(
        &self,
        ctx: &GpuContext,
        params: &[u8],
        inputs: &[&[f32]],
        out_len: usize,
        groups: (u32, u32),
    ) -> Result<Vec<f32>> {
        use wgpu::util::DeviceExt;
        if inputs.len() != self.n_inputs as usize {
            return Err(Error::Gpu(format!(
                "{}: {} inputs given, {} bound",
                self.label,
                inputs.len(),
                self.n_inputs
            )));
        }
        let limit = ctx.max_binding_bytes();
        let device = &ctx.device;
        let clock = std::time::Instant::now();
        let bytes_up = (params.len() + inputs.iter().map(|d| d.len() * 4).sum::<usize>()) as u64;
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(self.label),
            contents: params,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut buffers = Vec::with_capacity(inputs.len());
        for data in inputs {
            let bytes: &[u8] = if data.is_empty() {
                &[0u8; 4]
            } else {
                bytemuck::cast_slice(data)
            };
            if bytes.len() as u64 > limit {
                return Err(Error::Gpu(format!(
                    "{}: an input of {} bytes exceeds the adapter's binding limit",
                    self.label,
                    bytes.len()
                )));
            }
            buffers.push(
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(self.label),
                    contents: bytes,
                    usage: wgpu::BufferUsages::STORAGE,
                }),
            );
        }
        let out_bytes = (out_len.max(1) * 4) as u64;
        let output = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(self.label),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(self.label),
            size: out_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        entries.push(wgpu::BindGroupEntry {
            binding: self.n_inputs + 1,
            resource: output.as_entire_binding(),
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &self.layout,
            entries: &entries,
        });
        // Finish the uploads first so the stage clock can tell them from the kernel.
        ctx.queue.submit(None);
        ctx.wait()?;
        let upload_s = clock.elapsed().as_secs_f64();
        let clock = std::time::Instant::now();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some(self.label),
        });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(self.label),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        ctx.queue.submit(Some(encoder.finish()));
        ctx.wait()?;
        let kernel_s = clock.elapsed().as_secs_f64();
        let clock = std::time::Instant::now();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some(self.label),
        });
        encoder.copy_buffer_to_buffer(&output, 0, &readback, 0, out_bytes);
        ctx.queue.submit(Some(encoder.finish()));
        let raw = ctx.read_back(&readback, out_bytes)?;
        super::record_stages(
            upload_s,
            kernel_s,
            clock.elapsed().as_secs_f64(),
            bytes_up,
            out_bytes,
        );
        let mut values: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
        values.truncate(out_len);
        Ok(values)
    }
}

/// Voxels per chunk for a kernel reading `floats_per_voxel` inputs and writing
/// `outputs_per_voxel` per voxel, within the binding and dispatch limits (and `cap`).
pub fn chunk_voxels(
    ctx: &GpuContext,
    floats_per_voxel: usize,
    outputs_per_voxel: usize,
    cap: Option<usize>,
) -> usize {
    let per_voxel = 4 * floats_per_voxel.max(outputs_per_voxel).max(1) as u64;
    let by_binding = ctx.max_binding_bytes() / per_voxel;
    let d = ctx.limits.max_compute_workgroups_per_dimension as u64;
    let by_dispatch = d * d * super::WORKGROUP as u64;
    let limit = by_binding.min(by_dispatch).min(u32::MAX as u64) as usize;
    cap.unwrap_or(limit).clamp(1, limit.max(1))
}

/// Rows `[start, start + len)` of each of the `rows` rows of a planar `[row][n]` array,
/// gathered into a planar `[row][len]` chunk.
pub fn planar_chunk(data: &[f32], rows: usize, n: usize, start: usize, len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * len);
    for r in 0..rows {
        out.extend_from_slice(&data[r * n + start..r * n + start + len]);
    }
    out
}

/// Writes a planar `[row][len]` chunk back into rows `[start, start + len)` of `[row][n]`.
pub fn planar_scatter(
    chunk: &[f32],
    rows: usize,
    n: usize,
    start: usize,
    len: usize,
    into: &mut [f32],
) {
    for r in 0..rows {
        into[r * n + start..r * n + start + len].copy_from_slice(&chunk[r * len..(r + 1) * len]);
    }
}

/// Runs `kernel` over `n` voxels in chunks of at most `chunk`. For each chunk,
/// `prepare(start, len, row_threads)` gives the uniform block and the inputs (per-chunk and
/// shared); the kernel's planar `[rows][len]` output lands in rows `[start, start + len)` of
/// the planar `[rows][n]` result.
pub fn run_chunked<'a>(
    ctx: &GpuContext,
    kernel: &Kernel,
    n: usize,
    chunk: usize,
    rows: usize,
    mut prepare: impl FnMut(usize, usize, u32) -> (Vec<u8>, Vec<std::borrow::Cow<'a, [f32]>>),
) -> Result<Vec<f32>> {
    let mut out = vec![0f32; rows * n];
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let (gx, gy, row_threads) =
            super::dispatch_grid(len as u32, ctx.limits.max_compute_workgroups_per_dimension);
        let (params, inputs) = prepare(start, len, row_threads);
        let views: Vec<&[f32]> = inputs.iter().map(|c| c.as_ref()).collect();
        let part = kernel.run(ctx, &params, &views, rows * len, (gx, gy))?;
        planar_scatter(&part, rows, n, start, len, &mut out);
        start += len;
    }
    Ok(out)
}
