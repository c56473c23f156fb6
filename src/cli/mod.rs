//! The command line: one module per subcommand, each with its help text beside its code. The
//! CLI parses arguments, calls the pipeline and prints; it does no arithmetic on maps.

pub mod adc;
pub mod bench;
pub mod dsc;
pub mod info;
pub mod listen;
pub mod run;
pub mod synth;
pub mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "paramap",
    version,
    about = "Quantitative MRI maps (ADC from DWI; rCBV, K2 and first-pass maps from DSC) on any GPU, with an f64 CPU reference path",
    long_about = "paramap turns MRI series into quantitative maps. Point it at a DICOM folder (any vendor, classic or Enhanced multi-frame) or a NIfTI file with its .bval/.bvec, and it writes NIfTI maps with a JSON record of every choice made.\n\nThe GPU path runs WGSL compute shaders through wgpu (Vulkan, Metal, DX12); without an adapter paramap computes on the CPU and says so.",
    after_help = "Examples:\n  paramap info sample_data/dwi_phantom/dicom\n  paramap adc sample_data/dwi_phantom/dicom -o out/adc\n  paramap adc scan.nii.gz -o out/adc --method ols --backend cpu\n  paramap dsc sample_data/dsc_phantom/dicom -o out/dsc\n  paramap synth dwi -o phantom --snr 50\n  paramap synth dsc -o dsc_phantom --snr 50\n  paramap listen --port 11112 --aet PARAMAP -o /srv/paramap --send PACS@10.0.0.5:104"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show the series found in a DICOM folder (or a NIfTI file): vendor, size, kind, b-values
    Info(info::InfoArgs),
    /// Compute ADC, S0 and fit-quality maps from a DWI series
    Adc(adc::AdcArgs),
    /// Compute leakage-corrected rCBV, K2, TTP, peak and PSR maps from a DSC series
    Dsc(dsc::DscArgs),
    /// Process a whole study folder: every DWI and DSC series, with the defaults
    Run(run::RunArgs),
    /// Write a digital reference object (phantom) with known maps
    Synth(synth::SynthArgs),
    /// Time the ADC and DSC pipelines on phantoms, CPU against every GPU adapter
    Bench(bench::BenchArgs),
    /// Receive studies by DICOM C-STORE, process each when it goes quiet, forward the results
    Listen(listen::ListenArgs),
}

/// Runs the CLI; errors are printed as one readable message and give exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // `run` has its own exit statuses (a failed series among processed ones).
        Command::Run(a) => return run::run(a),
        Command::Info(a) => info::run(a),
        Command::Adc(a) => adc::run(a),
        Command::Dsc(a) => dsc::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Bench(a) => bench::run_command(a),
        Command::Listen(a) => listen::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A spinner on stderr while a long stage runs (drawn only on a terminal).
pub fn spinner(message: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(message.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    pb
}
