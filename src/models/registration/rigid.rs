//! The rigid transform of a registration and the algebra of 4×4 LPS matrices: six parameters
//! (three Euler angles, a translation) about a centre, composed as `Rz·Ry·Rx`, and the product,
//! inverse and application of the matrices (fixed world → moving world; the direction of ITK's
//! and ANTs' transforms, see [`super`]).

use serde::Serialize;

use crate::volume::{Affine, Geometry};

/// Six rigid parameters about a centre.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rigid {
    /// Rotation angles (radians) about LPS x, y and z, applied in that order (`Rz·Ry·Rx`).
    pub angles_rad: [f64; 3],
    /// Translation (LPS mm).
    pub translation_mm: [f64; 3],
    /// Centre of rotation (LPS mm in the fixed image's world).
    pub centre_lps: [f64; 3],
}

impl Rigid {
    /// No motion, about `centre_lps`.
    pub fn identity(centre_lps: [f64; 3]) -> Self {
        Rigid {
            angles_rad: [0.0; 3],
            translation_mm: [0.0; 3],
            centre_lps,
        }
    }

    /// The rotation matrix `Rz·Ry·Rx`.
    pub fn rotation(&self) -> [[f64; 3]; 3] {
        let [a, b, c] = self.angles_rad;
        let (sa, ca) = a.sin_cos();
        let (sb, cb) = b.sin_cos();
        let (sc, cc) = c.sin_cos();
        let rx = [[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]];
        let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
        let rz = [[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]];
        mul3(rz, mul3(ry, rx))
    }

    /// The 4×4 LPS matrix of `p ↦ R (p − c) + c + t` (fixed world → moving world).
    pub fn matrix_lps(&self) -> Affine {
        let r = self.rotation();
        let c = self.centre_lps;
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            m[i][..3].copy_from_slice(&r[i]);
            m[i][3] = c[i] + self.translation_mm[i] - (0..3).map(|k| r[i][k] * c[k]).sum::<f64>();
        }
        m[3][3] = 1.0;
        m
    }
}

/// The product of two 3×3 matrices.
pub(super) fn mul3(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum()))
}

/// The product `a·b` of two 4×4 matrices.
pub fn compose(a: &Affine, b: &Affine) -> Affine {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..4).map(|k| a[r][k] * b[k][c]).sum()))
}

/// The inverse of a rigid (or any invertible affine) 4×4 matrix; `None` when singular.
pub fn invert(m: &Affine) -> Option<Affine> {
    Geometry {
        dims: [1, 1, 1],
        affine_lps: *m,
    }
    .inverse_affine_lps()
}

/// Applies a 4×4 matrix to a point.
pub fn apply(m: &Affine, p: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|r| (0..3).map(|c| m[r][c] * p[c]).sum::<f64>() + m[r][3])
}

/// The angle (degrees) of the rotation that takes `a`'s rotation part to `b`'s.
pub fn rotation_difference_deg(a: &Affine, b: &Affine) -> f64 {
    // trace(Aᵀ B) = 1 + 2 cos θ
    let tr: f64 = (0..3)
        .map(|i| (0..3).map(|k| a[k][i] * b[k][i]).sum::<f64>())
        .sum();
    ((tr - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_is_a_rotation_about_the_centre_plus_the_translation() {
        let r = Rigid {
            angles_rad: [0.1, -0.05, 0.2],
            translation_mm: [3.0, -4.0, 5.0],
            centre_lps: [10.0, 20.0, -30.0],
        };
        let m = r.matrix_lps();
        // The centre goes to centre + t.
        let q = apply(&m, r.centre_lps);
        assert!((q[0] - 13.0).abs() < 1e-12 && (q[1] - 16.0).abs() < 1e-12);
        // Orthonormal, determinant +1.
        let rot = r.rotation();
        let rtr = mul3(
            std::array::from_fn(|i| std::array::from_fn(|j| rot[j][i])),
            rot,
        );
        for (i, row) in rtr.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        let inv = invert(&m).unwrap();
        let back = apply(&inv, q);
        assert!((0..3).all(|k| (back[k] - r.centre_lps[k]).abs() < 1e-9));
        // The angle of Rz(0.2) alone is 0.2 rad.
        let z = Rigid {
            angles_rad: [0.0, 0.0, 0.2],
            ..Rigid::identity([0.0; 3])
        };
        let d = rotation_difference_deg(&Rigid::identity([0.0; 3]).matrix_lps(), &z.matrix_lps());
        assert!((d - 0.2f64.to_degrees()).abs() < 1e-9, "{d}");
    }
}
