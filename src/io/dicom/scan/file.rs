//! Reads one file's header for the scan: an image's frame records (classic, each tile of a
//! Siemens mosaic, or each frame of an Enhanced multi-frame object from its functional groups),
//! or why the file is not one (not DICOM, not an image, damaged).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

use super::{FrameRecord, ScannedSeries, Tile};
use crate::error::Error;
use crate::io::dicom::elements::{
    EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, PARAMETRIC_MAP_STORAGE,
};
use crate::io::dicom::guard;
use crate::io::dicom::values::{self, Dataset};
use crate::io::dicom::vendor::{self, Vendor};
use crate::log;
use crate::volume::{DicomSource, SeriesInfo};

const PER_FRAME_GROUPS: Tag = Tag(0x5200, 0x9230);
const SHARED_GROUPS: Tag = Tag(0x5200, 0x9229);
const PLANE_POSITION_SEQ: Tag = Tag(0x0020, 0x9113);
const PLANE_ORIENTATION_SEQ: Tag = Tag(0x0020, 0x9116);
const PIXEL_MEASURES_SEQ: Tag = Tag(0x0028, 0x9110);
const PIXEL_VALUE_TRANSFORM_SEQ: Tag = Tag(0x0028, 0x9145);
const FRAME_CONTENT_SEQ: Tag = Tag(0x0020, 0x9111);
const MR_ECHO_SEQ: Tag = Tag(0x0018, 0x9114);
const EFFECTIVE_ECHO_TIME: Tag = Tag(0x0018, 0x9082);
const TEMPORAL_POSITION_INDEX: Tag = Tag(0x0020, 0x9128);
const FRAME_ACQUISITION_DATETIME: Tag = Tag(0x0018, 0x9074);

/// Most slices one Siemens mosaic may hold (scanners write at most a few hundred); a larger
/// count is a damaged header and would make millions of slice records.
const MAX_MOSAIC_IMAGES: u32 = 4096;

