//! `paramap info`: what a folder or file holds.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::io::{dicom, fsl};
use crate::pipeline::input;

#[derive(Args)]
#[command(after_help = "Examples:\n  paramap info /data/study/DICOM\n  paramap info dwi.nii.gz")]
pub struct InfoArgs {
    /// DICOM folder (searched recursively) or NIfTI file
    pub input: PathBuf,
}

pub fn run(args: InfoArgs) -> Result<()> {
    if args.input.is_file() && input::is_nifti(&args.input) {
        let s = input::load_nifti(&args.input, &Default::default())?;
        let g = &s.geometry;
        let vs = g.voxel_size();
        println!("{}", args.input.display());
        println!(
            "  NIfTI, {}×{}×{} voxels of {:.3}×{:.3}×{:.3} mm, {} volume(s)",
            g.dims[0],
            g.dims[1],
            g.dims[2],
            vs[0],
            vs[1],
            vs[2],
            s.n_volumes()
        );
        let b: Vec<String> = s
            .volumes
            .iter()
            .filter_map(|v| v.diffusion.map(|d| fsl::format_g(d.b)))
            .collect();
        if b.is_empty() {
            println!("  no .bval beside it");
        } else {
            println!("  kind: DWI; b-values (s/mm²): {}", b.join(" "));
        }
        return Ok(());
    }
    let scan = input::scan_folder_lenient(&args.input)?;
    println!(
        "{}: {} image series",
        args.input.display(),
        scan.series.len()
    );
    for s in &scan.series {
        print_series(s);
    }
    if let Some(line) = scan.skipped_summary() {
        println!("{line}");
    }
    for (p, why) in &scan.corrupt {
        println!("unreadable DICOM file {}: {why}", p.display());
    }
    Ok(())
}

fn print_series(s: &dicom::ScannedSeries) {
    let Some(f) = s.frames.first() else {
        println!("\nseries {}: no image frames", s.label());
        return;
    };
    let positions = s.n_positions();
    let volumes = s.frames.len() / positions.max(1);
    println!();
    println!(
        "series {} '{}'",
        s.info
            .series_number
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into()),
        s.info.description.as_deref().unwrap_or("")
    );
    println!("  uid: {}", s.info.series_uid.as_deref().unwrap_or("?"));
    println!(
        "  vendor: {} {} ({:?} conventions); modality {}; {}",
        s.info.manufacturer.as_deref().unwrap_or("unknown"),
        s.info.model.as_deref().unwrap_or(""),
        s.vendor,
        s.modality.as_deref().unwrap_or("?"),
        if s.enhanced {
            "Enhanced multi-frame"
        } else {
            "classic single-frame"
        }
    );
    println!(
        "  dimensions: {}×{}×{} ({} files, {} frames), {} volume(s)",
        f.cols,
        f.rows,
        positions,
        s.files.len(),
        s.frames.len(),
        volumes
    );
    let kind = s.kind();
    println!("  kind: {kind}");
    match kind {
        dicom::SeriesKind::Dwi => {
            let b: Vec<String> = s.b_values().iter().map(|&b| fsl::format_g(b)).collect();
            println!("  b-values (s/mm²): {}", b.join(" "));
        }
        _ => {
            if let Some(te) = s.info.echo_time_ms {
                println!("  TE {te} ms");
            }
            let mut times: Vec<f64> = s.frames.iter().filter_map(|f| f.acquisition_time).collect();
            times.sort_by(f64::total_cmp);
            times.dedup_by(|a, b| (*a - *b).abs() < 1e-3);
            if times.len() > 1 {
                println!(
                    "  time points: {} over {:.1} s",
                    times.len(),
                    times[times.len() - 1] - times[0]
                );
            }
        }
    }
}
