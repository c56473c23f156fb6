//! DICOM Segmentation objects (PS3.3 §A.51, the Segmentation IOD; §C.8.20, the Segmentation
//! Image and Segment Sequence; §C.7.6.16, the multi-frame functional groups) read as ROI masks:
//! one mask per segment, named by its Segment Label (0062,0005), on the grid the frames span.
//!
//! What is read:
//! - SOP Class Segmentation Storage (1.2.840.10008.5.1.4.1.1.66.4); Segmentation Type
//!   (0062,0001) BINARY (1 bit per pixel, frames packed one after another without padding,
//!   PS3.5 §8.1.1) or FRACTIONAL (8 bits, the fraction = value ÷ Maximum Fractional Value
//!   (0062,000E); a pixel whose fraction is at least 0.5 is inside, a mask thresholded at half
//!   as 3D Slicer and dcmqi show one).
//! - Per frame: Plane Position (0020,9113) › Image Position (Patient), Plane Orientation
//!   (0020,9116) › Image Orientation (Patient) and Pixel Measures (0028,9110) › Pixel Spacing,
//!   from the per-frame (5200,9230) or shared (5200,9229) functional groups, and Segment
//!   Identification (0062,000A) › Referenced Segment Number (0062,000B).
//! - The Frame of Reference UID (0020,0052), so that an ROI is placed only on series of its own
//!   Frame of Reference.
//!
//! The frames must lie on one regular stack (one orientation; positions along the normal a
//! whole number of slice spacings apart; the same in-plane origin). Empty frames may be left
//! out, as highdicom does by default: the stack spans the first to the last position, at
//! Spacing Between Slices (0018,0088) where given, else at the smallest gap between
//! positions. Compressed pixel data (encapsulated transfer syntaxes) is refused with the way
//! to decompress it.
//!
//! Every size from the header is checked before anything is allocated: the frames' bits against
//! the pixel bytes present, the stack against [`super::guard::MAX_DECODED_PIXEL_BYTES`].

use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use ndarray::Array3;

use super::guard;
use super::values::{float, floats, int, item, items, text, Dataset};
use crate::error::{Error, Result};
use crate::volume::Geometry;

/// Segmentation Storage (PS3.4 §B.5).
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// One segment as a mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Segment Number (0062,0004).
    pub number: u32,
    /// Segment Label (0062,0005); "segment N" when the label is empty.
    pub label: String,
    /// `[z, y, x]` on [`Segmentation::geometry`], rows stored bottom-up as every volume of
    /// paramap ([`Geometry::flipped_y`]).
    pub mask: Array3<bool>,
}

/// A DICOM Segmentation: its grid, Frame of Reference and segments (in Segment Sequence order;
/// a segment with no frame is an empty mask).
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    pub geometry: Geometry,
    pub frame_of_reference_uid: Option<String>,
    pub segments: Vec<Segment>,
}

/// Whether `path` starts like a DICOM Part 10 file ("DICM" after the 128-byte preamble).
pub fn looks_like_dicom(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|_| &head[128..] == b"DICM")
        .unwrap_or(false)
}

/// A frame's place: position along the normal, in-plane origin, segment.
struct Frame {
    along: f64,
    origin: [f64; 3],
    segment: u32,
}

