//! The written forms of a rigid (or affine) transform between two worlds: the ITK text transform
//! (`#Insight Transform File V1.0`, in ITK's LPS world; read by ANTs, ITK-SNAP, 3D Slicer and
//! SimpleITK) and the 4×4 matrix in RAS mm (NIfTI's world, the same map with the x and y axes
//! negated; MRtrix3's `mrtransform -linear`, nibabel). The matrices map a point of the fixed
//! image's world to the moving image's ([`crate::models::registration`]).

use crate::error::{Error, Result};
use crate::volume::Affine;

/// The same map in NIfTI's RAS world: `F·M·F` with `F = diag(−1, −1, 1, 1)`.
pub fn lps_to_ras(m: &Affine) -> Affine {
    let s = [-1.0, -1.0, 1.0, 1.0];
    std::array::from_fn(|r| std::array::from_fn(|c| s[r] * m[r][c] * s[c]))
}

/// The ITK text transform of a fixed → moving LPS matrix: `#Insight Transform File V1.0`,
/// `AffineTransform_double_3_3` with the 3×3 matrix (row by row) and the translation as its
/// 12 parameters and a centre of 0 0 0 as its fixed parameters (ITK's
/// `MatrixOffsetTransformBase`: `T(x) = A (x − centre) + centre + translation`). Read by
/// `antsApplyTransforms -t`, SimpleITK's `ReadTransform` and 3D Slicer.
pub fn itk_text(m_lps: &Affine) -> String {
    let mut params: Vec<String> = Vec::with_capacity(12);
    for row in m_lps.iter().take(3) {
        for v in row.iter().take(3) {
            params.push(format!("{v:.17e}"));
        }
    }
    for row in m_lps.iter().take(3) {
        params.push(format!("{:.17e}", row[3]));
    }
    format!(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\nParameters: {}\nFixedParameters: 0 0 0\n",
        params.join(" ")
    )
}

/// Reads an ITK text transform written by [`itk_text`] or by ITK/ANTs (`AffineTransform`,
/// `MatrixOffsetTransformBase`, `Euler3DTransform` given as a matrix are not all handled: only
/// the 12-parameter matrix-and-translation kinds `AffineTransform_double_3_3` and
/// `MatrixOffsetTransformBase_double_3_3`, with any centre) into the 4×4 LPS matrix.
///
/// Errors ([`Error::Invalid`]): another transform kind, or parameters that are not 12 numbers
/// (and 3 fixed ones).
pub fn parse_itk_text(text: &str) -> Result<Affine> {
    let bad = |what: String| Error::Invalid(format!("ITK transform file: {what}"));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(str::trim))
            .ok_or_else(|| bad(format!("no '{name}' line")))
    };
    let kind = field("Transform:")?;
    if !matches!(
        kind,
        "AffineTransform_double_3_3" | "MatrixOffsetTransformBase_double_3_3"
    ) {
        return Err(bad(format!(
            "transform kind {kind}; only AffineTransform_double_3_3 is read"
        )));
    }
    let numbers = |s: &str| -> Result<Vec<f64>> {
        s.split_whitespace()
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| bad(format!("'{v}' is not a number")))
            })
            .collect()
    };
    let p = numbers(field("Parameters:")?)?;
    let c = numbers(field("FixedParameters:")?)?;
    if p.len() != 12 || c.len() != 3 {
        return Err(bad(format!(
            "{} parameters and {} fixed parameters; an affine 3-D transform has 12 and 3",
            p.len(),
            c.len()
        )));
    }
    let mut m = [[0.0; 4]; 4];
    for r in 0..3 {
        m[r][..3].copy_from_slice(&p[3 * r..3 * r + 3]);
        m[r][3] = p[9 + r] + c[r] - (0..3).map(|k| p[3 * r + k] * c[k]).sum::<f64>();
    }
    m[3][3] = 1.0;
    Ok(m)
}

/// The fixed → moving map as a 4×4 matrix in RAS mm, four lines of four numbers: the matrix
/// MRtrix3's `mrtransform MOVING -linear FILE -template FIXED` expects, and the one that, set as
/// `inv(M)·affine` on the moving image's NIfTI header, places it on the fixed image (nibabel).
pub fn ras_text(m_lps: &Affine) -> String {
    lps_to_ras(m_lps)
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| format!("{v:.12}"))
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(m: &Affine, p: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|r| (0..3).map(|c| m[r][c] * p[c]).sum::<f64>() + m[r][3])
    }

    #[test]
    fn itk_text_reads_back_and_a_centred_itk_transform_is_understood() {
        // A rotation of 0.3 rad about z and 0.1 rad about x, and a translation (LPS mm).
        let (sz, cz) = 0.3f64.sin_cos();
        let (sx, cx) = 0.1f64.sin_cos();
        let m: Affine = [
            [cz, -sz * cx, sz * sx, 1.5],
            [sz, cz * cx, -cz * sx, 2.5],
            [0.0, sx, cx, -3.5],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let text = itk_text(&m);
        assert!(text.starts_with("#Insight Transform File V1.0\n"));
        assert!(text.contains("Transform: AffineTransform_double_3_3"));
        let back = parse_itk_text(&text).unwrap();
        for i in 0..4 {
            for j in 0..4 {
                assert!((back[i][j] - m[i][j]).abs() < 1e-14);
            }
        }
        // ITK writes its own transforms with a centre: T(x) = A(x − c) + c + t.
        let centred = "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\nParameters: 1 0 0 0 1 0 0 0 1 2 3 4\nFixedParameters: 10 10 10\n";
        let c = parse_itk_text(centred).unwrap();
        assert_eq!([c[0][3], c[1][3], c[2][3]], [2.0, 3.0, 4.0]);
        assert!(parse_itk_text("Transform: BSplineTransform_double_3_3\n").is_err());
        // RAS: x and y negated on both sides.
        let ras = lps_to_ras(&m);
        let p = [1.0, 2.0, 3.0];
        let q = apply(&m, p);
        let q_ras = apply(&ras, [-p[0], -p[1], p[2]]);
        assert!((q_ras[0] + q[0]).abs() < 1e-12 && (q_ras[1] + q[1]).abs() < 1e-12);
        assert!((q_ras[2] - q[2]).abs() < 1e-12);
        assert_eq!(ras_text(&m).lines().count(), 4);
    }
}
