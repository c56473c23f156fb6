//! A map from input to outputs: load the series, choose where to compute, run the model,
//! write the results. The CLI calls these; they call `io`, `models` and `gpu`.

pub mod adc;
pub mod bench;
pub mod bids;
pub mod compare;
pub mod dsc;
pub mod input;
pub mod mask;
pub mod reading;
pub mod study;
pub mod synth;

use std::str::FromStr;

use serde::Serialize;

use crate::error::Result;
use crate::gpu::{AdapterSummary, AutoAdapter, GpuContext};

/// Where to compute, as asked on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A hardware GPU if there is one, else the CPU with a one-line notice (a software
    /// adapter such as lavapipe is passed over: see [`crate::gpu::GpuContext::auto`]).
    Auto,
    Gpu,
    Cpu,
}

impl BackendChoice {
    /// The name the command line gives it (what [`FromStr`] reads back).
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Gpu => "gpu",
            BackendChoice::Cpu => "cpu",
        }
    }
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "gpu" => Ok(BackendChoice::Gpu),
            "cpu" => Ok(BackendChoice::Cpu),
            o => Err(format!("unknown backend '{o}': use auto, gpu or cpu")),
        }
    }
}

/// The compute engine in use.
pub enum Engine {
    Cpu,
    Gpu(Box<GpuContext>),
}

impl Engine {
    /// Picks the engine; with `Auto` and no hardware adapter (none at all, or only a software
    /// one such as lavapipe, which `--backend gpu` still uses), the CPU and a notice that says
    /// why: the notice goes on screen and into the JSON records (`backend_notice`). A GPU
    /// runs with the workgroup size `paramap bench --tune` measured fastest on it, where there
    /// is one (a notice where the tuning file cannot be used).
    pub fn select(choice: BackendChoice) -> Result<(Engine, Option<String>)> {
        match choice {
            BackendChoice::Cpu => Ok((Engine::Cpu, None)),
            BackendChoice::Gpu => {
                let (ctx, notice) = GpuContext::new()?.with_tuning(crate::io::tuning::load());
                Ok((Engine::Gpu(Box::new(ctx)), notice))
            }
            BackendChoice::Auto => match GpuContext::auto() {
                AutoAdapter::Hardware(ctx) => {
                    let (ctx, notice) = ctx.with_tuning(crate::io::tuning::load());
                    Ok((Engine::Gpu(Box::new(ctx)), notice))
                }
                AutoAdapter::Software(a) => Ok((
                    Engine::Cpu,
                    Some(format!(
                        "notice: --backend auto passed over the software adapter '{}' ({}, device type {}: it runs on the CPU, slower than paramap's own CPU path); computing on {}; `--backend gpu` forces it",
                        a.name,
                        a.backend,
                        a.device_type,
                        Engine::Cpu.summary()
                    )),
                )),
                AutoAdapter::Nothing(e) => Ok((
                    Engine::Cpu,
                    Some(format!("notice: computing on the CPU ({e})")),
                )),
            },
        }
    }

    /// The same engine with `size` threads per GPU workgroup (`--workgroup-size`, over any
    /// tuned size); the CPU engine is unchanged.
    pub fn with_workgroup_size(self, size: Option<u32>) -> Result<Self> {
        match (self, size) {
            (Engine::Gpu(ctx), Some(n)) => Ok(Engine::Gpu(Box::new(ctx.with_workgroup_size(n)?))),
            (engine, _) => Ok(engine),
        }
    }

    pub fn summary(&self) -> BackendSummary {
        match self {
            Engine::Cpu => BackendSummary {
                used: "cpu".into(),
                precision: "f64".into(),
                adapter: None,
                workgroup_size: None,
                workgroup_size_source: None,
                threads: rayon::current_num_threads(),
            },
            Engine::Gpu(ctx) => BackendSummary {
                used: "gpu".into(),
                precision: "f32".into(),
                adapter: Some(ctx.adapter.clone()),
                workgroup_size: Some(ctx.workgroup_size),
                workgroup_size_source: Some(ctx.workgroup_source.to_string()),
                threads: rayon::current_num_threads(),
            },
        }
    }
}

/// What computed a map, for the JSON record.
#[derive(Debug, Clone, Serialize)]
pub struct BackendSummary {
    pub used: String,
    pub precision: String,
    pub adapter: Option<AdapterSummary>,
    /// GPU only: threads per workgroup the kernels ran with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workgroup_size: Option<u32>,
    /// GPU only: where that size came from (default, `paramap bench --tune`, or
    /// `--workgroup-size`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workgroup_size_source: Option<String>,
    /// CPU threads available (ingest and the CPU path use all of them).
    pub threads: usize,
}

impl std::fmt::Display for BackendSummary {
    /// "GPU 'name' (backend)" or "CPU (n threads, f64)", for the summary lines.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.adapter {
            Some(a) => write!(f, "GPU '{}' ({})", a.name, a.backend),
            None => write!(f, "CPU ({} threads, f64)", self.threads),
        }
    }
}

/// The grid of a series' maps as every record (`adc.json`, `dsc.json`) gives it: dimensions,
/// voxel size (mm), the RAS affine (mm, as NIfTI's sform) and the row order.
#[derive(Debug, Serialize)]
pub struct GeometryRecord {
    pub dims_xyz: [usize; 3],
    pub voxel_size_mm: [f64; 3],
    pub affine_ras: [[f64; 4]; 4],
    pub storage: &'static str,
}

impl GeometryRecord {
    pub fn of(g: &crate::volume::Geometry) -> Self {
        GeometryRecord {
            dims_xyz: g.dims,
            voxel_size_mm: g.voxel_size(),
            affine_ras: g.affine_ras(),
            storage: "rows stored bottom-up as dcm2niix writes them",
        }
    }
}

/// Versions recorded in every output.
#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    pub paramap: &'static str,
    pub wgpu: &'static str,
    pub dicom_rs: &'static str,
    pub nifti: &'static str,
}

pub const VERSIONS: Versions = Versions {
    paramap: env!("CARGO_PKG_VERSION"),
    wgpu: "30",
    dicom_rs: "0.10",
    nifti: "0.18",
};

/// Median of the finite values of `map` inside `mask` (NaN when there are none): the
/// one-number summaries the commands print.
pub fn median_in(map: &ndarray::Array3<f32>, mask: &ndarray::Array3<bool>) -> f64 {
    let mut v: Vec<f32> = map
        .iter()
        .zip(mask.iter())
        .filter(|(x, &m)| m && x.is_finite())
        .map(|(x, _)| *x)
        .collect();
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f32::total_cmp).1 as f64
}
