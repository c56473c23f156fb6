//! The command line: one module per subcommand, each with its help text beside its code. The
//! CLI parses arguments, calls the pipeline and prints; it does no arithmetic on maps.

pub mod adc;
pub mod bench;
pub mod bids;
pub mod compare;
pub mod dsc;
pub mod info;
pub mod listen;
pub mod run;
pub mod synth;
pub mod units;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};

#[derive(Parser)]
#[command(
    name = "paramap",
    version,
    about = "Quantitative MRI maps (ADC from DWI; rCBV, K2 and first-pass maps from DSC) on any GPU, with an f64 CPU reference path",
    long_about = "paramap turns MRI series into quantitative maps. Point it at a DICOM folder (any vendor, classic or Enhanced multi-frame) or a NIfTI file with its .bval/.bvec, and it writes NIfTI maps with a JSON record of every choice made.\n\nThe GPU path runs WGSL compute shaders through wgpu (Vulkan, Metal, DX12); without a hardware adapter (none, or only a software one such as Mesa's lavapipe, which --backend gpu still uses) paramap computes on the CPU and says so. An output folder that holds anything is refused (exit status 2) unless --force, which replaces its whole content.",
    after_help = "Examples:\n  paramap info sample_data/dwi_phantom/dicom\n  paramap adc sample_data/dwi_phantom/dicom -o out/adc\n  paramap adc scan.nii.gz -o out/adc --method ols --backend cpu\n  paramap dsc sample_data/dsc_phantom/dicom -o out/dsc\n  paramap synth dwi -o phantom --snr 50\n  paramap synth dsc -o dsc_phantom --snr 50\n  paramap listen --port 11112 --aet PARAMAP -o /srv/paramap --send PACS@10.0.0.5:104\n  paramap bids /data/bids /data/derivatives participant --participant-label 01"
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
    /// Compare follow-up visits: registration, change maps, parametric response maps, ±20% rule
    Compare(compare::CompareArgs),
    /// Receive studies by DICOM C-STORE, process each when it goes quiet, forward the results
    Listen(listen::ListenArgs),
    /// A BIDS App: BIDS_DIR OUTPUT_DIR participant|group, BIDS derivatives out
    Bids(bids::BidsArgs),
}

/// Options of the commands that write one output folder and a JSON record (`adc`, `dsc`).
#[derive(Args, Clone, Debug)]
pub struct RecordArgs {
    /// Replace the output folder's whole content when it holds anything (without it, a
    /// non-empty folder is refused with exit status 2)
    #[arg(long)]
    pub force: bool,
    /// Print the JSON record (every choice, the engine, the outputs) on stdout instead of the
    /// summary lines
    #[arg(long)]
    pub json: bool,
}

/// Runs the CLI; errors are printed as one readable message and give exit status 1, or 2 for
/// an output folder that is not empty (as for a usage error), or 130 after Ctrl-C/SIGTERM.
pub fn main() -> ExitCode {
    // Before anything starts a thread (the signal handler's) or wgpu.
    crate::gpu::ensure_runtime_dir();
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    // `run` and `listen` stop cleanly at the first signal; the others stop at once, removing
    // their staging folders.
    crate::interrupt::install(matches!(
        cli.command,
        Command::Run(_) | Command::Listen(_) | Command::Bids(_)
    ));
    // Bars with a percentage for the long stages, on a terminal only; not for a service's log
    // (listen) nor with --quiet or --json (a machine reads the output).
    let quiet = match &cli.command {
        Command::Run(a) => a.quiet || a.json,
        Command::Adc(a) => a.quiet || a.record.json,
        Command::Dsc(a) => a.quiet || a.record.json,
        Command::Info(_) | Command::Synth(_) | Command::Compare(_) => false,
        Command::Bench(_) | Command::Listen(_) | Command::Bids(_) => true,
    };
    if !quiet && std::io::stderr().is_terminal() {
        crate::progress::enable();
    }
    let result = match cli.command {
        // `run` has its own exit statuses (a failed series among processed ones).
        Command::Run(a) => return run::run(a),
        // So does `bids` (a failed session among processed ones).
        Command::Bids(a) => return bids::run(a),
        Command::Info(a) => info::run(a),
        Command::Adc(a) => adc::run(a),
        Command::Dsc(mut a) => claimed(&a.output.clone(), &a.record.clone(), "dsc.json", || {
            a.quiet |= a.record.json;
            dsc::run(a)
        }),
        Command::Synth(a) => synth::run(a),
        Command::Bench(a) => bench::run_command(a),
        Command::Listen(a) => listen::run(a),
        Command::Compare(a) => return compare::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_for(&e),
    }
}

/// Prints `error: …` and gives the exit status for `e`: 2 for an output folder that is not
/// empty, 1 otherwise.
pub fn exit_for(e: &Error) -> ExitCode {
    eprintln!("error: {e}");
    match e {
        Error::OutputNotEmpty { .. } => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

/// Runs `body`, which writes one output folder `out` with the JSON record `record` in it, on a
/// folder claimed for it (refused when it holds anything, unless `--force`); with `--json`,
/// prints the record on stdout afterwards.
pub fn claimed(
    out: &Path,
    args: &RecordArgs,
    record: &str,
    body: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let claim = crate::io::output::claim(out, args.force)?;
    body()?;
    claim.finish();
    if args.json {
        let path = out.join(record);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        print_stdout(&text);
    }
    Ok(())
}

/// Prints `text` and a newline on stdout. A reader that has gone away (`paramap … --json |
/// head -c 10`) ends the output quietly: what is left is not printed, and nothing panics.
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|_| out.flush());
}

/// `println!` panics when stdout is a closed pipe. Where it does (a reader such as `head` has
/// gone away), the process ends quietly instead, with the status a shell gives a process
/// stopped by SIGPIPE (128 + 13), after removing any staging folder; every other panic is
/// reported as usual.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The message of a formatted panic is a String; of a literal one, a &str.
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") {
            crate::io::output::abandon_all();
            std::process::exit(141);
        }
        default(info);
    }));
}

/// A spinner on stderr while a long stage runs (drawn only on a terminal).
pub fn spinner(message: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    crate::progress::spinner(message)
}
