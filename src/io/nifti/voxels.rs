//! Reading a NIfTI-1 file's voxels into `[t, z, y, x]` f32, after [`super::checks`] has passed
//! the header. Two paths: [`read_whole`] reads a single-file `.nii`/`.nii.gz` in memory
//! (libdeflate for one gzip member, every member's CRC checked; `datatype` uint8 to float64
//! converted with `scl_slope`/`scl_inter` and the header's byte order, float32 without scaling
//! taken as it is); [`read_streamed`] takes the rest (header/image pairs, other voxel types,
//! `vox_offset` below 352, files cut short) slice by slice through the `nifti` crate, which names
//! the first slice it cannot read. Both give the same values (tested below).

use std::path::Path;

use ndarray::{Array4, ArrayD, Axis, Ix2};
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderStreamedOptions};

use super::checks::{check_datatype, check_size, grid, nifti_error_text, voxel_offset, Probe};
use crate::error::{Error, Result};

/// The in-memory path of [`read`](super::read); `None` where the file must stream instead.
pub(super) fn read_whole(path: &Path, probe: &Probe) -> Result<Option<(Array4<f32>, NiftiHeader)>> {
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
    crate::io::huge_pages::advise(&mut words);
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
        read_parallel(&file, out).map_err(io)?;
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

/// Fills `out` from the start of `file`, in 4 MiB pieces read at their offsets on all cores:
/// the copy from the page cache and the first touch of the fresh buffer (the system zeroes
/// each new page before it is written) are most of a `.nii`'s reading time, and one thread
/// did both for the whole file (measured in BENCHMARKS.md, ninth session: DSC serial part).
/// The same bytes; an error if the file ends early.
fn read_parallel(file: &std::fs::File, out: &mut [u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use rayon::prelude::*;
        use std::os::unix::fs::FileExt;
        const PIECE: usize = 4 << 20;
        out.par_chunks_mut(PIECE)
            .enumerate()
            .try_for_each(|(i, piece)| file.read_exact_at(piece, (i * PIECE) as u64))
    }
    #[cfg(not(unix))]
    {
        use std::io::Read;
        let mut file = file;
        file.read_exact(out)
    }
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

/// The streaming path of [`read`](super::read): slice by slice through the `nifti` crate,
/// straight into the `[t, z, y, x]` array, the file's bytes never held whole. The header the
/// crate read is checked against the file's size before the array is allocated (the probe's
/// header may not have parsed).
pub(super) fn read_streamed(path: &Path, probe: &Probe) -> Result<(Array4<f32>, NiftiHeader)> {
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

#[cfg(test)]
mod tests {
    use super::super::checks::probe;
    use super::super::read;
    use super::super::test_files::{gzip, nifti_bytes};
    use super::*;

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
}
