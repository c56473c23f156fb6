//! Builds a 4-D series from a scanned DICOM series: slices sorted along the slice normal,
//! volumes in acquisition order, pixel values scaled, and the grid stored as dcm2niix stores it
//! (rows bottom-up) so that written NIfTI matches dcm2niix voxel for voxel.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dicom_pixeldata::PixelDecoder;
use ndarray::Array4;
use rayon::prelude::*;

use super::scan::{FrameRecord, ScannedSeries};
use crate::error::{Error, Result};
use crate::volume::{normal_of, Diffusion, Geometry, Series4, VolumeInfo};

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Positions closer than this along the normal (mm) are the same slice.
const SAME_SLICE_MM: f64 = 0.01;

fn same_encoding(a: Option<Diffusion>, b: Option<Diffusion>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let dir_eq = match (a.direction, b.direction) {
                (None, None) => true,
                (Some(x), Some(y)) => (0..3).all(|i| (x[i] - y[i]).abs() < 1e-3),
                _ => false,
            };
            (a.b - b.b).abs() <= 1e-3 * a.b.abs().max(1.0) && dir_eq && a.isotropic == b.isotropic
        }
        _ => false,
    }
}

fn consistent(slices: &[Vec<&FrameRecord>]) -> bool {
    slices.iter().all(|s| {
        s.iter()
            .zip(&slices[0])
            .all(|(a, b)| same_encoding(a.diffusion, b.diffusion) && a.echo_number == b.echo_number)
    })
}

fn missing(f: &FrameRecord, tag: &'static str, name: &'static str, hint: &'static str) -> Error {
    Error::MissingTag {
        path: f.file.to_path_buf(),
        tag,
        name,
        hint,
    }
}

/// How the images of one slice are put in volume order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeOrder {
    /// Acquisition order by instance number (dcm2niix's order; DWI). If the encodings then
    /// disagree between slices, the encodings' own order.
    Acquisition,
    /// Time (METHODS §5, DSC): TemporalPositionIdentifier, AcquisitionTime,
    /// TriggerTime (FrameAcquisitionDateTime is read into the acquisition time for Enhanced
    /// frames), then InstanceNumber as the last resort.
    Time,
}

/// Assembles the series; every check names the series and says what is wrong.
pub fn assemble(series: &ScannedSeries) -> Result<Series4> {
    assemble_ordered(series, VolumeOrder::Acquisition)
}

