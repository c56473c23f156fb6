//! `paramap run`: a whole study folder in; every DWI and DSC series found is processed with the
//! defaults; one results folder per series, `run.json`, and a summary of what was done and what
//! was skipped and why.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::pipeline::study::{self, RunOptions, Status};
use crate::pipeline::BackendChoice;

#[derive(Args)]
#[command(
    after_help = "Recognition (applied to each series, in order):\n  1. ImageType DERIVED with a map word (ADC, FA, CBV, …): a derived map, skipped (Siemens TRACEW is kept)\n  2. any b > 0 and at least two distinct b-values: DWI → ADC\n  3. no diffusion encoding, ≥ 20 timed images per slice, TE ≥ 15 ms, description not naming fMRI (BOLD…): DSC → rCBV (BSW), K2, CBF/MTT/Tmax (oSVD)\n  4. anything else: skipped, with the rule that excluded it\n\nOutputs (in OUTDIR): one folder per processed series (sNNN_dwi_<description>/, sNNN_dsc_<description>/) holding what `paramap adc` / `paramap dsc` write; run.json (every series, its status and reason, every output).\n\nExit status: 0 when every DWI/DSC series was processed (skipped series don't count); 1 when a series failed, nothing could be processed, or the input can't be read.\n\nExamples:\n  paramap run /data/incoming/study_123 -o /data/maps/study_123\n  paramap run study/ -o out --backend cpu --json > summary.json\n  paramap run study/ -o out --quiet"
)]
pub struct RunArgs {
    /// Study folder (searched recursively; any vendor, classic or Enhanced DICOM)
    pub study: PathBuf,
    /// Output folder (created if needed; each series' folder appears only when complete)
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Where to compute: auto (GPU if an adapter exists, else CPU with a notice), gpu, cpu
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<BackendChoice>())]
    pub backend: BackendChoice,
    /// Print the summary as JSON on stdout (the same record as run.json)
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
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
            spinner.println(line);
            spinner.set_message(line.to_string());
        } else {
            eprintln!("[{:7.1} s] {line}", started.elapsed().as_secs_f64());
        }
    };
    let opts = RunOptions {
        backend: args.backend,
    };
    let summary = match study::run_study(&args.study, &args.output, &opts, &progress) {
        Ok(s) => s,
        Err(e) => {
            spinner.finish_and_clear();
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    spinner.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("serialisable")
        );
    } else if !quiet {
        if let Some(n) = &summary.not_used {
            println!("{n}");
        }
        println!("{}", summary.line());
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
