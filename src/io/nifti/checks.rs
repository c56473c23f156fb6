//! Every check made before the `nifti` crate sees a byte of a file. The crate trusts its header:
//! it reserves what `dim[1..=dim[0]]` × `bitpix` and each extension's `esize` declare before
//! reading them, decides by the file's name (not its content) whether to inflate it, and panics
//! or aborts on some damaged headers. So paramap first probes the file itself (regular file,
//! gzip by its first two bytes, the NIfTI-1 header parsed from the same bytes) and refuses,
//! naming the header field and what to do:
//! - a header that does not parse: `sizeof_hdr` (348; 540 is NIfTI-2), `magic` ("n+1"/"ni1"),
//!   `dim[0]` (1 to 7) ([`header_fault`]);
//! - voxel types other than one real number (`datatype`: RGB, complex, float128)
//!   ([`check_datatype`]); grids other than 3-D or 4-D ([`grid`]);
//! - more voxels (`dim`, `bitpix`, `vox_offset`) than the file can hold, at most 1032 times a
//!   gzip file's size ([`check_size`]);
//! - header extensions (extender byte 348; `esize`, `ecode`) whose bytes are not in the file
//!   ([`check_extensions`]);
//! - gzip content under a name without `.gz`, or the reverse ([`same_bytes_as_the_crate`]);
//! - a `.hdr`/`.img` pair whose image file cannot hold what its header declares ([`check_pair`]).
//!
//! Found and kept by the NIfTI fuzz target (docs/fuzzing.md).

use std::path::Path;

use nifti::NiftiHeader;

use crate::error::{Error, Result};

/// Refuses voxel types paramap does not read as one real number per voxel.
pub(super) fn check_datatype(header: &NiftiHeader, path: &Path) -> Result<()> {
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

/// What is known of a file before its voxels are read.
pub(super) struct Probe {
    pub(super) file_len: u64,
    /// gzip-compressed, by its first two bytes (not its name).
    pub(super) gz: bool,
    /// The NIfTI-1 header, where one parses.
    pub(super) header: Option<NiftiHeader>,
}

pub(super) fn probe(path: &Path) -> Result<Probe> {
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

/// What a `nifti` crate error means, in words (its I/O variant prints Rust debug text).
pub(super) fn nifti_error_text(e: &nifti::NiftiError, path: &Path) -> String {
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
pub(super) fn header_fault(path: &Path) -> String {
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
pub(super) fn voxel_offset(header: &NiftiHeader) -> Option<usize> {
    let v = header.vox_offset;
    (v.is_finite() && (352.0..1e15).contains(&v)).then_some(v as usize)
}

/// Deflate expands at most 1032:1, so a gzip file of `n` bytes inflates to at most 1032·n.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// The error for a single-file header whose voxels cannot fit in a file of `file_len` bytes
/// (inflated at most [`DEFLATE_MAX_RATIO`] times where gzip-compressed).
pub(super) fn check_size(header: &NiftiHeader, path: &Path, file_len: u64, gz: bool) -> Result<()> {
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
pub(super) fn grid(header: &NiftiHeader, path: &Path) -> Result<(usize, usize, usize, usize)> {
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
pub(super) fn same_bytes_as_the_crate(path: &Path, gz: bool) -> Result<()> {
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
pub(super) fn check_pair(header: &NiftiHeader, hdr: &Path) -> Result<()> {
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
pub(super) fn check_extensions(header: &NiftiHeader, path: &Path, gz: bool) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::super::read;
    use super::super::test_files::{gzip, nifti_bytes};
    use ndarray::Array4;

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
