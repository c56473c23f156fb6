//! NIfTI-1 input and output (.nii, .nii.gz, .hdr/.img pairs) through the `nifti` crate. The
//! affine is written as both sform and qform (code 1, scanner), as dcm2niix does, so that
//! nibabel, FSL and MRtrix agree on where every voxel is.
//!
//! This file holds the public API ([`read`], [`read_header`], and the re-exported units,
//! affine and writing functions); the work is in its parts:
//! - [`checks`]: the probe and every check made before the `nifti` crate sees a byte (header
//!   fields sizeof_hdr, magic, dim, datatype, bitpix, vox_offset and the extensions against the
//!   file's size; gzip content against the file's name; header/image pairs);
//! - [`voxels`]: reading the voxels, in memory (libdeflate) or slice by slice (the crate);
//! - [`mapped`]: a float32 `.nii`'s voxels mapped from the file instead ([`read_mapped`]);
//! - [`units`]: `xyzt_units` and the affine (sform, qform, pixdim) in seconds and mm;
//! - [`write`]: the header paramap writes and the `.nii`/`.nii.gz` writers;
//! - [`encode`]: those files' bytes in one write (one gzip stream for `.nii.gz`).

use std::path::Path;

use ndarray::Array4;
use nifti::NiftiHeader;

use crate::error::{Error, Result};
use crate::volume::Geometry;

mod checks;
mod encode;
mod mapped;
#[cfg(test)]
mod test_files;
mod units;
mod voxels;
mod write;

use checks::{
    check_datatype, check_extensions, check_pair, check_size, header_fault, probe,
    same_bytes_as_the_crate,
};
use mapped::map_whole;
pub use mapped::MappedVoxels;
pub use units::{header_affine, mm_per_space_unit, time_step_seconds, time_units_per_second};
use voxels::{read_streamed, read_whole};
pub use write::{header_for, write_map, write_mask, write_series, NiftiFormat};

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
    let probe = checked(path)?;
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
    let geometry = geometry_of(&header);
    Ok((data, geometry, header))
}

/// The voxels of a single-file `.nii` of float32 in this machine's byte order without
/// scaling, mapped from the file rather than read ([`MappedVoxels`]: no copy, no fresh
/// memory), with the geometry and header [`read`] gives; after the same checks, with the same
/// errors. `None` for every other file (compressed, other voxel types or byte order, scaled,
/// header/image pairs, cut short): [`read`] reads those.
pub fn read_mapped(path: &Path) -> Result<Option<(MappedVoxels, Geometry, NiftiHeader)>> {
    let probe = checked(path)?;
    Ok(map_whole(path, &probe)?.map(|(voxels, header)| {
        let geometry = geometry_of(&header);
        (voxels, geometry, header)
    }))
}

/// The grid's geometry from the header (sizes from `dim`, the affine in mm).
fn geometry_of(header: &NiftiHeader) -> Geometry {
    let size = |i: usize| header.dim[i].max(1) as usize;
    Geometry::from_ras([size(1), size(2), size(3)], header_affine(header))
}

/// The probe of `path` after every check made before the voxels are read.
fn checked(path: &Path) -> Result<checks::Probe> {
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
    Ok(probe)
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