/// Reads a DICOM Segmentation (see the module text).
///
/// Errors (each naming the file and the element): not a Segmentation; a segmentation type other
/// than BINARY or FRACTIONAL; a missing or inconsistent geometry element; frames off one regular
/// stack; a frame naming a segment the Segment Sequence lacks; fewer pixel bytes than the
/// frames declare; compressed pixel data.
pub fn read(path: &Path) -> Result<Segmentation> {
    let obj = guard::open(path, None)?;
    let bad = |element: &str, problem: String| {
        Error::Invalid(format!(
            "{}: DICOM Segmentation, {element}: {problem}",
            path.display()
        ))
    };
    let sop = text(&obj, tags::SOP_CLASS_UID).unwrap_or_default();
    if sop != SEGMENTATION_STORAGE {
        return Err(bad(
            "SOP Class UID (0008,0016)",
            format!("{sop:?} is not Segmentation Storage ({SEGMENTATION_STORAGE}); give an ROI as a DICOM SEG or a NIfTI mask (non-zero = inside)"),
        ));
    }
    let kind = text(&obj, tags::SEGMENTATION_TYPE).unwrap_or_default();
    let bits: u64 = match kind.as_str() {
        "BINARY" => 1,
        "FRACTIONAL" => 8,
        other => {
            return Err(bad(
                "Segmentation Type (0062,0001)",
                format!("{other:?}: paramap reads BINARY and FRACTIONAL segmentations"),
            ))
        }
    };
    let declared_bits = int(&obj, tags::BITS_ALLOCATED).unwrap_or(-1);
    if declared_bits != bits as i64 {
        return Err(bad(
            "Bits Allocated (0028,0100)",
            format!("{declared_bits} for a {kind} segmentation (PS3.3 §C.8.20.2 requires {bits})"),
        ));
    }
    let positive = |tag: Tag, name: &str| -> Result<u64> {
        match int(&obj, tag) {
            Some(v) if v > 0 && v <= u32::MAX as i64 => Ok(v as u64),
            v => Err(bad(name, format!("{v:?}: must be a positive whole number"))),
        }
    };
    let rows = positive(tags::ROWS, "Rows (0028,0010)")?;
    let cols = positive(tags::COLUMNS, "Columns (0028,0011)")?;
    let frames = positive(tags::NUMBER_OF_FRAMES, "Number of Frames (0028,0008)")?;
    let max_fraction = if kind == "FRACTIONAL" {
        match int(&obj, tags::MAXIMUM_FRACTIONAL_VALUE) {
            Some(v) if (1..=255).contains(&v) => v as f64,
            v => {
                return Err(bad(
                    "Maximum Fractional Value (0062,000E)",
                    format!("{v:?}: a FRACTIONAL segmentation needs a value from 1 to 255"),
                ))
            }
        }
    } else {
        1.0
    };

    // The pixel bytes, checked against what the header declares before anything is sized by it.
    let pixel = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or_else(|| bad("Pixel Data (7FE0,0010)", "missing".into()))?;
    if pixel.fragments().is_some() {
        return Err(bad(
            "Pixel Data (7FE0,0010)",
            format!(
                "compressed (transfer syntax {}); decompress it first, e.g. `dcmconv +te IN OUT` (dcmtk) or `gdcmconv --raw IN OUT`",
                obj.meta().transfer_syntax().trim_end_matches('\0')
            ),
        ));
    }
    let bytes = pixel
        .to_bytes()
        .map_err(|e| bad("Pixel Data (7FE0,0010)", format!("unreadable ({e})")))?;
    let need_bits = rows as u128 * cols as u128 * frames as u128 * bits as u128;
    if need_bits > bytes.len() as u128 * 8 {
        return Err(bad(
            "Pixel Data (7FE0,0010)",
            format!(
                "{} bytes, but Number of Frames {frames} × Rows {rows} × Columns {cols} at {bits} bit(s) need {}; the header or the pixel data is damaged",
                bytes.len(),
                need_bits.div_ceil(8)
            ),
        ));
    }

    // The segments.
    let seg_items = items(&obj, tags::SEGMENT_SEQUENCE).unwrap_or(&[]);
    if seg_items.is_empty() {
        return Err(bad(
            "Segment Sequence (0062,0002)",
            "missing or empty".into(),
        ));
    }
    let mut segments: Vec<(u32, String)> = Vec::with_capacity(seg_items.len());
    for (k, s) in seg_items.iter().enumerate() {
        let number = match int(s, tags::SEGMENT_NUMBER) {
            Some(n) if n > 0 && n <= u16::MAX as i64 => n as u32,
            n => {
                return Err(bad(
                    "Segment Sequence (0062,0002) › Segment Number (0062,0004)",
                    format!("item {}: {n:?} is not a segment number (1–65535)", k + 1),
                ))
            }
        };
        if segments.iter().any(|(m, _)| *m == number) {
            return Err(bad(
                "Segment Sequence (0062,0002) › Segment Number (0062,0004)",
                format!("segment {number} is listed twice"),
            ));
        }
        let label = text(s, tags::SEGMENT_LABEL).unwrap_or_else(|| format!("segment {number}"));
        segments.push((number, label));
    }

    // Each frame's geometry: per-frame functional groups over the shared ones.
    let shared = item(&obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = items(&obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).unwrap_or(&[]);
    if per_frame.len() as u64 != frames {
        return Err(bad(
            "Per-frame Functional Groups Sequence (5200,9230)",
            format!(
                "{} items for Number of Frames {frames}; each frame needs its own",
                per_frame.len()
            ),
        ));
    }
    let group = |f: &Dataset, seq: Tag, tag: Tag| -> Option<Vec<f64>> {
        item(f, seq).and_then(|g| floats(g, tag)).or_else(|| {
            shared
                .and_then(|s| item(s, seq))
                .and_then(|g| floats(g, tag))
        })
    };
    let mut orientation: Option<[f64; 6]> = None;
    let mut spacing: Option<[f64; 2]> = None;
    let mut placed = Vec::with_capacity(per_frame.len());
    let mut normal = [0.0; 3];
    for (f, fg) in per_frame.iter().enumerate() {
        let frame_no = f + 1;
        let iop = group(
            fg,
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        )
        .filter(|v| v.len() == 6)
        .ok_or_else(|| {
            bad(
                "Plane Orientation Sequence (0020,9116) › Image Orientation (Patient) (0020,0037)",
                format!(
                    "frame {frame_no}: missing (in the per-frame and the shared functional groups)"
                ),
            )
        })?;
        let ps = group(fg, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING)
            .filter(|v| v.len() == 2 && v.iter().all(|&x| x > 0.0))
            .ok_or_else(|| {
                bad(
                    "Pixel Measures Sequence (0028,9110) › Pixel Spacing (0028,0030)",
                    format!("frame {frame_no}: missing or not two positive numbers"),
                )
            })?;
        let ipp = group(
            fg,
            tags::PLANE_POSITION_SEQUENCE,
            tags::IMAGE_POSITION_PATIENT,
        )
        .filter(|v| v.len() == 3)
        .ok_or_else(|| {
            bad(
                "Plane Position Sequence (0020,9113) › Image Position (Patient) (0020,0032)",
                format!("frame {frame_no}: missing"),
            )
        })?;
        // Per frame, or shared when every frame holds one segment (highdicom does so for a
        // SEG of one segment).
        let segment = item(fg, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
            .or_else(|| shared.and_then(|s| item(s, tags::SEGMENT_IDENTIFICATION_SEQUENCE)))
            .and_then(|g| int(g, tags::REFERENCED_SEGMENT_NUMBER))
            .ok_or_else(|| {
                bad(
                    "Segment Identification Sequence (0062,000A) › Referenced Segment Number (0062,000B)",
                    format!("frame {frame_no}: missing (in the per-frame and the shared functional groups)"),
                )
            })?;
        if !segments.iter().any(|(n, _)| *n as i64 == segment) {
            return Err(bad(
                "Referenced Segment Number (0062,000B)",
                format!("frame {frame_no} names segment {segment}, which the Segment Sequence (0062,0002) does not list"),
            ));
        }
        let iop: [f64; 6] = std::array::from_fn(|k| iop[k]);
        match orientation {
            None => {
                let (r, c) = ([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);
                normal = [
                    r[1] * c[2] - r[2] * c[1],
                    r[2] * c[0] - r[0] * c[2],
                    r[0] * c[1] - r[1] * c[0],
                ];
                let len = normal.iter().map(|x| x * x).sum::<f64>().sqrt();
                let unit = |v: [f64; 3]| (v.iter().map(|x| x * x).sum::<f64>().sqrt() - 1.0).abs() < 1e-3;
                if !(unit(r) && unit(c) && (len - 1.0).abs() < 1e-3) {
                    return Err(bad(
                        "Image Orientation (Patient) (0020,0037)",
                        format!("frame {frame_no}: {iop:?} is not two orthogonal unit vectors"),
                    ));
                }
                orientation = Some(iop);
            }
            Some(o) if o.iter().zip(&iop).all(|(a, b)| (a - b).abs() < 1e-4) => {}
            Some(o) => {
                return Err(bad(
                    "Image Orientation (Patient) (0020,0037)",
                    format!("frame {frame_no} is oriented {iop:?}, frame 1 {o:?}: paramap reads segmentations of one stack of parallel slices"),
                ))
            }
        }
        let ps = [ps[0], ps[1]];
        match spacing {
            None => spacing = Some(ps),
            Some(s) if (s[0] - ps[0]).abs() < 1e-4 && (s[1] - ps[1]).abs() < 1e-4 => {}
            Some(s) => {
                return Err(bad(
                    "Pixel Spacing (0028,0030)",
                    format!("frame {frame_no} has {ps:?} mm, frame 1 {s:?} mm"),
                ))
            }
        }
        let along: f64 = (0..3).map(|r| ipp[r] * normal[r]).sum();
        placed.push(Frame {
            along,
            origin: std::array::from_fn(|r| ipp[r] - along * normal[r]),
            segment: segment as u32,
        });
    }
    let (iop, ps) = (
        orientation.expect("at least one frame"),
        spacing.expect("at least one frame"),
    );
    // One stack: one in-plane origin, positions a whole number of slice spacings apart.
    for (f, fr) in placed.iter().enumerate() {
        let d: f64 = (0..3)
            .map(|r| (fr.origin[r] - placed[0].origin[r]).powi(2))
            .sum::<f64>()
            .sqrt();
        if d > 0.05 * ps[0].min(ps[1]).max(0.01) {
            return Err(bad(
                "Image Position (Patient) (0020,0032)",
                format!("frame {} lies {d:.2} mm off frame 1's slice stack in the plane: paramap reads segmentations of one stack of slices", f + 1),
            ));
        }
    }
    let mut along: Vec<f64> = placed.iter().map(|f| f.along).collect();
    along.sort_by(f64::total_cmp);
    along.dedup_by(|a, b| (*a - *b).abs() < 1e-3);
    let (first, last) = (along[0], *along.last().expect("non-empty"));
    let dz = float(&obj, tags::SPACING_BETWEEN_SLICES)
        .filter(|&s| s > 0.0)
        .or_else(|| {
            shared
                .and_then(|s| item(s, tags::PIXEL_MEASURES_SEQUENCE))
                .and_then(|g| float(g, tags::SPACING_BETWEEN_SLICES))
                .filter(|&s| s > 0.0)
        })
        .or_else(|| along.windows(2).map(|w| w[1] - w[0]).reduce(f64::min))
        .or_else(|| {
            shared
                .and_then(|s| item(s, tags::PIXEL_MEASURES_SEQUENCE))
                .and_then(|g| float(g, tags::SLICE_THICKNESS))
                .filter(|&s| s > 0.0)
        })
        .unwrap_or(1.0);
    let slice_of = |a: f64| -> Option<usize> {
        let k = (a - first) / dz;
        ((k - k.round()).abs() < 0.05).then(|| k.round() as usize)
    };
    for (f, fr) in placed.iter().enumerate() {
        if slice_of(fr.along).is_none() {
            return Err(bad(
                "Image Position (Patient) (0020,0032)",
                format!(
                    "frame {} lies {:.3} mm along the slice normal from the first slice, not a whole number of the {dz:.3} mm slice spacing: the frames are not one regular stack",
                    f + 1,
                    fr.along - first
                ),
            ));
        }
    }
    let nz = ((last - first) / dz).round() as u64 + 1;
    guard::check_decoded_size(rows, cols, 1, nz * segments.len() as u64, 8)
        .map_err(|e| bad("the slice stack", e))?;
    let (nx, ny, nz) = (cols as usize, rows as usize, nz as usize);

    let mut masks: Vec<Array3<bool>> = segments
        .iter()
        .map(|_| Array3::from_elem((nz, ny, nx), false))
        .collect();
    let per = nx * ny;
    for (f, fr) in placed.iter().enumerate() {
        let z = slice_of(fr.along).expect("checked above");
        let s = segments
            .iter()
            .position(|(n, _)| *n == fr.segment)
            .expect("checked above");
        let mask = &mut masks[s];
        for r in 0..ny {
            // Rows bottom-up (Geometry::flipped_y).
            let y = ny - 1 - r;
            for c in 0..nx {
                let p = f * per + r * nx + c;
                let inside = if bits == 1 {
                    bytes[p / 8] >> (p % 8) & 1 == 1
                } else {
                    bytes[p] as f64 >= 0.5 * max_fraction
                };
                if inside {
                    mask[[z, y, c]] = true;
                }
            }
        }
    }
    let (row, col) = ([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);
    let mut a = [[0.0; 4]; 4];
    for r in 0..3 {
        a[r][0] = row[r] * ps[1];
        a[r][1] = col[r] * ps[0];
        a[r][2] = normal[r] * dz;
        a[r][3] = placed[0].origin[r] + first * normal[r];
    }
    a[3][3] = 1.0;
    let geometry = Geometry {
        dims: [nx, ny, nz],
        affine_lps: a,
    }
    .flipped_y();
    Ok(Segmentation {
        geometry,
        frame_of_reference_uid: text(&obj, tags::FRAME_OF_REFERENCE_UID),
        segments: segments
            .into_iter()
            .zip(masks)
            .map(|((number, label), mask)| Segment {
                number,
                label,
                mask,
            })
            .collect(),
    })
}
