//! A compute kernel with the binding layout every per-voxel shader here uses: binding 0 a
//! uniform block, bindings 1..=k read-only storage inputs, binding k+1 the read-write output;
//! and, for a kernel made with [`Kernel::with_scratch`], binding k+2 a read-write scratch buffer
//! of a fixed number of floats per voxel, which stays on the device (never read back).

use std::borrow::Cow;

use super::GpuContext;
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    n_inputs: u32,
    label: &'static str,
    /// Threads per workgroup the pipeline was compiled with.
    workgroup_size: u32,
    /// Scratch floats per voxel (binding k+2), or None where the kernel has no scratch binding.
    scratch: Option<usize>,
}

impl Kernel {
    /// The kernel `label` compiled for the context's workgroup size: taken from the context's
    /// pipelines when it was compiled before, else compiled now and kept there.
    pub fn new(
        ctx: &GpuContext,
        label: &'static str,
        source: &str,
        entry: &str,
        n_inputs: u32,
    ) -> Self {
        Self::cached(ctx, label, source, entry, n_inputs, None)
    }

    /// As [`Kernel::new`], for a shader with a read-write scratch buffer at binding
    /// `n_inputs + 2` holding `floats_per_voxel` floats for each voxel of a chunk (planar,
    /// `[floats_per_voxel][chunk]`, as the shader chooses): device memory only, never uploaded
    /// or read back, and its content at the start of a dispatch is undefined.
    pub fn with_scratch(
        ctx: &GpuContext,
        label: &'static str,
        source: &str,
        entry: &str,
        n_inputs: u32,
        floats_per_voxel: usize,
    ) -> Self {
        let mut k = Self::cached(ctx, label, source, entry, n_inputs, Some(floats_per_voxel));
        k.scratch = Some(floats_per_voxel);
        k
    }

    fn cached(
        ctx: &GpuContext,
        label: &'static str,
        source: &str,
        entry: &str,
        n_inputs: u32,
        scratch: Option<usize>,
    ) -> Self {
        let mut compiled = ctx.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = compiled
            .iter()
            .find(|k| k.label == label && k.workgroup_size == ctx.workgroup_size)
        {
            return k.clone();
        }
        let kernel = Self::compile(ctx, label, source, entry, n_inputs, scratch.is_some());
        compiled.push(kernel.clone());
        kernel
    }

    fn compile(
        ctx: &GpuContext,
        label: &'static str,
        source: &str,
        entry: &str,
        n_inputs: u32,
        scratch: bool,
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
        for b in 1..=n_inputs + 1 + scratch as u32 {
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
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[("WORKGROUP_SIZE", ctx.workgroup_size as f64)],
                    ..Default::default()
                },
                cache: None,
            });
        Kernel {
            pipeline,
            layout,
            n_inputs,
            label,
            workgroup_size: ctx.workgroup_size,
            scratch: scratch.then_some(0),
        }
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
    let by_dispatch = d * d * ctx.workgroup_size as u64;
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

/// One set of device buffers for a chunk: reused by every chunk that fits, so a run allocates
/// at most two sets (overlapped) or one (serial), not one per dispatch.
struct Slot {
    uniform: (wgpu::Buffer, u64),
    inputs: Vec<(wgpu::Buffer, u64)>,
    output: (wgpu::Buffer, u64),
    /// The kernel's scratch buffer, where it has one.
    scratch: Option<(wgpu::Buffer, u64)>,
    readback: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// A chunk whose results are on their way back.
struct Pending {
    slot: usize,
    start: usize,
    len: usize,
    out_bytes: u64,
    submission: wgpu::SubmissionIndex,
    mapped: std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

/// Timestamp queries around every chunk's compute pass, read once when the run is done.
struct Timer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    chunks: u32,
}

impl Timer {
    /// A timer for `chunks` passes, where the context has timestamps and the query set can
    /// hold two per pass.
    fn new(ctx: &GpuContext, label: &str, chunks: usize) -> Option<Self> {
        let queries = 2 * chunks;
        if !(ctx.timestamps && ctx.timestamp_queries) || chunks == 0 {
            return None;
        }
        if queries > wgpu::QUERY_SET_MAX_QUERIES as usize {
            super::record_gpu_kernel(None); // not timed: the sum would not be the whole
            return None;
        }
        let bytes = queries as u64 * wgpu::QUERY_SIZE as u64;
        let buffer = |usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(Timer {
            set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some(label),
                ty: wgpu::QueryType::Timestamp,
                count: queries as u32,
            }),
            resolve: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            chunks: chunks as u32,
        })
    }

    fn writes(&self, chunk: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * chunk as u32),
            end_of_pass_write_index: Some(2 * chunk as u32 + 1),
        }
    }

    /// The passes' summed duration on the GPU's clock (s), once every pass has completed.
    fn read(self, ctx: &GpuContext, label: &str) -> Result<f64> {
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        encoder.resolve_query_set(&self.set, 0..2 * self.chunks, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, self.resolve.size());
        ctx.queue.submit(Some(encoder.finish()));
        let bytes = ctx.read_back(&self.readback, self.readback.size())?;
        let ticks: &[u64] = bytemuck::cast_slice(&bytes);
        let period_ns = ctx.queue.get_timestamp_period() as f64;
        Ok(ticks
            .chunks_exact(2)
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period_ns * 1e-9)
            .sum())
    }
}

