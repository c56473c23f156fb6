//! Walks a folder, reads every DICOM header (in parallel), and groups image frames by
//! SeriesInstanceUID. Classic single-frame images give one frame each; Enhanced MR
//! multi-frame images give one per frame, from their per-frame functional groups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::vendor::Vendor;
use crate::error::{Error, Result};
use crate::volume::{Diffusion, SeriesInfo};

mod file;
use file::{read_file, FileResult, SeriesKey};

/// One 2-D image: a classic file, or one frame of a multi-frame file.
#[derive(Debug, Clone)]
pub struct FrameRecord {
    pub file: Arc<PathBuf>,
    /// Frame index within the file (0 for classic images).
    pub frame: u32,
    /// For a Siemens mosaic: which tile of the frame this slice is.
    pub tile: Option<Tile>,
    pub rows: u32,
    pub cols: u32,
    pub position: Option<[f64; 3]>,
    pub orientation: Option<[f64; 6]>,
    /// (row spacing, column spacing) in mm, as (0028,0030) orders them.
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    /// Philips (2005,100E): stored values map to floating point as (SV·RS + RI)/(RS·SS).
    pub philips_scale_slope: Option<f64>,
    pub diffusion: Option<Diffusion>,
    pub instance: Option<i64>,
    pub temporal_position: Option<i64>,
    /// Seconds since 1970-01-01 in the scanner's local time (FrameAcquisitionDateTime for
    /// Enhanced frames; else AcquisitionDateTime, or AcquisitionDate + AcquisitionTime: see
    /// [`values::acquisition_seconds`](super::values::acquisition_seconds)); only differences
    /// between frames are used.
    pub acquisition_time: Option<f64>,
    pub trigger_time_ms: Option<f64>,
    pub echo_time_ms: Option<f64>,
    pub echo_number: Option<i64>,
}

/// One slice tile of a Siemens mosaic image: tiles are `rows`×`cols` and sit `grid` to a side,
/// slice `index` at grid row index / grid, column index % grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub grid: u32,
    pub index: u32,
}

/// Everything found for one SeriesInstanceUID.
#[derive(Debug, Clone)]
pub struct ScannedSeries {
    pub info: SeriesInfo,
    pub modality: Option<String>,
    pub vendor: Vendor,
    pub files: Vec<PathBuf>,
    pub frames: Vec<FrameRecord>,
    pub enhanced: bool,
    /// ImageType (0008,0008) of the first file read, upper case (e.g. "DERIVED\\PRIMARY\\ADC").
    pub image_type: Option<String>,
}

/// What a scan found in a folder.
#[derive(Debug, Default)]
pub struct Scan {
    pub root: PathBuf,
    pub series: Vec<ScannedSeries>,
    /// DICOM objects that are not images (presentation states, private SOP classes,
    /// DICOMDIR…): (file, what it is).
    pub non_image: Vec<(PathBuf, String)>,
    pub not_dicom: Vec<PathBuf>,
    pub corrupt: Vec<(PathBuf, String)>,
}

impl Scan {
    /// One line for the skipped objects, e.g. "skipped 3 non-image DICOM objects (…)".
    pub fn skipped_summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.non_image.is_empty() {
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, k) in &self.non_image {
                *kinds.entry(k.as_str()).or_default() += 1;
            }
            let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            parts.push(format!(
                "{} non-image DICOM object(s) ({})",
                self.non_image.len(),
                list.join(", ")
            ));
        }
        if !self.not_dicom.is_empty() {
            let nifti = self.not_dicom.iter().filter(|p| {
                let name = p.to_string_lossy();
                name.ends_with(".nii") || name.ends_with(".nii.gz")
            });
            let example = self.not_dicom.iter().min().map(|p| p.display().to_string());
            parts.push(format!(
                "{} non-DICOM file(s) (e.g. {}{})",
                self.not_dicom.len(),
                example.unwrap_or_default(),
                match nifti.count() {
                    0 => String::new(),
                    n => format!("; {n} NIfTI: a folder scan reads DICOM only; give a NIfTI file to `paramap adc` or `paramap dsc` itself"),
                }
            ));
        }
        (!parts.is_empty()).then(|| format!("skipped {}", parts.join(" and ")))
    }
}

/// Every regular file under `root` (or `root` itself if it is a file), in name order.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    files
}

