//! The volume model every map is built on: voxel data, the grid's place in the world, and what
//! each volume of a 4-D series is (b-value and direction, or time).
//!
//! World coordinates are DICOM's patient LPS throughout the library; the one conversion to
//! NIfTI's RAS lives in [`Geometry::affine_ras`] / [`Geometry::from_ras`].

use ndarray::Array4;
use serde::Serialize;

pub mod resample;
pub mod window;

/// A 4×4 homogeneous matrix, row-major.
pub type Affine = [[f64; 4]; 4];

/// Unit normal of a slice plane from its DICOM Image Orientation (Patient) (0020,0037), the
/// row cosine × the column cosine (PS3.3 C.7.6.2.1.1), in LPS.
pub fn normal_of(iop: [f64; 6]) -> [f64; 3] {
    let (r, c) = ([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);
    let n = [
        r[1] * c[2] - r[2] * c[1],
        r[2] * c[0] - r[0] * c[2],
        r[0] * c[1] - r[1] * c[0],
    ];
    let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
    n.map(|x| x / len)
}

/// Where a voxel grid sits in the world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Geometry {
    /// Grid size as (x, y, z): x runs along a row (fastest in memory), z across slices.
    pub dims: [usize; 3],
    /// Voxel index (i, j, k, 1) to patient LPS millimetres.
    pub affine_lps: Affine,
}

impl Geometry {
    pub fn n_voxels(&self) -> usize {
        self.dims.iter().product()
    }

    /// The affine in NIfTI's RAS+ world: LPS with the first two world axes negated.
    pub fn affine_ras(&self) -> Affine {
        let mut a = self.affine_lps;
        for c in 0..4 {
            a[0][c] = -a[0][c];
            a[1][c] = -a[1][c];
        }
        a
    }

    /// Builds a geometry from a NIfTI (RAS+) affine.
    pub fn from_ras(dims: [usize; 3], affine_ras: Affine) -> Self {
        let mut a = affine_ras;
        for c in 0..4 {
            a[0][c] = -a[0][c];
            a[1][c] = -a[1][c];
        }
        Geometry {
            dims,
            affine_lps: a,
        }
    }

    /// Length of each voxel edge in mm.
    pub fn voxel_size(&self) -> [f64; 3] {
        let mut s = [0.0; 3];
        for (c, s) in s.iter_mut().enumerate() {
            *s = (0..3)
                .map(|r| self.affine_lps[r][c].powi(2))
                .sum::<f64>()
                .sqrt();
        }
        s
    }

    /// Unit vector (LPS) of grid axis `c`.
    pub fn axis_unit(&self, c: usize) -> [f64; 3] {
        let s = self.voxel_size()[c].max(f64::MIN_POSITIVE);
        [
            self.affine_lps[0][c] / s,
            self.affine_lps[1][c] / s,
            self.affine_lps[2][c] / s,
        ]
    }

    /// Determinant of the 3×3 part of the RAS affine (negative for the usual radiological
    /// storage order, which FSL's bvec convention depends on).
    pub fn det_ras(&self) -> f64 {
        let a = self.affine_ras();
        a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
            - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
    }

    /// The same world grid with the y (row) index reversed, as dcm2niix stores DICOM rows
    /// bottom-up. Data must be flipped alongside.
    pub fn flipped_y(&self) -> Self {
        let mut a = self.affine_lps;
        let ny1 = self.dims[1].saturating_sub(1) as f64;
        for row in a.iter_mut().take(3) {
            row[3] += row[1] * ny1;
            row[1] = -row[1];
        }
        Geometry {
            dims: self.dims,
            affine_lps: a,
        }
    }

    /// Voxel index → LPS mm.
    pub fn index_to_lps(&self, ijk: [f64; 3]) -> [f64; 3] {
        let a = &self.affine_lps;
        let mut p = [0.0; 3];
        for (r, p) in p.iter_mut().enumerate() {
            *p = a[r][0] * ijk[0] + a[r][1] * ijk[1] + a[r][2] * ijk[2] + a[r][3];
        }
        p
    }