/// Bytes of a storage input as bound (an empty input binds 4 zero bytes).
fn input_bytes(data: &[f32]) -> &[u8] {
    if data.is_empty() {
        &[0u8; 4]
    } else {
        bytemuck::cast_slice(data)
    }
}

impl Kernel {
    /// Bytes of scratch a chunk of `len` voxels needs (0 without a scratch binding).
    fn scratch_bytes(&self, len: usize) -> u64 {
        (self.scratch.unwrap_or(0) * len).max(1) as u64 * 4
    }

    fn slot(
        &self,
        ctx: &GpuContext,
        params: &[u8],
        inputs: &[&[f32]],
        out_bytes: u64,
        len: usize,
    ) -> Slot {
        let device = &ctx.device;
        let buffer = |size: u64, usage: wgpu::BufferUsages| {
            (
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(self.label),
                    size,
                    usage,
                    mapped_at_creation: false,
                }),
                size,
            )
        };
        let copy = wgpu::BufferUsages::COPY_DST;
        let uniform = buffer(
            (params.len() as u64).next_multiple_of(16).max(16),
            wgpu::BufferUsages::UNIFORM | copy,
        );
        let inputs: Vec<(wgpu::Buffer, u64)> = inputs
            .iter()
            .map(|d| {
                buffer(
                    input_bytes(d).len() as u64,
                    wgpu::BufferUsages::STORAGE | copy,
                )
            })
            .collect();
        let output = buffer(
            out_bytes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let scratch = self
            .scratch
            .map(|_| buffer(self.scratch_bytes(len), wgpu::BufferUsages::STORAGE));
        let readback = buffer(
            out_bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )
        .0;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.0.as_entire_binding(),
        }];
        for (i, b) in inputs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.0.as_entire_binding(),
            });
        }
        entries.push(wgpu::BindGroupEntry {
            binding: self.n_inputs + 1,
            resource: output.0.as_entire_binding(),
        });
        if let Some(b) = &scratch {
            entries.push(wgpu::BindGroupEntry {
                binding: self.n_inputs + 2,
                resource: b.0.as_entire_binding(),
            });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &self.layout,
            entries: &entries,
        });
        Slot {
            uniform,
            inputs,
            output,
            scratch,
            readback,
            bind_group,
        }
    }
}

/// Whether `slot` can take this chunk's uniform block, inputs, output and scratch.
fn fits(slot: &Slot, params: &[u8], inputs: &[&[f32]], out_bytes: u64, scratch: u64) -> bool {
    slot.uniform.1 >= params.len() as u64
        && slot.output.1 >= out_bytes
        && slot.scratch.as_ref().is_none_or(|b| b.1 >= scratch)
        && slot.inputs.len() == inputs.len()
        && slot
            .inputs
            .iter()
            .zip(inputs)
            .all(|(b, d)| b.1 >= input_bytes(d).len() as u64)
}

/// Waits for a pending chunk and scatters its planar `[rows][len]` output into `out`.
fn land(
    ctx: &GpuContext,
    slots: &[Option<Slot>],
    p: Pending,
    rows: usize,
    n: usize,
    out: &mut [f32],
) -> Result<()> {
    ctx.device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(p.submission),
            timeout: None,
        })
        .map_err(|e| Error::Gpu(format!("device poll failed: {e}")))?;
    p.mapped
        .recv()
        .map_err(|e| Error::Gpu(format!("readback never completed: {e}")))?
        .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
    let readback = &slots[p.slot]
        .as_ref()
        .expect("a pending chunk has a slot")
        .readback;
    {
        let range = readback
            .slice(0..p.out_bytes)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("readback mapping failed: {e}")))?;
        let part: &[f32] = bytemuck::cast_slice(&range);
        planar_scatter(&part[..rows * p.len], rows, n, p.start, p.len, out);
    }
    readback.unmap();
    Ok(())
}