/// Assembles the series with volumes in the given order.
pub fn assemble_ordered(series: &ScannedSeries, order: VolumeOrder) -> Result<Series4> {
    let label = series.label();
    let err = |problem: String| Error::series(label.clone(), problem);
    let frames = &series.frames;
    let first = frames
        .first()
        .ok_or_else(|| err("holds no image frames".into()))?;

    let mut sizes: BTreeMap<(u32, u32), Vec<&FrameRecord>> = BTreeMap::new();
    for f in frames {
        sizes.entry((f.cols, f.rows)).or_default().push(f);
    }
    if sizes.len() > 1 {
        let list: Vec<String> = sizes
            .iter()
            .map(|((c, r), fs)| {
                format!(
                    "{c}×{r} ({} image{})",
                    fs.len(),
                    if fs.len() == 1 { "" } else { "s" }
                )
            })
            .collect();
        let odd = sizes.values().min_by_key(|fs| fs.len()).expect("two sizes");
        let names: Vec<String> = odd
            .iter()
            .take(3)
            .map(|f| f.file.display().to_string())
            .collect();
        return Err(err(format!(
            "mixes matrix sizes {}: these are images of more than one acquisition under one series (the odd one{} out: {}{}); move them out of the folder or pick the files of one acquisition",
            list.join(" and "),
            if odd.len() == 1 { "" } else { "s" },
            names.join(", "),
            if odd.len() > 3 { ", …" } else { "" }
        )));
    }

    let iop = first.orientation.ok_or_else(|| {
        missing(
            first,
            "(0020,0037)",
            "ImageOrientationPatient",
            "re-export the series with geometry tags",
        )
    })?;
    let spacing = first.pixel_spacing.ok_or_else(|| {
        missing(
            first,
            "(0028,0030)",
            "PixelSpacing",
            "re-export the series with geometry tags",
        )
    })?;
    // ImageOrientationPatient must be two orthogonal unit vectors, else no grid follows from it.
    let (r, c) = ([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);
    if (dot(r, r) - 1.0).abs() > 0.01 || (dot(c, c) - 1.0).abs() > 0.01 || dot(r, c).abs() > 0.01 {
        return Err(missing(
            first,
            "(0020,0037)",
            "ImageOrientationPatient",
            "its two direction cosines are not orthogonal unit vectors; the file's geometry is damaged",
        ));
    }
    if spacing.iter().any(|s| !(*s > 0.0)) {
        return Err(missing(
            first,
            "(0028,0030)",
            "PixelSpacing",
            "the pixel spacing must be positive",
        ));
    }
    let normal = normal_of(iop);
    let mut projected = Vec::with_capacity(frames.len());
    for f in frames {
        let o = f.orientation.ok_or_else(|| {
            missing(
                f,
                "(0020,0037)",
                "ImageOrientationPatient",
                "re-export the series with geometry tags",
            )
        })?;
        if (0..6).any(|i| (o[i] - iop[i]).abs() > 1e-3) {
            return Err(err(format!(
                "mixes slice orientations ({} differs from {}): paramap needs one stack of parallel slices",
                f.file.display(),
                first.file.display()
            )));
        }
        let p = f.position.ok_or_else(|| {
            missing(
                f,
                "(0020,0032)",
                "ImagePositionPatient",
                "re-export the series with geometry tags",
            )
        })?;
        projected.push(dot(p, normal));
    }

    // Slice positions along the normal, ascending.
    let mut by_position: Vec<usize> = (0..frames.len()).collect();
    by_position.sort_by(|&a, &b| projected[a].total_cmp(&projected[b]));
    let mut slices: Vec<Vec<&FrameRecord>> = Vec::new();
    let mut slice_pos: Vec<f64> = Vec::new();
    for i in by_position {
        match slice_pos.last() {
            Some(&p) if (projected[i] - p).abs() < SAME_SLICE_MM => {
                slices.last_mut().expect("a slice exists").push(&frames[i])
            }
            _ => {
                slice_pos.push(projected[i]);
                slices.push(vec![&frames[i]]);
            }
        }
    }
    let nz = slices.len();
    let dz = if nz > 1 {
        let gaps: Vec<f64> = slice_pos.windows(2).map(|w| w[1] - w[0]).collect();
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        for (k, g) in gaps.iter().enumerate() {
            if *g > 1.5 * median {
                return Err(err(format!(
                    "a slice is missing: slices at {:.2} mm and {:.2} mm along the slice normal are {:.2} mm apart where the others are {:.2} mm apart ({} slices found); re-send or re-export the complete series",
                    slice_pos[k], slice_pos[k + 1], g, median, nz
                )));
            }
        }
        (slice_pos[nz - 1] - slice_pos[0]) / (nz - 1) as f64
    } else {
        first.slice_thickness.unwrap_or(1.0)
    };

    let per_slice = slices.iter().map(|s| s.len()).max().unwrap_or(0);
    if let Some((k, short)) = slices
        .iter()
        .enumerate()
        .find(|(_, s)| s.len() != per_slice)
    {
        // Name what the short slice lacks, by comparing its encodings with a full slice's.
        let full = slices
            .iter()
            .find(|s| s.len() == per_slice)
            .expect("a full slice");
        let mut lacking: Vec<String> = Vec::new();
        let mut taken = vec![false; short.len()];
        for f in full {
            match short.iter().enumerate().find(|(i, g)| {
                !taken[*i]
                    && same_encoding(g.diffusion, f.diffusion)
                    && g.echo_number == f.echo_number
                    && g.temporal_position == f.temporal_position
            }) {
                Some((i, _)) => taken[i] = true,
                None => lacking.push(match f.diffusion {
                    Some(d) => format!(
                        "b={} s/mm²{}",
                        d.b,
                        d.direction
                            .map(|v| format!(" direction ({:.3}, {:.3}, {:.3})", v[0], v[1], v[2]))
                            .unwrap_or_default()
                    ),
                    None => match f.temporal_position {
                        Some(tp) => format!(
                            "TemporalPositionIdentifier {tp} (like {})",
                            f.file.display()
                        ),
                        None => format!("the image like {}", f.file.display()),
                    },
                }),
            }
        }
        let what = if lacking.is_empty() {
            "an image is missing or duplicated".to_string()
        } else {
            format!("the image(s) with {} are missing", lacking.join("; "))
        };
        return Err(err(format!(
            "slices hold different numbers of images ({} to {per_slice}): slice {} at {:.2} mm along the normal holds {}; {what}; re-send or re-export the complete series",
            slices.iter().map(|s| s.len()).min().unwrap_or(0),
            k + 1,
            slice_pos[k],
            short.len(),
        )));
    }

    // Volumes in acquisition order: instance number within each slice (what dcm2niix uses);
    // if that disagrees between slices, fall back to the diffusion encoding's own order.
    let acquisition = |a: &&FrameRecord, b: &&FrameRecord| {
        (a.temporal_position, a.instance, a.file.as_ref(), a.frame).cmp(&(
            b.temporal_position,
            b.instance,
            b.file.as_ref(),
            b.frame,
        ))
    };
    let by_time = |a: &&FrameRecord, b: &&FrameRecord| {
        let ms = |t: Option<f64>| t.map(|t| (t * 1000.0).round() as i64);
        let trig = |t: Option<f64>| t.map(|t| (t * 1000.0).round() as i64);
        (
            a.temporal_position,
            ms(a.acquisition_time),
            trig(a.trigger_time_ms),
        )
            .cmp(&(
                b.temporal_position,
                ms(b.acquisition_time),
                trig(b.trigger_time_ms),
            ))
            .then(acquisition(a, b))
    };
    for s in slices.iter_mut() {
        match order {
            VolumeOrder::Acquisition => s.sort_by(acquisition),
            VolumeOrder::Time => s.sort_by(by_time),
        }
    }
    if order == VolumeOrder::Time {
        if let Some((z, v)) = (0..slices.len()).find_map(|z| {
            (0..per_slice)
                .find(|&v| slices[z][v].temporal_position != slices[0][v].temporal_position)
                .map(|v| (z, v))
        }) {
            return Err(err(format!(
                "time point {} of slice {} has TemporalPositionIdentifier {:?} where slice 1 has {:?}: the slices do not hold the same time points; re-send the complete series",
                v + 1,
                z + 1,
                slices[z][v].temporal_position,
                slices[0][v].temporal_position
            )));
        }
    }
    if order == VolumeOrder::Acquisition && !consistent(&slices) {
        let key = |f: &FrameRecord| {
            let d = f.diffusion.unwrap_or(Diffusion {
                b: -1.0,
                direction: None,
                isotropic: false,
            });
            let dir = d
                .direction
                .unwrap_or([0.0; 3])
                .map(|x| (x * 1e4).round() as i64);
            ((d.b * 1e3).round() as i64, dir, d.isotropic, f.echo_number)
        };
        for s in slices.iter_mut() {
            s.sort_by(|a, b| key(a).cmp(&key(b)).then(acquisition(a, b)));
        }
        if !consistent(&slices) {
            return Err(err(
                "the images of each slice do not carry the same sequence of b-values/directions, so volumes cannot be formed; check that the folder holds one complete series".into(),
            ));
        }
    }

    let (nx, ny) = (first.cols as usize, first.rows as usize);
    let origin = slices[0][0].position.unwrap_or([0.0; 3]);
    let row = [iop[0], iop[1], iop[2]];
    let col = [iop[3], iop[4], iop[5]];
    let mut affine = [[0.0; 4]; 4];
    for r in 0..3 {
        affine[r][0] = row[r] * spacing[1];
        affine[r][1] = col[r] * spacing[0];
        affine[r][2] = normal[r] * dz;
        affine[r][3] = origin[r];
    }
    affine[3][3] = 1.0;
    let geometry = Geometry {
        dims: [nx, ny, nz],
        affine_lps: affine,
    }
    .flipped_y();

    // Where each frame goes: (volume, slice).
    let mut by_file: BTreeMap<PathBuf, Vec<Target>> = BTreeMap::new();
    for (z, s) in slices.iter().enumerate() {
        for (v, f) in s.iter().enumerate() {
            by_file
                .entry(f.file.to_path_buf())
                .or_default()
                .push(Target {
                    frame: f.frame,
                    tile: f.tile,
                    volume: v,
                    slice: z,
                    slope: f.rescale_slope,
                    intercept: f.rescale_intercept,
                    philips_scale_slope: f.philips_scale_slope,
                });
        }
    }
    let bar = crate::progress::bar("reading DICOM pixels", by_file.len() as u64);
    let decoded: Vec<Result<Vec<Decoded>>> = by_file
        .par_iter()
        .map(|(path, targets)| {
            let r = decode_file(path, targets, nx, ny);
            bar.inc();
            r
        })
        .collect();
    drop(bar);
    let mut data = Array4::<f32>::zeros((per_slice, nz, ny, nx));
    for result in decoded {
        for Decoded {
            volume: v,
            slice: z,
            pixels,
        } in result?
        {
            for y in 0..ny {
                // rows bottom-up, as in the flipped geometry
                let dst_row = ny - 1 - y;
                for x in 0..nx {
                    data[[v, z, dst_row, x]] = pixels[y * nx + x];
                }
            }
        }
    }

    let t0 = slices[0]
        .iter()
        .filter_map(|f| f.acquisition_time)
        .fold(f64::INFINITY, f64::min);
    let volumes = slices[0]
        .iter()
        .map(|f| VolumeInfo {
            diffusion: f.diffusion,
            time_s: f.acquisition_time.map(|t| t - t0),
        })
        .collect();
    let frame_times_s = if slices
        .iter()
        .all(|s| s.iter().all(|f| f.acquisition_time.is_some()))
    {
        let earliest = slices
            .iter()
            .flatten()
            .filter_map(|f| f.acquisition_time)
            .fold(f64::INFINITY, f64::min);
        Some(ndarray::Array2::from_shape_fn((per_slice, nz), |(v, z)| {
            slices[z][v].acquisition_time.unwrap_or(0.0) - earliest
        }))
    } else {
        None
    };
    let mut info = series.info.clone();
    info.n_files = series.files.len();
    Ok(Series4 {
        data,
        geometry,
        volumes,
        info,
        frame_times_s,
    })
}

/// Where one frame of a file goes, and how its stored values scale.
struct Target {
    frame: u32,
    tile: Option<super::scan::Tile>,
    volume: usize,
    slice: usize,
    slope: f64,
    intercept: f64,
    philips_scale_slope: Option<f64>,
}

/// One decoded frame, scaled to real values.
struct Decoded {
    volume: usize,
    slice: usize,
    pixels: Vec<f32>,
}

/// Decodes the frames of one file that the series uses, scaled to real values.
fn decode_file(
    path: &std::path::Path,
    targets: &[Target],
    nx: usize,
    ny: usize,
) -> Result<Vec<Decoded>> {
    let n_pixels = nx * ny;
    let corrupt = |reason: String| Error::CorruptDicom {
        path: path.to_path_buf(),
        reason,
    };
    let obj = super::guard::open(path, None)?;
    // The decoded size follows from the header: checked against the cap before decoding.
    let header = |tag| {
        super::values::int(&obj, tag)
            .unwrap_or(1)
            .clamp(0, u32::MAX as i64) as u64
    };
    use dicom_dictionary_std::tags;
    super::guard::check_decoded_size(
        header(tags::ROWS),
        header(tags::COLUMNS),
        header(tags::SAMPLES_PER_PIXEL).clamp(1, 4),
        header(tags::NUMBER_OF_FRAMES).max(1),
        super::values::int(&obj, tags::BITS_ALLOCATED)
            .unwrap_or(16)
            .clamp(1, 64) as u64,
    )
    .map_err(corrupt)?;
    // A damaged compressed stream can make a decoder panic: caught here, naming the file.
    let pixels = super::guard::no_panic(|| obj.decode_pixel_data())
        .map_err(|r| {
            corrupt(format!(
                "pixel data (7FE0,0010) cannot be decoded: {}",
                super::guard::library_stopped(&r)
            ))
        })?
        .map_err(|e| {
            corrupt(format!(
                "pixel data (7FE0,0010) cannot be decoded ({}); re-export the series uncompressed",
                crate::error::error_chain(&e)
            ))
        })?;
    if pixels.samples_per_pixel() != 1 {
        return Err(corrupt(format!(
            "has {} samples per pixel; MR maps need single-channel (MONOCHROME) images",
            pixels.samples_per_pixel()
        )));
    }
    let bits = pixels.bits_allocated();
    let signed = pixels.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed;
    let stored_bits = StoredBits::new(bits, pixels.bits_stored(), pixels.high_bit(), signed, path)?;
    let mut high_bits_used = false;
    let frame_pixels = (pixels.rows() * pixels.columns()) as usize;
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let (frame, slope, intercept) = (t.frame, t.slope, t.intercept);
        let raw = pixels
            .frame_data(frame)
            .map_err(|e| corrupt(format!("frame {frame}: {}", crate::error::error_chain(&e))))?;
        let need = frame_pixels * (bits as usize / 8).max(1);
        if raw.len() < need {
            return Err(corrupt(format!(
                "frame {frame} has {} bytes of pixel data, {need} expected",
                raw.len()
            )));
        }
        let n_pixels_frame = frame_pixels;
        let stored: Vec<f64> = match (bits, signed) {
            (8, false) => raw[..n_pixels_frame].iter().map(|&x| x as f64).collect(),
            (8, true) => raw[..n_pixels_frame]
                .iter()
                .map(|&x| x as i8 as f64)
                .collect(),
            (16, false) => raw
                .chunks_exact(2)
                .take(n_pixels_frame)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as f64)
                .collect(),
            (16, true) => raw
                .chunks_exact(2)
                .take(n_pixels_frame)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
                .collect(),
            (32, false) => raw
                .chunks_exact(4)
                .take(n_pixels_frame)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            (32, true) => raw
                .chunks_exact(4)
                .take(n_pixels_frame)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            _ => {
                return Err(corrupt(format!(
                    "{bits} bits allocated per pixel is not supported"
                )))
            }
        };
        // Only Bits Stored bits at High Bit carry the value (PS3.5 §8.1.1); the others may
        // hold an overlay or anything else.
        let stored: Vec<f64> = if stored_bits.is_whole_word() {
            stored
        } else {
            stored
                .into_iter()
                .map(|word| {
                    let (value, extra) = stored_bits.value(word);
                    high_bits_used |= extra;
                    value
                })
                .collect()
        };
        // A mosaic tile: cut this slice's rectangle out of the whole frame.
        let stored: Vec<f64> = match t.tile {
            Some(tile) => {
                let cols = pixels.columns() as usize;
                let (tile_rows, tile_cols) = (ny, nx);
                let (gr, gc) = (
                    (tile.index / tile.grid) as usize,
                    (tile.index % tile.grid) as usize,
                );
                if (gr + 1) * tile_rows > pixels.rows() as usize || (gc + 1) * tile_cols > cols {
                    return Err(corrupt(format!(
                        "mosaic tile {} of {}×{} pixels does not fit the {}×{} image",
                        tile.index,
                        tile_cols,
                        tile_rows,
                        cols,
                        pixels.rows()
                    )));
                }
                let mut cut = Vec::with_capacity(n_pixels);
                for y in 0..tile_rows {
                    let start = (gr * tile_rows + y) * cols + gc * tile_cols;
                    cut.extend_from_slice(&stored[start..start + tile_cols]);
                }
                cut
            }
            None if stored.len() == n_pixels => stored,
            None => {
                return Err(corrupt(format!(
                    "frame {frame} holds {} pixels where the series' images hold {n_pixels}",
                    stored.len()
                )))
            }
        };
        // Philips: floating-point value = (SV·RS + RI)/(RS·SS) (dcm2niix's reading); others:
        // SV·RS + RI.
        let scaled: Vec<f32> = match t.philips_scale_slope {
            Some(ss) if slope != 0.0 => stored
                .iter()
                .map(|&sv| ((sv * slope + intercept) / (slope * ss)) as f32)
                .collect(),
            _ => stored
                .iter()
                .map(|&sv| (sv * slope + intercept) as f32)
                .collect(),
        };
        out.push(Decoded {
            volume: t.volume,
            slice: t.slice,
            pixels: scaled,
        });
    }
    if high_bits_used {
        crate::log::warn(&format!(
            "{}: bits above BitsStored (0028,0101) = {} hold data (an overlay or other content); only the stored bits were read",
            path.display(),
            stored_bits.stored
        ));
    }
    Ok(out)
}