    /// The inverse of `affine_lps`: LPS mm → continuous voxel index (i, j, k, 1), so that
    /// `index = inverse · lps` undoes [`Geometry::index_to_lps`]. `None` when the affine is
    /// singular (a zero voxel size or two parallel axes): no point of the world has an index.
    pub fn inverse_affine_lps(&self) -> Option<Affine> {
        let a = &self.affine_lps;
        // Cofactors of the 3×3 part.
        let c = |r0: usize, r1: usize, c0: usize, c1: usize| {
            a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0]
        };
        let m = [
            [c(1, 2, 1, 2), -c(0, 2, 1, 2), c(0, 1, 1, 2)],
            [-c(1, 2, 0, 2), c(0, 2, 0, 2), -c(0, 1, 0, 2)],
            [c(1, 2, 0, 1), -c(0, 2, 0, 1), c(0, 1, 0, 1)],
        ];
        let det = a[0][0] * m[0][0] + a[0][1] * m[1][0] + a[0][2] * m[2][0];
        let scale: f64 = self.voxel_size().iter().product();
        if !(det.abs() > 1e-9 * scale) || !det.is_finite() {
            return None;
        }
        let mut inv = [[0.0; 4]; 4];
        for r in 0..3 {
            for col in 0..3 {
                inv[r][col] = m[r][col] / det;
            }
            inv[r][3] = -(0..3).map(|k| inv[r][k] * a[k][3]).sum::<f64>();
        }
        inv[3][3] = 1.0;
        Some(inv)
    }

    /// The largest difference between two affines, in mm over the grid's extent (the error a
    /// voxel at the far corner would see).
    pub fn max_corner_distance(&self, other: &Geometry) -> f64 {
        let d = self.dims.map(|n| n.saturating_sub(1) as f64);
        let mut worst: f64 = 0.0;
        for &i in &[0.0, d[0]] {
            for &j in &[0.0, d[1]] {
                for &k in &[0.0, d[2]] {
                    let p = self.index_to_lps([i, j, k]);
                    let q = other.index_to_lps([i, j, k]);
                    let dist = (0..3).map(|r| (p[r] - q[r]).powi(2)).sum::<f64>().sqrt();
                    worst = worst.max(dist);
                }
            }
        }
        worst
    }
}

/// Diffusion encoding of one volume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Diffusion {
    /// b-value in s/mm² as the scanner reported it.
    pub b: f64,
    /// Gradient direction as a unit vector in patient LPS coordinates, if known.
    pub direction: Option<[f64; 3]>,
    /// The scanner's own isotropic (trace) image, e.g. the volume Philips appends
    /// ((0018,9075) = ISOTROPIC or (2001,1004) = I).
    pub isotropic: bool,
}

/// What one volume of a 4-D series is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VolumeInfo {
    pub diffusion: Option<Diffusion>,
    /// Acquisition time in seconds from the first volume, where known.
    pub time_s: Option<f64>,
}

/// Where a series came from, as recorded in outputs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeriesInfo {
    /// File or folder the series was read from.
    pub source: String,
    pub series_uid: Option<String>,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub study_uid: Option<String>,
    pub frame_of_reference_uid: Option<String>,
    pub patient_id: Option<String>,
    /// Echo time (s): DICOM's ms and BIDS' s converted once where they are read.
    pub echo_time_s: Option<f64>,
    /// Repetition time (s), likewise.
    pub repetition_time_s: Option<f64>,
    /// Number of files (DICOM) or 1 (NIfTI).
    pub n_files: usize,
    /// For a DICOM input: what a derived series needs to sit in the same study.
    #[serde(skip)]
    pub dicom: Option<DicomSource>,
}

