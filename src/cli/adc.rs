//! `paramap adc`: ADC, S0 and fit-quality maps from a DWI series.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::error::{Error, Result};
use crate::io::fsl;
use crate::io::nifti::{self, NiftiFormat};
use crate::models::adc::FitMethod;
use crate::models::trace_weighted::ShellRules;
use crate::pipeline::adc::{self, AdcOptions, MaskChoice, WriteContext};
use crate::pipeline::input::{self, InputOptions};
use crate::pipeline::{BackendChoice, Engine};

#[derive(Args)]
#[command(
    after_help = after_help()
)]
pub struct AdcArgs {
    /// DWI DICOM folder (searched recursively) or a 4-D NIfTI file
    pub input: PathBuf,
    /// Output folder (created if needed; one that holds anything is refused unless --force;
    /// files appear only when all are written)
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub record: super::RecordArgs,
    /// Fit of ln S = ln S0 − b·ADC: ols (default; every volume with its own b, as MRtrix3
    /// dwi2adc), wls (the same points, weights Ŝ² predicted by an OLS pass, as DIPY), trace-ols / trace-wls (one trace-weighted image per
    /// shell at its mean b, as scanners display), two-point (lowest and highest shell)
    #[arg(long, default_value = "ols", value_parser = |s: &str| s.parse::<FitMethod>())]
    pub method: FitMethod,
    /// Where to compute: auto (a hardware GPU if there is one, else the CPU with a notice; a
    /// software adapter such as lavapipe is passed over), gpu (any adapter, software too), cpu
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<BackendChoice>())]
    pub backend: BackendChoice,
    /// Fit only inside this mask (NIfTI on the same grid, non-zero = inside)
    #[arg(long, value_name = "FILE", conflicts_with = "no_mask")]
    pub mask: Option<PathBuf>,
    /// Fit every voxel (no automatic background mask)
    #[arg(long)]
    pub no_mask: bool,
    /// Series to use when the folder holds several (SeriesNumber or SeriesInstanceUID)
    #[arg(long)]
    pub series: Option<String>,
    /// FSL b-values file: overrides the DICOM's, or supplies a NIfTI's when not beside it
    #[arg(long, value_name = "FILE")]
    pub bval: Option<PathBuf>,
    /// FSL gradient directions file (with --bval)
    #[arg(long, value_name = "FILE", requires = "bval")]
    pub bvec: Option<PathBuf>,
    /// b-values at or below this form the b = 0 shell (s/mm²): trace images, mask, trace-*
    /// fits; ols/wls fit each volume with its own b as given
    #[arg(long, default_value_t = 10.0, value_name = "S_PER_MM2")]
    pub b0_threshold: f64,
    /// Also write the input as dwi.nii.gz (.nii with --uncompressed) + dwi.bval/.bvec
    /// (dcm2niix-compatible)
    #[arg(long)]
    pub save_input: bool,
    /// GPU threads per workgroup (default: the size `paramap bench --tune` measured fastest on
    /// this adapter, else 64)
    #[arg(long, value_name = "THREADS")]
    pub workgroup_size: Option<u32>,
    /// Write .nii instead of .nii.gz (as dcm2niix -z n): no gzip, so faster to write and read,
    /// about as large as the data
    #[arg(long)]
    pub uncompressed: bool,
    /// Images to write, comma-separated (default: all, adc,s0,fit_nrmse,mask,trace; the list
    /// is under Outputs below). `--maps adc,s0` writes what MRtrix3 dwi2adc writes (its one
    /// 4-D file holds S0 and ADC) and skips the trace-weighted images an ols/wls fit does not
    /// need; adc.json is always written
    #[arg(long, value_name = "LIST", value_parser = |s: &str| adc::parse_maps(s).map(MapList))]
    pub maps: Option<MapList>,
    /// Largest GPU chunk, in voxels (default: what the adapter allows)
    #[arg(long, value_name = "VOXELS")]
    pub chunk_voxels: Option<usize>,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// The parsed `--maps` list ([`adc::parse_maps`]).
#[derive(Debug, Clone)]
pub struct MapList(pub Vec<crate::maps::Map>);

pub fn run(args: AdcArgs) -> Result<()> {
    let (out, record) = (args.output.clone(), args.record.clone());
    super::claimed(&out, &record, "adc.json", || compute(args))
}

