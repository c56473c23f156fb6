//! Writing NIfTI-1: the header paramap writes ([`header_for`]: the RAS affine as both sform and
//! qform, code 1, with `quatern_*` and `pixdim[0]` (qfac) as nifti1_io's mat44_to_quatern
//! computes them; `xyzt_units` mm and s; `pixdim[4]` the TR; `descrip` the description, cut to
//! 79 bytes), the output format (`.nii.gz` or `.nii`, [`NiftiFormat`]) and the writers of maps
//! (float32), masks (uint8) and series (float32, 4-D).

use std::path::Path;

use ndarray::{Array3, Array4};
use nifti::writer::WriterOptions;
use nifti::NiftiHeader;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::volume::{Affine, Geometry};

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

pub(super) fn write_with<T, D>(
    path: &Path,
    header: &NiftiHeader,
    xyz: ndarray::ArrayView<T, D>,
) -> Result<()>
where
    T: nifti::DataElement + bytemuck::Pod,
    D: ndarray::Dimension + ndarray::RemoveAxis,
{
    // The usual case in one write (or one libdeflate call), straight from the array's memory:
    // its voxels in file order (x fastest) are the `[z, y, x]` array's standard layout.
    let zyx = xyz.t();
    if let (Some(voxels), Some(head)) = (
        zyx.as_slice(),
        super::encode::header_bytes(header, xyz.shape(), T::DATA_TYPE),
    ) {
        return super::encode::write_file(path, &head, bytemuck::cast_slice(voxels));
    }
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
    use super::super::{header_affine, read};
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
}
