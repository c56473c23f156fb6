//! `paramap bench`: the ADC and the full DSC pipeline (rCBV with the default leakage correction and deconvolution,
//! and again with BSW leakage and the oSVD deconvolution: `shaders/deconvolution.wgsl` against
//! `models::deconvolution`) on generated phantoms, on the CPU and on every GPU adapter, stage by stage, with a check that
//! the GPU maps agree with the CPU's.

use std::time::Instant;

use serde::Serialize;

use super::adc::{self, AdcOptions};
use super::dsc::{self, DscInput, DscOptions};
use super::input::{load_dsc, load_dwi, DscInputOptions, InputOptions};
use super::synth::{write_dsc_phantom, write_dwi_phantom, SynthDscOptions, SynthDwiOptions};
use super::Engine;
use crate::error::{Error, Result};
use crate::gpu::{reset_stage_clock, stage_clock, GpuContext};
use crate::io::dicom::write::Flavour;
use crate::synth::dsc::DscPhantomSpec;
use crate::synth::dwi::DwiPhantomSpec;

/// Phantom sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Clinical,
    Large,
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "small" => Ok(Size::Small),
            "clinical" => Ok(Size::Clinical),
            "large" => Ok(Size::Large),
            o => Err(format!("unknown size '{o}': use small, clinical or large")),
        }
    }
}

