//! `paramap bench`: the ADC and full DSC pipelines on generated phantoms, CPU against every GPU
//! adapter, stage by stage.

use clap::Args;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::pipeline::bench::{run, table, Size};

#[derive(Args)]
#[command(
    after_help = "Sizes: small 64×64×20, clinical 128×128×25, large 256×256×30 voxels; DSC 60 frames, DWI 7 volumes (17 for large). DSC runs twice: the defaults (rCBV, residue leakage, parametric fit) and `--leakage bsw --deconvolution osvd` (CBF compared). Each phantom is written as DICOM and read back (ingest), then computed on the CPU (f64, all cores) and on every GPU adapter wgpu finds (f32); GPU rows give upload, kernel and readback times (each stage waited for), the kernels' time on the GPU's own clock during the overlapped run (gpu-clk, where the adapter has timestamp queries), the threads per workgroup (wg), and say how many voxels agree with the CPU (relative 1e-4). With --workgroup-sizes each adapter runs once per size and the table ends with the fastest size per pipeline; use it with `adc`/`dsc --workgroup-size`, or measure and save it with --tune (adc, dsc, run and listen then use the fastest size on that adapter).\n\nExamples:\n  paramap bench\n  paramap bench --size clinical --size large\n  paramap bench --size small --json > bench.json\n  paramap bench --size clinical --workgroup-sizes 32,64,128,256\n  paramap bench --size clinical --tune\n  paramap bench --cpu-only"
)]
pub struct BenchArgs {
    /// Phantom size(s): small, clinical, large
    #[arg(long = "size", default_value = "small", value_parser = |s: &str| s.parse::<Size>())]
    pub sizes: Vec<Size>,
    /// Print JSON instead of the table
    #[arg(long)]
    pub json: bool,
    /// Leave the GPU adapters out
    #[arg(long)]
    pub cpu_only: bool,
    /// GPU threads per workgroup to measure, e.g. 32,64,128,256: each adapter runs every
    /// pipeline once per size, and the table names the fastest (default: 64 only)
    #[arg(long, value_delimiter = ',', value_name = "THREADS")]
    pub workgroup_sizes: Vec<u32>,
    /// Measure the workgroup sizes of --workgroup-sizes (default 32,64,128,256) on every
    /// adapter and save the fastest per adapter (64 stays unless another size is 5% faster):
    /// `adc`, `dsc`, `run` and `listen` then use it
    /// there unless --workgroup-size says otherwise. Saved in $PARAMAP_GPU_TUNING, else
    /// $XDG_CACHE_HOME/paramap/gpu-tuning.json, else ~/.cache/paramap/gpu-tuning.json
    #[arg(long, conflicts_with = "cpu_only")]
    pub tune: bool,
    /// No progress bar
    #[arg(short, long)]
    pub quiet: bool,
}

/// The workgroup sizes `--tune` measures where `--workgroup-sizes` names none.
pub const TUNE_SIZES: [u32; 4] = [32, 64, 128, 256];

