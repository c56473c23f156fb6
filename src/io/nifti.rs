//! NIfTI-1 input and output (.nii, .nii.gz) through the `nifti` crate. The affine is written
//! as both sform and qform (code 1, scanner), as dcm2niix does, so that nibabel, FSL and MRtrix
//! agree on where every voxel is.

use std::path::Path;

use ndarray::{Array3, Array4, ArrayD, Axis, Ix2};
use nifti::writer::WriterOptions;
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderStreamedOptions};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::volume::{Affine, Geometry};

/// Reads a 3-D or 4-D NIfTI as `[volume, z, y, x]` (a 3-D file gives one volume) with its
/// geometry. Scaling (scl_slope/scl_inter) is applied.
///
/// A single-file `.nii` or `.nii.gz` is read whole: a single gzip member is inflated in one
/// call (libdeflate, about a third faster than streaming), several members (bgzip) in turn,
/// every member's checksum checked; float32 data in the machine's byte order without scaling
/// becomes the array without a copy. A header that promises more voxels than the file can hold
/// is refused before anything is allocated. Header/image pairs, other voxel types, voxel offsets
/// below 352, and files cut short go slice by slice through the `nifti` crate, which names the
/// first slice it cannot read. For the usual files (voxels from byte 352, finite scaling) both
/// paths give the same values; where `vox_offset` leaves padding before the voxels, only the
/// in-memory path honours it, and a non-finite `scl_slope` means no scaling there.
///
/// Voxel types other than real scalars (RGB, complex, 128-bit) are refused naming the
/// `datatype` field; a panic inside the `nifti` crate becomes an error naming the file.
/// The affine is in mm whatever the header's spatial unit (`xyzt_units`: m, mm or µm).
pub fn read(path: &Path) -> Result<(Array4<f32>, Geometry, NiftiHeader)> {
    let probe = probe(path)?;
    // Nothing reaches the `nifti` crate that paramap has not checked on the same bytes: a
    // header that does not parse here is refused here (naming the field), and a header that
    // promises more voxels or extension bytes than the file holds (damaged or cut short) is
    // refused before anything is allocated for them.
    let Some(header) = &probe.header else {
        return Err(Error::Nifti {
            path: path.to_path_buf(),
            problem: format!(
                "not a readable NIfTI-1 file ({}); check that it is complete (re-run the conversion) and is .nii or .nii.gz",
                header_fault(path)
            ),
        });
    };
    check_datatype(header, path)?;
    check_size(header, path, probe.file_len, probe.gz)?;
    check_extensions(header, path, probe.gz)?;
    check_pair(header, path)?;
    let (data, header) = match read_whole(path, &probe)? {
        Some(read) => read,
        None => {
            same_bytes_as_the_crate(path, probe.gz)?;
            crate::io::dicom::guard::no_panic(|| read_streamed(path, &probe)).map_err(|r| {
                Error::Nifti {
                    path: path.to_path_buf(),
                    problem: format!(
                        "cannot be read: {}; convert it again (e.g. with dcm2niix)",
                        crate::io::dicom::guard::library_stopped(&r)
                    ),
                }
            })??
        }
    };
    check_datatype(&header, path)?;
    let size = |i: usize| header.dim[i].max(1) as usize;
    let geometry = Geometry::from_ras([size(1), size(2), size(3)], header_affine(&header));
    Ok((data, geometry, header))
}

/// Refuses voxel types paramap does not read as one real number per voxel.
fn check_datatype(header: &NiftiHeader, path: &Path) -> Result<()> {
    use nifti::NiftiType as T;
    if header.sizeof_hdr != 348 {
        return Err(Error::Nifti {
            path: path.to_path_buf(),
            problem: format!(
                "not a readable NIfTI-1 file ({}); check that it is complete (re-run the conversion) and is .nii or .nii.gz",
                header_fault(path)
            ),
        });
    }
    let name = match header.data_type() {
        Ok(T::Rgb24) => "RGB24 (colour)",
        Ok(T::Rgba32) => "RGBA32 (colour)",
        Ok(T::Complex64) => "complex64",
        Ok(T::Complex128) => "complex128",
        Ok(T::Complex256) => "complex256",
        Ok(T::Float128) => "float128",
        Ok(_) => return Ok(()),
        Err(_) => "not a NIfTI-1 datatype code",
    };
    Err(Error::Nifti {
        path: path.to_path_buf(),
        problem: format!(
            "its header field datatype = {} ({name}): paramap reads one real value per voxel (integer or float); give the magnitude image, or convert it to float32 (e.g. fslmaths IN OUT -odt float)",
            header.datatype
        ),
    })
}

/// NIfTI time units per second (`xyzt_units` & 0x38, NIfTI-1 header `NIFTI_UNITS_SEC`,
/// `_MSEC`, `_USEC`: 1, 1000, 10⁶); Err names the code when it is not a time unit (0,
/// unknown; Hz, ppm or rad/s).
pub fn time_units_per_second(header: &NiftiHeader) -> std::result::Result<f64, String> {
    match header.xyzt_units & 0x38 {
        8 => Ok(1.0),
        16 => Ok(1e3),
        24 => Ok(1e6),
        0 => Err("its xyzt_units gives no time unit (code 0, unknown)".into()),
        c => Err(format!(
            "its xyzt_units gives time unit code {c}, which is not a time (32 Hz, 40 ppm, 48 rad/s)"
        )),
    }
}

/// Millimetres per NIfTI spatial unit (`xyzt_units` & 0x07: 1 m, 2 mm, 3 µm); unknown (0)
/// or another code is taken as mm, as nibabel and FSL do.
pub fn mm_per_space_unit(header: &NiftiHeader) -> f64 {
    match header.xyzt_units & 0x07 {
        1 => 1000.0,
        3 => 1e-3,
        _ => 1.0,
    }
}

/// The sampling interval pixdim[4] in seconds, by the header's time unit; `Ok(None)` where
/// pixdim[4] is not a positive number; Err (pixdim[4] and the unit code) where the unit is not
/// a time.
pub fn time_step_seconds(header: &NiftiHeader) -> std::result::Result<Option<f64>, String> {
    let t = header.pixdim[4] as f64;
    if !(t.is_finite() && t > 0.0) {
        return Ok(None);
    }
    time_units_per_second(header)
        .map(|per_s| Some(t / per_s))
        .map_err(|why| format!("pixdim[4] = {t} but {why}"))
}

/// What is known of a file before its voxels are read.
struct Probe {
    file_len: u64,
    /// gzip-compressed, by its first two bytes (not its name).
    gz: bool,
    /// The NIfTI-1 header, where one parses.
    header: Option<NiftiHeader>,
}

