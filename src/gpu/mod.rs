//! GPU plumbing: one wgpu device and queue per process, and the kernels that run on it.
//! This layer knows buffers and dispatches, not DICOM or NIfTI.

pub mod adc;
pub mod dsc;
pub mod kernel;
pub mod tuning;
pub mod wgsl;

use serde::Serialize;

use crate::error::{Error, Result};

/// How to get a GPU where none is found: the one sentence every "no adapter" message carries.
pub const HOW_TO_GET_AN_ADAPTER: &str = "install a Vulkan, Metal or DX12 driver for your GPU, or Mesa's software Vulkan (Debian/Ubuntu: `apt-get install -y mesa-vulkan-drivers libvulkan1`)";

pub use crate::io::tuning::AdapterSummary;

/// The adapter's `wgpu` description in the words outputs and the tuning file record.
pub fn summary_of(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
    }
}

/// What [`GpuContext::auto`] found.
pub enum AutoAdapter {
    /// A hardware GPU, ready to use.
    Hardware(Box<GpuContext>),
    /// Only a software adapter, which `auto` does not use.
    Software(AdapterSummary),
    /// No usable adapter: why.
    Nothing(String),
}

/// Gives the process a private, valid `XDG_RUNTIME_DIR` where it has none (unset, empty,
/// relative, or not an existing folder), before anything starts wgpu.
///
/// Why: the Vulkan loader loads Mesa's drivers, whose window-system code calls libwayland's
/// `wl_display_connect`; without a valid `XDG_RUNTIME_DIR` that prints "error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment." on stderr at every GPU start,
/// which on a service's log reads like one of paramap's own errors (issue #15). paramap draws
/// nothing on screen, so an empty private folder (`$TMPDIR/paramap-runtime-<uid>`, mode 0700,
/// as the XDG Base Directory specification requires) is all the drivers need. A valid
/// `XDG_RUNTIME_DIR` is left as it is. Call it first in `main`, while the process has one
/// thread (setting the environment races with threads reading it).
pub fn ensure_runtime_dir() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let valid = std::env::var_os("XDG_RUNTIME_DIR")
            .map(std::path::PathBuf::from)
            .is_some_and(|p| p.is_absolute() && p.is_dir());
        if valid {
            return;
        }
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let dir = std::env::temp_dir().join(format!("paramap-runtime-{uid}"));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        // Only a folder of this user's that no one else can enter.
        let ours = std::fs::symlink_metadata(&dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0);
        if ours && dir.is_absolute() {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}

/// A device and queue, created once and shared by every kernel (cloning shares them).
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    /// Chunked kernels overlap one chunk's upload and readback with the next chunk's compute
    /// (two buffer sets). Off: one blocking round trip per chunk, each stage waited for, so
    /// the stage clock can time upload, kernel and readback apart (`paramap bench`).
    pub overlap: bool,
    /// Threads per workgroup of every kernel made on this context (the shaders'
    /// `WORKGROUP_SIZE` override): [`DEFAULT_WORKGROUP_SIZE`] unless set by
    /// [`GpuContext::with_workgroup_size`] (`--workgroup-size`, or `paramap bench
    /// --workgroup-sizes` to measure which is fastest on an adapter).
    pub workgroup_size: u32,
    /// Where `workgroup_size` came from.
    pub workgroup_source: WorkgroupSource,
    /// The device has timestamp queries (the adapter offers them; requested at creation).
    pub timestamp_queries: bool,
    /// Time kernels on the GPU's own clock (needs `timestamp_queries`): no wait between
    /// stages, so an overlapped run itself gives the kernel time, at the cost of one read per
    /// kernel run. Off by default; `paramap bench` turns it on.
    pub timestamps: bool,
    /// Every pipeline compiled on this device, by (kernel, workgroup size): compiled once per
    /// process and shared by every clone of the context, so that `run` and `listen` do not
    /// compile the shaders again for each series.
    pipelines: std::sync::Arc<std::sync::Mutex<Vec<kernel::Kernel>>>,
}

