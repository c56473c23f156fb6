//! FSL-style .bval/.bvec files and the gradient-direction convention they use: bvec is in
//! image (voxel-axis) space, with the x component negated when the RAS affine has a positive
//! determinant (FSL's "radiological" convention; dcm2niix writes the same).

use std::path::Path;

use crate::error::{Error, Result};
use crate::volume::{Diffusion, Geometry};

fn parse_rows(path: &Path) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            line.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse::<f64>().map_err(|_| Error::Sidecar {
                        path: path.to_path_buf(),
                        problem: format!("line {}: '{t}' is not a number", n + 1),
                    })
                })
                .collect()
        })
        .collect()
}

/// b-values, one per volume (a single row, or one per line).
pub fn read_bval(path: &Path) -> Result<Vec<f64>> {
    let rows = parse_rows(path)?;
    let values: Vec<f64> = if rows.len() == 1 {
        rows.into_iter().next().unwrap_or_default()
    } else {
        rows.into_iter().flatten().collect()
    };
    if values.iter().any(|b| !b.is_finite() || *b < 0.0) {
        return Err(Error::Sidecar {
            path: path.to_path_buf(),
            problem: "b-values must be non-negative numbers (s/mm²)".into(),
        });
    }
    Ok(values)
}

/// Gradient directions, one per volume (3 rows of N, or N rows of 3).
pub fn read_bvec(path: &Path) -> Result<Vec<[f64; 3]>> {
    let rows = parse_rows(path)?;
    let bad = |problem: String| Error::Sidecar {
        path: path.to_path_buf(),
        problem,
    };
    if rows.len() == 3 && rows.iter().all(|r| r.len() == rows[0].len()) {
        Ok((0..rows[0].len())
            .map(|i| [rows[0][i], rows[1][i], rows[2][i]])
            .collect())
    } else if rows.iter().all(|r| r.len() == 3) {
        Ok(rows.iter().map(|r| [r[0], r[1], r[2]]).collect())
    } else {
        Err(bad(
            "expected 3 rows of N numbers (FSL layout) or N rows of 3".into(),
        ))
    }
}

/// FSL bvec (image space) for a unit direction given in patient LPS.
pub fn bvec_from_lps(dir: [f64; 3], g: &Geometry) -> [f64; 3] {
    let mut v = [0.0; 3];
    for (c, v) in v.iter_mut().enumerate() {
        let axis = g.axis_unit(c);
        *v = dir[0] * axis[0] + dir[1] * axis[1] + dir[2] * axis[2];
    }
    if g.det_ras() > 0.0 {
        v[0] = -v[0];
    }
    v
}

/// Patient-LPS unit direction for an FSL bvec (inverse of [`bvec_from_lps`]).
pub fn lps_from_bvec(bvec: [f64; 3], g: &Geometry) -> [f64; 3] {
    let mut v = bvec;
    if g.det_ras() > 0.0 {
        v[0] = -v[0];
    }
    let mut out = [0.0; 3];
    for c in 0..3 {
        let axis = g.axis_unit(c);
        for r in 0..3 {
            out[r] += v[c] * axis[r];
        }
    }
    out
}

/// The bvec written for one volume. A b = 0 volume keeps the vector the scanner stored, as
/// dcm2niix does (it carries no meaning); others are rotated into image space.
pub fn bvec_for(d: &Diffusion, g: &Geometry) -> [f64; 3] {
    match d.direction {
        None => [0.0; 3],
        Some(dir) if d.b == 0.0 => dir,
        Some(dir) => bvec_from_lps(dir, g),
    }
}

/// A number as C's `%g` prints it with 6 significant digits (the form dcm2niix writes).
pub fn format_g(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return if x == 0.0 { "0".into() } else { x.to_string() };
    }
    let exp = x.abs().log10().floor() as i32;
    if !(-5..6).contains(&exp) {
        return format!("{x:e}");
    }
    let decimals = (5 - exp).max(0) as usize;
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// .bval and .bvec text for a series' volumes.
pub fn bval_bvec_text(volumes: &[Diffusion], g: &Geometry) -> (String, String) {
    let bval: Vec<String> = volumes.iter().map(|d| format_g(d.b)).collect();
    let vecs: Vec<[f64; 3]> = volumes.iter().map(|d| bvec_for(d, g)).collect();
    let rows: Vec<String> = (0..3)
        .map(|r| {
            vecs.iter()
                .map(|v| format_g(v[r]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (bval.join(" ") + "\n", rows.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_format_matches_c() {
        assert_eq!(format_g(1000.0), "1000");
        assert_eq!(format_g(0.001), "0.001");
        assert_eq!(format_g(0.0281016957), "0.0281017");
        assert_eq!(format_g(-0.998377201), "-0.998377");
        assert_eq!(format_g(0.57735026), "0.57735");
    }

    #[test]
    fn bvec_round_trips_through_lps_for_both_handednesses() {
        // an oblique orthonormal grid: 20° about x, then 10° about z
        let (a, b) = (20f64.to_radians(), 10f64.to_radians());
        let rx = [
            [1.0, 0.0, 0.0],
            [0.0, a.cos(), -a.sin()],
            [0.0, a.sin(), a.cos()],
        ];
        let rz = [
            [b.cos(), -b.sin(), 0.0],
            [b.sin(), b.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ];
        let mut affine = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..3 {
                let rot: f64 = (0..3).map(|k| rz[r][k] * rx[k][c]).sum();
                affine[r][c] = rot * [2.0, 2.0, 3.0][c];
            }
        }
        affine[3][3] = 1.0;
        let g = Geometry {
            dims: [10, 10, 10],
            affine_lps: affine,
        };
        for geom in [g.clone(), g.flipped_y()] {
            let d = [0.6, -0.64, 0.48];
            let back = lps_from_bvec(bvec_from_lps(d, &geom), &geom);
            for r in 0..3 {
                assert!((back[r] - d[r]).abs() < 1e-12, "{back:?} vs {d:?}");
            }
        }
    }
}
