//! ADC from a diffusion series: shells → trace-weighted images → mask → per-voxel fit on the
//! chosen engine (of every volume with its own b for `ols`/`wls`, of the trace-weighted images
//! for `trace-*` and `two-point`) → maps on the series' grid, written atomically with a JSON
//! record.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array3, Axis};
use serde::Serialize;

use super::{BackendSummary, Engine, VERSIONS};
use crate::error::{Error, Result};
use crate::gpu::adc::AdcKernel;
use crate::io::nifti::{self, NiftiFormat};
use crate::io::{fsl, output::OutputDir};
use crate::maps::{unit_table, Map, ADC_MAPS};
use crate::models::adc::{fit_voxel_with, AdcMaps, AdcModel, FitMethod};
use crate::models::trace_weighted::{
    group_shells, trace_weighted, trace_weighted_slice, Shell, ShellRules,
};
use crate::volume::{Diffusion, Series4, SeriesInfo};

pub use super::mask::{MaskChoice, MaskRecord};

#[derive(Debug, Clone)]
pub struct AdcOptions {
    pub method: FitMethod,
    pub shells: ShellRules,
    pub mask: MaskChoice,
    /// Largest GPU chunk in voxels (None: as large as the adapter allows).
    pub chunk_voxels: Option<usize>,
    /// The images to write, a subset of [`ADC_MAPS`] (default: all of them). Without
    /// [`Map::Trace`], an `ols`/`wls` fit makes only the lowest shell's trace-weighted image
    /// (the mask is drawn on it); the fit-quality map is computed whether written or not (a
    /// voxel whose residual overflows is invalid in every map).
    pub maps: Vec<Map>,
}

/// `--maps`: the stems of [`ADC_MAPS`] (`adc`, `s0`, `fit_nrmse`, `mask`, `trace`), in any
/// order, repeats ignored; the result is in the registry's order. An unknown or empty list is
/// refused naming the stems there are.
pub fn parse_maps(list: &str) -> std::result::Result<Vec<Map>, String> {
    let stems = || {
        ADC_MAPS
            .iter()
            .map(|m| m.stem())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut chosen = vec![];
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let word = word
            .strip_suffix(".nii.gz")
            .or_else(|| word.strip_suffix(".nii"))
            .unwrap_or(word);
        match ADC_MAPS.iter().find(|m| m.stem() == word) {
            Some(m) => chosen.push(*m),
            None => return Err(format!("unknown ADC map '{word}': use some of {}", stems())),
        }
    }
    if chosen.is_empty() {
        return Err(format!("no map named: use some of {}", stems()));
    }
    Ok(ADC_MAPS
        .iter()
        .copied()
        .filter(|m| chosen.contains(m))
        .collect())
}

impl Default for AdcOptions {
    fn default() -> Self {
        AdcOptions {
            method: FitMethod::Ols,
            shells: ShellRules::default(),
            mask: MaskChoice::Auto,
            chunk_voxels: None,
            maps: ADC_MAPS.to_vec(),
        }
    }
}

/// The maps on the series' grid (`[z, y, x]`). Outside the mask: 0. Inside, where a voxel
/// cannot be fitted (non-positive signal): NaN.
pub struct AdcResult {
    pub adc: Array3<f32>,
    pub s0: Array3<f32>,
    /// The fit-quality map; left 0 by the CPU when [`Map::AdcFitNrmse`] is not among `maps`.
    pub nrmse: Array3<f32>,
    pub mask: Array3<bool>,
    /// The trace-weighted image of each shell (`[shell, z, y, x]`); of the lowest shell only
    /// (the mask's) when [`Map::Trace`] is not among `maps` and the fit is `ols`/`wls`.
    pub trace: ndarray::Array4<f32>,
    pub shells: Vec<Shell>,
    /// The images to write ([`AdcOptions::maps`]).
    pub maps: Vec<Map>,
    pub mask_record: MaskRecord,
    pub model: AdcModel,
    pub shell_rules: ShellRules,
    pub backend: BackendSummary,
    /// Shells, trace-weighted images, mask and gathering the voxels (s). On the CPU: shells,
    /// the lowest-b trace-weighted image and the mask (the other trace-weighted images are
    /// made in the fit's pass over each slice).
    pub prepare_seconds: f64,
    /// The fit on the chosen engine (s); on the CPU with the other trace-weighted images.
    pub fit_seconds: f64,
    pub invalid_voxels: usize,
}

