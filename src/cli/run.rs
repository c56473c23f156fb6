//! `paramap run`: a whole study folder in; every DWI and DSC series found is processed with the
//! defaults; one results folder per series, `run.json`, and a summary of what was done and what
//! was skipped and why.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::error::{Error, Result};
use crate::io::dicom::derived::{self, Encoding};
use crate::io::nifti::NiftiFormat;
use crate::net::{Destination, Retry};
use crate::pipeline::study::{self, RunOptions, Status};
use crate::pipeline::BackendChoice;
use crate::report::ReadingThresholds;

#[derive(Args)]
#[command(
    after_help = "Recognition (applied to each series, in order):\n  1. ImageType DERIVED with a map word (ADC, FA, CBV, …): a derived map, skipped (Siemens TRACEW is kept)\n  2. any b > 0 and at least two distinct b-values: DWI → ADC\n  3. no diffusion encoding, ≥ 20 timed images per slice, TE ≥ 15 ms, description not naming fMRI (BOLD…): DSC → rCBV (leakage-corrected in the residue domain), K2, CBF/MTT/Tmax (parametric fit)\n  4. anything else: skipped, with the rule that excluded it\n\nOutputs (in OUTDIR): one folder per processed series (sNNN_dwi_<description>/, sNNN_dsc_<description>/) holding what `paramap adc` / `paramap dsc` write (NIfTI maps, .nii.gz or .nii with --uncompressed, and the JSON record), dicom/<map>/ (each map a derived series in the source study), preview/<map>.png (montage, colour bar with units); response/ for a study with DSC and DWI (response.nii.gz: per voxel 1 treatment-effect-like = rCBV < --rcbv-low and ADC > --adc-high, 3 progression-like = rCBV > --rcbv-high, 2 indeterminate, 0 outside; adc.nii.gz resampled to the DSC grid; response.json naming the classes; dicom/response/; support for a reader, not a diagnosis); report_<StudyDate>_<accession or UID>.html (one self-contained page per study: key numbers first (per --roi: rCBV, ADC, fractional tumour burden, response classes, the reading of docs/methods.md §1; white-matter reference; AIF), the response map with its legend, the maps with ROI/reference/AIF outlined, methods, records); run.json (every series, its status and reason, every output, every delivery).\n\nExit status: 0 when every DWI/DSC series was processed (and sent, with --send/--stowrs; skipped series don't count); 1 when a series failed, nothing could be processed, or the input can't be read; 2 when OUTDIR holds anything and --force was not given; 3 when the maps were written but not every file was delivered (they stay on disk; run.json says which); 130 after Ctrl-C or SIGTERM (the series in hand is abandoned, no staging is left, run.json names what was not processed; a second Ctrl-C stops at once).\n\nExamples:\n  paramap run /data/incoming/study_123 -o /data/maps/study_123\n  paramap run study/ -o out --backend cpu --json > summary.json\n  paramap run study/ -o out --quiet\n  paramap run study/ -o out --force --send PACS@10.0.0.5:104\n  paramap run study/ -o out --dicom parametric-map\n  paramap run study/ -o out --stowrs http://pacs:8042/dicom-web\n  paramap run study/ -o out --roi lesion_dsc.nii.gz --roi lesion_dwi.nii.gz"
)]
pub struct RunArgs {
    /// Study folder (searched recursively; any vendor, classic or Enhanced DICOM)
    pub study: PathBuf,
    /// Output folder (created if needed; one that holds anything is refused unless --force;
    /// each series' folder appears only when complete)
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Replace the output folder's whole content when it holds anything (the earlier results
    /// are removed only once the new run has finished; a run that fails puts them back)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub processing: ProcessingArgs,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// Print the summary as JSON on stdout (the same record as run.json)
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// How each study is processed: shared by `run` and `listen`.
#[derive(Args, Clone)]
pub struct ProcessingArgs {
    /// Where to compute: auto (a hardware GPU if there is one, else the CPU with a notice; a
    /// software adapter such as lavapipe is passed over), gpu (any adapter, software too), cpu
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<BackendChoice>())]
    pub backend: BackendChoice,
    /// DICOM maps: classic (default: MR images, signed 16-bit + rescale + RWVM, one file per
    /// slice; every viewer and PACS shows them), parametric-map (one float Parametric Map
    /// object + RWVM; exact values, but many viewers cannot display it), or none
    #[arg(long, default_value = "classic", value_name = "ENCODING")]
    pub dicom: String,
    /// Root of the derived series' new UIDs: 2.25 (UUID-derived, ISO/IEC 9834-8; needs no
    /// registration) or your organisation's registered root
    #[arg(long, default_value = derived::UUID_UID_ROOT, value_name = "ROOT")]
    pub uid_root: String,
    /// ROI (repeatable): a NIfTI mask (non-zero = inside) or a DICOM Segmentation (BINARY or
    /// FRACTIONAL; each segment an ROI named by its Segment Label), drawn on any series of the
    /// study: resampled onto every map's grid (nearest neighbour, by world geometry), its
    /// statistics, and the reading of docs/methods.md §1 of the study in the report
    #[arg(long = "roi", value_name = "FILE")]
    pub rois: Vec<PathBuf>,
    /// Reading, response map and rCBV class map: rCBV below this (with ADC above --adc-high)
    /// supports treatment effect
    #[arg(long, default_value_t = 1.5, value_name = "RATIO")]
    pub rcbv_low: f64,
    /// Reading, response map and rCBV class map: rCBV above this supports progression
    #[arg(long, default_value_t = 2.0, value_name = "RATIO")]
    pub rcbv_high: f64,
    /// Reading and response map: ADC above this (mm²/s) is the diffusion half of the
    /// treatment-effect criterion
    #[arg(long, default_value_t = 1.0e-3, value_name = "MM2_PER_S")]
    pub adc_high: f64,
    /// Response map: a voxel whose DSC or DWI fit leaves an RMS residual above this share of
    /// the curve's scale (DSC: its peak, fit_nrmse of the parametric fit or
    /// deconvolution_nrmse of the SVD methods, and leakage_nrmse of a BSW or bidirectional
    /// leakage fit; DWI: S0, fit_nrmse) is indeterminate, not classified
    #[arg(long, default_value_t = crate::pipeline::reading::MAX_FIT_NRMSE, value_name = "RATIO")]
    pub max_fit_nrmse: f64,
    /// Write the NIfTI maps as .nii instead of .nii.gz (as dcm2niix -z n)
    #[arg(long)]
    pub uncompressed: bool,
    /// GPU threads per workgroup (default: the size `paramap bench --tune` measured fastest on
    /// this adapter, else 64)
    #[arg(long, value_name = "THREADS")]
    pub workgroup_size: Option<u32>,
}

