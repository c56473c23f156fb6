//! `paramap info`: what a folder or file holds.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::io::{dicom, fsl};
use crate::pipeline::input;
use serde_json::json;

#[derive(Args)]
#[command(
    after_help = "Examples:\n  paramap info /data/study/DICOM\n  paramap info dwi.nii.gz\n  paramap info /data/study/DICOM --json > series.json"
)]
pub struct InfoArgs {
    /// DICOM folder (searched recursively) or NIfTI file
    pub input: PathBuf,
    /// Print the series found as JSON on stdout (the same facts as the text: per series its
    /// number, UIDs, vendor, dimensions, kind, b-values or TE and time points)
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> Result<()> {
    if args.input.is_file() && input::is_nifti(&args.input) {
        let s = input::load_nifti(&args.input, &Default::default())?;
        let g = &s.geometry;
        let vs = g.voxel_size();
        if args.json {
            let b: Vec<f64> = s
                .volumes
                .iter()
                .filter_map(|v| v.diffusion.map(|d| d.b))
                .collect();
            let value = json!({
                "input": args.input,
                "format": "NIfTI",
                "dims_xyz": g.dims,
                "voxel_size_mm": vs,
                "volumes": s.n_volumes(),
                "kind": if b.is_empty() { serde_json::Value::Null } else { json!("DWI") },
                "b_values_s_per_mm2": b,
            });
            super::print_stdout(&serde_json::to_string_pretty(&value).expect("serialisable"));
            return Ok(());
        }
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
            println!("  no .bval beside it (not read as DWI)");
            let te = s
                .info
                .echo_time_s
                .map(|te| format!("TE {} ms", fsl::format_g(te * 1e3)));
            let tr = s
                .info
                .repetition_time_s
                .map(|tr| format!("a volume every {} s (RepetitionTime)", fsl::format_g(tr)));
            let timing: Vec<String> = te.into_iter().chain(tr).collect();
            if !timing.is_empty() {
                // `run`'s DSC rule: ≥ 20 time points, TE ≥ 15 ms (shorter is T1-weighted DCE).
                let dsc = s.n_volumes() >= 20 && s.info.echo_time_s.is_some_and(|te| te >= 0.015);
                println!(
                    "  from {}: {}{}",
                    crate::io::bids::sibling(&args.input, "json").display(),
                    timing.join(", "),
                    if dsc {
                        format!("; {} time points, as DSC for `paramap dsc`", s.n_volumes())
                    } else {
                        String::new()
                    }
                );
            }
        } else {
            println!("  kind: DWI; b-values (s/mm²): {}", b.join(" "));
        }
        return Ok(());
    }
    let scan = input::scan_folder_lenient(&args.input)?;
    if args.json {
        let value = json!({
            "input": args.input,
            "format": "DICOM",
            "series": scan.series.iter().map(series_json).collect::<Vec<_>>(),
            "not_used": scan.skipped_summary(),
            "unreadable": scan
                .corrupt
                .iter()
                .map(|(p, why)| json!({"file": p, "reason": why}))
                .collect::<Vec<_>>(),
        });
        super::print_stdout(&serde_json::to_string_pretty(&value).expect("serialisable"));
        return Ok(());
    }
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

/// Time points of a series (distinct acquisition times) and the time they span, in s.
fn time_points(s: &dicom::ScannedSeries) -> (usize, f64) {
    let mut times: Vec<f64> = s.frames.iter().filter_map(|f| f.acquisition_time).collect();
    times.sort_by(f64::total_cmp);
    times.dedup_by(|a, b| (*a - *b).abs() < 1e-3);
    match (times.first(), times.last()) {
        (Some(a), Some(b)) => (times.len(), b - a),
        _ => (0, 0.0),
    }
}

/// One series as `info --json` gives it.
fn series_json(s: &dicom::ScannedSeries) -> serde_json::Value {
    let f = &s.frames[0];
    let positions = s.n_positions();
    let kind = s.kind();
    let (n_times, span) = time_points(s);
    json!({
        "series_number": s.info.series_number,
        "description": s.info.description,
        "series_uid": s.info.series_uid,
        "study_uid": s.info.study_uid,
        "manufacturer": s.info.manufacturer,
        "model": s.info.model,
        "conventions": format!("{:?}", s.vendor),
        "modality": s.modality,
        "enhanced": s.enhanced,
        "dims_xyz": [f.cols, f.rows, positions],
        "files": s.files.len(),
        "frames": s.frames.len(),
        "volumes": s.frames.len() / positions.max(1),
        "kind": kind.to_string(),
        "b_values_s_per_mm2": if kind == dicom::SeriesKind::Dwi { json!(s.b_values()) } else { serde_json::Value::Null },
        "echo_time_ms": s.info.echo_time_s.map(|t| t * 1000.0),
        "time_points": n_times,
        "time_span_s": span,
    })
}

/// Manufacturer (0008,0070) and model (0008,1090), one space apart: the manufacturer alone
/// where the model is missing or blank, "unknown" for a missing manufacturer.
fn maker(manufacturer: Option<&str>, model: Option<&str>) -> String {
    let manufacturer = manufacturer.unwrap_or("unknown");
    match model.map(str::trim) {
        Some(model) if !model.is_empty() => format!("{manufacturer} {model}"),
        _ => manufacturer.to_string(),
    }
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
    let maker = maker(s.info.manufacturer.as_deref(), s.info.model.as_deref());
    println!(
        "  vendor: {maker} ({:?} conventions); modality {}; {}",
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
            if let Some(te) = s.info.echo_time_s {
                println!("  TE {} ms", te * 1000.0);
            }
            let (n, span) = time_points(s);
            if n > 1 {
                println!("  time points: {n} over {span:.1} s");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::maker;

    /// No double space where the model is missing or blank (the phantoms carry none).
    #[test]
    fn the_maker_is_one_space_apart() {
        assert_eq!(maker(Some("SIEMENS"), Some("Prisma")), "SIEMENS Prisma");
        assert_eq!(maker(Some("paramap"), None), "paramap");
        assert_eq!(maker(Some("paramap"), Some(" ")), "paramap");
        assert_eq!(maker(None, Some("Ingenia")), "unknown Ingenia");
        assert_eq!(maker(None, None), "unknown");
    }
}