/// The diffusion encoding of every volume, or the error that says none was found.
pub fn encodings(series: &Series4) -> Result<Vec<Diffusion>> {
    let label = || series.info.label();
    let found: Vec<Option<Diffusion>> = series.volumes.iter().map(|v| v.diffusion).collect();
    if found.iter().all(|d| d.is_none()) {
        return Err(Error::NoBValues { series: label() });
    }
    found
        .iter()
        .enumerate()
        .map(|(i, d)| {
            d.ok_or_else(|| {
                Error::series(
                    label(),
                    format!(
                        "volume {} has no b-value while others do; give all b-values with --bval",
                        i + 1
                    ),
                )
            })
        })
        .collect()
}

/// Computes the ADC maps of a series.
pub fn compute(series: &Series4, opts: &AdcOptions, engine: &Engine) -> Result<AdcResult> {
    let prepare = Instant::now();
    let diffusion = encodings(series)?;
    let shells = group_shells(&diffusion, &opts.shells);
    // The points of the fit: every volume of a shell (isotropic ones that were dropped stay
    // out) with its own b, in series order, as MRtrix3 dwi2adc; or one trace-weighted image
    // per shell at the shell's mean b.
    let volumes: Vec<usize> = if opts.method.per_volume() {
        let mut v: Vec<usize> = shells.iter().flat_map(|s| s.volumes.clone()).collect();
        v.sort_unstable();
        v
    } else {
        vec![]
    };
    let bvalues: Vec<f64> = if opts.method.per_volume() {
        volumes.iter().map(|&v| diffusion[v].b).collect()
    } else {
        shells.iter().map(|s| s.b).collect()
    };
    let model = AdcModel::new(bvalues, opts.method).map_err(|e| {
        Error::series(
            series.info.label(),
            format!(
                "{e} (b-values found: {:?})",
                diffusion.iter().map(|d| d.b).collect::<Vec<_>>()
            ),
        )
    })?;
    // The trace-weighted images made: all when written or fitted, else the lowest (the mask).
    let n_trace = if opts.method.per_volume() && !opts.maps.contains(&Map::Trace) {
        1
    } else {
        shells.len()
    };
    let fitted = match engine {
        Engine::Gpu(ctx) => compute_gpu(
            series,
            opts,
            ctx,
            (&shells, n_trace),
            &model,
            &volumes,
            prepare,
        )?,
        _ => compute_cpu(series, opts, (&shells, n_trace), &model, &volumes, prepare)?,
    };
    Ok(AdcResult {
        adc: fitted.adc,
        s0: fitted.s0,
        nrmse: fitted.nrmse,
        mask: fitted.mask,
        trace: fitted.trace,
        shells,
        maps: opts.maps.clone(),
        mask_record: fitted.mask_record,
        model,
        shell_rules: opts.shells,
        backend: engine.summary(),
        prepare_seconds: fitted.prepare_seconds,
        fit_seconds: fitted.fit_seconds,
        invalid_voxels: fitted.invalid_voxels,
    })
}

/// What a fit makes: the maps, the mask, the trace-weighted images and the times of
/// [`AdcResult`].
struct Fitted {
    adc: Array3<f32>,
    s0: Array3<f32>,
    nrmse: Array3<f32>,
    mask: Array3<bool>,
    mask_record: MaskRecord,
    trace: ndarray::Array4<f32>,
    prepare_seconds: f64,
    fit_seconds: f64,
    invalid_voxels: usize,
}