impl Size {
    /// (grid, DWI b = 0 volumes, DWI shells of 3 directions): 7 volumes for small and clinical,
    /// 17 for large.
    fn layout(self) -> ([usize; 3], usize, Vec<f64>) {
        match self {
            Size::Small => ([64, 64, 20], 1, vec![500.0, 1000.0]),
            Size::Clinical => ([128, 128, 25], 1, vec![500.0, 1000.0]),
            Size::Large => ([256, 256, 30], 2, vec![250.0, 500.0, 750.0, 1000.0, 1500.0]),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub size: Size,
    pub pipeline: &'static str,
    pub backend: String,
    /// GPU only: the adapter (for `bench --tune`; the JSON has it in `backend`).
    #[serde(skip)]
    pub adapter: Option<crate::gpu::AdapterSummary>,
    /// GPU only: threads per workgroup of every kernel.
    pub workgroup_size: Option<u32>,
    pub voxels: usize,
    pub volumes: usize,
    /// Reading and ordering the DICOM series (the same for every backend).
    pub ingest_s: f64,
    pub upload_s: f64,
    pub kernels_s: f64,
    /// GPU only, where the adapter has timestamp queries: the kernels' time on the GPU's own
    /// clock during the overlapped run (no waits between stages).
    pub kernels_gpu_clock_s: Option<f64>,
    pub readback_s: f64,
    /// Everything else: CPU work (the whole computation on the CPU backend).
    pub cpu_s: f64,
    /// The computation, ingest excluded (GPU: chunks overlapped, as `adc`/`dsc` run them).
    pub compute_s: f64,
    /// GPU only: the same computation with every stage of every chunk waited for, which is
    /// how the upload/kernels/readback/cpu columns are timed apart.
    pub serial_s: Option<f64>,
    pub voxels_per_s: f64,
    /// Input and output bytes of the kernels ÷ kernel time (GPU: on the GPU's clock where the
    /// adapter has timestamp queries, else the stage-by-stage host time), or input bytes ÷
    /// compute time (CPU).
    pub effective_gb_per_s: f64,
    /// GPU against CPU: "reference" for the CPU row, else the share of voxels that agree.
    pub agreement: String,
}

fn share(agree: usize, total: usize) -> String {
    format!(
        "{:.3}% of {total} voxels",
        100.0 * agree as f64 / total.max(1) as f64
    )
}

/// Voxels of `gpu` within `rel` of `cpu` (against max(|cpu|, floor)), NaN where NaN.
fn agreement(cpu: &[f32], gpu: &[f32], rel: f32, floor: f32) -> (usize, usize) {
    let mut agree = 0;
    for (&c, &g) in cpu.iter().zip(gpu) {
        let ok = if c.is_nan() || g.is_nan() {
            c.is_nan() && g.is_nan()
        } else {
            (g - c).abs() <= rel * c.abs().max(floor)
        };
        agree += ok as usize;
    }
    (agree, cpu.len())
}

/// What is timed, on which data.
struct Job {
    size: Size,
    pipeline: &'static str,
    voxels: usize,
    volumes: usize,
    ingest_s: f64,
    in_bytes: f64,
    agreement_prefix: &'static str,
}

/// Runs `compute` on the CPU (the reference) and on each GPU, with the stage clock, and gives
/// a row for each; `compare(cpu, gpu)` counts the voxels that agree.
fn on_every_engine<R>(
    job: Job,
    gpus: &[GpuContext],
    done: &mut usize,
    steps: usize,
    progress: &mut impl FnMut(usize, usize, &str),
    compute: impl Fn(&Engine) -> Result<R>,
    compare: impl Fn(&R, &R) -> (usize, usize),
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    let mut reference: Option<R> = None;
    for ctx in std::iter::once(None).chain(gpus.iter().map(Some)) {
        let name = ctx.map_or("CPU".to_string(), |c| c.adapter.name.clone());
        progress(
            *done,
            steps,
            &format!("{} {:?} on {name}", job.pipeline, job.size),
        );
        // A GPU runs twice: stage by stage (each waited for, so the stages can be timed
        // apart), then overlapped (the real time, and the maps compared with the CPU's).
        let staged = match ctx {
            None => None,
            Some(c) => {
                let mut serial = c.clone();
                serial.overlap = false;
                reset_stage_clock();
                let clock = Instant::now();
                compute(&Engine::Gpu(Box::new(serial)))?;
                Some((clock.elapsed().as_secs_f64(), stage_clock()))
            }
        };
        // The real run, with the kernels timed on the GPU's clock where it can.
        let engine = match ctx {
            None => Engine::Cpu,
            Some(c) => {
                let mut timed = c.clone();
                timed.timestamps = timed.timestamp_queries;
                Engine::Gpu(Box::new(timed))
            }
        };
        reset_stage_clock();
        let clock = Instant::now();
        let result = compute(&engine)?;
        let compute_s = clock.elapsed().as_secs_f64();
        let timed = stage_clock();
        let kernels_gpu_clock_s = (timed.gpu_timed_dispatches > 0 && timed.gpu_untimed_runs == 0)
            .then_some(timed.gpu_kernel_s);
        let (serial_s, st) = match staged {
            Some((t, st)) => (Some(t), st),
            None => (None, Default::default()),
        };
        let gpu_s = st.upload_s + st.kernel_s + st.readback_s;
        let agreement = match &reference {
            None => "reference".to_string(),
            Some(cpu) => {
                let (a, t) = compare(cpu, &result);
                format!("{}{}", job.agreement_prefix, share(a, t))
            }
        };
        rows.push(BenchRow {
            size: job.size,
            pipeline: job.pipeline,
            backend: ctx.map_or("cpu (f64)".to_string(), |c| {
                format!(
                    "{} ({}, {})",
                    c.adapter.name, c.adapter.backend, c.adapter.driver_info
                )
            }),
            adapter: ctx.map(|c| c.adapter.clone()),
            workgroup_size: ctx.map(|c| c.workgroup_size),
            voxels: job.voxels,
            volumes: job.volumes,
            ingest_s: job.ingest_s,
            upload_s: st.upload_s,
            kernels_s: st.kernel_s,
            kernels_gpu_clock_s,
            readback_s: st.readback_s,
            cpu_s: serial_s.unwrap_or(compute_s) - gpu_s,
            compute_s,
            serial_s,
            voxels_per_s: job.voxels as f64 / compute_s,
            effective_gb_per_s: if ctx.is_some() {
                let kernels = kernels_gpu_clock_s.unwrap_or(st.kernel_s);
                (st.bytes_up + st.bytes_down) as f64 / kernels.max(1e-9) / 1e9
            } else {
                job.in_bytes / compute_s / 1e9
            },
            agreement,
        });
        if reference.is_none() {
            reference = Some(result);
        }
        *done += 1;
    }
    Ok(rows)
}

/// Runs the benchmark for `sizes`; `progress(done, total, what)` is called between steps.
pub fn run(
    sizes: &[Size],
    gpus: &[GpuContext],
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    let steps = sizes.len() * 3 * (1 + gpus.len());
    let mut done = 0;
    let tmp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    for &size in sizes {
        let (dims, b0_volumes, bvalues) = size.layout();
        let voxels = dims.iter().product::<usize>();

        // ADC: written as DICOM, read back (ingest), then fitted on each engine.
        let dwi_dir = tmp.path().join(format!("dwi_{dims:?}"));
        let spec = DwiPhantomSpec {
            dims,
            bvalues,
            b0_volumes,
            snr: Some(50.0),
            ..Default::default()
        };
        write_dwi_phantom(
            &spec,
            &SynthDwiOptions {
                flavour: Flavour::Standard,
                enhanced: false,
                shuffle: false,
                mosaic: false,
            },
            &dwi_dir,
        )?;
        let clock = Instant::now();
        let (series, _) = load_dwi(&dwi_dir.join("dicom"), &InputOptions::default())?;
        let ingest_s = clock.elapsed().as_secs_f64();
        let in_bytes = (series.data.len() * 4) as f64;
        rows.extend(on_every_engine(
            Job {
                size,
                pipeline: "adc",
                voxels,
                volumes: series.n_volumes(),
                ingest_s,
                in_bytes,
                agreement_prefix: "",
            },
            gpus,
            &mut done,
            steps,
            &mut progress,
            |engine| adc::compute(&series, &AdcOptions::default(), engine),
            |c, r| {
                agreement(
                    c.adc.as_slice().unwrap_or(&[]),
                    r.adc.as_slice().unwrap_or(&[]),
                    1e-4,
                    1e-5,
                )
            },
        )?);

        // DSC: rCBV with the default leakage correction and deconvolution (parametric).
        let dsc_dir = tmp.path().join(format!("dsc_{dims:?}"));
        let spec = DscPhantomSpec {
            dims,
            snr: Some(50.0),
            ..Default::default()
        };
        write_dsc_phantom(
            &spec,
            &SynthDscOptions {
                flavour: Flavour::Standard,
                enhanced: false,
                shuffle: false,
            },
            &dsc_dir,
        )?;
        let clock = Instant::now();
        let (input, _): (DscInput, _) =
            load_dsc(&dsc_dir.join("dicom"), &DscInputOptions::default())?;
        let ingest_s = clock.elapsed().as_secs_f64();
        let in_bytes = (input.echo1.data.len() * 4) as f64;
        rows.extend(on_every_engine(
            Job {
                size,
                pipeline: "dsc (rCBV, leakage, parametric)",
                voxels,
                volumes: input.echo1.n_volumes(),
                ingest_s,
                in_bytes,
                agreement_prefix: "rCBV ",
            },
            gpus,
            &mut done,
            steps,
            &mut progress,
            |engine| dsc::compute(&input, &DscOptions::default(), engine),
            |c, r| {
                agreement(
                    c.rcbv.as_slice().unwrap_or(&[]),
                    r.rcbv.as_slice().unwrap_or(&[]),
                    1e-4,
                    0.3,
                )
            },
        )?);

        // The same series with the SVD-family deconvolution (oSVD, Wu et al. 2003) and the BSW
        // correction, as `--leakage bsw --deconvolution osvd`: CBF compared.
        let svd = DscOptions {
            leakage: dsc::Leakage::Bsw,
            deconvolution: Some(crate::models::deconvolution::Method::Osvd { oi_target: 0.035 }),
            ..DscOptions::default()
        };
        rows.extend(on_every_engine(
            Job {
                size,
                pipeline: "dsc (CBF, bsw, osvd)",
                voxels,
                volumes: input.echo1.n_volumes(),
                ingest_s,
                in_bytes,
                agreement_prefix: "CBF ",
            },
            gpus,
            &mut done,
            steps,
            &mut progress,
            |engine| dsc::compute(&input, &svd, engine),
            |c, r| {
                let cbf = |m: &dsc::DscResult| {
                    m.perfusion
                        .as_ref()
                        .and_then(|p| p.cbf.as_slice().map(<[f32]>::to_vec))
                        .unwrap_or_default()
                };
                agreement(&cbf(c), &cbf(r), 1e-4, 5.0)
            },
        )?);
    }
    progress(done, steps, "done");
    Ok(rows)
}

/// The human table.
pub fn table(rows: &[BenchRow]) -> String {
    let mut out = format!(
        "{:<9} {:<24} {:<44} {:>4} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10} {:>7}  {}\n",
        "size",
        "pipeline",
        "backend",
        "wg",
        "voxels",
        "ingest",
        "upload",
        "kernels",
        "gpu-clk",
        "readback",
        "cpu",
        "compute",
        "voxels/s",
        "GB/s",
        "agreement"
    );
    for r in rows {
        let mut backend = r.backend.clone();
        backend.truncate(44);
        out.push_str(&format!(
            "{:<9} {:<24} {:<44} {:>4} {:>9} {:>7.3}s {:>7.3}s {:>7.3}s {:>8} {:>7.3}s {:>7.3}s {:>8.3}s {:>10.3e} {:>7.2}  {}\n",
            format!("{:?}", r.size).to_lowercase(),
            r.pipeline,
            backend,
            r.workgroup_size.map_or("-".to_string(), |n| n.to_string()),
            r.voxels,
            r.ingest_s,
            r.upload_s,
            r.kernels_s,
            r.kernels_gpu_clock_s
                .map_or("-".to_string(), |t| format!("{t:.3}s")),
            r.readback_s,
            r.cpu_s,
            r.compute_s,
            r.voxels_per_s,
            r.effective_gb_per_s,
            r.agreement
        ));
    }
    for line in fastest_workgroups(rows) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Where one adapter ran a pipeline with several workgroup sizes: the size whose kernels took
/// least time, against the others, one line per (size, pipeline, adapter).
pub fn fastest_workgroups(rows: &[BenchRow]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut seen: Vec<(Size, &str, &str)> = Vec::new();
    for r in rows.iter().filter(|r| r.workgroup_size.is_some()) {
        let key = (r.size, r.pipeline, r.backend.as_str());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let mut runs: Vec<&BenchRow> = rows
            .iter()
            .filter(|o| (o.size, o.pipeline, o.backend.as_str()) == key)
            .collect();
        if runs.len() < 2 {
            continue;
        }
        // The GPU's clock where there is one, else the host's with each stage waited for.
        let kernels = |r: &BenchRow| r.kernels_gpu_clock_s.unwrap_or(r.kernels_s);
        runs.sort_by(|a, b| kernels(a).total_cmp(&kernels(b)));
        let others: Vec<String> = runs[1..]
            .iter()
            .map(|o| {
                format!(
                    "{}: {:.4} s",
                    o.workgroup_size.unwrap_or_default(),
                    kernels(o)
                )
            })
            .collect();
        lines.push(format!(
            "fastest workgroup, {} {} on {}: {} threads (kernels {:.4} s; {})",
            format!("{:?}", r.size).to_lowercase(),
            r.pipeline,
            r.backend,
            runs[0].workgroup_size.unwrap_or_default(),
            kernels(runs[0]),
            others.join(", ")
        ));
    }
    lines
}

/// `bench --tune`: the fastest workgroup size of each adapter over every GPU row, summed over
/// pipelines and phantom sizes (see [`crate::gpu::tuning::choose`]).
pub fn tune(rows: &[BenchRow]) -> Vec<crate::gpu::tuning::TunedAdapter> {
    use crate::gpu::tuning::{choose, Timing};
    let timings: Vec<Timing> = rows
        .iter()
        .filter_map(|r| {
            Some(Timing {
                adapter: r.adapter.as_ref()?,
                workgroup_size: r.workgroup_size?,
                kernels_s: r.kernels_s,
                gpu_clock_s: r.kernels_gpu_clock_s,
                job: format!("{} {}", r.pipeline, format!("{:?}", r.size).to_lowercase()),
            })
        })
        .collect();
    let (mut pipelines, mut sizes): (Vec<&str>, Vec<String>) = (Vec::new(), Vec::new());
    for r in rows {
        if !pipelines.contains(&r.pipeline) {
            pipelines.push(r.pipeline);
        }
        let size = format!("{:?}", r.size).to_lowercase();
        if !sizes.contains(&size) {
            sizes.push(size);
        }
    }
    let (da, _) = crate::io::dicom::derived::now_utc();
    let date = format!("{}-{}-{}", &da[..4], &da[4..6], &da[6..]);
    choose(
        &timings,
        &format!("{} on {}", pipelines.join(", "), sizes.join(", ")),
        &date,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(backend: &str, workgroup: Option<u32>, kernels: f64, clock: Option<f64>) -> BenchRow {
        BenchRow {
            size: Size::Small,
            pipeline: "adc",
            backend: backend.into(),
            adapter: None,
            workgroup_size: workgroup,
            voxels: 1,
            volumes: 1,
            ingest_s: 0.0,
            upload_s: 0.0,
            kernels_s: kernels,
            kernels_gpu_clock_s: clock,
            readback_s: 0.0,
            cpu_s: 0.0,
            compute_s: 0.0,
            serial_s: None,
            voxels_per_s: 0.0,
            effective_gb_per_s: 0.0,
            agreement: String::new(),
        }
    }

    #[test]
    fn the_fastest_workgroup_is_named_per_adapter_by_the_gpu_clock_where_there_is_one() {
        let rows = [
            row("cpu (f64)", None, 0.0, None),
            // Adapter A: by the host clock 32 wins, by the GPU clock 128 does.
            row("A", Some(32), 0.010, Some(0.009)),
            row("A", Some(64), 0.020, Some(0.008)),
            row("A", Some(128), 0.030, Some(0.004)),
            // Adapter B has no timestamps: the host clock decides.
            row("B", Some(64), 0.050, None),
            row("B", Some(256), 0.040, None),
            // Adapter C ran one size only: nothing to choose.
            row("C", Some(64), 0.010, None),
        ];
        let lines = fastest_workgroups(&rows);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("on A: 128 threads (kernels 0.0040 s; 64: 0.0080 s, 32: 0.0090 s)"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("on B: 256 threads (kernels 0.0400 s; 64: 0.0500 s)"),
            "{}",
            lines[1]
        );
    }
}