fn probe(path: &Path) -> Result<Probe> {
    use std::io::{Read, Seek};
    if !path.exists() {
        return Err(Error::NotFound {
            path: path.to_path_buf(),
        });
    }
    let io = |e| Error::io(path, e);
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(Error::Nifti {
            path: path.to_path_buf(),
            problem:
                "is not a regular file (a folder, pipe or device): give the .nii or .nii.gz file"
                    .into(),
        });
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 2];
    let gz = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    file.rewind().map_err(io)?;
    let file = std::io::BufReader::new(file);
    let header = if gz {
        NiftiHeader::from_reader(flate2::read::GzDecoder::new(file))
    } else {
        NiftiHeader::from_reader(file)
    };
    Ok(Probe {
        file_len: meta.len(),
        gz,
        header: header.ok(),
    })
}

/// The header alone (the voxels are not read), of a `.nii`, `.nii.gz` or `.hdr`.
pub fn read_header(path: &Path) -> Result<NiftiHeader> {
    probe(path)?.header.ok_or_else(|| Error::Nifti {
        path: path.to_path_buf(),
        problem: format!(
            "not a readable NIfTI-1 header ({}); check that it is complete (re-run the conversion) and is .nii or .nii.gz",
            header_fault(path)
        ),
    })
}

/// What a `nifti` crate error means, in words (its I/O variant prints Rust debug text).
fn nifti_error_text(e: &nifti::NiftiError, path: &Path) -> String {
    match e {
        nifti::NiftiError::InvalidFormat => header_fault(path),
        nifti::NiftiError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends before the data its header declares".into()
        }
        nifti::NiftiError::Io(io) => io.to_string(),
        other => crate::error::error_chain(other),
    }
}

/// Which field of a NIfTI-1 header is wrong (sizeof_hdr, magic, dim[0]), read from the
/// first 348 bytes (inflated where gzip-compressed).
fn header_fault(path: &Path) -> String {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return "the file cannot be opened".into();
    };
    let mut head = Vec::with_capacity(348);
    let mut raw = std::io::BufReader::new(file);
    let mut magic = [0u8; 2];
    let gz = raw.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let rest: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(
            std::io::Cursor::new(magic).chain(raw),
        ))
    } else {
        Box::new(std::io::Cursor::new(magic).chain(raw))
    };
    if rest.take(348).read_to_end(&mut head).is_err() && gz {
        return "its gzip stream is damaged".into();
    }
    if head.len() < 348 {
        return format!("the header is cut short: {} of its 348 bytes", head.len());
    }
    let le = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let be = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if le != 348 && be != 348 {
        let n = if (0..=1 << 20).contains(&le) { le } else { be };
        return if n == 540 {
            "header field sizeof_hdr = 540: a NIfTI-2 file, which paramap does not read; save it as NIfTI-1".into()
        } else {
            format!("header field sizeof_hdr = {n} where NIfTI-1 has 348: not a NIfTI-1 file")
        };
    }
    let magic = &head[344..348];
    if magic != b"n+1\0" && magic != b"ni1\0" {
        return format!(
            "header field magic = {:?} where NIfTI-1 has \"n+1\" (or \"ni1\" for a .hdr/.img pair)",
            String::from_utf8_lossy(magic).trim_end_matches('\0')
        );
    }
    let dim0 = if le == 348 {
        i16::from_le_bytes([head[40], head[41]])
    } else {
        i16::from_be_bytes([head[40], head[41]])
    };
    if !(1..=7).contains(&dim0) {
        return format!("header field dim[0] = {dim0} where NIfTI-1 allows 1 to 7 dimensions");
    }
    "a header field the reader refuses".into()
}

/// Where a single-file NIfTI's voxels start: `vox_offset` when it is a number of at least
/// 352 (the header and the 4-byte extension flag), else `None`.
fn voxel_offset(header: &NiftiHeader) -> Option<usize> {
    let v = header.vox_offset;
    (v.is_finite() && (352.0..1e15).contains(&v)).then_some(v as usize)
}

/// Deflate expands at most 1032:1, so a gzip file of `n` bytes inflates to at most 1032·n.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// The error for a single-file header whose voxels cannot fit in a file of `file_len` bytes
/// (inflated at most [`DEFLATE_MAX_RATIO`] times where gzip-compressed).
fn check_size(header: &NiftiHeader, path: &Path, file_len: u64, gz: bool) -> Result<()> {
    let ndim = header.dim[0] as usize;
    if !(1..=7).contains(&ndim) || &header.magic != b"n+1\0" {
        return Ok(()); // a header pair, or dimensions the readers refuse with their own message
    }
    // At least the header and the extension flag precede the voxels.
    let offset = voxel_offset(header).unwrap_or(352) as u128;
    let bytes_per_voxel = (header.bitpix.max(8) as u128).div_ceil(8);
    let needed = header.dim[1..=ndim]
        .iter()
        .map(|&d| d as u128)
        .product::<u128>()
        * bytes_per_voxel
        + offset;
    let most = file_len as u128 * if gz { DEFLATE_MAX_RATIO as u128 } else { 1 };
    if needed <= most {
        return Ok(());
    }
    let dims = &header.dim[1..=ndim];
    let problem = if gz {
        format!(
            "the header declares {dims:?} voxels ({needed} bytes with the header), more than a {file_len}-byte gzip file can hold; the file is truncated or its header is damaged: convert the series again"
        )
    } else {
        // Where the voxels run out: the first (x, y) slice that is not whole.
        let slice =
            (dims[0] as u128 * dims.get(1).copied().unwrap_or(1) as u128).max(1) * bytes_per_voxel;
        let whole = (file_len as u128).saturating_sub(offset) / slice;
        let nz = dims.get(2).copied().unwrap_or(1).max(1) as u128;
        format!(
            "cannot read the voxel data at volume {}, slice {}: the header declares {dims:?} voxels ({needed} bytes with the header) and the file ends after {file_len}; the file is truncated or its header is damaged: convert the series again",
            whole / nz,
            whole % nz
        )
    };
    Err(Error::Nifti {
        path: path.to_path_buf(),
        problem,
    })
}

/// `(nx, ny, nz, nt)` of a 3-D or 4-D header, or the error that names the problem.
fn grid(header: &NiftiHeader, path: &Path) -> Result<(usize, usize, usize, usize)> {
    let ndim = header.dim[0] as usize;
    if !(3..=4).contains(&ndim) {
        return Err(Error::Nifti {
            path: path.to_path_buf(),
            problem: format!("has {ndim} dimensions; paramap reads 3-D and 4-D images"),
        });
    }
    let size = |i: usize| header.dim[i].max(1) as usize;
    let nt = if ndim == 4 { size(4) } else { 1 };
    Ok((size(1), size(2), size(3), nt))
}