impl GpuContext {
    /// The first adapter wgpu offers (high-performance preferred), or an error that says how to
    /// get one.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// A context on every adapter of the primary backends (Vulkan, Metal, DX12), for benchmarks.
    pub fn all() -> Vec<GpuContext> {
        pollster::block_on(async {
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY),
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            let mut out = Vec::new();
            for adapter in instance.enumerate_adapters(wgpu::Backends::all()).await {
                if let Ok(ctx) = Self::from_adapter(adapter).await {
                    out.push(ctx);
                }
            }
            out
        })
    }

    async fn new_async() -> Result<Self> {
        Self::from_adapter(Self::find_adapter().await?).await
    }

    /// What `--backend auto` may use: a hardware adapter's context, or why there is none. A
    /// software adapter (wgpu device type `Cpu`: Mesa's lavapipe and llvmpipe, SwiftShader,
    /// WARP) emulates a GPU on the CPU; paramap's own CPU path is faster than the kernels run
    /// on it (DSC 128×128×25×60: 1.3 s against 10.4 s, issue #15), so `auto` passes it over and
    /// only `--backend gpu` uses it.
    pub fn auto() -> AutoAdapter {
        pollster::block_on(async {
            match Self::find_adapter().await {
                Err(e) => AutoAdapter::Nothing(e.to_string()),
                Ok(a) if a.get_info().device_type == wgpu::DeviceType::Cpu => {
                    AutoAdapter::Software(summary_of(&a.get_info()))
                }
                Ok(a) => match Self::from_adapter(a).await {
                    Ok(ctx) => AutoAdapter::Hardware(Box::new(ctx)),
                    Err(e) => AutoAdapter::Nothing(e.to_string()),
                },
            }
        })
    }

    /// The adapter wgpu prefers (high performance first), trying the backends in tiers.
    async fn find_adapter() -> Result<wgpu::Adapter> {
        // Vulkan, Metal and DX12 first; OpenGL only where none of them has an adapter (its
        // EGL start-up is noisy and its compute support is the weakest). WGPU_BACKEND overrides.
        let tiers = match wgpu::Backends::from_env() {
            Some(b) => vec![b],
            None => vec![wgpu::Backends::PRIMARY, wgpu::Backends::GL],
        };
        let mut last_error = String::from("no backend tried");
        let mut found = None;
        for backends in tiers {
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends,
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            match instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: false,
                    compatible_surface: None,
                    ..Default::default()
                })
                .await
            {
                Ok(a) => {
                    found = Some(a);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        found.ok_or_else(|| {
            Error::Gpu(format!(
                "no GPU adapter found ({last_error}): {HOW_TO_GET_AN_ADAPTER}"
            ))
        })
    }

    async fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("paramap"),
                required_features: if timestamps {
                    wgpu::Features::TIMESTAMP_QUERY
                } else {
                    wgpu::Features::empty()
                },
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::Gpu(format!(
                    "adapter '{}' refused a device ({e}): update its driver, or {HOW_TO_GET_AN_ADAPTER}",
                    info.name
                ))
            })?;
        Ok(GpuContext {
            device,
            queue,
            adapter: summary_of(&info),
            limits,
            overlap: true,
            workgroup_size: DEFAULT_WORKGROUP_SIZE,
            workgroup_source: WorkgroupSource::Default,
            timestamp_queries: timestamps,
            timestamps: false,
            pipelines: Default::default(),
        })
    }

    /// This context with `size` threads per workgroup, or an error naming the adapter's limit.
    pub fn with_workgroup_size(mut self, size: u32) -> Result<Self> {
        let limit = self
            .limits
            .max_compute_invocations_per_workgroup
            .min(self.limits.max_compute_workgroup_size_x);
        if size == 0 || size > limit {
            return Err(Error::Gpu(format!(
                "a workgroup of {size} threads is not possible on '{}': use 1 to {limit} (64 is the default)",
                self.adapter.name
            )));
        }
        self.workgroup_size = size;
        self.workgroup_source = WorkgroupSource::Asked;
        Ok(self)
    }

    /// This context with the workgroup size `paramap bench --tune` measured fastest on this
    /// adapter and driver, if `tuning` (the file [`crate::io::tuning::load`] read, with its
    /// path) has such a measurement. A tuning file that could not be read, or a size this
    /// adapter cannot run, leaves the default and returns a one-line notice that says what to
    /// do.
    pub fn with_tuning(
        self,
        tuning: Option<(
            std::path::PathBuf,
            std::result::Result<tuning::TuningFile, tuning::LoadError>,
        )>,
    ) -> (Self, Option<String>) {
        let Some((path, file)) = tuning else {
            return (self, None);
        };
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                return (
                    self,
                    Some(format!(
                        "notice: ignoring the GPU tuning file: {e}; using {DEFAULT_WORKGROUP_SIZE} threads per workgroup (run `paramap bench --tune` to measure again, or delete the file)"
                    )),
                )
            }
        };
        let Some(tuned) = file.lookup(&self.adapter) else {
            return (self, None);
        };
        let (size, date) = (tuned.workgroup_size, tuned.date.clone());
        match self.clone().with_workgroup_size(size) {
            Ok(mut ctx) => {
                ctx.workgroup_source = WorkgroupSource::Tuned { path, date };
                (ctx, None)
            }
            Err(e) => (
                self,
                Some(format!(
                    "notice: ignoring the tuned workgroup size in {}: {e}; run `paramap bench --tune` again",
                    path.display()
                )),
            ),
        }
    }

    /// How many pipelines have been compiled on this device (each kernel once per workgroup
    /// size).
    pub fn compiled_pipelines(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Largest buffer one storage binding may cover, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Blocks until the queue is idle.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("device poll failed: {e}")))
    }

    /// Copies `bytes` bytes of `buffer` (MAP_READ) back to the host.
    pub fn read_back(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let slice = buffer.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| Error::Gpu(format!("readback never completed: {e}")))?
            .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        let out = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("readback mapping failed: {e}")))?
            .to_vec();
        buffer.unmap();
        Ok(out)
    }
}