/// Splits a Siemens mosaic into its slices: tile size, and the true position of each slice.
/// The mosaic's ImagePositionPatient describes the whole mosaic as one image; the first
/// slice's position is shifted by half the difference in size along rows and columns
/// (nibabel's and dcm2niix's correction), and later slices follow along the CSA
/// SliceNormalVector at SpacingBetweenSlices.
fn mosaic_tiles(ds: &Dataset, path: &Path) -> Option<(u32, u32, u32, Vec<[f64; 3]>)> {
    let image_type = values::text(ds, tags::IMAGE_TYPE)?.to_ascii_uppercase();
    if !image_type.contains("MOSAIC") {
        return None;
    }
    let csa = vendor::siemens_csa(ds);
    let csa_get = |name: &str| {
        csa.iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let n = csa_get("NumberOfImagesInMosaic")
        .map(|v| v[0].clamp(0.0, u32::MAX as f64) as u32)
        .or_else(|| {
            values::private_numbers(ds, Tag(0x0019, 0x100A), values::Binary::F64)
                .map(|v| v[0].clamp(0.0, u32::MAX as f64) as u32)
        })
        .filter(|&n| n > 0);
    if let Some(n) = n.filter(|&n| n > MAX_MOSAIC_IMAGES) {
        log::warn(&format!(
            "{}: NumberOfImagesInMosaic = {n} is more than the {MAX_MOSAIC_IMAGES} a mosaic holds; read as one image",
            path.display()
        ));
        return None;
    }
    let Some(n) = n else {
        log::warn(&format!(
            "{}: MOSAIC image without NumberOfImagesInMosaic; read as one image",
            path.display()
        ));
        return None;
    };
    let grid = (n as f64).sqrt().ceil() as u32;
    let rows = values::int(ds, tags::ROWS)? as u32;
    let cols = values::int(ds, tags::COLUMNS)? as u32;
    let (tr, tc) = (rows / grid, cols / grid);
    if tr == 0 || tc == 0 || n > grid * grid {
        log::warn(&format!(
            "{}: a {cols}×{rows} MOSAIC cannot hold {n} images; read as one image",
            path.display()
        ));
        return None;
    }
    let iop = values::floats(ds, tags::IMAGE_ORIENTATION_PATIENT).filter(|v| v.len() >= 6)?;
    let ps = values::floats(ds, tags::PIXEL_SPACING).filter(|v| v.len() >= 2)?;
    let ipp = values::floats(ds, tags::IMAGE_POSITION_PATIENT).and_then(|v| f3(&v))?;
    let (row, col) = ([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);
    let shift_r = (rows - tr) as f64 / 2.0 * ps[0];
    let shift_c = (cols - tc) as f64 / 2.0 * ps[1];
    let first: [f64; 3] = std::array::from_fn(|k| ipp[k] + col[k] * shift_r + row[k] * shift_c);
    let normal = csa_get("SliceNormalVector")
        .filter(|v| v.len() >= 3)
        .map(|v| [v[0], v[1], v[2]])
        .unwrap_or_else(|| {
            crate::volume::normal_of([row[0], row[1], row[2], col[0], col[1], col[2]])
        });
    let dz = values::float(ds, tags::SPACING_BETWEEN_SLICES)
        .or_else(|| values::float(ds, tags::SLICE_THICKNESS))
        .unwrap_or(1.0);
    let positions = (0..n)
        .map(|k| std::array::from_fn(|i| first[i] + normal[i] * dz * k as f64))
        .collect();
    Some((tr, tc, grid, positions))
}

pub(super) enum FileResult {
    Image(Box<(SeriesKey, ScannedSeries)>),
    NonImage(PathBuf, String),
    NotDicom(PathBuf),
    Corrupt(PathBuf, String),
}

pub(super) type SeriesKey = String;

fn has_dicm_magic(path: &Path) -> bool {
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|_| &head[128..132] == b"DICM")
        .unwrap_or(false)
}

/// A readable name for a non-image SOP class.
fn sop_class_name(uid: &str) -> String {
    match uid {
        "1.2.840.10008.5.1.4.1.1.11.1" => "presentation state".into(),
        "1.2.840.10008.1.3.10" => "DICOMDIR".into(),
        PARAMETRIC_MAP_STORAGE => "parametric map (derived)".into(),
        "1.2.840.10008.5.1.4.1.1.66" => "raw data".into(),
        "1.2.840.10008.5.1.4.1.1.88.11"
        | "1.2.840.10008.5.1.4.1.1.88.22"
        | "1.2.840.10008.5.1.4.1.1.88.33" => "structured report".into(),
        u if u.starts_with("1.3.46.670589") => "private Philips object".into(),
        u if u.starts_with("1.3.12.2.1107") => "private Siemens object".into(),
        u if u.starts_with("1.2.840.113619") => "private GE object".into(),
        u => format!("object of SOP class {u}"),
    }
}

fn is_image_storage(uid: &str) -> bool {
    // MR, Enhanced MR, CT, secondary capture, parametric map, legacy-converted…: all image
    // storage classes live under 1.2.840.10008.5.1.4.1.1 and carry Pixel Data; the check on
    // Pixel Data below is what decides.
    uid.starts_with("1.2.840.10008.5.1.4.1.1.")
        && uid != "1.2.840.10008.5.1.4.1.1.11.1"
        // A Parametric Map (ours or another tool's) holds computed values, not signal: it is
        // listed as derived, never ingested as a source series.
        && uid != PARAMETRIC_MAP_STORAGE
}

/// What a derived series must inherit from this file (see [`DicomSource`]): the listed
/// attributes as text, where present (empty values kept: Type 2 attributes stay present).
fn dicom_source(ds: &Dataset, sop_class: &str) -> DicomSource {
    let inherited = crate::io::dicom::derived::INHERITED
        .iter()
        .filter_map(|&(tag, _)| {
            let e = ds.element_opt(tag).ok()??;
            let value = e.to_str().ok()?;
            let value = value
                .trim_matches(|c: char| c.is_whitespace() || c == '\0')
                .to_string();
            Some(((tag.0, tag.1), e.vr().to_string().to_string(), value))
        })
        .collect();
    DicomSource {
        inherited,
        sop_class_uid: sop_class.to_string(),
        sop_instance_uids: values::text(ds, tags::SOP_INSTANCE_UID)
            .into_iter()
            .collect(),
    }
}

/// Expected bytes of uncompressed pixel data, for catching truncated files at scan time.
fn expected_pixel_bytes(ds: &Dataset, frames: u32) -> Option<u64> {
    let rows = values::int(ds, tags::ROWS)?.clamp(0, 65535) as u64;
    let cols = values::int(ds, tags::COLUMNS)?.clamp(0, 65535) as u64;
    let bits = values::int(ds, tags::BITS_ALLOCATED)?.clamp(0, 64) as u64;
    let spp = values::int(ds, tags::SAMPLES_PER_PIXEL)
        .unwrap_or(1)
        .clamp(1, 4) as u64;
    Some(rows * cols * spp * frames as u64 * bits / 8)
}

fn f3(v: &[f64]) -> Option<[f64; 3]> {
    (v.len() >= 3).then(|| [v[0], v[1], v[2]])
}

/// Reads one file's header; a panic in the DICOM libraries becomes a corrupt file naming it.
pub(super) fn read_file(path: &Path) -> FileResult {
    guard::no_panic(|| read_file_unguarded(path)).unwrap_or_else(|panic| {
        FileResult::Corrupt(path.to_path_buf(), guard::library_stopped(&panic))
    })
}

fn read_file_unguarded(path: &Path) -> FileResult {
    if !has_dicm_magic(path) {
        return FileResult::NotDicom(path.to_path_buf());
    }
    // Float and Double Float Pixel Data (7FE0,0008/0009) come before Pixel Data: stop at
    // the first of them, so that a parametric map's floats are never read by the scan. The
    // guard pre-scans the bytes first (nesting depth, declared lengths; see `guard`).
    let obj: DefaultDicomObject = match guard::open(path, Some(Tag(0x7FE0, 0x0008))) {
        Ok(o) => o,
        Err(Error::CorruptDicom { reason, .. }) => {
            return FileResult::Corrupt(path.to_path_buf(), reason)
        }
        Err(e) => return FileResult::Corrupt(path.to_path_buf(), e.to_string()),
    };
    let sop_class = obj
        .meta()
        .media_storage_sop_class_uid()
        .trim_end_matches('\0')
        .to_string();
    let transfer_syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let ds: &Dataset = &obj;
    let has_pixels =
        values::int(ds, tags::ROWS).is_some() && values::int(ds, tags::COLUMNS).is_some();
    if !is_image_storage(&sop_class) || !has_pixels {
        return FileResult::NonImage(path.to_path_buf(), sop_class_name(&sop_class));
    }
    let corrupt = |reason: String| FileResult::Corrupt(path.to_path_buf(), reason);
    let rows = values::int(ds, tags::ROWS).unwrap_or(0);
    let cols = values::int(ds, tags::COLUMNS).unwrap_or(0);
    if !(1..=65535).contains(&rows) || !(1..=65535).contains(&cols) {
        return corrupt(format!(
            "Rows (0028,0010) = {rows} and Columns (0028,0011) = {cols}: an image needs 1 to 65535 of each; the header is damaged"
        ));
    }
    let declared_frames = values::int(ds, tags::NUMBER_OF_FRAMES).unwrap_or(1);
    if !(0..=u32::MAX as i64).contains(&declared_frames) {
        return corrupt(format!(
            "NumberOfFrames (0028,0008) = {declared_frames} is not a number of frames; the header is damaged"
        ));
    }
    let n_frames = declared_frames.max(1) as u32;
    let bits_allocated = values::int(ds, tags::BITS_ALLOCATED)
        .unwrap_or(16)
        .clamp(1, 64) as u64;
    let samples = values::int(ds, tags::SAMPLES_PER_PIXEL)
        .unwrap_or(1)
        .clamp(1, 4) as u64;
    if let Err(reason) = guard::check_decoded_size(
        rows as u64,
        cols as u64,
        samples,
        n_frames as u64,
        bits_allocated,
    ) {
        return corrupt(reason);
    }
    let uncompressed = matches!(
        transfer_syntax.as_str(),
        IMPLICIT_VR_LE | EXPLICIT_VR_LE | EXPLICIT_VR_BE
    );
    if uncompressed {
        if let (Some(need), Ok(meta)) =
            (expected_pixel_bytes(ds, n_frames), std::fs::metadata(path))
        {
            if meta.len() < need {
                return FileResult::Corrupt(
                    path.to_path_buf(),
                    format!(
                        "pixel data needs {need} bytes but the whole file is only {} bytes",
                        meta.len()
                    ),
                );
            }
        }
    }
    let manufacturer = values::text(ds, tags::MANUFACTURER);
    let vendor = Vendor::from_manufacturer(manufacturer.as_deref());
    let series_uid = values::text(ds, tags::SERIES_INSTANCE_UID)
        .unwrap_or_else(|| "(no SeriesInstanceUID)".into());
    let info = SeriesInfo {
        source: String::new(),
        series_uid: Some(series_uid.clone()),
        series_number: values::int(ds, tags::SERIES_NUMBER),
        description: values::text(ds, tags::SERIES_DESCRIPTION)
            .or_else(|| values::text(ds, tags::PROTOCOL_NAME)),
        manufacturer,
        model: values::text(ds, tags::MANUFACTURER_MODEL_NAME),
        study_uid: values::text(ds, tags::STUDY_INSTANCE_UID),
        frame_of_reference_uid: values::text(ds, tags::FRAME_OF_REFERENCE_UID),
        patient_id: values::text(ds, tags::PATIENT_ID),
        // DICOM gives both in ms (PS3.3 C.8.3.1); the library carries seconds from here on.
        echo_time_s: values::float(ds, tags::ECHO_TIME).map(|ms| ms / 1000.0),
        repetition_time_s: values::float(ds, tags::REPETITION_TIME).map(|ms| ms / 1000.0),
        n_files: 1,
        dicom: Some(dicom_source(ds, &sop_class)),
    };
    let file = Arc::new(path.to_path_buf());
    let (rows, cols) = (rows as u32, cols as u32);
    let philips_scale_slope = (vendor == Vendor::Philips)
        .then(|| values::private_numbers(ds, vendor::PHILIPS_SCALE_SLOPE, values::Binary::F32))
        .flatten()
        .and_then(|v| v.first().copied())
        .filter(|s| *s != 0.0 && s.is_finite());
    let instance = values::int(ds, tags::INSTANCE_NUMBER);
    // Date and time (seconds since 1970), so that a series crossing midnight stays in order.
    let classic_time = values::acquisition_seconds(ds);

    let per_frame = values::items(ds, PER_FRAME_GROUPS);
    let enhanced = per_frame.is_some();
    if let Some(items) = per_frame {
        if items.len() < n_frames as usize {
            return corrupt(format!(
                "its Per-Frame Functional Groups Sequence (5200,9230) has {} item(s) for NumberOfFrames (0028,0008) = {n_frames}; each frame needs its item (position, orientation, timing): the file is damaged or incompletely exported",
                items.len()
            ));
        }
    }
    let mut frames = Vec::with_capacity(per_frame.map_or(1, |p| p.len().min(n_frames as usize)));
    if let Some(per_frame) = per_frame {
        let shared = values::item(ds, SHARED_GROUPS);
        for (i, pf) in per_frame.iter().enumerate().take(n_frames as usize) {
            // A functional group is looked up per frame first, then in the shared groups.
            let group = |seq: Tag| {
                values::item(pf, seq).or_else(|| shared.and_then(|s| values::item(s, seq)))
            };
            let floats_in = |seq: Tag, tag: Tag| group(seq).and_then(|g| values::floats(g, tag));
            let content = group(FRAME_CONTENT_SEQ);
            // The diffusion macro sits per frame, or in the shared groups when it is the same
            // for all frames.
            let holder = if values::item(pf, vendor::MR_DIFFUSION_SEQUENCE).is_some() {
                pf
            } else {
                shared.unwrap_or(pf)
            };
            let diffusion = vendor::diffusion(holder, ds, vendor);
            frames.push(FrameRecord {
                file: file.clone(),
                frame: i as u32,
                tile: None,
                rows,
                cols,
                position: floats_in(PLANE_POSITION_SEQ, tags::IMAGE_POSITION_PATIENT)
                    .and_then(|v| f3(&v)),
                orientation: floats_in(PLANE_ORIENTATION_SEQ, tags::IMAGE_ORIENTATION_PATIENT)
                    .filter(|v| v.len() >= 6)
                    .map(|v| [v[0], v[1], v[2], v[3], v[4], v[5]]),
                pixel_spacing: floats_in(PIXEL_MEASURES_SEQ, tags::PIXEL_SPACING)
                    .filter(|v| v.len() >= 2)
                    .map(|v| [v[0], v[1]]),
                slice_thickness: floats_in(PIXEL_MEASURES_SEQ, tags::SLICE_THICKNESS).map(|v| v[0]),
                rescale_slope: floats_in(PIXEL_VALUE_TRANSFORM_SEQ, tags::RESCALE_SLOPE)
                    .map(|v| v[0])
                    .or_else(|| values::float(ds, tags::RESCALE_SLOPE))
                    .unwrap_or(1.0),
                rescale_intercept: floats_in(PIXEL_VALUE_TRANSFORM_SEQ, tags::RESCALE_INTERCEPT)
                    .map(|v| v[0])
                    .or_else(|| values::float(ds, tags::RESCALE_INTERCEPT))
                    .unwrap_or(0.0),
                philips_scale_slope,
                diffusion,
                instance,
                temporal_position: content.and_then(|c| values::int(c, TEMPORAL_POSITION_INDEX)),
                acquisition_time: content
                    .and_then(|c| values::text(c, FRAME_ACQUISITION_DATETIME))
                    .and_then(|t| values::datetime_seconds(&t))
                    .or(classic_time),
                trigger_time_ms: None,
                echo_time_ms: floats_in(MR_ECHO_SEQ, EFFECTIVE_ECHO_TIME)
                    .map(|v| v[0])
                    .or(info.echo_time_s.map(|s| s * 1000.0)),
                echo_number: None,
            });
        }
    } else {
        let (rows, cols, tiles) = match mosaic_tiles(ds, path) {
            Some((tr, tc, grid, positions)) => (
                tr,
                tc,
                positions
                    .into_iter()
                    .enumerate()
                    .map(|(k, p)| {
                        (
                            Some(Tile {
                                grid,
                                index: k as u32,
                            }),
                            Some(p),
                        )
                    })
                    .collect(),
            ),
            None => (
                rows,
                cols,
                vec![(
                    None,
                    values::floats(ds, tags::IMAGE_POSITION_PATIENT).and_then(|v| f3(&v)),
                )],
            ),
        };
        for (tile, position) in tiles {
            frames.push(FrameRecord {
                file: file.clone(),
                frame: 0,
                tile,
                rows,
                cols,
                position,
                orientation: values::floats(ds, tags::IMAGE_ORIENTATION_PATIENT)
                    .filter(|v| v.len() >= 6)
                    .map(|v| [v[0], v[1], v[2], v[3], v[4], v[5]]),
                pixel_spacing: values::floats(ds, tags::PIXEL_SPACING)
                    .filter(|v| v.len() >= 2)
                    .map(|v| [v[0], v[1]]),
                slice_thickness: values::float(ds, tags::SLICE_THICKNESS),
                rescale_slope: values::float(ds, tags::RESCALE_SLOPE).unwrap_or(1.0),
                rescale_intercept: values::float(ds, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
                philips_scale_slope,
                diffusion: vendor::diffusion(ds, ds, vendor),
                instance,
                temporal_position: values::int(ds, tags::TEMPORAL_POSITION_IDENTIFIER),
                acquisition_time: classic_time,
                trigger_time_ms: values::float(ds, tags::TRIGGER_TIME),
                echo_time_ms: info.echo_time_s.map(|s| s * 1000.0),
                echo_number: values::int(ds, tags::ECHO_NUMBERS),
            });
        }
    }
    let modality = values::text(ds, tags::MODALITY);
    let image_type = values::text(ds, tags::IMAGE_TYPE).map(|t| t.to_ascii_uppercase());
    FileResult::Image(Box::new((
        series_uid,
        ScannedSeries {
            info,
            modality,
            vendor,
            files: vec![path.to_path_buf()],
            frames,
            enhanced,
            image_type,
        },
    )))
}