/// The in-memory path of [`read`]; `None` where the file must stream instead.
fn read_whole(path: &Path, probe: &Probe) -> Result<Option<(Array4<f32>, NiftiHeader)>> {
    use std::io::Read;
    let io = |e| Error::io(path, e);
    let Some(header) = &probe.header else {
        return Ok(None); // not NIfTI-1: the streaming reader gives the message
    };
    let (nx, ny, nz, nt) = grid(header, path)?;
    let (Some(element), Some(offset), Some(size)) = (
        header.data_type().ok().and_then(Element::of),
        voxel_offset(header),
        inflated_size(header),
    ) else {
        return Ok(None); // other voxel types, or an offset only the nifti crate interprets
    };
    let expected = if probe.gz {
        size
    } else {
        probe.file_len as usize
    };
    // Checked against the file's size by `check_size`; refused here if memory is short (a
    // trial reservation, then a zeroed allocation that the system fills lazily as the file
    // is read into it).
    if Vec::<f32>::new()
        .try_reserve_exact(expected.div_ceil(4))
        .is_err()
    {
        return Err(Error::Nifti {
            path: path.to_path_buf(),
            problem: format!("{expected} bytes of voxels do not fit in memory"),
        });
    }
    // The whole file as f32 words, so that float32 voxel data can become the array as it is.
    let mut words = vec![0f32; expected.div_ceil(4)];
    let out = &mut bytemuck::cast_slice_mut::<f32, u8>(&mut words)[..expected];
    let mut file = std::fs::File::open(path).map_err(io)?;
    if probe.gz {
        let mut gz = Vec::new();
        file.read_to_end(&mut gz).map_err(io)?;
        // ISIZE, the last four bytes, is the inflated size modulo 2^32 of the last member.
        // Where it agrees, the file is one member, inflated in one call (libdeflate checks its
        // CRC). Else (several members as bgzip writes, or beyond 4 GiB) the members are
        // inflated in turn, to the end, so that every member's CRC is checked.
        let isize = gz
            .len()
            .checked_sub(4)
            .map(|at| u32::from_le_bytes(gz[at..].try_into().expect("four bytes")) as usize);
        let damaged = || {
            Error::Nifti {
            path: path.to_path_buf(),
            problem: "the gzip data is damaged (its checksum or its structure is wrong, or it inflates to another size than the header says): copy or convert the series again".into(),
        }
        };
        if isize == Some(size % (1 << 32)) && size < (1 << 32) {
            match libdeflater::Decompressor::new().gzip_decompress(&gz, out) {
                Ok(n) if n == size => {}
                _ => return Err(damaged()),
            }
        } else {
            let mut members = flate2::read::MultiGzDecoder::new(&gz[..]);
            if members.read_exact(out).is_err() {
                return Ok(None); // cut short: the streaming reader says where
            }
            if std::io::copy(&mut members, &mut std::io::sink()).is_err() {
                return Err(damaged());
            }
        }
    } else {
        file.read_exact(out).map_err(io)?;
    }
    let raw = &bytemuck::cast_slice::<f32, u8>(&words)[..expected];
    let voxels = nx * ny * nz * nt;
    let end = voxels
        .checked_mul(element.bytes())
        .and_then(|b| b.checked_add(offset));
    let Some(end) = end.filter(|&e| e <= expected) else {
        return Ok(None); // truncated: the streaming reader says where
    };
    let swapped = header.endianness != nifti::Endianness::native();
    let (slope, inter) = (header.scl_slope, header.scl_inter);
    let scaled = slope != 0.0 && slope.is_finite() && (slope != 1.0 || inter != 0.0);
    let shape = (nt, nz, ny, nx);
    if element == Element::F32 && !swapped && !scaled && offset % 4 == 0 {
        // The voxels are the array: no copy.
        let start = offset / 4;
        let data = ndarray::Array1::from_vec(words)
            .slice_move(ndarray::s![start..start + voxels])
            .into_shape_with_order(shape)
            .expect("contiguous voxels fill the grid");
        return Ok(Some((data, header.clone())));
    }
    let mut data = Array4::<f32>::zeros(shape);
    let voxel_bytes = &raw[offset..end];
    {
        use rayon::prelude::*;
        let out = data.as_slice_mut().expect("fresh arrays are contiguous");
        let chunk = 1 << 16;
        out.par_chunks_mut(chunk)
            .zip(voxel_bytes.par_chunks(chunk * element.bytes()))
            .for_each(|(out, bytes)| {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(element.bytes())) {
                    let v = element.value(b, swapped);
                    *o = if scaled { v * slope + inter } else { v };
                }
            });
    }
    Ok(Some((data, header.clone())))
}

/// Bytes of a single-file NIfTI: header, extensions and voxels.
fn inflated_size(header: &NiftiHeader) -> Option<usize> {
    let element = Element::of(header.data_type().ok()?)?;
    let offset = voxel_offset(header)?;
    let ndim = header.dim[0] as usize;
    if !(1..=7).contains(&ndim) {
        return None;
    }
    let voxels = header.dim[1..=ndim]
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))?;
    voxels.checked_mul(element.bytes())?.checked_add(offset)
}

/// The voxel types the in-memory reader converts (the streaming reader takes the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Element {
    fn of(t: nifti::NiftiType) -> Option<Self> {
        use nifti::NiftiType as T;
        Some(match t {
            T::Uint8 => Element::U8,
            T::Int8 => Element::I8,
            T::Int16 => Element::I16,
            T::Uint16 => Element::U16,
            T::Int32 => Element::I32,
            T::Uint32 => Element::U32,
            T::Float32 => Element::F32,
            T::Float64 => Element::F64,
            _ => return None,
        })
    }

    fn bytes(self) -> usize {
        match self {
            Element::U8 | Element::I8 => 1,
            Element::I16 | Element::U16 => 2,
            Element::I32 | Element::U32 | Element::F32 => 4,
            Element::F64 => 8,
        }
    }

    /// The value of one element's bytes, in f32 as the `nifti` crate casts it.
    fn value(self, b: &[u8], swapped: bool) -> f32 {
        fn word<const N: usize>(b: &[u8], swapped: bool) -> [u8; N] {
            let mut w: [u8; N] = b.try_into().expect("element bytes");
            if swapped {
                w.reverse();
            }
            w
        }
        match self {
            Element::U8 => b[0] as f32,
            Element::I8 => b[0] as i8 as f32,
            Element::I16 => i16::from_ne_bytes(word(b, swapped)) as f32,
            Element::U16 => u16::from_ne_bytes(word(b, swapped)) as f32,
            Element::I32 => i32::from_ne_bytes(word(b, swapped)) as f32,
            Element::U32 => u32::from_ne_bytes(word(b, swapped)) as f32,
            Element::F32 => f32::from_ne_bytes(word(b, swapped)),
            Element::F64 => f64::from_ne_bytes(word(b, swapped)) as f32,
        }
    }
}

