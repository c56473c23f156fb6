//! A single-file `.nii` of float32 voxels in the machine's byte order and without scaling,
//! mapped read-only from the file instead of read into fresh memory: the voxels are the page
//! cache's own pages (no copy, and none of the page zeroing a fresh buffer costs the system
//! before the file is copied into it), as MRtrix3 maps uncompressed images. Measured in
//! BENCHMARKS.md (tenth session: DSC memory and serial stages). Other files are read by
//! [`super::read`]; where this reader declines (`None`), that one gives the values or the error.

use std::path::Path;

use ndarray::ArrayView4;
use nifti::NiftiHeader;

use super::checks::{grid, voxel_offset, Probe};
use crate::error::{Error, Result};

/// The voxels of a mapped `.nii`, `[t, z, y, x]` f32, valid while this lives.
///
/// The map is read-only (the page cache's pages, shared): paramap never writes through it. As
/// with every mapped file (mmap(2)), another program shortening the file while it is mapped
/// ends the process (SIGBUS) on the next read of the lost pages; rewriting it in place changes
/// the values read.
pub struct MappedVoxels {
    map: memmap2::Mmap,
    /// Byte offset of the first voxel (`vox_offset`, a multiple of 4).
    start: usize,
    shape: (usize, usize, usize, usize),
}

impl std::fmt::Debug for MappedVoxels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedVoxels")
            .field("start", &self.start)
            .field("shape", &self.shape)
            .finish()
    }
}

impl MappedVoxels {
    /// Every voxel, volume after volume, x fastest (the file's order).
    pub fn as_slice(&self) -> &[f32] {
        let (nt, nz, ny, nx) = self.shape;
        let bytes = &self.map[self.start..self.start + nt * nz * ny * nx * 4];
        // The map starts on a page boundary and `start` is a multiple of 4: aligned for f32.
        bytemuck::cast_slice(bytes)
    }

    /// The voxels as `[t, z, y, x]`.
    pub fn view(&self) -> ArrayView4<'_, f32> {
        ArrayView4::from_shape(self.shape, self.as_slice()).expect("the map holds the grid")
    }

    /// `(t, z, y, x)`.
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        self.shape
    }
}

/// The mapped path of [`super::read_mapped`]: `None` where the file is compressed, its voxels
/// are not float32 in this machine's byte order, it is scaled, its `vox_offset` is not a
/// multiple of 4, or it is shorter than its header says (the reading path says why).
pub(super) fn map_whole(path: &Path, probe: &Probe) -> Result<Option<(MappedVoxels, NiftiHeader)>> {
    let Some(header) = &probe.header else {
        return Ok(None);
    };
    if probe.gz {
        return Ok(None);
    }
    let (nx, ny, nz, nt) = grid(header, path)?;
    let Some(offset) = voxel_offset(header) else {
        return Ok(None);
    };
    let (slope, inter) = (header.scl_slope, header.scl_inter);
    let scaled = slope != 0.0 && slope.is_finite() && (slope != 1.0 || inter != 0.0);
    let float32 = header.data_type().ok() == Some(nifti::NiftiType::Float32);
    if !float32
        || scaled
        || header.endianness != nifti::Endianness::native()
        || offset % 4 != 0
        || &header.magic != b"n+1\0"
    {
        return Ok(None);
    }
    let end = nx
        .checked_mul(ny)
        .and_then(|v| v.checked_mul(nz))
        .and_then(|v| v.checked_mul(nt))
        .and_then(|v| v.checked_mul(4))
        .and_then(|b| b.checked_add(offset));
    if end.is_none_or(|e| e as u64 > probe.file_len) {
        return Ok(None);
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; paramap holds no other handle writing to the
    // file. What another program does to the file meanwhile is the caveat of `MappedVoxels`.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) };
    let Ok(map) = map else {
        return Ok(None); // a file system that cannot map: read it instead
    };
    if map.len() < end.unwrap_or(usize::MAX) {
        return Ok(None); // shortened since the probe
    }
    Ok(Some((
        MappedVoxels {
            map,
            start: offset,
            shape: (nt, nz, ny, nx),
        },
        header.clone(),
    )))
}

#[cfg(test)]
mod tests {
    use super::super::test_files::{gzip, nifti_bytes};
    use super::super::{read, read_mapped};
    use ndarray::Array4;

    #[test]
    fn a_mapped_float32_nii_gives_the_values_read_and_other_files_are_declined() {
        use nifti::Endianness::{Big, Little};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let f32s = Array4::from_shape_fn((3, 4, 5, 6), |(t, z, y, x)| {
            (t * 120 + z * 30 + y * 6 + x) as f32 * 1.25 - 7.5
        });
        let bytes = nifti_bytes(d, &f32s, Little, (1.0, 0.0));
        let p = d.join("m.nii");
        std::fs::write(&p, &bytes).unwrap();
        let (mapped, g, _) = read_mapped(&p).unwrap().expect("mapped");
        let (read_back, g2, _) = read(&p).unwrap();
        assert_eq!(mapped.dim(), (3, 4, 5, 6));
        assert_eq!(g, g2);
        assert_eq!(mapped.view(), f32s.view());
        assert!(mapped
            .as_slice()
            .iter()
            .zip(&read_back)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // Declined: compressed, big-endian, scaled, other types.
        let i16s = f32s.mapv(|x| x as i16);
        for (name, contents) in [
            ("c.nii.gz", gzip(&[&bytes])),
            ("b.nii", nifti_bytes(d, &f32s, Big, (1.0, 0.0))),
            ("s.nii", nifti_bytes(d, &f32s, Little, (0.5, 3.0))),
            ("i.nii", nifti_bytes(d, &i16s, Little, (1.0, 0.0))),
        ] {
            let p = d.join(name);
            std::fs::write(&p, contents).unwrap();
            assert!(read_mapped(&p).unwrap().is_none(), "{name}");
        }
        // A file cut short is declined too (the reading path names the problem).
        let p = d.join("cut.nii");
        std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
        assert!(read_mapped(&p).is_err() || read_mapped(&p).unwrap().is_none());
        assert!(read(&p).is_err());
    }
}
