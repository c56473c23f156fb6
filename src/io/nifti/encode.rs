//! The single-file NIfTI-1 writer paramap uses for its maps: the 348-byte header and the
//! 4-byte extender (no extensions; voxels from byte 352, NIfTI-1 §"vox_offset") followed by
//! the voxels straight from the array's memory, in one write for `.nii`, or through one
//! gzip stream (flate2, fastest level, as the crate) for `.nii.gz`. The header's fields and
//! their order are the NIfTI-1 standard's (nifti1.h), written as the `nifti` crate writes
//! them (the test below compares the bytes); the crate's writer, which copies every slice
//! through a buffer first, stays the path for anything else (a header in the other byte
//! order, an array not in standard layout).

use std::io::Write;
use std::path::Path;

use nifti::{Endianness, NiftiHeader, NiftiType};

use crate::error::{Error, Result};

/// Bytes before the voxels: the header (348) and the extender saying "no extensions" (4).
const VOX_OFFSET: usize = 352;

/// The first 352 bytes of a `.nii` holding `dims` (x fastest, at most 7) of `datatype`, with
/// every other field from `reference`, in the machine's byte order: as the `nifti` crate's
/// `WriterOptions::reference_header(..).write_nifti(..)` writes them (dim from the shape,
/// unused dims 1, sizeof_hdr 348, vox_offset 352, scl_slope 1, scl_inter 0, magic `n+1`).
/// None for a `reference` in the other byte order or a shape NIfTI-1 cannot hold.
pub(super) fn header_bytes(
    reference: &NiftiHeader,
    dims: &[usize],
    datatype: NiftiType,
) -> Option<[u8; VOX_OFFSET]> {
    if reference.endianness != Endianness::native()
        || dims.is_empty()
        || dims.len() > 7
        || dims.iter().any(|&d| d > u16::MAX as usize)
    {
        return None;
    }
    let mut dim = [1u16; 8];
    dim[0] = dims.len() as u16;
    for (d, &n) in dim[1..].iter_mut().zip(dims) {
        *d = n as u16;
    }
    let h = reference;
    let mut out = Vec::with_capacity(VOX_OFFSET);
    let mut put = |b: &[u8]| out.extend_from_slice(b);
    put(&348i32.to_ne_bytes());
    put(&h.data_type);
    put(&h.db_name);
    put(&h.extents.to_ne_bytes());
    put(&h.session_error.to_ne_bytes());
    put(&[h.regular, h.dim_info]);
    for d in dim {
        put(&d.to_ne_bytes());
    }
    for f in [h.intent_p1, h.intent_p2, h.intent_p3] {
        put(&f.to_ne_bytes());
    }
    put(&h.intent_code.to_ne_bytes());
    put(&(datatype as i16).to_ne_bytes());
    put(&((datatype.size_of() * 8) as i16).to_ne_bytes());
    put(&h.slice_start.to_ne_bytes());
    for f in h.pixdim {
        put(&f.to_ne_bytes());
    }
    for f in [VOX_OFFSET as f32, 1.0, 0.0] {
        put(&f.to_ne_bytes()); // vox_offset, scl_slope, scl_inter
    }
    put(&h.slice_end.to_ne_bytes());
    put(&[h.slice_code, h.xyzt_units]);
    for f in [h.cal_max, h.cal_min, h.slice_duration, h.toffset] {
        put(&f.to_ne_bytes());
    }
    put(&h.glmax.to_ne_bytes());
    put(&h.glmin.to_ne_bytes());
    let mut descrip = h.descrip.clone();
    descrip.resize(80, 0);
    put(&descrip);
    put(&h.aux_file);
    put(&h.qform_code.to_ne_bytes());
    put(&h.sform_code.to_ne_bytes());
    for f in [
        h.quatern_b,
        h.quatern_c,
        h.quatern_d,
        h.quatern_x,
        h.quatern_y,
        h.quatern_z,
    ] {
        put(&f.to_ne_bytes());
    }
    for f in h.srow_x.iter().chain(&h.srow_y).chain(&h.srow_z) {
        put(&f.to_ne_bytes());
    }
    put(&h.intent_name);
    put(b"n+1\0");
    put(&[0; 4]); // the extender: no extensions
    out.try_into().ok()
}