/// Whether the `nifti` crate inflates `path`: by its name (`.gz`), whatever its content.
fn named_gz(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(".gz"))
}

/// The streaming reader (the `nifti` crate) decides by the file's name whether to inflate it,
/// paramap's checks by its first bytes; where they disagree the crate would read other bytes
/// than those checked (a gzip stream taken as a raw header reserved 1.1 GB for extensions
/// that a 369-byte file does not hold; found by the NIfTI fuzz target, docs/fuzzing.md).
/// Err: the file must be renamed.
fn same_bytes_as_the_crate(path: &Path, gz: bool) -> Result<()> {
    if gz == named_gz(path) {
        return Ok(());
    }
    Err(Error::Nifti {
        path: path.to_path_buf(),
        problem: if gz {
            "is gzip-compressed but its name does not end in .gz: rename it to .nii.gz".into()
        } else {
            "is named .gz but is not gzip-compressed: rename it to .nii (or compress it with gzip)"
                .into()
        },
    })
}

/// The image file of a header/image pair where the `nifti` crate looks for it: `NAME.img.gz`,
/// else `NAME.img`; `None` where neither exists (the crate then names the missing file).
fn image_of_pair(hdr: &Path) -> Option<std::path::PathBuf> {
    let stem = if named_gz(hdr) {
        hdr.with_extension("")
    } else {
        hdr.to_path_buf()
    };
    [stem.with_extension("img.gz"), stem.with_extension("img")]
        .into_iter()
        .find(|p| p.is_file())
}

/// A header/image pair (magic "ni1"): the `nifti` crate reads the voxels from the image file
/// and, where the header's extender (bytes 348–351 of the `.hdr`, optional) is set, first
/// `vox_offset` − 352 bytes of extensions from the start of that file. Both are checked
/// against the image file's bytes before the crate reserves anything for them (each esize at
/// least 8 and present; the voxels, at [`DEFLATE_MAX_RATIO`] times a `.gz` file's size, as the
/// crate inflates by name).
fn check_pair(header: &NiftiHeader, hdr: &Path) -> Result<()> {
    use std::io::Read;
    if &header.magic != b"ni1\0" {
        return Ok(());
    }
    let Some(img) = image_of_pair(hdr) else {
        return Ok(());
    };
    let bad = |problem: String| Error::Nifti {
        path: img.clone(),
        problem,
    };
    let img_len = std::fs::metadata(&img)
        .map_err(|e| Error::io(&img, e))?
        .len();
    let gz = named_gz(&img);
    let ndim = header.dim[0] as usize;
    if (1..=7).contains(&ndim) {
        let bytes_per_voxel = (header.bitpix.max(8) as u128).div_ceil(8);
        let needed = header.dim[1..=ndim]
            .iter()
            .map(|&d| d as u128)
            .product::<u128>()
            * bytes_per_voxel;
        let most = img_len as u128 * if gz { DEFLATE_MAX_RATIO as u128 } else { 1 };
        if needed > most {
            return Err(bad(format!(
                "its header {} declares {:?} voxels ({needed} bytes), more than this {img_len}-byte image file can hold; the file is truncated or the header is damaged: convert the series again",
                hdr.display(),
                &header.dim[1..=ndim]
            )));
        }
    }
    // The extender, read from the header file as the crate does.
    let open = |p: &Path, gz: bool| -> Result<Box<dyn Read>> {
        let f = std::io::BufReader::new(std::fs::File::open(p).map_err(|e| Error::io(p, e))?);
        Ok(if gz {
            Box::new(flate2::read::GzDecoder::new(f))
        } else {
            Box::new(f)
        })
    };
    let mut head = [0u8; 352];
    let extended = open(hdr, named_gz(hdr))?.read_exact(&mut head).is_ok() && head[348] != 0;
    if !extended {
        return Ok(());
    }
    walk_extensions(&mut open(&img, gz)?, header, 0, &img)
}

/// Header extensions of a single-file NIfTI-1 (extender byte 348 not 0), checked before the
/// `nifti` crate reads them: it reserves each extension's declared `esize` before reading it,
/// as many as fit before `vox_offset`, so a damaged esize (negative, or gigabytes in a small
/// file) would take that much memory. Each esize must be at least 8 (its own esize and ecode
/// fields) and its bytes must be in the file (NIfTI-1 header extensions: esize, ecode, edata).
/// Found by the NIfTI fuzz target (docs/fuzzing.md).
fn check_extensions(header: &NiftiHeader, path: &Path, gz: bool) -> Result<()> {
    use std::io::Read;
    if &header.magic != b"n+1\0" {
        return Ok(()); // a header pair: `check_pair` reads them where the crate does
    }
    let file = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?);
    let mut src: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut head = [0u8; 352];
    if src.read_exact(&mut head).is_err() || head[348] == 0 {
        return Ok(()); // no extensions (or no extender: the readers say the file is short)
    }
    walk_extensions(&mut src, header, 352, path)
}

/// Walks the extensions the `nifti` crate will read from `src` (vox_offset − 352 bytes of
/// them), whose first byte is at byte `start` of `path`: each esize at least 8 and its bytes
/// present. Err names the extension's byte and its esize.
fn walk_extensions(
    src: &mut dyn std::io::Read,
    header: &NiftiHeader,
    start: usize,
    path: &Path,
) -> Result<()> {
    use std::io::Read;
    let bad = |problem: String| Error::Nifti {
        path: path.to_path_buf(),
        problem,
    };
    // Where the crate stops reading extensions: vox_offset − 352 bytes after the extender.
    let len = (header.vox_offset as usize).saturating_sub(352);
    let mut offset = 0usize;
    while offset < len {
        let at = start + offset;
        let mut fields = [0u8; 8];
        if src.read_exact(&mut fields).is_err() {
            return Err(bad(format!(
                "its header extension at byte {at} is cut short (vox_offset = {} says the voxels start later); the file is truncated or its header is damaged: convert the series again",
                header.vox_offset
            )));
        }
        let word = [fields[0], fields[1], fields[2], fields[3]];
        let esize = if header.endianness == nifti::Endianness::Little {
            i32::from_le_bytes(word)
        } else {
            i32::from_be_bytes(word)
        };
        if esize < 8 {
            return Err(bad(format!(
                "its header extension at byte {at} declares esize = {esize}, less than the 8 bytes of its own esize and ecode fields; the header is damaged: convert the series again"
            )));
        }
        let rest = esize as u64 - 8;
        let present =
            std::io::copy(&mut (&mut *src).take(rest), &mut std::io::sink()).map_err(|e| {
                bad(format!(
                    "its header extension at byte {at} cannot be read ({e})"
                ))
            })?;
        if present < rest {
            return Err(bad(format!(
                "its header extension at byte {at} declares esize = {esize} bytes but the file ends {} bytes into it; the file is truncated or its header is damaged: convert the series again",
                8 + present
            )));
        }
        offset += esize as usize;
    }
    Ok(())
}