/// Scans `root` (a folder, searched recursively, or a single file).
pub fn scan(root: &Path) -> Result<Scan> {
    if !root.exists() {
        return Err(Error::NotFound {
            path: root.to_path_buf(),
        });
    }
    let files = walk(root);
    let bar = crate::progress::bar("reading DICOM headers", files.len() as u64);
    let results: Vec<FileResult> = files
        .par_iter()
        .map(|p| {
            let r = read_file(p);
            bar.inc();
            r
        })
        .collect();
    drop(bar);
    let mut scan = Scan {
        root: root.to_path_buf(),
        ..Default::default()
    };
    let mut by_uid: BTreeMap<SeriesKey, ScannedSeries> = BTreeMap::new();
    for r in results {
        match r {
            FileResult::Image(b) => {
                let (uid, s) = *b;
                match by_uid.get_mut(&uid) {
                    Some(existing) => {
                        existing.files.extend(s.files);
                        existing.frames.extend(s.frames);
                        existing.enhanced |= s.enhanced;
                        existing.info.n_files += 1;
                        // Only the first file's attributes are kept; every instance is listed.
                        if let (Some(into), Some(from)) = (&mut existing.info.dicom, s.info.dicom) {
                            into.sop_instance_uids.extend(from.sop_instance_uids);
                        }
                    }
                    None => {
                        by_uid.insert(uid, s);
                    }
                }
            }
            FileResult::NonImage(p, what) => scan.non_image.push((p, what)),
            FileResult::NotDicom(p) => scan.not_dicom.push(p),
            FileResult::Corrupt(p, why) => scan.corrupt.push((p, why)),
        }
    }
    let mut series: Vec<ScannedSeries> = by_uid.into_values().collect();
    series.sort_by_key(|s| {
        (
            s.info.series_number.unwrap_or(i64::MAX),
            s.info.series_uid.clone(),
        )
    });
    for s in &mut series {
        s.info.source = root.display().to_string();
    }
    scan.series = series;
    Ok(scan)
}

/// What kind of series this looks like, for `info` and for choosing a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    Dwi,
    Dsc,
    Other,
}

impl std::fmt::Display for SeriesKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SeriesKind::Dwi => "DWI",
            SeriesKind::Dsc => "DSC",
            SeriesKind::Other => "other",
        })
    }
}

impl ScannedSeries {
    /// A label that names the series in messages: number, description and UID.
    pub fn label(&self) -> String {
        self.info.label()
    }

    /// Echo time of a frame as a key (0.01 ms), for telling the echoes of a series apart.
    pub fn echo_key(frame: &FrameRecord) -> Option<i64> {
        frame.echo_time_ms.map(|t| (t * 100.0).round() as i64)
    }

    /// Distinct echo keys ([`Self::echo_key`]) of the frames, shortest TE first.
    pub fn echo_keys(&self) -> Vec<Option<i64>> {
        let mut keys: Vec<Option<i64>> = self.frames.iter().map(Self::echo_key).collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Distinct b-values (rounded to 0.001 s/mm²) found in the frames.
    pub fn b_values(&self) -> Vec<f64> {
        let mut b: Vec<f64> = self
            .frames
            .iter()
            .filter_map(|f| f.diffusion.map(|d| (d.b * 1000.0).round() / 1000.0))
            .collect();
        b.sort_by(f64::total_cmp);
        b.dedup();
        b
    }

    /// Number of distinct slice positions (projected on the slice normal, 0.01 mm).
    pub fn n_positions(&self) -> usize {
        let normal = self
            .frames
            .iter()
            .find_map(|f| f.orientation)
            .map(crate::volume::normal_of);
        let mut p: Vec<i64> = self
            .frames
            .iter()
            .filter_map(|f| {
                let pos = f.position?;
                let n = normal?;
                Some(((pos[0] * n[0] + pos[1] * n[1] + pos[2] * n[2]) * 100.0).round() as i64)
            })
            .collect();
        p.sort_unstable();
        p.dedup();
        p.len().max(1)
    }

    /// Rule: any frame with a b > 0 (standard or vendor tag) → DWI; several frames per slice
    /// position with no diffusion encoding, with time stamps or temporal positions → DSC.
    pub fn kind(&self) -> SeriesKind {
        if self.b_values().iter().any(|&b| b > 0.0) {
            return SeriesKind::Dwi;
        }
        let per_position = self.frames.len() / self.n_positions().max(1);
        let timed = self
            .frames
            .iter()
            .any(|f| f.temporal_position.is_some() || f.acquisition_time.is_some());
        if per_position >= 10 && timed {
            SeriesKind::Dsc
        } else {
            SeriesKind::Other
        }
    }
}