fn compute(args: AdcArgs) -> Result<()> {
    let started = Instant::now();
    let say = |s: String| {
        if !args.quiet {
            eprintln!("{s}");
        }
    };
    let pb = super::spinner("reading input", args.quiet);
    let (series, skipped) = input::load_dwi(
        &args.input,
        &InputOptions {
            series: args.series.clone(),
            bval: args.bval.clone(),
            bvec: args.bvec.clone(),
        },
    )?;
    pb.finish_and_clear();
    let ingest_seconds = started.elapsed().as_secs_f64();
    if let Some(s) = skipped {
        say(s);
    }
    let mask = match (&args.mask, args.no_mask) {
        (Some(path), _) => {
            let (m, _, _) = nifti::read(path)?;
            if m.shape()[0] != 1 {
                return Err(Error::Nifti {
                    path: path.clone(),
                    problem: "a mask must be a 3-D image".into(),
                });
            }
            MaskChoice::User(
                m.index_axis(ndarray::Axis(0), 0).mapv(|x| x != 0.0),
                path.clone(),
            )
        }
        (None, true) => MaskChoice::None,
        (None, false) => MaskChoice::Auto,
    };
    let (engine, notice) = Engine::select(args.backend)?;
    let engine = engine.with_workgroup_size(args.workgroup_size)?;
    if let Some(n) = &notice {
        say(n.clone());
    }
    let opts = AdcOptions {
        method: args.method,
        shells: ShellRules {
            b0_threshold: args.b0_threshold,
            ..ShellRules::default()
        },
        mask,
        chunk_voxels: args.chunk_voxels,
        maps: args
            .maps
            .as_ref()
            .map_or_else(|| crate::maps::ADC_MAPS.to_vec(), |m| m.0.clone()),
    };
    let pb = super::spinner("fitting ADC", args.quiet);
    let result = adc::compute(&series, &opts, &engine)?;
    pb.finish_and_clear();
    let files = adc::write(
        &result,
        &WriteContext {
            series: &series,
            requested: args.backend,
            notice,
            ingest_seconds,
            started,
            save_input: args.save_input,
            format: NiftiFormat::uncompressed(args.uncompressed),
        },
        &args.output,
    )?;
    if !args.quiet && !args.record.json {
        let g = &series.geometry;
        let shells: Vec<String> = result
            .shells
            .iter()
            .map(|s| format!("b={} ({} vol)", fsl::format_g(s.b), s.volumes.len()))
            .collect();
        let backend = &result.backend;
        let median = crate::pipeline::median_in(&result.adc, &result.mask);
        println!(
            "{}: {}×{}×{}, {} volumes → shells {}",
            series.info.description.as_deref().unwrap_or("series"),
            g.dims[0],
            g.dims[1],
            g.dims[2],
            series.n_volumes(),
            shells.join(", ")
        );
        println!(
            "ADC ({}, {}): {} voxels in mask, median {:.3}×10⁻³ mm²/s, {} unfittable (NaN); fit {:.3} s, total {:.2} s",
            result.model.method,
            backend,
            result.mask_record.voxels,
            median * 1e3,
            result.invalid_voxels,
            result.fit_seconds,
            started.elapsed().as_secs_f64()
        );
        println!("wrote {} files to {}", files.len(), args.output.display());
    }
    Ok(())
}

/// The outputs, listed from the registry of maps, then the examples.
fn after_help() -> String {
    format!(
        "Outputs (in OUTDIR), as .nii.gz (.nii with --uncompressed); names and units from the registry of maps (docs/methods.md §6):\n{}--maps chooses among them (default: all). Also trace.bval (the b-value of each trace-weighted image, with trace) and adc.json (every choice, the backend, timings, units).\nVoxels outside the mask are 0; voxels inside that cannot be fitted (non-positive signal) are NaN.\n\nExamples:\n  paramap adc sample_data/dwi_phantom/dicom -o out/adc\n  paramap adc /data/DICOM --series 701 -o out/adc --method trace-wls   # as scanners display\n  paramap adc dwi.nii.gz -o out/adc          # reads dwi.bval/dwi.bvec/dwi.json beside it\n  paramap adc dwi.nii.gz -o out/adc --mask brain.nii.gz --backend cpu\n  paramap adc dwi.nii.gz -o out/adc --uncompressed   # adc.nii, s0.nii, … (no gzip)\n  paramap adc dwi.nii.gz -o out/adc --maps adc,s0   # what MRtrix3 dwi2adc writes",
        crate::maps::help_list(crate::maps::ADC_MAPS)
    )
}
