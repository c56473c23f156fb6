//! `paramap dsc`: leakage-corrected, normalised rCBV and first-pass maps from a DSC series.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::error::{Error, Result};
use crate::io::nifti::{self, NiftiFormat};
use crate::models::bolus::BaselineRules;
use crate::models::deconvolution::Method;
use crate::models::normalisation::Statistic;
use crate::models::response::ReadingThresholds;
use crate::pipeline::adc::MaskChoice;
use crate::pipeline::dsc::{
    self, AifChoice, AifFile, DscOptions, DscWriteContext, Integration, Leakage, Reference,
    VofChoice,
};
use crate::pipeline::input::{self, DscInputOptions};
use crate::pipeline::{BackendChoice, Engine};

#[derive(Args)]
#[command(
    after_help = after_help()
)]
pub struct DscArgs {
    /// DSC DICOM folder (searched recursively) or a 4-D NIfTI file
    pub input: PathBuf,
    /// Output folder (created if needed; one that holds anything is refused unless --force;
    /// files appear only when all are written)
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub record: super::RecordArgs,
    /// Series to use when the folder holds several (SeriesNumber or SeriesInstanceUID)
    #[arg(long)]
    pub series: Option<String>,
    /// Echo time with its unit, 30ms or 0.03s; a bare number is ms and must lie within 1–200 ms
    /// (default: from the header or BIDS sidecar)
    #[arg(long, value_name = "TIME", value_parser = super::units::echo_time_ms)]
    pub te: Option<f64>,
    /// Sampling interval with its unit, 1.5s or 1500ms; a bare number is s and must lie within
    /// 0.05–10 s (default: from the acquisition times, or the sidecar's RepetitionTime)
    #[arg(long, value_name = "TIME", value_parser = super::units::interval_s)]
    pub dt: Option<f64>,
    /// Second echo of a dual-echo NIfTI input (its sidecar gives its TE)
    #[arg(long, value_name = "FILE")]
    pub echo2: Option<PathBuf>,
    /// Baseline frames START:END (END excluded, from 0) instead of the automatic detection
    #[arg(long, value_name = "START:END", value_parser = parse_range)]
    pub baseline: Option<(usize, usize)>,
    /// Frames skipped for steady state before the automatic baseline
    #[arg(long, default_value_t = 2)]
    pub skip: usize,
    /// CBV integral: whole (from arrival to the last frame) or first-pass
    #[arg(long, default_value = "whole", value_parser = |s: &str| s.parse::<Integration>())]
    pub integration: Integration,
    /// CBV from a gamma-variate fit of the first pass instead of the trapezoid integral
    #[arg(long)]
    pub gamma_variate: bool,
    /// Leakage correction of CBV: residue (default; in the residue domain, jointly with the
    /// parametric fit, insensitive to the tissue's MTT and arrival; Bjørnerud 2011), bsw
    /// (Boxerman 2006, against the mean non-enhancing curve; as most published cut-offs), leigh
    /// (BSW with an efflux rate k_ep in 1/s, written as kep.nii.gz; Leu 2016; docs/methods.md
    /// §3), or none
    #[arg(long, default_value = "residue", value_parser = |s: &str| s.parse::<Leakage>())]
    pub leakage: Leakage,
    /// Same as --leakage none (corrected maps then equal uncorrected)
    #[arg(long, conflicts_with = "leakage")]
    pub no_leakage_correction: bool,
    /// Brain mask (NIfTI on the same grid) instead of the automatic one
    #[arg(long, value_name = "FILE")]
    pub brain_mask: Option<PathBuf>,
    /// White-matter reference mask (NIfTI on the same grid)
    #[arg(long, value_name = "FILE", conflicts_with = "ref_sphere")]
    pub ref_mask: Option<PathBuf>,
    /// White-matter reference sphere X,Y,Z,R: centre in RAS mm (NIfTI world, as FSLeyes shows), radius in mm; one value, negatives allowed (25,-10,30,6)
    #[arg(long, value_name = "X,Y,Z,R", allow_hyphen_values = true, value_parser = parse_sphere)]
    pub ref_sphere: Option<[f64; 4]>,
    /// Reference statistic: median or mean
    #[arg(long, default_value = "median", value_parser = |s: &str| s.parse::<Statistic>())]
    pub ref_statistic: Statistic,
    /// rcbv_class: rCBV below this supports treatment effect (docs/methods.md §1; as `run`)
    #[arg(
        long,
        alias = "low-threshold",
        default_value_t = 1.5,
        value_name = "RATIO"
    )]
    pub rcbv_low: f64,
    /// rcbv_class: rCBV above this supports progression
    #[arg(
        long,
        alias = "high-threshold",
        default_value_t = 2.0,
        value_name = "RATIO"
    )]
    pub rcbv_high: f64,
    /// Deconvolution for CBF, MTT and Tmax: parametric (default; exponential residue with delay
    /// and leakage, fitted per voxel; Mouridsen 2006), osvd, csvd, ssvd, tikhonov (SVD
    /// family, linear-interpolation matrix; Sourbron 2007), or none
    #[arg(long, default_value = "parametric")]
    pub deconvolution: String,
    /// oSVD's oscillation-index target (Wu 2003)
    #[arg(long, default_value_t = 0.035)]
    pub oi_target: f64,
    /// sSVD/cSVD truncation P (keep σ ≥ P·σmax; default 0.2 sSVD, 0.1 cSVD)
    #[arg(long)]
    pub svd_threshold: Option<f64>,
    /// Arterial input function mask (NIfTI on the same grid) instead of the automatic choice
    #[arg(long, value_name = "FILE")]
    pub aif_mask: Option<PathBuf>,
    /// Arterial input function as a CSV file: a header `time_s,concentration_mM` (or
    /// `time_s,delta_r2star_per_s`, or `time_s,signal`) and one row per time point (s, 0 at
    /// the first frame), interpolated to the frame times
    #[arg(long, value_name = "FILE", conflicts_with = "aif_mask")]
    pub aif_curve: Option<PathBuf>,
    /// Venous output function mask (NIfTI on the same grid, a large vein such as the superior
    /// sagittal sinus): the AIF's area is rescaled to its curve's (partial-volume correction)
    /// instead of the automatic vein
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_vof", "aif_curve"])]
    pub vof_mask: Option<PathBuf>,
    /// Do not rescale the AIF to a venous output function (absolute CBF and CBV then carry the
    /// AIF's partial volume; rCBV and rCBF do not)
    #[arg(long, conflicts_with = "aif_curve")]
    pub no_vof: bool,
    /// TE of a signal AIF curve with its unit, 30ms or 0.03s (a bare number is ms; default: the
    /// series' TE)
    #[arg(long, value_name = "TIME", value_parser = super::units::echo_time_ms)]
    pub aif_te: Option<f64>,
    /// κ of arterial blood, s⁻¹ per mM (ΔR2* = κ·C; OSIPI's DSC reference objects use 7): converts
    /// a ΔR2* or signal AIF curve to concentration
    #[arg(long, default_value_t = 1.0, value_name = "PER_S_PER_MM")]
    pub aif_kappa: f64,
    /// κ of tissue, s⁻¹ per mM (OSIPI's DSC reference objects use 107): the AIF curve is
    /// deconvolved as κ_tissue·C_a; with both κ 1 a ΔR2* curve is used as an image AIF is
    #[arg(long, default_value_t = 1.0, value_name = "PER_S_PER_MM")]
    pub tissue_kappa: f64,
    /// kH, the large-to-small-vessel haematocrit ratio, dimensionless, 0.3–1.5 (CBF and
    /// absolute CBV scale by kH/ρ; 1 with --rho 1 for OSIPI's convention)
    #[arg(long, default_value_t = crate::models::dsc::DEFAULT_KH, value_name = "RATIO", value_parser = super::units::haematocrit_ratio)]
    pub kh: f64,
    /// Brain tissue density ρ in g/ml, 0.5–2 (CBF and absolute CBV are per 100 g of tissue)
    #[arg(long, default_value_t = crate::models::dsc::DEFAULT_RHO, value_name = "G_PER_ML", value_parser = super::units::tissue_density_g_per_ml)]
    pub rho: f64,
    /// Where to compute: auto, gpu, cpu
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<BackendChoice>())]
    pub backend: BackendChoice,
    /// Also write ΔR2*(t) as a 4-D delta_r2star.nii.gz (.nii with --uncompressed)
    #[arg(long)]
    pub save_curves: bool,
    /// GPU threads per workgroup (default: the size `paramap bench --tune` measured fastest on
    /// this adapter, else 64)
    #[arg(long, value_name = "THREADS")]
    pub workgroup_size: Option<u32>,
    /// Write .nii instead of .nii.gz (as dcm2niix -z n): no gzip, so faster to write and read,
    /// about as large as the data
    #[arg(long)]
    pub uncompressed: bool,
    /// Largest GPU chunk, in voxels
    #[arg(long, value_name = "VOXELS")]
    pub chunk_voxels: Option<usize>,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_range(s: &str) -> std::result::Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}': give START:END"))?;
    let a = a
        .trim()
        .parse::<usize>()
        .map_err(|_| format!("'{a}' is not a frame number"))?;
    let b = b
        .trim()
        .parse::<usize>()
        .map_err(|_| format!("'{b}' is not a frame number"))?;
    Ok((a, b))
}