/// Where a pixel's value sits in its word: BitsStored (0028,0101) bits ending at HighBit
/// (0028,0102), two's complement where PixelRepresentation (0028,0103) is 1 (PS3.5 §8.1.1;
/// DCMTK and pydicom read the same bits).
#[derive(Debug, Clone, Copy)]
pub struct StoredBits {
    allocated: u16,
    stored: u16,
    /// Position of the lowest stored bit.
    shift: u16,
    signed: bool,
}

impl StoredBits {
    /// Checks the three header values against each other; Err names the file and the tags.
    pub fn new(
        allocated: u16,
        stored: u16,
        high_bit: u16,
        signed: bool,
        path: &std::path::Path,
    ) -> Result<Self> {
        if stored == 0 || stored > allocated || high_bit >= allocated || high_bit + 1 < stored {
            return Err(Error::CorruptDicom {
                path: path.to_path_buf(),
                reason: format!(
                    "BitsStored (0028,0101) = {stored} and HighBit (0028,0102) = {high_bit} do not fit BitsAllocated (0028,0100) = {allocated}"
                ),
            });
        }
        Ok(StoredBits {
            allocated,
            stored,
            shift: high_bit + 1 - stored,
            signed,
        })
    }

    /// All bits of the word are the value: nothing to mask.
    pub fn is_whole_word(&self) -> bool {
        self.stored == self.allocated
    }