/// The CPU: the lowest-b trace-weighted image first (the mask is drawn on it), then one
/// pass per slice that makes the slice's other trace-weighted images and fits its masked
/// voxels straight from the series (no planar copy, no scatter), while the slice is in cache.
/// Each voxel's arithmetic is that of `fit_cpu`, so the maps are the same bits.
fn compute_cpu(
    series: &Series4,
    opts: &AdcOptions,
    (shells, n_trace): (&[Shell], usize),
    model: &AdcModel,
    volumes: &[usize],
    prepare: Instant,
) -> Result<Fitted> {
    use rayon::prelude::*;
    let (_, nz, ny, nx) = series.data.dim();
    let plane = ny * nx;
    let data = series.data.as_standard_layout();
    let all = data.as_slice().expect("standard layout is contiguous");
    let mut trace = ndarray::Array4::<f32>::zeros((n_trace, nz, ny, nx));
    crate::io::huge_pages::advise(trace.as_slice_mut().expect("fresh arrays are contiguous"));
    {
        let flat = trace.as_slice_mut().expect("fresh arrays are contiguous");
        flat[..nz * plane]
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(z, dst)| trace_weighted_slice(all, nz, &shells[0], z, dst));
    }
    let (mask, mask_record) = super::mask::resolve(
        &opts.mask,
        trace.index_axis(Axis(0), 0),
        "the lowest-b trace-weighted image",
        "mask",
    )?;
    let prepare_seconds = prepare.elapsed().as_secs_f64();

    let start = Instant::now();
    let mask_std = mask.as_standard_layout();
    let mask_flat = mask_std.as_slice().expect("standard layout is contiguous");
    let mut adc = Array3::<f32>::zeros((nz, ny, nx));
    let mut s0 = Array3::<f32>::zeros((nz, ny, nx));
    let mut nrmse = Array3::<f32>::zeros((nz, ny, nx));
    for map in [&mut adc, &mut s0, &mut nrmse] {
        crate::io::huge_pages::advise(map.as_slice_mut().expect("fresh arrays are contiguous"));
    }
    // Per slice: the lowest shell's plane (read), the other shells' planes (written here).
    let (first, rest) = trace
        .as_slice_mut()
        .expect("fresh arrays are contiguous")
        .split_at_mut(nz * plane);
    let mut others: Vec<Vec<&mut [f32]>> = (0..nz).map(|_| vec![]).collect();
    for shell_img in rest.chunks_mut(nz * plane) {
        for (z, p) in shell_img.chunks_mut(plane).enumerate() {
            others[z].push(p);
        }
    }
    let per_volume = opts.method.per_volume();
    // The fit-quality map only when written (ADC, S0 and validity are the same bits).
    let quality = opts.maps.contains(&Map::AdcFitNrmse);
    let invalid_voxels: usize = others
        .into_par_iter()
        .zip(first.par_chunks(plane))
        .zip(adc.as_slice_mut().unwrap().par_chunks_mut(plane))
        .zip(s0.as_slice_mut().unwrap().par_chunks_mut(plane))
        .zip(nrmse.as_slice_mut().unwrap().par_chunks_mut(plane))
        .enumerate()
        .map(|(z, ((((mut others, lowest), adc), s0), nrmse))| {
            for (k, dst) in others.iter_mut().enumerate() {
                trace_weighted_slice(all, nz, &shells[k + 1], z, dst);
            }
            let points: Vec<&[f32]> = if per_volume {
                volumes
                    .iter()
                    .map(|&v| &all[(v * nz + z) * plane..][..plane])
                    .collect()
            } else {
                std::iter::once(lowest)
                    .chain(others.iter().map(|p| &**p))
                    .collect()
            };
            let mask = &mask_flat[z * plane..][..plane];
            let mut invalid = 0;
            for p in 0..plane {
                if !mask[p] {
                    continue;
                }
                let fit = fit_voxel_with(model, |i| points[i][p] as f64, quality);
                (adc[p], s0[p]) = (fit.adc as f32, fit.s0 as f32);
                if quality {
                    nrmse[p] = fit.nrmse as f32;
                }
                invalid += adc[p].is_nan() as usize;
            }
            invalid
        })
        .sum();
    let fit_seconds = start.elapsed().as_secs_f64();
    drop(mask_std);
    Ok(Fitted {
        adc,
        s0,
        nrmse,
        mask,
        mask_record,
        trace,
        prepare_seconds,
        fit_seconds,
        invalid_voxels,
    })
}