/// Writes `header` and `voxels` (the file's voxel bytes, x fastest) to `path`: `.nii` in one
/// write, `.nii.gz` (by the name) through one gzip member at flate2's fastest level.
pub(super) fn write_file(path: &Path, header: &[u8; VOX_OFFSET], voxels: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| Error::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let gz = path.to_string_lossy().ends_with(".gz");
    let mut file = std::fs::File::create(path).map_err(fail)?;
    if !gz {
        file.write_all(header).map_err(fail)?;
        return file.write_all(voxels).map_err(fail);
    }
    // flate2's miniz_oxide at its fastest level, as the `nifti` crate deflates (libdeflate's
    // level 1 in one call took 15% more CPU on the 128×128×30 maps, and two more buffers).
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(header).map_err(fail)?;
    gz.write_all(voxels).map_err(fail)?;
    gz.finish().map_err(fail).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nifti::writer::WriterOptions;

    /// The header paramap writes, byte for byte as the `nifti` crate writes it, for a map, a
    /// mask and a series; and the voxels after it.
    #[test]
    fn bytes_match_the_nifti_crates_writer() {
        let dir = tempfile::tempdir().unwrap();
        let g = crate::volume::Geometry::from_ras(
            [5, 4, 3],
            [
                [-1.9, 0.1, 0.0, 12.5],
                [0.1, 1.8, 0.2, -9.0],
                [0.0, -0.2, 2.9, 8.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        );
        let header = super::super::header_for(&g, "paramap test image", Some(2.5));
        let map = ndarray::Array3::from_shape_fn((3, 4, 5), |(z, y, x)| {
            (z * 100 + y * 10 + x) as f32 - 0.5
        });
        let series = ndarray::Array4::from_shape_fn((2, 3, 4, 5), |(t, z, y, x)| {
            (t * 1000 + z * 100 + y * 10 + x) as f32
        });
        let mask = map.mapv(|v| u8::from(v > 100.0));
        let check = |name: &str, ours: Vec<u8>, write: &dyn Fn(&Path)| {
            let p = dir.path().join(name);
            write(&p);
            let theirs = std::fs::read(&p).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{name}");
            assert_eq!(ours[..VOX_OFFSET], theirs[..VOX_OFFSET], "{name}: header");
            assert_eq!(ours, theirs, "{name}: voxels");
        };
        let ours = |dims: &[usize], t: NiftiType, voxels: &[u8]| {
            let mut v = header_bytes(&header, dims, t).unwrap().to_vec();
            v.extend_from_slice(voxels);
            v
        };
        let crate_writes = |p: &Path, data: &dyn Fn(WriterOptions) -> nifti::Result<()>| {
            data(WriterOptions::new(p).reference_header(&header)).unwrap()
        };
        check(
            "map.nii",
            ours(
                &[5, 4, 3],
                NiftiType::Float32,
                bytemuck::cast_slice(map.as_slice().unwrap()),
            ),
            &|p| crate_writes(p, &|w| w.write_nifti(&map.view().reversed_axes())),
        );
        check(
            "mask.nii",
            ours(&[5, 4, 3], NiftiType::Uint8, mask.as_slice().unwrap()),
            &|p| crate_writes(p, &|w| w.write_nifti(&mask.view().reversed_axes())),
        );
        check(
            "series.nii",
            ours(
                &[5, 4, 3, 2],
                NiftiType::Float32,
                bytemuck::cast_slice(series.as_slice().unwrap()),
            ),
            &|p| crate_writes(p, &|w| w.write_nifti(&series.view().reversed_axes())),
        );
    }

    /// A `.nii.gz` written here inflates to the `.nii` bytes, and reads back through
    /// `nifti::read` as the array.
    #[test]
    fn gzip_inflates_to_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let g = crate::volume::Geometry::from_ras(
            [5, 4, 3],
            [
                [2.0, 0.0, 0.0, 1.0],
                [0.0, 2.0, 0.0, 2.0],
                [0.0, 0.0, 3.0, 3.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        );
        let data = ndarray::Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z + y * x) as f32);
        let (a, b) = (dir.path().join("a.nii"), dir.path().join("a.nii.gz"));
        super::super::write_map(&a, &data, &g, "x").unwrap();
        super::super::write_map(&b, &data, &g, "x").unwrap();
        let plain = std::fs::read(&a).unwrap();
        let mut inflated = vec![];
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&b).unwrap()),
            &mut inflated,
        )
        .unwrap();
        assert_eq!(plain, inflated);
        let (back, _, _) = super::super::read(&b).unwrap();
        assert_eq!(back.index_axis(ndarray::Axis(0), 0), data);
    }
}