/// What a derived DICOM series inherits from its source series (DICOM inputs only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DicomSource {
    /// Patient, study and equipment attributes copied verbatim from the series' first file:
    /// (group, element), VR (two letters), value as DICOM text (multi-values joined by `\`).
    /// Sequences are not kept.
    pub inherited: Vec<((u16, u16), String, String)>,
    /// SOP Class UID of the source images.
    pub sop_class_uid: String,
    /// SOP Instance UIDs of the source images, in file order.
    pub sop_instance_uids: Vec<String>,
}

impl SeriesInfo {
    /// A shorter name for progress lines: "#number 'description'", or where it came from.
    pub fn short_label(&self) -> String {
        match (&self.series_number, &self.description) {
            (None, None) => self.label(),
            (n, d) => format!(
                "#{} '{}'",
                n.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
                d.as_deref().unwrap_or("no description")
            ),
        }
    }

    /// How messages name a series: "#number 'description' (UID)", or where it came from.
    pub fn label(&self) -> String {
        match &self.series_uid {
            Some(uid) => format!(
                "#{} '{}' ({uid})",
                self.series_number
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "?".into()),
                self.description.as_deref().unwrap_or("no description")
            ),
            None => self.source.clone(),
        }
    }
}

/// A 4-D series: `data[[volume, z, y, x]]`, one 3-D volume after another.
#[derive(Debug, Clone)]
pub struct Series4 {
    pub data: Array4<f32>,
    pub geometry: Geometry,
    pub volumes: Vec<VolumeInfo>,
    pub info: SeriesInfo,
    /// Acquisition time of each image, `[volume, slice]`, in seconds from the earliest, where
    /// the input says (DICOM); slices of one volume differ by the slice timing.
    pub frame_times_s: Option<ndarray::Array2<f64>>,
}

impl Series4 {
    pub fn n_volumes(&self) -> usize {
        self.data.shape()[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oblique() -> Geometry {
        Geometry {
            dims: [4, 5, 3],
            affine_lps: [
                [1.9, 0.1, 0.0, -10.0],
                [0.1, 1.9, 0.2, 20.0],
                [0.0, -0.2, 3.0, 30.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        }
    }

    #[test]
    fn ras_round_trip_is_exact_and_negates_x_and_y() {
        let g = oblique();
        let ras = g.affine_ras();
        assert_eq!(ras[0][3], 10.0);
        assert_eq!(ras[1][3], -20.0);
        assert_eq!(ras[2][3], 30.0);
        assert_eq!(Geometry::from_ras(g.dims, ras), g);
    }

    #[test]
    fn the_inverse_affine_undoes_index_to_lps() {
        let g = oblique();
        let inv = g.inverse_affine_lps().unwrap();
        for ijk in [[0.0, 0.0, 0.0], [3.0, 4.0, 2.0], [1.5, -0.25, 7.0]] {
            let p = g.index_to_lps(ijk);
            for r in 0..3 {
                let back = (0..3).map(|c| inv[r][c] * p[c]).sum::<f64>() + inv[r][3];
                assert!((back - ijk[r]).abs() < 1e-12, "{ijk:?} -> {back}");
            }
        }
        let mut flat = g.clone();
        for r in 0..3 {
            flat.affine_lps[r][2] = 2.0 * flat.affine_lps[r][0];
        }
        assert!(flat.inverse_affine_lps().is_none());
    }

    #[test]
    fn flipping_y_keeps_every_voxel_at_the_same_world_point() {
        let g = oblique();
        let f = g.flipped_y();
        for j in 0..5 {
            let p = g.index_to_lps([1.0, j as f64, 2.0]);
            let q = f.index_to_lps([1.0, (4 - j) as f64, 2.0]);
            for r in 0..3 {
                assert!((p[r] - q[r]).abs() < 1e-12);
            }
        }
        assert!((g.det_ras() + f.det_ras()).abs() < 1e-9);
    }
}