/// `--ref-sphere X,Y,Z,R` as one comma-separated value (a coordinate may be negative): the
/// centre in RAS mm and a positive radius in mm.
fn parse_sphere(s: &str) -> std::result::Result<[f64; 4], String> {
    let usage = "give X,Y,Z,R: the centre in RAS mm and the radius in mm, e.g. 25,-10,30,6";
    let v: Vec<f64> = s
        .split(',')
        .map(|t| t.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("'{s}' is not four numbers: {usage}"))?;
    match v[..] {
        [x, y, z, r] if r > 0.0 => Ok([x, y, z, r]),
        [_, _, _, _] => Err(format!("'{s}': the radius must be positive ({usage})")),
        _ => Err(format!("'{s}' has {} numbers: {usage}", v.len())),
    }
}

fn mask_file(path: &std::path::Path) -> Result<ndarray::Array3<bool>> {
    let (m, _, _) = nifti::read(path)?;
    if m.shape()[0] != 1 {
        return Err(Error::Nifti {
            path: path.to_path_buf(),
            problem: "a mask must be a 3-D image".into(),
        });
    }
    Ok(m.index_axis(ndarray::Axis(0), 0).mapv(|x| x != 0.0))
}

pub fn run(args: DscArgs) -> Result<()> {
    let started = Instant::now();
    let pb = super::spinner("reading input", args.quiet);
    let (input, skipped) = input::load_dsc(
        &args.input,
        &DscInputOptions {
            series: args.series.clone(),
            te_s: args.te.map(|ms| ms / 1000.0),
            dt_s: args.dt,
            echo2: args.echo2.clone(),
            map_voxels: true,
        },
    )?;
    pb.finish_and_clear();
    if let (Some(s), false) = (skipped, args.quiet) {
        eprintln!("{s}");
    }
    let reference = match (&args.ref_mask, &args.ref_sphere) {
        (Some(p), _) => Reference::Mask(mask_file(p)?, p.clone()),
        (None, Some(v)) => Reference::Sphere([v[0], v[1], v[2]], v[3]),
        (None, None) => Reference::Auto,
    };
    let brain_mask = match &args.brain_mask {
        Some(p) => MaskChoice::User(mask_file(p)?, p.clone()),
        None => MaskChoice::Auto,
    };
    let opts = DscOptions {
        baseline: args.baseline,
        baseline_rules: BaselineRules {
            skip: args.skip,
            ..BaselineRules::default()
        },
        integration: args.integration,
        gamma_variate: args.gamma_variate,
        leakage: if args.no_leakage_correction {
            Leakage::None
        } else {
            args.leakage
        },
        brain_mask,
        reference,
        statistic: args.ref_statistic,
        thresholds: {
            let t = ReadingThresholds {
                rcbv_low: args.rcbv_low,
                rcbv_high: args.rcbv_high,
                ..Default::default()
            };
            t.validate()?;
            t
        },
        chunk_voxels: args.chunk_voxels,
        deconvolution: match args.deconvolution.as_str() {
            "none" => None,
            name => Some(
                match (
                    Method::from_name(name).map_err(Error::Invalid)?,
                    args.svd_threshold,
                ) {
                    (Method::Ssvd { .. }, Some(p)) => Method::Ssvd { p },
                    (Method::Csvd { .. }, Some(p)) => Method::Csvd { p },
                    (Method::Osvd { .. }, _) => Method::Osvd {
                        oi_target: args.oi_target,
                    },
                    (m, _) => m,
                },
            ),
        },
        aif: match (&args.aif_mask, &args.aif_curve) {
            (Some(p), _) => AifChoice::Mask(mask_file(p)?, p.clone()),
            (None, Some(p)) => AifChoice::File(AifFile {
                curve: crate::io::aif_curve::read(p)?,
                path: p.clone(),
                te_s: args.aif_te.map_or(
                    match input.echo {
                        crate::models::delta_r2star::Echo::Single { te } => te,
                        crate::models::delta_r2star::Echo::Dual { te1, .. } => te1,
                    },
                    |ms| ms / 1000.0,
                ),
                kappa_artery: args.aif_kappa,
                kappa_tissue: args.tissue_kappa,
            }),
            (None, None) => AifChoice::Auto(Default::default()),
        },
        vof: match (&args.vof_mask, args.no_vof) {
            (Some(p), _) => VofChoice::Mask(mask_file(p)?, p.clone()),
            (None, true) => VofChoice::None,
            (None, false) => VofChoice::Auto,
        },
        kh: args.kh,
        rho: args.rho,
    };
    let (engine, notice) = Engine::select(args.backend)?;
    let engine = engine.with_workgroup_size(args.workgroup_size)?;
    if let (Some(n), false) = (&notice, args.quiet) {
        eprintln!("{n}");
    }
    let pb = super::spinner("computing DSC maps", args.quiet);
    let result = dsc::compute(&input, &opts, &engine)?;
    if !args.quiet {
        for n in &result.notices {
            eprintln!("notice: {n}");
        }
    }
    pb.finish_and_clear();
    let files = dsc::write(
        &result,
        &DscWriteContext {
            input: &input,
            options: &opts,
            requested: args.backend,
            notice,
            started,
            save_curves: args.save_curves,
            format: NiftiFormat::uncompressed(args.uncompressed),
        },
        &args.output,
    )?;
    if !args.quiet {
        let g = &input.echo1.geometry;
        let t = &result.timing;
        let backend = &result.backend;
        println!(
            "{}: {}×{}×{}, {} time points every {:.3} s, {}",
            input.echo1.info.description.as_deref().unwrap_or("series"),
            g.dims[0],
            g.dims[1],
            g.dims[2],
            result.acquisition.n_t,
            input.dt_s,
            match input.echo {
                crate::models::delta_r2star::Echo::Single { te } =>
                    format!("TE {:.1} ms", te * 1000.0),
                crate::models::delta_r2star::Echo::Dual { te1, te2 } =>
                    format!("dual echo, TE {:.1}/{:.1} ms", te1 * 1000.0, te2 * 1000.0),
            }
        );
        println!(
            "baseline frames {}–{}, bolus arrives at frame {} (peak {}, first pass ends {}; frames from 0); brain {} voxels",
            t.baseline_start,
            t.baseline_end.saturating_sub(1),
            t.arrival,
            t.peak,
            t.first_pass_end,
            result.brain_record.voxels
        );
        println!(
            "leakage: {}; white-matter reference: {} voxels, CBV integral {:.4} s⁻¹·s{}; {}",
            match (&result.leakage, result.leakage_model) {
                (Some(l), _) => format!("BSW from {} non-enhancing voxels", l.voxels),
                (None, Leakage::Residue) =>
                    "residue domain (parametric fit, K2 relative to the AIF)".into(),
                (None, _) => "not corrected".into(),
            },
            result.reference_corrected.voxels,
            result.reference_corrected.value,
            if result.leakage_model == Leakage::None {
                ""
            } else {
                " (corrected)"
            },
            backend
        );
        if let Some(p) = &result.perfusion {
            println!(
                "perfusion: {}, AIF {}; white-matter CBF median {:.1} ml/100g/min, MTT {:.2} s (kH {}, ρ {})",
                p.method,
                if p.aif.voxels.is_empty() {
                    p.aif.rule.clone()
                } else {
                    format!("from {} voxels", p.aif.voxels.len())
                },
                crate::pipeline::median_in(&p.cbf, &result.reference_mask),
                crate::pipeline::median_in(&p.mtt, &result.reference_mask),
                p.kh,
                p.rho
            );
            match (&p.absolute_notice, &p.vof) {
                (Some(n), _) => println!("notice: {n}"),
                (None, Some((v, scale))) => println!(
                    "partial volume: the AIF's area rescaled ×{scale:.2} to a venous output function of {} voxels{}",
                    v.voxels.len(),
                    match v.vof_scale.as_ref().filter(|m| !m.filled_frames.is_empty()) {
                        Some(m) => format!(" ({} frames at the noise floor taken from its transit fit)", m.filled_frames.len()),
                        None => String::new(),
                    }
                ),
                _ => {}
            }
        }
        println!(
            "wrote {} files to {} in {:.2} s",
            files.len(),
            args.output.display(),
            started.elapsed().as_secs_f64()
        );
    }
    // The maps and the mapped series are let go on another thread, alongside what is left to
    // do (removing an earlier output with --force, the process's exit); where no thread can
    // be started, the closure is dropped and they go here.
    let _ = std::thread::Builder::new().spawn(move || drop((result, input)));
    Ok(())
}

/// The outputs, listed from the registry of maps, then the examples.
fn after_help() -> String {
    format!(
        "Outputs (in OUTDIR), as .nii.gz (.nii with --uncompressed); names and units from the registry of maps (docs/methods.md §6):\n{}Also aif.csv, aif.png (with deconvolution); curves.csv (whole-brain and reference curves); dsc.json (every choice: baseline frames, reference rules and voxel counts, leakage model, normalisation, backend, timings, units).\nFrames count from 0. Outside the brain mask maps are 0; voxels that cannot be computed (non-positive signal) are NaN.\n\nExamples:\n  paramap dsc sample_data/dsc_phantom/dicom -o out/dsc\n  paramap dsc /data/DICOM --series 9 -o out/dsc --ref-sphere 25,-10,30,6\n  paramap dsc dsc.nii.gz -o out/dsc --te 30ms --dt 1.5s --ref-mask nawm.nii.gz\n  paramap dsc /data/DICOM -o out/dsc --baseline 3:12 --integration first-pass --gamma-variate",
        crate::maps::help_list(crate::maps::DSC_MAPS)
    )
}