pub fn run_command(mut args: BenchArgs) -> Result<()> {
    // A size named twice is measured once (each phantom is written to a folder of its size).
    let mut seen = Vec::new();
    args.sizes.retain(|s| {
        let new = !seen.contains(s);
        seen.push(*s);
        new
    });
    let gpus = if args.cpu_only {
        Vec::new()
    } else {
        GpuContext::all()
    };
    // Where --tune saves, and what is there already, known before the benchmark runs: an
    // unusable file fails now, not after minutes of measuring.
    let tuning = if args.tune {
        Some(open_tuning()?)
    } else {
        None
    };
    if args.tune {
        if gpus.is_empty() {
            return Err(Error::Gpu(format!(
                "--tune measures GPU workgroup sizes, and no GPU adapter was found: {}",
                crate::gpu::HOW_TO_GET_AN_ADAPTER
            )));
        }
        if args.workgroup_sizes.is_empty() {
            args.workgroup_sizes = TUNE_SIZES.to_vec();
        }
    }
    // Each adapter once per workgroup size asked for; else as `adc` and `dsc` run on it.
    let gpus = if args.workgroup_sizes.is_empty() {
        let mut tuned = Vec::new();
        for ctx in gpus {
            let (ctx, notice) = ctx.with_tuning(crate::io::tuning::load());
            if let (Some(n), false) = (notice, args.quiet) {
                eprintln!("{n}");
            }
            tuned.push(ctx);
        }
        tuned
    } else {
        let mut sizes = args.workgroup_sizes.clone();
        sizes.sort_unstable();
        sizes.dedup();
        let mut each = Vec::new();
        for ctx in gpus {
            for &n in &sizes {
                // A size one adapter cannot run leaves that adapter's row out, not the others'.
                match ctx.clone().with_workgroup_size(n) {
                    Ok(c) => each.push(c),
                    Err(e) if !args.quiet => eprintln!("notice: skipped: {e}"),
                    Err(_) => {}
                }
            }
        }
        each
    };
    if gpus.is_empty() && !args.cpu_only && !args.quiet {
        eprintln!(
            "notice: no GPU adapter found; benchmarking the CPU only ({})",
            crate::gpu::HOW_TO_GET_AN_ADAPTER
        );
    }
    let pb = if args.quiet || args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(1)
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let rows = run(&args.sizes, &gpus, |done, total, what| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        pb.set_message(what.to_string());
    })?;
    pb.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| Error::Invalid(e.to_string()))?
        );
    } else {
        print!("{}", table(&rows));
    }
    if let Some((path, file)) = tuning {
        save_tuning(&rows, &path, file, args.json)?;
    }
    Ok(())
}

/// The tuning file's path and what it holds: an unreadable file is an error, a damaged one is
/// replaced (with a notice).
fn open_tuning() -> Result<(std::path::PathBuf, crate::gpu::tuning::TuningFile)> {
    use crate::gpu::tuning;
    let path = tuning::path().ok_or_else(|| {
        Error::Invalid(format!(
            "--tune has nowhere to save: set {} (a file name) or HOME",
            tuning::ENV
        ))
    })?;
    let file = match tuning::TuningFile::load(&path) {
        Ok(f) => f,
        Err(tuning::LoadError::Damaged(e)) => {
            eprintln!("notice: replacing the damaged tuning file: {e}");
            tuning::TuningFile::default()
        }
        Err(tuning::LoadError::Unreadable(e)) => {
            return Err(Error::Output { path, reason: e });
        }
    };
    Ok((path, file))
}

/// Saves the fastest size per adapter and says so (on stderr under --json).
fn save_tuning(
    rows: &[crate::pipeline::bench::BenchRow],
    path: &std::path::Path,
    mut file: crate::gpu::tuning::TuningFile,
    json: bool,
) -> Result<()> {
    let tuned = crate::pipeline::bench::tune(rows);
    let mut lines = Vec::new();
    for t in &tuned {
        let others: Vec<String> = t
            .kernels_s
            .iter()
            .map(|(n, s)| format!("{n}: {s:.4} s"))
            .collect();
        lines.push(format!(
            "tuned '{}' ({}, {}): {} threads per workgroup (kernels on the {} clock, {}; {})",
            t.adapter.name,
            t.adapter.backend,
            t.adapter.driver_info,
            t.workgroup_size,
            t.clock,
            t.measured,
            others.join(", ")
        ));
    }
    // The measurement is shown before it is saved, so a failed save loses nothing.
    let say = |l: &str| {
        if json {
            eprintln!("{l}");
        } else {
            println!("{l}");
        }
    };
    lines.iter().for_each(|l| say(l));
    for t in tuned {
        file.insert(t);
    }
    file.save(path)?;
    say(&format!(
        "saved in {}: `adc`, `dsc`, `run` and `listen` use it on these adapters unless --workgroup-size says otherwise",
        path.display()
    ));
    Ok(())
}