/// The streaming path of [`read`]: slice by slice through the `nifti` crate, straight into the
/// `[t, z, y, x]` array, the file's bytes never held whole. The header the crate read is
/// checked against the file's size before the array is allocated (the probe's header may not
/// have parsed).
fn read_streamed(path: &Path, probe: &Probe) -> Result<(Array4<f32>, NiftiHeader)> {
    let bad = |problem: String| Error::Nifti {
        path: path.to_path_buf(),
        problem,
    };
    let obj = ReaderStreamedOptions::new().read_file_rank(path, 2).map_err(|e| {
        let why = nifti_error_text(&e, path);
        bad(format!(
            "not a readable NIfTI-1 file ({why}); check that it is complete (re-run the conversion) and is .nii or .nii.gz"
        ))
    })?;
    let header = obj.header().clone();
    check_datatype(&header, path)?;
    check_size(&header, path, probe.file_len, probe.gz)?;
    let (nx, ny, nz, nt) = grid(&header, path)?;
    let mut data = Array4::<f32>::zeros((nt, nz, ny, nx));
    let mut volume = obj.into_volume();
    for t in 0..nt {
        for z in 0..nz {
            let values: ArrayD<f32> = volume
                .read_slice()
                .and_then(|slice| slice.into_ndarray::<f32>())
                .map_err(|e| {
                    bad(format!(
                        "cannot read the voxel data at volume {t}, slice {z} ({}); the file may be truncated",
                        nifti_error_text(&e, path)
                    ))
                })?;
            // The slice is [x, y] in Fortran order; the output's (y, x) plane is its transpose.
            let mut out = data.index_axis_mut(Axis(0), t);
            out.index_axis_mut(Axis(0), z).assign(
                &values
                    .reversed_axes()
                    .into_dimensionality::<Ix2>()
                    .map_err(|e| bad(e.to_string()))?,
            );
        }
    }
    Ok((data, header))
}

/// The voxel-to-RAS affine a reader should use: sform when set, else qform, else pixdim.
pub fn header_affine(h: &NiftiHeader) -> Affine {
    let mm = mm_per_space_unit(h);
    let mut m = header_affine_native(h);
    if mm != 1.0 {
        for row in m.iter_mut().take(3) {
            for x in row.iter_mut() {
                *x *= mm;
            }
        }
    }
    m
}

/// [`header_affine`] in the header's own spatial unit.
fn header_affine_native(h: &NiftiHeader) -> Affine {
    if h.sform_code > 0 {
        return [
            h.srow_x.map(f64::from),
            h.srow_y.map(f64::from),
            h.srow_z.map(f64::from),
            [0.0, 0.0, 0.0, 1.0],
        ];
    }
    let pix = |i: usize| (h.pixdim[i] as f64).abs().max(f64::MIN_POSITIVE);
    if h.qform_code > 0 {
        let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let scale = [pix(1), pix(2), qfac * pix(3)];
        let off = [h.quatern_x as f64, h.quatern_y as f64, h.quatern_z as f64];
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = r[i][j] * scale[j];
            }
            m[i][3] = off[i];
        }
        m[3][3] = 1.0;
        return m;
    }
    [
        [pix(1), 0.0, 0.0, 0.0],
        [0.0, pix(2), 0.0, 0.0],
        [0.0, 0.0, pix(3), 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// Quaternion (b, c, d), qfac and voxel sizes of an affine's rotation part, as nifti1_io's
/// mat44_to_quatern computes them (columns orthonormalised first).
fn affine_to_quatern(m: &Affine) -> ([f64; 3], f64, [f64; 3]) {
    let mut col = [[0.0; 3]; 3];
    let mut size = [0.0; 3];
    for j in 0..3 {
        let v = [m[0][j], m[1][j], m[2][j]];
        size[j] = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        col[j] = if size[j] > 0.0 {
            v.map(|x| x / size[j])
        } else {
            let mut e = [0.0; 3];
            e[j] = 1.0;
            e
        };
    }
    // Gram-Schmidt: DICOM's direction cosines are orthogonal only to ~1e-6.
    let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let sub =
        |a: [f64; 3], b: [f64; 3], k: f64| [a[0] - k * b[0], a[1] - k * b[1], a[2] - k * b[2]];
    let norm = |a: [f64; 3]| {
        let n = dot(a, a).sqrt();
        a.map(|x| x / n)
    };
    let c0 = norm(col[0]);
    let c1 = norm(sub(col[1], c0, dot(col[1], c0)));
    let mut c2 = norm(sub(sub(col[2], c0, dot(col[2], c0)), c1, dot(col[2], c1)));
    let cross = [
        c0[1] * c1[2] - c0[2] * c1[1],
        c0[2] * c1[0] - c0[0] * c1[2],
        c0[0] * c1[1] - c0[1] * c1[0],
    ];
    let qfac = if dot(cross, c2) < 0.0 { -1.0 } else { 1.0 };
    if qfac < 0.0 {
        c2 = c2.map(|x| -x);
    }
    // r[i][j]: row i, column j
    let r = [
        [c0[0], c1[0], c2[0]],
        [c0[1], c1[1], c2[1]],
        [c0[2], c1[2], c2[2]],
    ];
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (mut a, mut b, mut c, mut d);
    if trace > 0.5 {
        a = 0.5 * trace.sqrt();
        b = 0.25 * (r[2][1] - r[1][2]) / a;
        c = 0.25 * (r[0][2] - r[2][0]) / a;
        d = 0.25 * (r[1][0] - r[0][1]) / a;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r[0][1] + r[1][0]) / b;
            d = 0.25 * (r[0][2] + r[2][0]) / b;
            a = 0.25 * (r[2][1] - r[1][2]) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r[0][1] + r[1][0]) / c;
            d = 0.25 * (r[1][2] + r[2][1]) / c;
            a = 0.25 * (r[0][2] - r[2][0]) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r[0][2] + r[2][0]) / d;
            c = 0.25 * (r[1][2] + r[2][1]) / d;
            a = 0.25 * (r[1][0] - r[0][1]) / d;
        }
        if a < 0.0 {
            b = -b;
            c = -c;
            d = -d;
            a = -a;
        }
    }
    let _ = a;
    ([b, c, d], qfac, size)
}