/// The GPU: every trace-weighted image, the mask, the masked voxels gathered into the planar
/// layout the kernel reads, the fit, and the maps scattered back onto the grid.
fn compute_gpu(
    series: &Series4,
    opts: &AdcOptions,
    ctx: &crate::gpu::GpuContext,
    (shells, n_trace): (&[Shell], usize),
    model: &AdcModel,
    volumes: &[usize],
    prepare: Instant,
) -> Result<Fitted> {
    let trace = trace_weighted(series.data.view(), &shells[..n_trace]);
    // Shells come lowest b first: the mask is drawn on the b = 0 (or lowest-b) image.
    let lowest = trace.index_axis(Axis(0), 0);
    let (mask, mask_record) = super::mask::resolve(
        &opts.mask,
        lowest,
        "the lowest-b trace-weighted image",
        "mask",
    )?;

    // Gather the masked voxels into the planar layout the kernel reads.
    let flat_mask = super::mask::indices(&mask);
    let n = flat_mask.len();
    let mut signals = vec![0f32; model.n_b() * n];
    let mut gather = |point: usize, image: ndarray::ArrayView3<f32>| {
        let image = image.as_standard_layout();
        let flat = image.as_slice().expect("standard layout is contiguous");
        for (k, &i) in flat_mask.iter().enumerate() {
            signals[point * n + k] = flat[i];
        }
    };
    if opts.method.per_volume() {
        for (point, &v) in volumes.iter().enumerate() {
            gather(point, series.data.index_axis(Axis(0), v));
        }
    } else {
        for (point, shell_img) in trace.axis_iter(Axis(0)).enumerate() {
            gather(point, shell_img);
        }
    }

    let prepare_seconds = prepare.elapsed().as_secs_f64();
    let start = Instant::now();
    let maps: AdcMaps = AdcKernel::new(ctx).fit(ctx, model, &signals, n, opts.chunk_voxels)?;
    let fit_seconds = start.elapsed().as_secs_f64();

    let scatter = |values: &[f32]| {
        let mut out = Array3::<f32>::zeros(mask.dim());
        let flat = out.as_slice_mut().expect("fresh arrays are contiguous");
        for (k, &i) in flat_mask.iter().enumerate() {
            flat[i] = values[k];
        }
        out
    };
    let invalid_voxels = maps.adc.iter().filter(|x| x.is_nan()).count();
    Ok(Fitted {
        adc: scatter(&maps.adc),
        s0: scatter(&maps.s0),
        nrmse: scatter(&maps.nrmse),
        mask,
        mask_record,
        trace,
        prepare_seconds,
        fit_seconds,
        invalid_voxels,
    })
}

/// The JSON record written beside the maps.
#[derive(Debug, Serialize)]
pub struct AdcRecord<'a> {
    pub command: &'static str,
    pub versions: super::Versions,
    pub input: &'a SeriesInfo,
    pub geometry: super::GeometryRecord,
    pub volumes_b_s_per_mm2: Vec<f64>,
    pub model: &'static str,
    pub fit_method: FitMethod,
    /// What the points of the fit were (volumes with their own b, or trace-weighted images).
    pub fit_points: &'static str,
    /// The b-value of each point of the fit, in the order fitted (s/mm²).
    pub fit_b_s_per_mm2: &'a [f64],
    pub wls_weights: &'static str,
    pub shell_rules: ShellRules,
    pub shells: &'a [Shell],
    pub trace_weighting: &'static str,
    pub mask: &'a MaskRecord,
    pub backend_requested: super::BackendChoice,
    pub backend: &'a BackendSummary,
    pub backend_notice: Option<String>,
    /// Stem → unit of every image written (from the registry of maps).
    pub units: std::collections::BTreeMap<&'static str, &'static str>,
    pub outside_mask_value: f32,
    pub invalid_voxels_nan: usize,
    pub timing_s: Timing,
    pub outputs: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Timing {
    /// Reading and ordering the input.
    pub ingest: f64,
    /// Shells, trace-weighted images, mask, gathering the voxels (on the CPU: shells, the
    /// lowest-b trace-weighted image, mask).
    pub prepare: f64,
    /// The fit (on the CPU with the other trace-weighted images, slice by slice).
    pub fit: f64,
    /// Writing the images (in parallel).
    pub write_images: f64,
    /// Start of the process to the record.
    pub total: f64,
}

/// What `write` needs besides the result.
pub struct WriteContext<'a> {
    pub series: &'a Series4,
    pub requested: super::BackendChoice,
    pub notice: Option<String>,
    pub ingest_seconds: f64,
    pub started: Instant,
    /// Also write the input series as dwi.nii(.gz)/.bval/.bvec (dcm2niix-compatible).
    pub save_input: bool,
    /// `.nii.gz` (default) or `.nii` images.
    pub format: NiftiFormat,
}