/// Wall time and bytes of each GPU stage, summed over every dispatch since the last
/// [`reset_stage_clock`]: what `paramap bench` reports. Upload covers buffer creation and
/// host→device copies; kernel, the compute passes to completion; readback, device→host copies.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageClock {
    pub upload_s: f64,
    pub kernel_s: f64,
    pub readback_s: f64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Kernel time on the GPU's clock (timestamp queries), summed over the dispatches that had
    /// them; `gpu_timed_dispatches` says how many did, and `gpu_untimed_runs` how many kernel
    /// runs could not be timed (too many chunks for one query set, or the read failed), in
    /// which case the sum is not the whole.
    pub gpu_kernel_s: f64,
    pub gpu_timed_dispatches: u64,
    pub gpu_untimed_runs: u64,
}

static STAGE_CLOCK: std::sync::Mutex<StageClock> = std::sync::Mutex::new(StageClock {
    upload_s: 0.0,
    kernel_s: 0.0,
    readback_s: 0.0,
    bytes_up: 0,
    bytes_down: 0,
    gpu_kernel_s: 0.0,
    gpu_timed_dispatches: 0,
    gpu_untimed_runs: 0,
});

pub fn reset_stage_clock() {
    if let Ok(mut c) = STAGE_CLOCK.lock() {
        *c = StageClock::default();
    }
}

pub fn stage_clock() -> StageClock {
    STAGE_CLOCK.lock().map(|c| *c).unwrap_or_default()
}

/// Adds one dispatch's stage times (s) and bytes.
pub fn record_stages(
    upload_s: f64,
    kernel_s: f64,
    readback_s: f64,
    bytes_up: u64,
    bytes_down: u64,
) {
    if let Ok(mut c) = STAGE_CLOCK.lock() {
        c.upload_s += upload_s;
        c.kernel_s += kernel_s;
        c.readback_s += readback_s;
        c.bytes_up += bytes_up;
        c.bytes_down += bytes_down;
    }
}

/// Adds kernel time measured on the GPU's clock over `dispatches` dispatches, or (`None`)
/// a kernel run that asked for timestamps and could not be timed.
pub fn record_gpu_kernel(timed: Option<(f64, u64)>) {
    if let Ok(mut c) = STAGE_CLOCK.lock() {
        match timed {
            Some((seconds, dispatches)) => {
                c.gpu_kernel_s += seconds;
                c.gpu_timed_dispatches += dispatches;
            }
            None => c.gpu_untimed_runs += 1,
        }
    }
}

/// Threads per workgroup where nothing else is asked for: the shaders' `WORKGROUP_SIZE`
/// default, a multiple of every vendor's SIMD width (32 on NVIDIA, 32/64 on AMD, 8–32 on
/// Intel and Apple).
pub const DEFAULT_WORKGROUP_SIZE: u32 = 64;

/// Where a context's workgroup size came from, for the JSON records.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkgroupSource {
    /// [`DEFAULT_WORKGROUP_SIZE`]: nothing measured on this adapter.
    Default,
    /// Measured fastest by `paramap bench --tune`, saved in `path` on `date`.
    Tuned {
        path: std::path::PathBuf,
        date: String,
    },
    /// `--workgroup-size` (or `bench --workgroup-sizes`).
    Asked,
}

impl std::fmt::Display for WorkgroupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkgroupSource::Default => write!(f, "default (not measured on this adapter)"),
            WorkgroupSource::Tuned { path, date } => write!(
                f,
                "measured fastest on this adapter by `paramap bench --tune` ({date}; {})",
                path.display()
            ),
            WorkgroupSource::Asked => write!(f, "--workgroup-size"),
        }
    }
}

/// A 2-D grid of workgroups of `workgroup` threads covering `n` threads within the
/// per-dimension limit, and the number of threads per grid row the shader needs to rebuild the
/// linear index.
pub fn dispatch_grid(n: u32, max_per_dim: u32, workgroup: u32) -> (u32, u32, u32) {
    let groups = n.div_ceil(workgroup).max(1);
    let x = groups.min(max_per_dim);
    let y = groups.div_ceil(x);
    (x, y, x * workgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_grid_covers_every_thread_once() {
        for workgroup in [1u32, 32, 64, 256] {
            for n in [1u32, 63, 64, 65, 10_000, 5_000_000] {
                let (x, y, row) = dispatch_grid(n, 65_535, workgroup);
                assert!(x <= 65_535);
                assert!(x as u64 * y as u64 * workgroup as u64 >= n as u64);
                assert_eq!(row, x * workgroup);
                // the last row is needed
                assert!((y as u64 - 1) * (row as u64) < n as u64);
            }
        }
    }
}
