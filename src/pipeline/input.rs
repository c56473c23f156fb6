//! Loading a diffusion series from a DICOM folder or a NIfTI file with its side files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::{bids, dicom, fsl, nifti};
use crate::volume::{Diffusion, Series4, SeriesInfo, VolumeInfo};

/// Where the b-values may come from besides the input itself.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// Series number or SeriesInstanceUID, when a folder holds several.
    pub series: Option<String>,
    /// FSL .bval/.bvec overriding (DICOM) or supplying (NIfTI) the encoding.
    pub bval: Option<PathBuf>,
    pub bvec: Option<PathBuf>,
}

pub fn is_nifti(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// Series table for messages: one line each.
pub fn listing(series: &[dicom::ScannedSeries]) -> String {
    series
        .iter()
        .map(|s| format!("  {}: {} images, {}", s.label(), s.frames.len(), s.kind()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Chooses the series to process: the one asked for, else the only DWI series, else the only
/// series.
pub fn choose_series<'a>(
    scan: &'a dicom::Scan,
    wanted: Option<&str>,
    kind: dicom::SeriesKind,
) -> Result<&'a dicom::ScannedSeries> {
    if let Some(w) = wanted {
        let matches: Vec<&dicom::ScannedSeries> = scan
            .series
            .iter()
            .filter(|s| {
                s.info.series_number.map(|n| n.to_string()).as_deref() == Some(w)
                    || s.info.series_uid.as_deref() == Some(w)
            })
            .collect();
        return match matches.len() {
            1 => Ok(matches[0]),
            0 => Err(Error::SeriesNotFound {
                path: scan.root.clone(),
                wanted: w.to_string(),
                listing: listing(&scan.series),
            }),
            _ => Err(Error::AmbiguousSeries {
                path: scan.root.clone(),
                listing: format!(
                    "{}
(several series have number {w}: give the SeriesInstanceUID instead)",
                    listing(&matches.into_iter().cloned().collect::<Vec<_>>())
                ),
            }),
        };
    }
    let of_kind: Vec<&dicom::ScannedSeries> =
        scan.series.iter().filter(|s| s.kind() == kind).collect();
    match (of_kind.len(), scan.series.len()) {
        (1, _) => Ok(of_kind[0]),
        (0, 1) => Ok(&scan.series[0]),
        _ => Err(Error::AmbiguousSeries {
            path: scan.root.clone(),
            listing: listing(&scan.series),
        }),
    }
}

/// Scans a folder for `info`: unreadable files are listed, not fatal; no images is an error.
pub fn scan_folder_lenient(path: &Path) -> Result<dicom::Scan> {
    let scan = dicom::scan(path)?;
    if scan.series.is_empty() && scan.corrupt.is_empty() {
        return Err(no_dicom(path, &scan));
    }
    Ok(scan)
}

fn no_dicom(path: &Path, scan: &dicom::Scan) -> Error {
    let detail = match (scan.not_dicom.len(), scan.non_image.len()) {
        (0, 0) => "the folder is empty".to_string(),
        (n, 0) => format!("{n} file(s), none of them DICOM"),
        (n, m) => format!("{n} non-DICOM file(s) and {m} non-image DICOM object(s)"),
    };
    Error::NoDicom {
        path: path.to_path_buf(),
        detail,
    }
}

/// Scans a folder and fails on anything that makes the result untrustworthy: no images, or
/// a DICOM file that cannot be read (it might be a missing part of the series).
pub fn scan_folder(path: &Path) -> Result<dicom::Scan> {
    let scan = dicom::scan(path)?;
    if let Some((file, reason)) = scan.corrupt.first() {
        let more = scan.corrupt.len() - 1;
        return Err(Error::CorruptDicom {
            path: file.clone(),
            reason: if more > 0 {
                format!("{reason}; and {more} more unreadable DICOM file(s)")
            } else {
                reason.clone()
            },
        });
    }
    if scan.series.is_empty() {
        return Err(no_dicom(path, &scan));
    }
    Ok(scan)
}

fn apply_fsl(series: &mut Series4, bval: &Path, bvec: Option<&Path>, what: &Path) -> Result<()> {
    let b = fsl::read_bval(bval)?;
    let n = series.n_volumes();
    if b.len() != n {
        return Err(Error::Sidecar {
            path: bval.to_path_buf(),
            problem: format!(
                "has {} b-values but {} has {n} volumes: the .bval must hold one b-value per volume (was it written for another file?)",
                b.len(),
                what.display()
            ),
        });
    }
    let dirs = match bvec {
        Some(p) if p.exists() => {
            let d = fsl::read_bvec(p)?;
            if d.len() != n {
                return Err(Error::Sidecar {
                    path: p.to_path_buf(),
                    problem: format!(
                        "has {} directions but {} has {n} volumes",
                        d.len(),
                        what.display()
                    ),
                });
            }
            Some(d)
        }
        _ => None,
    };
    for (i, v) in series.volumes.iter_mut().enumerate() {
        let direction = dirs.as_ref().map(|d| d[i]).and_then(|bv| {
            let norm = (bv[0] * bv[0] + bv[1] * bv[1] + bv[2] * bv[2]).sqrt();
            (norm > 1e-6).then(|| fsl::lps_from_bvec(bv.map(|x| x / norm), &series.geometry))
        });
        v.diffusion = Some(Diffusion {
            b: b[i],
            direction,
            isotropic: false,
        });
    }
    Ok(())
}

/// Loads a 4-D NIfTI with its .bval/.bvec and BIDS JSON (beside it, or given).
pub fn load_nifti(path: &Path, opts: &InputOptions) -> Result<Series4> {
    let (data, geometry, header) = nifti::read(path)?;
    series_of(path, data, geometry, &header, opts)
}

/// A DSC echo from a NIfTI file: mapped from the file where `map` is asked for and the file
/// allows it (`nifti::read_mapped`; then the series' `data` holds no voxels, shape
/// `[t, 0, 0, 0]`, and the map does), else read as [`load_nifti`] does.
fn load_echo(path: &Path, map: bool) -> Result<(Series4, Option<nifti::MappedVoxels>)> {
    if map {
        if let Some((voxels, geometry, header)) = nifti::read_mapped(path)? {
            let none = ndarray::Array4::zeros((voxels.dim().0, 0, 0, 0));
            let series = series_of(path, none, geometry, &header, &InputOptions::default())?;
            return Ok((series, Some(voxels)));
        }
    }
    Ok((load_nifti(path, &InputOptions::default())?, None))
}

/// The series of a NIfTI file's voxels, with what its BIDS sidecar and FSL files say.
fn series_of(
    path: &Path,
    data: ndarray::Array4<f32>,
    geometry: crate::volume::Geometry,
    header: &::nifti::NiftiHeader,
    opts: &InputOptions,
) -> Result<Series4> {
    let sidecar_path = bids::sibling(path, "json");
    let sidecar = if sidecar_path.exists() {
        Some(bids::read(&sidecar_path)?)
    } else {
        None
    };
    let n = data.shape()[0];
    let descrip = String::from_utf8_lossy(&header.descrip)
        .trim_end_matches('\0')
        .to_string();
    let mut series = Series4 {
        data,
        geometry,
        volumes: vec![VolumeInfo::default(); n],
        frame_times_s: None,
        info: SeriesInfo {
            source: path.display().to_string(),
            description: sidecar
                .as_ref()
                .and_then(|s| s.series_description.clone())
                .or((!descrip.is_empty()).then_some(descrip)),
            manufacturer: sidecar.as_ref().and_then(|s| s.manufacturer.clone()),
            series_number: sidecar.as_ref().and_then(|s| s.series_number),
            echo_time_s: sidecar.as_ref().and_then(|s| s.echo_time_s),
            repetition_time_s: sidecar.as_ref().and_then(|s| s.repetition_time_s),
            n_files: 1,
            ..Default::default()
        },
    };
    let bval = opts
        .bval
        .clone()
        .unwrap_or_else(|| bids::sibling(path, "bval"));
    let bvec = opts
        .bvec
        .clone()
        .unwrap_or_else(|| bids::sibling(path, "bvec"));
    if bval.exists() {
        apply_fsl(&mut series, &bval, Some(&bvec), path)?;
    }
    Ok(series)
}

/// Loads a diffusion series from a DICOM folder or a NIfTI file.
pub fn load_dwi(path: &Path, opts: &InputOptions) -> Result<(Series4, Option<String>)> {
    if !path.exists() {
        return Err(Error::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_file() && is_nifti(path) {
        return Ok((load_nifti(path, opts)?, None));
    }
    let scan = scan_folder(path)?;
    let chosen = choose_series(&scan, opts.series.as_deref(), dicom::SeriesKind::Dwi)?;
    let mut series = dicom::assemble(chosen)?;
    if let Some(bval) = &opts.bval {
        apply_fsl(&mut series, bval, opts.bvec.as_deref(), path)?;
    }
    Ok((series, scan.skipped_summary()))
}

/// What a DSC series needs besides its images, when the input does not say.
#[derive(Debug, Clone, Default)]
pub struct DscInputOptions {
    pub series: Option<String>,
    /// Echo time (ms), overriding the header.
    pub te_s: Option<f64>,
    /// Sampling interval (s), overriding the acquisition times.
    pub dt_s: Option<f64>,
    /// A NIfTI input's second echo (dual-echo DSC).
    pub echo2: Option<PathBuf>,
    /// Map an uncompressed float32 `.nii` from its file rather than read it
    /// (`DscInput::mapped`); `paramap dsc` does.
    pub map_voxels: bool,
}

fn echo_time_s(series: &Series4, given_s: Option<f64>, what: &str) -> Result<f64> {
    let te = given_s.or(series.info.echo_time_s).ok_or_else(|| {
        Error::series(
            series.info.label(),
            format!("no echo time found for {what} (EchoTime (0018,0081) or a BIDS sidecar's EchoTime): give it with --te (e.g. --te 30ms)"),
        )
    })?;
    if !(te > 0.0) {
        return Err(Error::series(
            series.info.label(),
            format!("echo time {} ms is not positive", te * 1000.0),
        ));
    }
    Ok(te)
}

/// Splits a scanned series by echo time: one series per echo, shortest TE first.
fn split_echoes(s: &dicom::ScannedSeries) -> Result<Vec<dicom::ScannedSeries>> {
    let key = dicom::ScannedSeries::echo_key;
    let keys = s.echo_keys();
    if keys.len() > 2 {
        return Err(Error::series(
            s.label(),
            format!(
                "holds {} echo times; paramap reads single- and dual-echo DSC",
                keys.len()
            ),
        ));
    }
    Ok(keys
        .iter()
        .map(|k| {
            let mut part = s.clone();
            part.frames.retain(|f| key(f) == *k);
            // The series' header fields came from whichever file was read first.
            part.info.echo_time_s = part
                .frames
                .first()
                .and_then(|f| f.echo_time_ms)
                .map(|ms| ms / 1000.0);
            let files: std::collections::BTreeSet<PathBuf> =
                part.frames.iter().map(|f| f.file.to_path_buf()).collect();
            part.files = files.into_iter().collect();
            part
        })
        .collect())
}

/// Loads a DSC series (DICOM folder or 4-D NIfTI) with its timing.
pub fn load_dsc(
    path: &Path,
    opts: &DscInputOptions,
) -> Result<(crate::pipeline::dsc::DscInput, Option<String>)> {
    use crate::models::delta_r2star::Echo;
    use crate::pipeline::dsc::DscInput;
    if !path.exists() {
        return Err(Error::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_file() && is_nifti(path) {
        let (echo1, mapped1) = load_echo(path, opts.map_voxels)?;
        let sidecar = bids::sibling(path, "json");
        // pixdim[4] in the header's time unit (xyzt_units: s, ms or µs), in seconds.
        let header = nifti::read_header(path).ok();
        let header_tr = header
            .as_ref()
            .and_then(|h| nifti::time_step_seconds(h).transpose());
        let unit_note = match header.as_ref().map(|h| h.xyzt_units & 0x38) {
            Some(16) => " (xyzt_units: ms, converted to s)",
            Some(24) => " (xyzt_units: µs, converted to s)",
            _ => "",
        };
        let (dt, source) = match (opts.dt_s, echo1.info.repetition_time_s, header_tr) {
            (Some(dt), _, _) => (dt, "Δt from --dt".to_string()),
            (None, Some(tr), _) => (tr, format!("Δt = RepetitionTime of {}", sidecar.display())),
            (None, None, Some(Ok(tr))) => (tr, format!("Δt = NIfTI pixdim[4]{unit_note}")),
            (None, None, Some(Err(why))) => {
                return Err(Error::Nifti {
                    path: path.to_path_buf(),
                    problem: format!(
                        "no sampling interval in seconds: {why}; give --dt SECONDS, or put RepetitionTime in a BIDS JSON beside it"
                    ),
                })
            }
            _ => {
                return Err(Error::Nifti {
                    path: path.to_path_buf(),
                    problem: "no sampling interval: give --dt (e.g. --dt 1.5s), or put RepetitionTime in a BIDS JSON beside it".into(),
                })
            }
        };
        let te1 = echo_time_s(&echo1, opts.te_s, "echo 1")?;
        let dim = |e: &Series4, m: &Option<nifti::MappedVoxels>| {
            m.as_ref().map_or(e.data.dim(), |m| m.dim())
        };
        let (echo2, mapped2, echo) = match &opts.echo2 {
            Some(p) => {
                let (e2, m2) = load_echo(p, opts.map_voxels)?;
                if dim(&e2, &m2) != dim(&echo1, &mapped1) {
                    return Err(Error::Nifti {
                        path: p.clone(),
                        problem: "second echo's size differs from the first's".into(),
                    });
                }
                let te2 = echo_time_s(&e2, None, "echo 2")?;
                (Some(e2), m2, Echo::Dual { te1, te2 })
            }
            None => (None, None, Echo::Single { te: te1 }),
        };
        return Ok((
            DscInput {
                echo1,
                echo2,
                dt_s: dt,
                echo,
                timing_source: source,
                mapped: [mapped1, mapped2],
            },
            None,
        ));
    }
    let scan = scan_folder(path)?;
    let chosen = choose_series(&scan, opts.series.as_deref(), dicom::SeriesKind::Dsc)?;
    Ok((dsc_from_scanned(chosen, opts)?, scan.skipped_summary()))
}

/// Assembles a scanned DICOM DSC series (one or two echoes) with its timing.
pub fn dsc_from_scanned(
    chosen: &dicom::ScannedSeries,
    opts: &DscInputOptions,
) -> Result<crate::pipeline::dsc::DscInput> {
    use crate::models::bolus::sampling_interval;
    use crate::models::delta_r2star::Echo;
    use crate::pipeline::dsc::DscInput;
    let echoes = split_echoes(chosen)?;
    let mut series: Vec<Series4> = echoes
        .iter()
        .map(|e| dicom::assemble_ordered(e, dicom::VolumeOrder::Time))
        .collect::<Result<_>>()?;
    if series.len() == 2 && series[0].data.dim() != series[1].data.dim() {
        return Err(Error::series(
            chosen.label(),
            "its two echoes have different sizes or numbers of time points".to_string(),
        ));
    }
    let (dt, source) = match (opts.dt_s, series[0].frame_times_s.as_ref()) {
        (Some(dt), _) => (dt, "Δt from --dt".to_string()),
        (None, Some(times)) => (
            sampling_interval(times).map_err(|e| Error::series(chosen.label(), e))?,
            "Δt = median interval between the acquisition times of consecutive time points of each slice".to_string(),
        ),
        (None, None) => match series[0].info.repetition_time_s {
            Some(tr) => (tr, "Δt = RepetitionTime (the images carry no acquisition times)".to_string()),
            None => return Err(Error::series(chosen.label(), "no acquisition times and no RepetitionTime: give the sampling interval with --dt (e.g. --dt 1.5s)".to_string())),
        },
    };
    let te1 = echo_time_s(&series[0], opts.te_s, "echo 1")?;
    let echo2 = if series.len() == 2 {
        series.pop()
    } else {
        None
    };
    let echo = match &echo2 {
        Some(e2) => Echo::Dual {
            te1,
            te2: echo_time_s(e2, None, "echo 2")?,
        },
        None => Echo::Single { te: te1 },
    };
    let echo1 = series.pop().expect("one echo");
    Ok(DscInput {
        echo1,
        echo2,
        dt_s: dt,
        echo,
        timing_source: source,
        mapped: [None, None],
    })
}