/// How NIfTI outputs are stored: gzip-compressed `.nii.gz` (the default, as dcm2niix `-z y`)
/// or plain `.nii` (as dcm2niix `-z n`): about as large as the data, but written and read
/// without deflating, which is most of a small job's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum NiftiFormat {
    #[default]
    #[serde(rename = "nii.gz")]
    Gz,
    #[serde(rename = "nii")]
    Nii,
}

impl NiftiFormat {
    /// `--uncompressed` on the command line.
    pub fn uncompressed(yes: bool) -> Self {
        if yes {
            NiftiFormat::Nii
        } else {
            NiftiFormat::Gz
        }
    }

    /// The file name of the image `stem` in this format: `adc` → `adc.nii.gz` or `adc.nii`.
    pub fn file(self, stem: &str) -> String {
        match self {
            NiftiFormat::Gz => format!("{stem}.nii.gz"),
            NiftiFormat::Nii => format!("{stem}.nii"),
        }
    }
}

/// A header carrying `geometry` (RAS affine in sform and qform, mm and s units).
pub fn header_for(geometry: &Geometry, description: &str, tr_s: Option<f64>) -> NiftiHeader {
    let ras = geometry.affine_ras();
    let (q, qfac, size) = affine_to_quatern(&ras);
    let mut h = NiftiHeader {
        pixdim: [
            qfac as f32,
            size[0] as f32,
            size[1] as f32,
            size[2] as f32,
            tr_s.unwrap_or(0.0) as f32,
            1.0,
            1.0,
            1.0,
        ],
        xyzt_units: 2 | 8, // NIFTI_UNITS_MM | NIFTI_UNITS_SEC
        qform_code: 1,
        sform_code: 1,
        quatern_b: q[0] as f32,
        quatern_c: q[1] as f32,
        quatern_d: q[2] as f32,
        quatern_x: ras[0][3] as f32,
        quatern_y: ras[1][3] as f32,
        quatern_z: ras[2][3] as f32,
        srow_x: ras[0].map(|x| x as f32),
        srow_y: ras[1].map(|x| x as f32),
        srow_z: ras[2].map(|x| x as f32),
        ..NiftiHeader::default()
    };
    let mut text = description.as_bytes().to_vec();
    text.truncate(79);
    text.resize(80, 0);
    h.descrip = text;
    h
}