    /// The value of a word read as (sign-extended or not) `allocated` bits, and whether bits
    /// outside the stored ones were set.
    pub fn value(&self, word: f64) -> (f64, bool) {
        let bits = self.allocated as u32;
        let raw = (word as i64 as u64) & (u64::MAX >> (64 - bits));
        let mask = (1u64 << self.stored) - 1;
        let v = (raw >> self.shift) & mask;
        let negative = self.signed && (v >> (self.stored - 1)) & 1 == 1;
        // Bits below the value, and above it unless they only repeat a negative value's sign.
        let top = self.shift + self.stored;
        let above = raw >> top;
        let above_all = if bits > top as u32 {
            (1u64 << (bits - top as u32)) - 1
        } else {
            0
        };
        let below = raw & ((1u64 << self.shift) - 1);
        let extra = below != 0 || (above != 0 && !(negative && above == above_all));
        let v = if negative {
            v as i64 - (1i64 << self.stored)
        } else {
            v as i64
        };
        (v as f64, extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_bits_mask_an_overlay_and_sign_extend() {
        let p = std::path::Path::new("x.dcm");
        // 12 bits at 11 in a 16-bit word, an overlay bit at 15.
        let u = StoredBits::new(16, 12, 11, false, p).unwrap();
        assert_eq!(u.value((0x8000 | 1234) as f64), (1234.0, true));
        assert_eq!(u.value(4095.0), (4095.0, false));
        // Signed 12-bit: 0xFFF is −1 whether or not the high bits repeat the sign.
        let s = StoredBits::new(16, 12, 11, true, p).unwrap();
        assert_eq!(s.value(0x0FFF as f64), (-1.0, false));
        assert_eq!(s.value(-1.0), (-1.0, false)); // 0xFFFF read as i16
        assert_eq!(s.value(0x0800 as f64), (-2048.0, false));
        assert_eq!(s.value((0x4000 | 0x07FF) as f64), (2047.0, true));
        // Stored bits not at the bottom: HighBit 15 for 12 bits.
        let h = StoredBits::new(16, 12, 15, false, p).unwrap();
        assert_eq!(h.value((100 << 4) as f64), (100.0, false));
        assert!(StoredBits::new(16, 17, 16, false, p).is_err());
        assert!(StoredBits::new(16, 12, 10, false, p).is_err());
    }
}
