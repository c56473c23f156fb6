//! `paramap bench`: the ADC and full DSC pipelines on generated phantoms, CPU against every GPU
//! adapter, stage by stage.

use clap::Args;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::pipeline::bench::{run, table, Size};

#[derive(Args)]
#[command(
    after_help = "Sizes: small 64×64×20, clinical 128×128×25, large 256×256×30 voxels; DSC 60 frames, DWI 7 volumes (17 for large). Each phantom is written as DICOM and read back (ingest), then computed on the CPU (f64, all cores) and on every GPU adapter wgpu finds (f32); GPU rows give upload, kernel and readback times (each stage waited for), the kernels' time on the GPU's own clock during the overlapped run (gpu-clk, where the adapter has timestamp queries), the threads per workgroup (wg), and say how many voxels agree with the CPU (relative 1e-4). With --workgroup-sizes each adapter runs once per size and the table ends with the fastest size per pipeline; use it with `adc`/`dsc --workgroup-size`.\n\nExamples:\n  paramap bench\n  paramap bench --size clinical --size large\n  paramap bench --size small --json > bench.json\n  paramap bench --size clinical --workgroup-sizes 32,64,128,256\n  paramap bench --cpu-only"
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
    /// No progress bar
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run_command(args: BenchArgs) -> Result<()> {
    let gpus = if args.cpu_only {
        Vec::new()
    } else {
        GpuContext::all()
    };
    // Each adapter once per workgroup size asked for.
    let gpus = if args.workgroup_sizes.is_empty() {
        gpus
    } else {
        let mut each = Vec::new();
        for ctx in gpus {
            for &n in &args.workgroup_sizes {
                each.push(ctx.clone().with_workgroup_size(n)?);
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
    Ok(())
}