fn write_with<T, D>(path: &Path, header: &NiftiHeader, xyz: ndarray::ArrayView<T, D>) -> Result<()>
where
    T: nifti::DataElement + bytemuck::Pod,
    D: ndarray::Dimension + ndarray::RemoveAxis,
{
    WriterOptions::new(path)
        .reference_header(header)
        .write_nifti(&xyz)
        .map_err(|e| Error::Output {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Writes a 3-D map (`[z, y, x]`) as float32.
pub fn write_map(
    path: &Path,
    map: &Array3<f32>,
    geometry: &Geometry,
    description: &str,
) -> Result<()> {
    let header = header_for(geometry, description, None);
    write_with(path, &header, map.view().reversed_axes())
}

/// Writes a 3-D mask (`[z, y, x]`) as uint8 0/1.
pub fn write_mask(
    path: &Path,
    mask: &Array3<bool>,
    geometry: &Geometry,
    description: &str,
) -> Result<()> {
    let header = header_for(geometry, description, None);
    let bytes = mask.mapv(u8::from);
    write_with(path, &header, bytes.view().reversed_axes())
}

/// Writes a 4-D series (`[t, z, y, x]`) as float32.
pub fn write_series(
    path: &Path,
    data: &Array4<f32>,
    geometry: &Geometry,
    description: &str,
    tr_s: Option<f64>,
) -> Result<()> {
    let header = header_for(geometry, description, tr_s);
    write_with(path, &header, data.view().reversed_axes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn xyzt_units_give_seconds_and_millimetres() {
        let mut h = NiftiHeader {
            pixdim: [1.0, 0.002, 0.002, 0.003, 1500.0, 1.0, 1.0, 1.0],
            xyzt_units: 1 | 16, // m, ms
            sform_code: 0,
            qform_code: 0,
            ..Default::default()
        };
        assert_eq!(time_step_seconds(&h), Ok(Some(1.5)));
        let a = header_affine(&h);
        assert!(
            (a[0][0] - 2.0).abs() < 1e-6 && (a[2][2] - 3.0).abs() < 1e-6,
            "{a:?}"
        );
        h.xyzt_units = 2 | 24; // mm, µs
        h.pixdim[4] = 1_500_000.0;
        assert_eq!(time_step_seconds(&h), Ok(Some(1.5)));
        h.xyzt_units = 2;
        let err = time_step_seconds(&h).unwrap_err();
        assert!(
            err.contains("pixdim[4] = 1500000") && err.contains("code 0"),
            "{err}"
        );
        h.xyzt_units = 2 | 32;
        assert!(time_step_seconds(&h).unwrap_err().contains("code 32"));
        h.pixdim[4] = 0.0;
        assert_eq!(time_step_seconds(&h), Ok(None));
    }

    use super::*;

    #[test]
    fn qform_of_an_oblique_radiological_affine_reproduces_it() {
        // dcm2niix's affine for the shared Philips series (RAS, det < 0).
        let ras: Affine = [
            [-1.99650884, -0.118033789, 0.00449726358, 122.570183],
            [-0.117303029, 1.99020958, 0.159078494, -89.6118469],
            [0.0138635496, -0.158536866, 1.99366069, 82.1120758],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let g = Geometry::from_ras([112, 112, 4], ras);
        let mut h = header_for(&g, "test", None);
        h.sform_code = 0;
        let q = header_affine(&h);
        for i in 0..3 {
            for j in 0..4 {
                assert!(
                    (q[i][j] - ras[i][j]).abs() < 1e-4,
                    "{i},{j}: {} vs {}",
                    q[i][j],
                    ras[i][j]
                );
            }
        }
    }

    #[test]
    fn write_then_read_keeps_data_and_affine() {
        let dir = tempfile::tempdir().unwrap();
        let g = Geometry {
            dims: [3, 2, 2],
            affine_lps: [
                [-2.0, 0.0, 0.0, 10.0],
                [0.0, -2.5, 0.0, 20.0],
                [0.0, 0.0, 3.0, -5.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        };
        let data = Array4::from_shape_fn((2, 2, 2, 3), |(t, z, y, x)| {
            (t * 100 + z * 10 + y * 3 + x) as f32
        });
        let p = dir.path().join("s.nii.gz");
        write_series(&p, &data, &g, "round trip", Some(1.5)).unwrap();
        let (back, g2, h) = read(&p).unwrap();
        assert_eq!(back, data);
        assert!(g.max_corner_distance(&g2) < 1e-5);
        assert_eq!(h.pixdim[4], 1.5);
    }

    /// A NIfTI of `values` (x fastest) as `T`, with `endianness`, and scl_slope/scl_inter
    /// patched into the header bytes (the `nifti` writer always writes 1 and 0).
    fn nifti_bytes<T: nifti::DataElement + bytemuck::Pod>(
        dir: &Path,
        values: &ndarray::Array4<T>,
        endianness: nifti::Endianness,
        scale: (f32, f32),
    ) -> Vec<u8> {
        let g = Geometry::from_ras(
            [values.dim().3, values.dim().2, values.dim().1],
            [
                [1.5, 0.0, 0.0, -10.0],
                [0.0, 1.5, 0.0, -12.0],
                [0.0, 0.0, 4.0, 3.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        );
        let mut header = header_for(&g, "two paths", Some(1.5));
        header.endianness = endianness;
        let p = dir.join("t.nii");
        write_with(&p, &header, values.view().reversed_axes()).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let word = |x: f32| match endianness {
            nifti::Endianness::Big => x.to_be_bytes(),
            nifti::Endianness::Little => x.to_le_bytes(),
        };
        bytes[112..116].copy_from_slice(&word(scale.0));
        bytes[116..120].copy_from_slice(&word(scale.1));
        bytes
    }

    fn gzip(members: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in members {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, m).unwrap();
            out.extend(e.finish().unwrap());
        }
        out
    }

    #[test]
    fn the_in_memory_reader_gives_the_streaming_readers_values() {
        // The streaming reader is the `nifti` crate's own conversion; the in-memory one must
        // give the same f32 values for every type, byte order, scaling and compression.
        use nifti::Endianness::{Big, Little};
        let dir = tempfile::tempdir().unwrap();
        let shape = (3, 4, 5, 6);
        let ramp = |t: usize, z: usize, y: usize, x: usize| (t * 120 + z * 30 + y * 6 + x) as f64;
        let f32s =
            Array4::from_shape_fn(shape, |(t, z, y, x)| ramp(t, z, y, x) as f32 * 1.25 - 7.5);
        let i16s = Array4::from_shape_fn(shape, |(t, z, y, x)| ramp(t, z, y, x) as i16 - 100);
        let u16s = Array4::from_shape_fn(shape, |(t, z, y, x)| ramp(t, z, y, x) as u16 * 97);
        let u8s = Array4::from_shape_fn(shape, |(t, z, y, x)| {
            (ramp(t, z, y, x) as usize % 256) as u8
        });
        let f64s = Array4::from_shape_fn(shape, |(t, z, y, x)| ramp(t, z, y, x) * 1e-3 + 0.1);
        let d = dir.path();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "f32 native, unscaled (no copy)",
                nifti_bytes(d, &f32s, Little, (1.0, 0.0)),
            ),
            ("f32 big-endian", nifti_bytes(d, &f32s, Big, (1.0, 0.0))),
            ("f32 scaled", nifti_bytes(d, &f32s, Little, (0.5, 3.0))),
            ("i16 scaled", nifti_bytes(d, &i16s, Little, (2.5, -1.0))),
            (
                "i16 big-endian, slope 0",
                nifti_bytes(d, &i16s, Big, (0.0, 9.0)),
            ),
            ("u16", nifti_bytes(d, &u16s, Little, (1.0, 0.0))),
            ("u8", nifti_bytes(d, &u8s, Little, (1.0, 0.0))),
            ("f64 big-endian", nifti_bytes(d, &f64s, Big, (1.0, 0.0))),
        ];
        for (what, bytes) in cases {
            let half = bytes.len() / 2;
            for (form, file, contents) in [
                ("nii", "c.nii", bytes.clone()),
                ("one gzip member", "c.nii.gz", gzip(&[&bytes])),
            ] {
                let p = d.join(file);
                std::fs::write(&p, &contents).unwrap();
                let (whole, h1) = read_whole(&p, &probe(&p).unwrap())
                    .unwrap()
                    .unwrap_or_else(|| panic!("{what}, {form}: the in-memory reader declined"));
                let (streamed, h2) = read_streamed(&p, &probe(&p).unwrap()).unwrap();
                assert_eq!(whole.dim(), shape, "{what}, {form}");
                assert!(
                    whole
                        .iter()
                        .zip(&streamed)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{what}, {form}: values differ"
                );
                assert_eq!(h1.srow_x, h2.srow_x);
                assert_eq!(h1.pixdim, h2.pixdim);
            }
            // Two gzip members (bgzip): the streaming reader stops after the first one; the
            // in-memory reader inflates both and gives the same values as one member.
            let p = d.join("two.nii.gz");
            std::fs::write(&p, gzip(&[&bytes[..half], &bytes[half..]])).unwrap();
            let (two, _) = read_whole(&p, &probe(&p).unwrap())
                .unwrap()
                .expect("two members are read");
            std::fs::write(d.join("c.nii"), &bytes).unwrap();
            let (one, _) =
                read_streamed(&d.join("c.nii"), &probe(&d.join("c.nii")).unwrap()).unwrap();
            assert!(
                two.iter()
                    .zip(&one)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}, two gzip members: values differ"
            );
        }
        // Scaling was applied where asked for, and slope 0 means none (the NIfTI rule).
        let scaled = read(&{
            let p = d.join("s.nii");
            std::fs::write(&p, nifti_bytes(d, &i16s, Little, (2.5, -1.0))).unwrap();
            p
        })
        .unwrap()
        .0;
        assert_eq!(
            scaled[[2, 3, 4, 5]],
            (i16s[[2, 3, 4, 5]] as f32) * 2.5 - 1.0
        );
    }

    #[test]
    fn truncated_or_damaged_gzip_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let values = Array4::from_shape_fn((2, 3, 32, 32), |(t, z, y, x)| {
            (t + z + y + x) as f32 + 0.37 * x as f32
        });
        let bytes = nifti_bytes(dir.path(), &values, nifti::Endianness::Little, (1.0, 0.0));
        let gz = gzip(&[&bytes]);
        let p = dir.path().join("cut.nii.gz");
        std::fs::write(&p, &gz[..gz.len() * 2 / 3]).unwrap();
        let message = read(&p).unwrap_err().to_string();
        assert!(message.contains("cut.nii.gz"), "{message}");
        // A flipped byte, in compressed data and in a stored block (where only the checksum
        // can tell): refused as damaged, not read as other values.
        let stored = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
            std::io::Write::write_all(&mut e, &bytes).unwrap();
            e.finish().unwrap()
        };
        for (what, clean) in [("compressed", &gz), ("stored", &stored)] {
            let mut bad = clean.clone();
            let at = bad.len() * 3 / 4; // in the voxels, far from the header
            bad[at] ^= 0x5a;
            std::fs::write(&p, &bad).unwrap();
            let message = read(&p).unwrap_err().to_string();
            assert!(message.contains("damaged"), "{what}: {message}");
        }
        // The same damage in the second of two members (bgzip), whose checksum is only seen
        // after its last byte.
        let half = bytes.len() / 2;
        let mut two = gzip(&[&bytes[..half], &bytes[half..]]);
        let at = two.len() - 12;
        two[at] ^= 0x5a;
        std::fs::write(&p, &two).unwrap();
        assert!(read(&p).is_err());
    }

    #[test]
    fn padding_after_the_header_is_skipped_and_a_huge_header_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let values = Array4::from_shape_fn((2, 3, 4, 5), |(t, z, y, x)| {
            (t * 1000 + z * 100 + y * 10 + x) as f32
        });
        let bytes = nifti_bytes(dir.path(), &values, nifti::Endianness::Little, (1.0, 0.0));
        // vox_offset 416: 64 bytes of padding after the extension flag, then the voxels.
        let mut padded = bytes[..352].to_vec();
        padded[108..112].copy_from_slice(&416f32.to_le_bytes());
        padded.extend([0xee; 64]);
        padded.extend(&bytes[352..]);
        for (name, contents) in [("p.nii", padded.clone()), ("p.nii.gz", gzip(&[&padded]))] {
            let p = dir.path().join(name);
            std::fs::write(&p, contents).unwrap();
            let (back, _, _) = read(&p).unwrap();
            assert_eq!(back, values, "{name}");
        }
        // A small file whose header claims 30000^3 voxels: refused by size, not by an abort.
        let mut huge = bytes.clone();
        for (i, d) in [3u16, 30000, 30000, 30000].iter().enumerate() {
            huge[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        for (name, contents) in [("h.nii", huge.clone()), ("h.nii.gz", gzip(&[&huge]))] {
            let p = dir.path().join(name);
            std::fs::write(&p, contents).unwrap();
            let message = read(&p).unwrap_err().to_string();
            assert!(message.contains("[30000, 30000, 30000]"), "{message}");
            assert!(
                message.contains("truncated or its header is damaged"),
                "{message}"
            );
        }
        // Not a regular file.
        let message = read(dir.path()).unwrap_err().to_string();
        assert!(message.contains("not a regular file"), "{message}");
    }

    #[test]
    fn gzip_content_and_name_that_disagree_never_reach_the_nifti_crate_unchecked() {
        // The crate inflates by name, paramap's checks by content: where they disagree the
        // crate would read other bytes than those checked (a broken gzip stream named .nii,
        // read raw, reserved 1.1 GB for extensions; docs/fuzzing.md).
        let dir = tempfile::tempdir().unwrap();
        let values = Array4::from_shape_fn((2, 3, 4, 5), |(t, z, y, x)| (t + z + y + x) as f32);
        let bytes = nifti_bytes(dir.path(), &values, nifti::Endianness::Little, (1.0, 0.0));
        // Sound gzip named .nii: read by content, in memory.
        let p = dir.path().join("g.nii");
        std::fs::write(&p, gzip(&[&bytes])).unwrap();
        assert_eq!(read(&p).unwrap().0, values);
        // The same with vox_offset 0, which only the crate's streaming reader takes: refused
        // with what to do, in both directions.
        let mut low = bytes.clone();
        low[108..112].copy_from_slice(&0f32.to_le_bytes());
        for (name, contents, expected) in [
            ("low.nii", gzip(&[&low]), "rename it to .nii.gz"),
            ("low.nii.gz", low.clone(), "is not gzip-compressed"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, contents).unwrap();
            let message = read(&p).unwrap_err().to_string();
            assert!(message.contains(name), "{message}");
            assert!(message.contains(expected), "{message}");
        }
        // A gzip header with every optional field flagged (FEXTRA, FNAME, FCOMMENT, FHCRC) that
        // are not there, named .nii: its header cannot be inflated, so it is refused here.
        let mut broken = gzip(&[&bytes]);
        broken[3] = 0x1f;
        let p = dir.path().join("broken.nii");
        std::fs::write(&p, &broken).unwrap();
        let message = read(&p).unwrap_err().to_string();
        assert!(message.contains("broken.nii"), "{message}");
        assert!(message.contains("gzip stream is damaged"), "{message}");
    }

    #[test]
    fn a_header_image_pair_is_read_and_checked_against_its_image_file() {
        let dir = tempfile::tempdir().unwrap();
        let values = Array4::from_shape_fn((2, 3, 4, 5), |(t, z, y, x)| {
            (t * 1000 + z * 100 + y * 10 + x) as f32
        });
        let bytes = nifti_bytes(dir.path(), &values, nifti::Endianness::Little, (1.0, 0.0));
        let mut hdr = bytes[..348].to_vec();
        hdr[344..348].copy_from_slice(b"ni1\0");
        hdr[108..112].copy_from_slice(&0f32.to_le_bytes());
        let voxels = &bytes[352..];
        let (h, img) = (dir.path().join("p.hdr"), dir.path().join("p.img"));
        std::fs::write(&h, &hdr).unwrap();
        std::fs::write(&img, voxels).unwrap();
        assert_eq!(read(&h).unwrap().0, values);
        // An image file too short for the header's grid: refused naming it, before the
        // crate allocates the grid.
        let mut huge = hdr.clone();
        for (i, d) in [4u16, 5, 4, 3000, 3000].iter().enumerate() {
            huge[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        std::fs::write(&h, &huge).unwrap();
        let message = read(&h).unwrap_err().to_string();
        assert!(message.contains("p.img"), "{message}");
        assert!(message.contains("more than this"), "{message}");
        // An extender in the header sends the crate to read vox_offset − 352 bytes of
        // extensions from the image file: a damaged esize there is refused naming it.
        let mut extended = hdr.clone();
        extended[108..112].copy_from_slice(&1000f32.to_le_bytes());
        extended.extend([1, 0, 0, 0]);
        std::fs::write(&h, &extended).unwrap();
        let mut img_bytes = 0x7fff_0000i32.to_le_bytes().to_vec();
        img_bytes.extend([0u8; 4]);
        img_bytes.extend(voxels);
        std::fs::write(&img, &img_bytes).unwrap();
        let message = read(&h).unwrap_err().to_string();
        assert!(message.contains("p.img"), "{message}");
        assert!(message.contains("esize = 2147418112"), "{message}");
    }
}