impl ProcessingArgs {
    pub fn options(&self) -> Result<RunOptions> {
        derived::check_uid_root(&self.uid_root)?;
        if let Some(missing) = self.rois.iter().find(|r| !r.exists()) {
            return Err(Error::Invalid(format!(
                "--roi {}: no such file; give a NIfTI mask or a DICOM Segmentation",
                missing.display()
            )));
        }
        Ok(RunOptions {
            backend: self.backend,
            dicom: match self.dicom.as_str() {
                "none" => None,
                e => Some(e.parse::<Encoding>().map_err(Error::Invalid)?),
            },
            uid_root: self.uid_root.clone(),
            rois: self.rois.clone(),
            thresholds: ReadingThresholds {
                rcbv_low: self.rcbv_low,
                rcbv_high: self.rcbv_high,
                adc_high_mm2_s: self.adc_high,
            },
            format: NiftiFormat::uncompressed(self.uncompressed),
            workgroup_size: self.workgroup_size,
            max_fit_nrmse: self.max_fit_nrmse,
        })
    }
}

/// Where the DICOM maps go: shared by `run` and `listen`.
#[derive(Args, Clone)]
pub struct DeliveryArgs {
    /// Send the DICOM maps by C-STORE to AET@HOST:PORT
    #[arg(long, value_name = "AET@HOST:PORT")]
    pub send: Option<Destination>,
    /// Send the DICOM maps by STOW-RS to this DICOMweb root URL
    #[arg(long, value_name = "URL")]
    pub stowrs: Option<String>,
    /// Sending attempts per destination before giving up (waits double from 2 s)
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub attempts: u32,
}

impl DeliveryArgs {
    /// Where the maps go, as the study pipeline takes it.
    pub fn options(&self) -> study::DeliveryOptions {
        study::DeliveryOptions {
            send: self.send.clone(),
            stowrs: self.stowrs.clone(),
            retry: self.retry(),
        }
    }

    pub fn retry(&self) -> Retry {
        Retry {
            attempts: self.attempts.max(1),
            ..Retry::default()
        }
    }

    pub fn check(&self) -> Result<()> {
        if let Some(url) = &self.stowrs {
            crate::net::check_stowrs_url(url)?;
        }
        Ok(())
    }
}

pub fn run(args: RunArgs) -> ExitCode {
    let quiet = args.quiet;
    let terminal = std::io::stderr().is_terminal();
    let spinner = super::spinner("paramap run", quiet || !terminal);
    let started = std::time::Instant::now();
    // On a terminal the spinner shows the current step; otherwise plain, timestamped lines
    // for the log of an unattended node.
    let progress = |line: &str| {
        if quiet {
            return;
        }
        if terminal {
            crate::progress::println(line);
            spinner.set_message(line.to_string());
        } else {
            eprintln!("[{:7.1} s] {line}", started.elapsed().as_secs_f64());
        }
    };
    let fail = |e: Error| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    };
    let opts = match args.processing.options().and_then(|o| {
        args.delivery.check()?;
        Ok(o)
    }) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let claim = match crate::io::output::claim(&args.output, args.force) {
        Ok(c) => c,
        Err(e) => return super::exit_for(&e),
    };
    let (summary, delivery_error) = match study::run_and_deliver(
        &args.study,
        &args.output,
        &opts,
        &args.delivery.options(),
        &progress,
    ) {
        Ok(s) => s,
        Err(e) => {
            spinner.finish_and_clear();
            return fail(e);
        }
    };
    claim.finish();
    if let Some(why) = &summary.interrupted {
        spinner.finish_and_clear();
        if args.json {
            super::print_stdout(&serde_json::to_string_pretty(&summary).expect("serialisable"));
        } else if !quiet {
            super::print_stdout(&summary.line());
        }
        eprintln!("error: {why}; run.json says which series were finished");
        return ExitCode::from(crate::interrupt::EXIT_INTERRUPTED);
    }
    spinner.finish_and_clear();
    if args.json {
        super::print_stdout(&serde_json::to_string_pretty(&summary).expect("serialisable"));
    } else if !quiet {
        if let Some(n) = &summary.not_used {
            super::print_stdout(n);
        }
        super::print_stdout(&summary.line());
    }
    if let Some(e) = delivery_error {
        eprintln!("error: {e}");
        return ExitCode::from(3);
    }
    let failed = summary.count(Status::Failed);
    if failed > 0 || summary.count(Status::Processed) == 0 {
        if summary.count(Status::Processed) == 0 && failed == 0 {
            eprintln!(
                "error: no DWI or DSC series found in {} (see the reasons above; `paramap info` lists the series)",
                args.study.display()
            );
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