/// One storage input of a per-voxel kernel, as [`run_voxels`] binds it for each chunk.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    /// A planar `[rows][n]` array (the curves: `[frame][voxel]`): the chunk's columns,
    /// gathered into `[rows][len]` ([`planar_chunk`]).
    Planar(&'a [f32], usize),
    /// One value per voxel: the chunk's run `[start, start + len)`.
    Voxel(&'a [f32]),
    /// The same for every chunk (a reference curve, a table): bound whole.
    Shared(&'a [f32]),
}

impl<'a> Input<'a> {
    /// Floats this input holds for each voxel of a chunk (0 for a shared one).
    fn per_voxel(&self) -> usize {
        match self {
            Input::Planar(_, rows) => *rows,
            Input::Voxel(_) => 1,
            Input::Shared(_) => 0,
        }
    }

    /// What the chunk `[start, start + len)` of `n` voxels binds.
    fn chunk(&self, n: usize, start: usize, len: usize) -> Cow<'a, [f32]> {
        match *self {
            Input::Planar(data, rows) => Cow::Owned(planar_chunk(data, rows, n, start, len)),
            Input::Voxel(data) => Cow::Borrowed(&data[start..start + len]),
            Input::Shared(data) => Cow::Borrowed(data),
        }
    }
}

/// Runs a per-voxel `kernel` over `n` voxels, writing `rows` outputs per voxel (planar
/// `[rows][n]`): the chunks are as large as the adapter's limits allow for the `inputs`' floats
/// per voxel (or the kernel's scratch, if larger) and `cap` ([`chunk_voxels`]), and
/// `params(len, row_threads)` fills the kernel's uniform block for a chunk of `len` voxels.
/// The upload, dispatch and read-back are [`run_chunked`]'s, which calls
/// `done(len)` as each chunk lands on the host.
#[allow(clippy::too_many_arguments)]
pub fn run_voxels<P: bytemuck::Pod>(
    ctx: &GpuContext,
    kernel: &Kernel,
    n: usize,
    rows: usize,
    cap: Option<usize>,
    inputs: &[Input],
    params: impl Fn(usize, u32) -> P,
    done: &dyn Fn(usize),
) -> Result<Vec<f32>> {
    let floats = inputs.iter().map(Input::per_voxel).sum::<usize>();
    let chunk = chunk_voxels(ctx, floats.max(kernel.scratch.unwrap_or(0)), rows, cap);
    run_chunked(
        ctx,
        kernel,
        n,
        chunk,
        rows,
        |start, len, row_threads| {
            (
                bytemuck::bytes_of(&params(len, row_threads)).to_vec(),
                inputs.iter().map(|i| i.chunk(n, start, len)).collect(),
            )
        },
        done,
    )
}

/// Runs `kernel` over `n` voxels in chunks of at most `chunk`. For each chunk,
/// `prepare(start, len, row_threads)` gives the uniform block and the inputs (per-chunk and
/// shared); the kernel's planar `[rows][len]` output lands in rows `[start, start + len)` of
/// the planar `[rows][n]` result.
///
/// With `ctx.overlap` (the default) two buffer sets alternate: while the device computes
/// chunk i, the host prepares and queues chunk i + 1 and collects chunk i − 1, so transfers
/// and compute overlap and the host never waits on an idle device. Without it, each stage of
/// each chunk is waited for and timed apart (the stage clock). The output is the same either
/// way: every voxel is computed once, by the same kernel, from the same inputs.
///
/// `done(len)` is called as each chunk of `len` voxels lands on the host (the counts add up to
/// `n`): how a progress bar follows a long kernel.
pub fn run_chunked<'a>(
    ctx: &GpuContext,
    kernel: &Kernel,
    n: usize,
    chunk: usize,
    rows: usize,
    mut prepare: impl FnMut(usize, usize, u32) -> (Vec<u8>, Vec<std::borrow::Cow<'a, [f32]>>),
    done: &dyn Fn(usize),
) -> Result<Vec<f32>> {
    let limit = ctx.max_binding_bytes();
    let mut out = vec![0f32; rows * n];
    let n_slots = if ctx.overlap { 2 } else { 1 };
    let mut slots: Vec<Option<Slot>> = (0..n_slots).map(|_| None).collect();
    let mut pending: std::collections::VecDeque<Pending> = Default::default();
    let mut start = 0;
    let mut index = 0;
    let timer = Timer::new(ctx, kernel.label, n.div_ceil(chunk.max(1)));
    while start < n {
        let len = chunk.min(n - start);
        let s = index % n_slots;
        // The slot is free once the chunk that used it has landed.
        if let Some(pos) = pending.iter().position(|p| p.slot == s) {
            for p in pending.drain(..=pos).collect::<Vec<_>>() {
                let len = p.len;
                land(ctx, &slots, p, rows, n, &mut out)?;
                done(len);
            }
        }
        let clock = std::time::Instant::now();
        let (gx, gy, row_threads) = super::dispatch_grid(
            len as u32,
            ctx.limits.max_compute_workgroups_per_dimension,
            kernel.workgroup_size,
        );
        let (params, inputs) = prepare(start, len, row_threads);
        let views: Vec<&[f32]> = inputs.iter().map(|c| c.as_ref()).collect();
        if views.len() != kernel.n_inputs as usize {
            return Err(Error::Gpu(format!(
                "{}: {} inputs given, {} bound",
                kernel.label,
                views.len(),
                kernel.n_inputs
            )));
        }
        if let Some(big) = views.iter().find(|d| input_bytes(d).len() as u64 > limit) {
            return Err(Error::Gpu(format!(
                "{}: an input of {} bytes exceeds the adapter's binding limit",
                kernel.label,
                input_bytes(big).len()
            )));
        }
        let out_bytes = (rows * len).max(1) as u64 * 4;
        if !slots[s]
            .as_ref()
            .is_some_and(|slot| fits(slot, &params, &views, out_bytes, kernel.scratch_bytes(len)))
        {
            slots[s] = Some(kernel.slot(ctx, &params, &views, out_bytes, len));
        }
        let slot = slots[s].as_ref().expect("just made");
        ctx.queue.write_buffer(&slot.uniform.0, 0, &params);
        for (b, d) in slot.inputs.iter().zip(&views) {
            ctx.queue.write_buffer(&b.0, 0, input_bytes(d));
        }
        let bytes_up = (params.len() + views.iter().map(|d| d.len() * 4).sum::<usize>()) as u64;
        let (mut upload_s, mut kernel_s) = (0.0, 0.0);
        if !ctx.overlap {
            ctx.queue.submit(None);
            ctx.wait()?;
            upload_s = clock.elapsed().as_secs_f64();
        }
        let clock = std::time::Instant::now();
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(kernel.label),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(kernel.label),
                timestamp_writes: timer.as_ref().map(|t| t.writes(index)),
            });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &slot.bind_group, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        if !ctx.overlap {
            ctx.queue.submit(Some(encoder.finish()));
            ctx.wait()?;
            kernel_s = clock.elapsed().as_secs_f64();
            encoder = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some(kernel.label),
                });
        }
        let clock = std::time::Instant::now();
        encoder.copy_buffer_to_buffer(&slot.output.0, 0, &slot.readback, 0, out_bytes);
        let submission = ctx.queue.submit(Some(encoder.finish()));
        let (tx, rx) = std::sync::mpsc::channel();
        slot.readback
            .slice(0..out_bytes)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        pending.push_back(Pending {
            slot: s,
            start,
            len,
            out_bytes,
            submission,
            mapped: rx,
        });
        if !ctx.overlap {
            let p = pending.pop_front().expect("just queued");
            land(ctx, &slots, p, rows, n, &mut out)?;
            done(len);
        }
        super::record_stages(
            upload_s,
            kernel_s,
            if ctx.overlap {
                0.0
            } else {
                clock.elapsed().as_secs_f64()
            },
            bytes_up,
            out_bytes,
        );
        start += len;
        index += 1;
    }
    while let Some(p) = pending.pop_front() {
        let len = p.len;
        land(ctx, &slots, p, rows, n, &mut out)?;
        done(len);
    }
    if let Some(t) = timer {
        // The maps are done: a timing that cannot be read is reported as missing, not as a
        // failed computation.
        let chunks = t.chunks as u64;
        super::record_gpu_kernel(t.read(ctx, kernel.label).ok().map(|s| (s, chunks)));
    }
    Ok(out)
}