/// Writes the maps, images and record into `out` atomically; returns the files written.
pub fn write(result: &AdcResult, ctx: &WriteContext, out: &Path) -> Result<Vec<PathBuf>> {
    let g = &ctx.series.geometry;
    let writing = Instant::now();
    let mut dir = OutputDir::create(out)?;
    // The images are written (and compressed) in parallel: with gzip, writing is most of a
    // run's time.
    let f = ctx.format;
    // Names and descriptions from the registry of maps; only the chosen maps are staged.
    let jobs: Vec<(PathBuf, String, Map)> = result
        .maps
        .iter()
        .map(|&m| (dir.path(&f.file(m.stem())), m.nifti_description(), m))
        .collect();
    {
        use rayon::prelude::*;
        jobs.par_iter()
            .map(|(path, description, m)| match m {
                Map::AdcS0 => nifti::write_map(path, &result.s0, g, description),
                Map::AdcFitNrmse => nifti::write_map(path, &result.nrmse, g, description),
                Map::AdcMask => nifti::write_mask(path, &result.mask, g, description),
                Map::Trace => nifti::write_series(path, &result.trace, g, description, None),
                Map::Adc => nifti::write_map(path, &result.adc, g, description),
                other => Err(Error::Invalid(format!("{other:?} is not an ADC map"))),
            })
            .collect::<Result<Vec<()>>>()?;
    }
    let write_images = writing.elapsed().as_secs_f64();
    let with_trace = result.maps.contains(&Map::Trace);
    if with_trace {
        let trace_b: Vec<String> = result.shells.iter().map(|s| fsl::format_g(s.b)).collect();
        dir.write_text("trace.bval", &(trace_b.join(" ") + "\n"))?;
    }
    let diffusion = encodings(ctx.series)?;
    if ctx.save_input {
        let tr = ctx.series.info.repetition_time_s;
        nifti::write_series(
            &dir.path(&f.file("dwi")),
            &ctx.series.data,
            g,
            "paramap input DWI",
            tr,
        )?;
        let (bval, bvec) = fsl::bval_bvec_text(&diffusion, g);
        dir.write_text("dwi.bval", &bval)?;
        dir.write_text("dwi.bvec", &bvec)?;
    }
    let mut outputs: Vec<String> = result.maps.iter().map(|m| f.file(m.stem())).collect();
    if with_trace {
        outputs.push("trace.bval".into());
    }
    if ctx.save_input {
        outputs.extend([f.file("dwi"), "dwi.bval".into(), "dwi.bvec".into()]);
    }
    outputs.push("adc.json".into());
    let record = AdcRecord {
        command: "adc",
        versions: VERSIONS,
        input: &ctx.series.info,
        geometry: super::GeometryRecord::of(g),
        volumes_b_s_per_mm2: diffusion.iter().map(|d| d.b).collect(),
        model: "mono-exponential ln S(b) = ln S0 - b*ADC",
        fit_method: result.model.method,
        fit_points: result.model.method.points(),
        fit_b_s_per_mm2: &result.model.bvalues,
        wls_weights: "wls: w_i = predicted S_i^2 from an OLS pass (as DIPY); trace-wls: w_i = measured S_i^2; both normalised to a largest of 1 (var(ln S) = sigma^2/S^2)",
        shell_rules: result.shell_rules,
        shells: &result.shells,
        trace_weighting: "geometric mean over the directions of each shell; scanner isotropic volumes dropped where directional ones exist",
        mask: &result.mask_record,
        backend_requested: ctx.requested,
        backend: &result.backend,
        backend_notice: ctx.notice.clone(),
        units: unit_table(&result.maps),
        outside_mask_value: 0.0,
        invalid_voxels_nan: result.invalid_voxels,
        timing_s: Timing {
            ingest: ctx.ingest_seconds,
            prepare: result.prepare_seconds,
            fit: result.fit_seconds,
            write_images,
            total: ctx.started.elapsed().as_secs_f64(),
        },
        outputs,
    };
    let json = serde_json::to_string_pretty(&record).map_err(|e| Error::Invalid(e.to_string()))?;
    dir.write_text("adc.json", &json)?;
    dir.commit()
}
