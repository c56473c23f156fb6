//! NIfTI files made for the unit tests of this module's parts.

use std::path::Path;

use super::write::{header_for, write_with};
use crate::volume::Geometry;

/// A NIfTI of `values` (x fastest) as `T`, with `endianness`, and scl_slope/scl_inter
/// patched into the header bytes (the `nifti` writer always writes 1 and 0).
pub(super) fn nifti_bytes<T: nifti::DataElement + bytemuck::Pod>(
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

pub(super) fn gzip(members: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, m).unwrap();
        out.extend(e.finish().unwrap());
    }
    out
}
