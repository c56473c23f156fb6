//! Resampling by world geometry: any map or mask onto any grid of the same Frame of Reference.
//!
//! The one place in the library that moves voxel data between grids. Every target voxel centre
//! is carried into the source grid's continuous index through the grids' own affines
//! ([`Geometry::index_to_lps`] of the target, then [`Geometry::inverse_affine_lps`] of the
//! source), so rotation, shift, voxel size and the library's bottom-up row order
//! ([`Geometry::flipped_y`]) are all accounted for by the geometry, never by the data layout.
//! Arrays are `[z, y, x]` as everywhere in the library; a [`Geometry`]'s `dims` are (x, y, z).
//!
//! **Inside the source.** A target voxel whose centre lies inside the source grid's extent, the
//! box from index −0.5 to n − 0.5 along each axis (the voxels' outer faces), takes a value;
//! one outside takes NaN (maps) or false / 0 (masks, classes). Over the outer half voxel the
//! edge voxel's value is held. This is the region ITK's `ImageFunction::IsInsideBuffer` accepts
//! (continuous index from −0.5 to size − 0.5), where ANTs' `antsApplyTransforms` writes its
//! default value outside.
//!
//! **Interpolation.** Continuous maps (f32): trilinear between the 8 source voxel centres around
//! the point. Masks (bool) and classes (u8): nearest neighbour, the value of the source voxel
//! that contains the point (index rounded; ties at exactly half a voxel round away from 0), as
//! `antsApplyTransforms -n NearestNeighbor`, `mrtransform -interp nearest` and
//! `flirt -interp nearestneighbour` do for label images; interpolating labels would invent
//! classes that were never drawn.
//!
//! **Non-finite values** (NaN, ±∞: failed fits) are never mixed with finite ones. A target voxel
//! is NaN when the source voxel that contains its centre is non-finite (the nearest-neighbour
//! image of the invalid voxels, so an invalid region keeps its shape and size); otherwise it is
//! the trilinear mean of the *finite* ones among its 8 neighbours, their weights renormalised to
//! sum to 1 (the nearest neighbour alone always carries ≥ 1/8 of the weight, so the sum is never
//! 0). A finite output is therefore always a convex combination of finite inputs. ITK's
//! `LinearInterpolateImageFunction` (and so ANTs) weighs a NaN like any value, so one failed
//! voxel would blank its whole neighbourhood; nilearn's `resample_img` places NaN where the
//! nearest-neighbour resampling of the non-finite mask says, as here, but fills the rest from
//! values extrapolated into the invalid voxels rather than by renormalising.
//!
//! **Frames of Reference.** World coordinates mean the same place only within one Frame of
//! Reference (DICOM PS3.3 C.7.4.1, Frame of Reference UID (0020,0052)). Grids whose UIDs differ
//! are refused, naming both: registration is a separate step. A NIfTI file carries no UID; a
//! grid without one is taken to be in the scanner space of the other (as dcm2niix writes every
//! series of one session in the scanner's coordinates), and [`check_frames`] returns
//! [`FrameMatch::Assumed`] with a sentence for the record saying so.

use ndarray::{Array3, ArrayView3, Axis};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::volume::{Affine, Geometry};

/// A grid and the Frame of Reference its world coordinates belong to.
#[derive(Debug, Clone, Copy)]
pub struct GridRef<'a> {
    /// The grid: `dims` (x, y, z) and its voxel → LPS affine.
    pub geometry: &'a Geometry,
    /// Frame of Reference UID (0020,0052) of the series the grid belongs to; `None` for NIfTI.
    pub frame_of_reference_uid: Option<&'a str>,
    /// How messages name the grid, e.g. the series' [`crate::volume::SeriesInfo::label`] or a
    /// file path.
    pub label: &'a str,
}

impl<'a> GridRef<'a> {
    pub fn new(
        geometry: &'a Geometry,
        frame_of_reference_uid: Option<&'a str>,
        label: &'a str,
    ) -> Self {
        GridRef {
            geometry,
            frame_of_reference_uid,
            label,
        }
    }

    fn uid(&self) -> Option<&'a str> {
        self.frame_of_reference_uid
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }
}

/// Whether two grids share a Frame of Reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameMatch {
    /// Both carry the same Frame of Reference UID.
    Same,
    /// One or both carry none (NIfTI); the sentence says which and what was assumed, for the
    /// run's record.
    Assumed(String),
}

/// Checks that data on `from` may be placed on `to` by world coordinates.
///
/// Errors: both grids carry a Frame of Reference UID and they differ ([`Error::Invalid`],
/// naming both grids and both UIDs).
pub fn check_frames(from: GridRef, to: GridRef) -> Result<FrameMatch> {
    match (from.uid(), to.uid()) {
        (Some(a), Some(b)) if a == b => Ok(FrameMatch::Same),
        (Some(a), Some(b)) => Err(Error::Invalid(format!(
            "{} (Frame of Reference UID {a}) and {} (Frame of Reference UID {b}) are in different Frames of Reference: their world coordinates are not the same space, so one cannot be resampled onto the other by geometry. Use series of one Frame of Reference (one session on one scanner), or register them first and give the result on the other's grid",
            from.label, to.label
        ))),
        (None, None) => Ok(FrameMatch::Assumed(format!(
            "neither {} nor {} carries a Frame of Reference UID (NIfTI); both were taken to be in the same scanner space, as dcm2niix writes every series of one session",
            from.label, to.label
        ))),
        (None, Some(b)) => Ok(FrameMatch::Assumed(format!(
            "{} carries no Frame of Reference UID (NIfTI); it was taken to be in the scanner space of {} (Frame of Reference UID {b})",
            from.label, to.label
        ))),
        (Some(a), None) => Ok(FrameMatch::Assumed(format!(
            "{} carries no Frame of Reference UID (NIfTI); it was taken to be in the scanner space of {} (Frame of Reference UID {a})",
            to.label, from.label
        ))),
    }
}

/// A continuous map (`[z, y, x]` on `from`) resampled trilinearly onto `to`, NaN-aware as the
/// module documents: NaN where the containing source voxel is non-finite or the target centre
/// lies outside the source grid; elsewhere the renormalised trilinear mean of the finite
/// neighbours. Units are the map's.
///
/// Errors: different Frames of Reference ([`check_frames`]); an array whose shape is not
/// `from`'s (z, y, x); a singular source affine.
pub fn resample_linear(src: ArrayView3<f32>, from: GridRef, to: GridRef) -> Result<Array3<f32>> {
    check_frames(from, to)?;
    let map = IndexMap::new(src.dim(), from, to, None)?;
    Ok(linear_with(src, &map))
}

/// As [`resample_linear`], with the two grids related by a world transform instead of a shared
/// Frame of Reference: the centre `p` (LPS mm) of each target voxel is carried to
/// `transform · p` in the source grid's world, where it is interpolated. `transform` is a 4×4
/// LPS matrix mapping the target's world to the source's, the direction of ITK's and ANTs'
/// transforms (fixed/reference points to moving points; Yoo, *Insight into Images*, 2004,
/// ch. 8) and of MRtrix3's `mrtransform -linear` ("reverse" convention), e.g. a registration
/// result of `models::registration`. No Frame of Reference check is made: the
/// transform is what relates the grids.
///
/// Errors: as [`resample_linear`], less the Frame of Reference check.
pub fn resample_linear_through(
    src: ArrayView3<f32>,
    from: GridRef,
    to: GridRef,
    transform: &Affine,
) -> Result<Array3<f32>> {
    let map = IndexMap::new(src.dim(), from, to, Some(transform))?;
    Ok(linear_with(src, &map))
}

/// As [`resample_mask`], through a world transform (see [`resample_linear_through`]).
pub fn resample_mask_through(
    src: ArrayView3<bool>,
    from: GridRef,
    to: GridRef,
    transform: &Affine,
) -> Result<Array3<bool>> {
    let map = IndexMap::new(src.dim(), from, to, Some(transform))?;
    let n = map.src_dims;
    Ok(map.fill(false, |[x, y, z]| {
        src[[round_in(z, n[2]), round_in(y, n[1]), round_in(x, n[0])]]
    }))
}

fn linear_with(src: ArrayView3<f32>, map: &IndexMap) -> Array3<f32> {
    let n = map.src_dims;
    map.fill(f32::NAN, |c| {
        let [x, y, z] = c;
        let nearest = src[[round_in(z, n[2]), round_in(y, n[1]), round_in(x, n[0])]];
        if !nearest.is_finite() {
            return f32::NAN;
        }
        let (x0, x1, fx) = corners(x, n[0]);
        let (y0, y1, fy) = corners(y, n[1]);
        let (z0, z1, fz) = corners(z, n[2]);
        let (mut sum, mut weight) = (0.0f64, 0.0f64);
        for (zi, wz) in [(z0, 1.0 - fz), (z1, fz)] {
            for (yi, wy) in [(y0, 1.0 - fy), (y1, fy)] {
                for (xi, wx) in [(x0, 1.0 - fx), (x1, fx)] {
                    let w = wx * wy * wz;
                    let v = src[[zi, yi, xi]];
                    if w > 0.0 && v.is_finite() {
                        sum += w * v as f64;
                        weight += w;
                    }
                }
            }
        }
        (sum / weight) as f32
    })
}

/// Nearest-neighbour resampling of any voxel type (`[z, y, x]` on `from`) onto `to`: each
/// target voxel takes the value of the source voxel containing its centre, `outside` where its
/// centre lies outside the source grid.
///
/// Errors: as [`resample_linear`].
pub fn resample_nearest<T: Copy + Send + Sync>(
    src: ArrayView3<T>,
    from: GridRef,
    to: GridRef,
    outside: T,
) -> Result<Array3<T>> {
    check_frames(from, to)?;
    let map = IndexMap::new(src.dim(), from, to, None)?;
    let n = map.src_dims;
    Ok(map.fill(outside, |[x, y, z]| {
        src[[round_in(z, n[2]), round_in(y, n[1]), round_in(x, n[0])]]
    }))
}

/// A mask resampled by nearest neighbour; false outside the source grid.
pub fn resample_mask(src: ArrayView3<bool>, from: GridRef, to: GridRef) -> Result<Array3<bool>> {
    resample_nearest(src, from, to, false)
}

/// A class map (e.g. labels 0–3) resampled by nearest neighbour; 0 outside the source grid.
pub fn resample_labels(src: ArrayView3<u8>, from: GridRef, to: GridRef) -> Result<Array3<u8>> {
    resample_nearest(src, from, to, 0)
}

/// Target voxel index → source continuous index (x, y, z), with the source grid's size.
struct IndexMap {
    /// Rows: source index (i, j, k); columns: target (i, j, k, 1).
    m: [[f64; 4]; 3],
    /// Source (x, y, z) sizes.
    src_dims: [usize; 3],
    /// Target (x, y, z) sizes.
    dst_dims: [usize; 3],
}

/// Within this much of a voxel, a point on the source grid's outer face counts as inside
/// (rounding in the composed affine).
const EDGE_TOLERANCE: f64 = 1e-6;

impl IndexMap {
    /// `transform`: target world → source world (LPS), or `None` for one shared world.
    fn new(
        shape: (usize, usize, usize),
        from: GridRef,
        to: GridRef,
        transform: Option<&Affine>,
    ) -> Result<Self> {
        let [nx, ny, nz] = from.geometry.dims;
        if shape != (nz, ny, nx) {
            return Err(Error::Invalid(format!(
                "{}: data of shape {shape:?} (z, y, x) does not fit its grid of {:?} (x, y, z)",
                from.label, from.geometry.dims
            )));
        }
        let inv = from.geometry.inverse_affine_lps().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: its voxel-to-world affine is singular (a zero voxel size or parallel axes), so no world point has a voxel index; check the geometry (DICOM ImageOrientationPatient / PixelSpacing, NIfTI sform/qform)",
                from.label
            ))
        })?;
        let a: Affine = match transform {
            None => to.geometry.affine_lps,
            Some(t) => std::array::from_fn(|r| {
                std::array::from_fn(|c| {
                    (0..4).map(|k| t[r][k] * to.geometry.affine_lps[k][c]).sum()
                })
            }),
        };
        let mut m = [[0.0; 4]; 3];
        for r in 0..3 {
            for c in 0..4 {
                m[r][c] = (0..4).map(|k| inv[r][k] * a[k][c]).sum();
            }
        }
        Ok(IndexMap {
            m,
            src_dims: from.geometry.dims,
            dst_dims: to.geometry.dims,
        })
    }

    /// Fills the target grid (`[z, y, x]`): `value` of the source continuous index (x, y, z)
    /// where it lies inside the source grid, `outside` elsewhere.
    fn fill<T: Copy + Send + Sync>(
        &self,
        outside: T,
        value: impl Fn([f64; 3]) -> T + Sync,
    ) -> Array3<T> {
        let [tx, ty, tz] = self.dst_dims;
        let mut out = Array3::from_elem((tz, ty, tx), outside);
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(k, mut plane)| {
                for j in 0..ty {
                    for i in 0..tx {
                        let t = [i as f64, j as f64, k as f64, 1.0];
                        let c: [f64; 3] =
                            std::array::from_fn(|r| (0..4).map(|q| self.m[r][q] * t[q]).sum());
                        let inside = (0..3).all(|r| {
                            c[r] >= -0.5 - EDGE_TOLERANCE
                                && c[r] <= self.src_dims[r] as f64 - 0.5 + EDGE_TOLERANCE
                        });
                        if inside {
                            plane[[j, i]] = value(c);
                        }
                    }
                }
            });
        out
    }
}

/// The index of the voxel containing continuous index `c` along an axis of `n` voxels.
fn round_in(c: f64, n: usize) -> usize {
    (c.round().max(0.0) as usize).min(n - 1)
}

/// The two neighbouring voxel indices of `c` along an axis of `n` voxels and the weight of the
/// second; the edge value is held over the outer half voxel.
fn corners(c: f64, n: usize) -> (usize, usize, f64) {
    let c = c.clamp(0.0, (n - 1) as f64);
    let i0 = (c.floor() as usize).min(n.saturating_sub(2));
    let i1 = (i0 + 1).min(n - 1);
    (i0, i1, if i1 == i0 { 0.0 } else { c - i0 as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grid of `dims` with voxel size `size`, rotated by `angles` (radians, about LPS x, y,
    /// then z) and with its first voxel centre at `origin` (LPS mm).
    pub(crate) fn grid(
        dims: [usize; 3],
        size: [f64; 3],
        angles: [f64; 3],
        origin: [f64; 3],
    ) -> Geometry {
        let (sa, ca) = angles[0].sin_cos();
        let (sb, cb) = angles[1].sin_cos();
        let (sc, cc) = angles[2].sin_cos();
        let rx = [[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]];
        let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
        let rz = [[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]];
        let mul = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| -> [[f64; 3]; 3] {
            std::array::from_fn(|r| {
                std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum())
            })
        };
        let rot = mul(rz, mul(ry, rx));
        let mut a = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..3 {
                a[r][c] = rot[r][c] * size[c];
            }
            a[r][3] = origin[r];
        }
        a[3][3] = 1.0;
        Geometry {
            dims,
            affine_lps: a,
        }
    }

    /// A linear field of LPS position (the truth trilinear interpolation must reproduce).
    fn field(p: [f64; 3]) -> f64 {
        1.0 + 0.03 * p[0] - 0.02 * p[1] + 0.05 * p[2]
    }

    fn sample(g: &Geometry, f: impl Fn([f64; 3]) -> f64) -> Array3<f32> {
        let [nx, ny, nz] = g.dims;
        Array3::from_shape_fn((nz, ny, nx), |(k, j, i)| {
            f(g.index_to_lps([i as f64, j as f64, k as f64])) as f32
        })
    }

    const FOR: Option<&str> = Some("1.2.3.4");

    /// Continuous index in `g` of LPS point `p`.
    fn index_of(g: &Geometry, p: [f64; 3]) -> [f64; 3] {
        let inv = g.inverse_affine_lps().unwrap();
        std::array::from_fn(|r| (0..3).map(|c| inv[r][c] * p[c]).sum::<f64>() + inv[r][3])
    }

    #[test]
    fn a_linear_field_comes_back_exactly_in_the_interior_of_a_rotated_shifted_rescaled_grid() {
        let src = grid(
            [40, 36, 24],
            [2.0, 2.0, 3.0],
            [0.0, 0.0, 0.0],
            [-40.0, -35.0, -30.0],
        );
        // Oblique (rotated about all three axes), shifted, and finer in-plane, coarser across.
        let dst = grid(
            [50, 50, 18],
            [1.3, 1.3, 3.7],
            [0.2, -0.15, 0.35],
            [-28.0, -31.0, -22.0],
        );
        let data = sample(&src, field);
        let out = resample_linear(
            data.view(),
            GridRef::new(&src, FOR, "DSC"),
            GridRef::new(&dst, FOR, "DWI"),
        )
        .unwrap();
        let (mut interior, mut outside, mut worst) = (0, 0, 0.0f64);
        for ((k, j, i), &v) in out.indexed_iter() {
            let p = dst.index_to_lps([i as f64, j as f64, k as f64]);
            let c = index_of(&src, p);
            let full = (0..3).all(|r| c[r] >= 0.0 && c[r] <= (src.dims[r] - 1) as f64);
            let beyond =
                (0..3).any(|r| c[r] < -0.5 - 1e-3 || c[r] > src.dims[r] as f64 - 0.5 + 1e-3);
            if full {
                interior += 1;
                // f32 storage of values up to ~4: 1e-5 absolute.
                worst = worst.max((v as f64 - field(p)).abs());
            } else if beyond {
                outside += 1;
                assert!(v.is_nan(), "outside the source at {c:?}: {v}");
            }
        }
        assert!(interior > 10_000 && outside > 1_000, "{interior} {outside}");
        assert!(worst < 1e-5, "worst interior error {worst}");
    }

    #[test]
    fn nearest_neighbour_gives_exact_labels_on_grids_that_share_voxel_centres() {
        let src = grid(
            [20, 18, 10],
            [2.0, 2.0, 4.0],
            [0.1, 0.05, -0.3],
            [10.0, -20.0, 5.0],
        );
        let label = |p: [f64; 3]| -> u8 {
            let c = index_of(&src, p);
            ((c[0].round() as i64 / 3 + 2 * (c[1].round() as i64 / 4) + c[2].round() as i64) % 7)
                as u8
                + 1
        };
        let labels = sample(&src, |p| label(p) as f64).mapv(|v| v as u8);
        // Target: every other voxel in-plane, axes swapped and reversed, shifted by whole
        // voxels: every target centre is a source centre, so each label must come back exactly.
        let a = src.affine_lps;
        let col = |c: usize, s: f64| [a[0][c] * s, a[1][c] * s, a[2][c] * s];
        let (ex, ey, ez) = (col(0, 2.0), col(1, -1.0), col(2, 1.0));
        let origin = src.index_to_lps([1.0, 17.0, 0.0]);
        let dst = Geometry {
            dims: [18, 10, 10],
            affine_lps: [
                [ey[0], ex[0], ez[0], origin[0]],
                [ey[1], ex[1], ez[1], origin[1]],
                [ey[2], ex[2], ez[2], origin[2]],
                [0.0, 0.0, 0.0, 1.0],
            ],
        };
        let out = resample_labels(
            labels.view(),
            GridRef::new(&src, FOR, "a"),
            GridRef::new(&dst, FOR, "b"),
        )
        .unwrap();
        for ((k, j, i), &l) in out.indexed_iter() {
            let p = dst.index_to_lps([i as f64, j as f64, k as f64]);
            assert_eq!(l, label(p), "at target {:?}", (i, j, k));
        }
        // On an oblique grid a target voxel takes the label of the source voxel containing its
        // centre, and 0 outside the source.
        let obl = grid(
            [30, 30, 12],
            [1.1, 1.1, 2.9],
            [0.3, 0.2, 0.1],
            [8.0, -22.0, 4.0],
        );
        let out = resample_labels(
            labels.view(),
            GridRef::new(&src, FOR, "a"),
            GridRef::new(&obl, FOR, "c"),
        )
        .unwrap();
        let mut checked = 0;
        for ((k, j, i), &l) in out.indexed_iter() {
            let p = obl.index_to_lps([i as f64, j as f64, k as f64]);
            let c = index_of(&src, p);
            if (0..3).all(|r| c[r] > -0.49 && c[r] < src.dims[r] as f64 - 0.51) {
                assert_eq!(l, label(p));
                checked += 1;
            } else if (0..3).any(|r| c[r] < -0.51 || c[r] > src.dims[r] as f64 - 0.49) {
                assert_eq!(l, 0);
            }
        }
        assert!(checked > 1000, "{checked}");
        let mask = resample_mask(
            labels.mapv(|l| l == 3).view(),
            GridRef::new(&src, FOR, "a"),
            GridRef::new(&dst, FOR, "b"),
        )
        .unwrap();
        let again = resample_labels(
            labels.view(),
            GridRef::new(&src, FOR, "a"),
            GridRef::new(&dst, FOR, "b"),
        )
        .unwrap();
        assert_eq!(mask, again.mapv(|l| l == 3));
    }

    #[test]
    fn nan_never_spreads_into_finite_voxels_and_keeps_its_nearest_neighbour_shape() {
        // One row of 1 mm voxels: 1, 2, NaN, 4, 5.
        let src = grid([5, 1, 1], [1.0; 3], [0.0; 3], [0.0; 3]);
        let data = Array3::from_shape_vec((1, 1, 5), vec![1.0, 2.0, f32::NAN, 4.0, 5.0]).unwrap();
        // Target centres every 0.25 mm from x = −0.75 to 4.75.
        let dst = grid([23, 1, 1], [0.25, 1.0, 1.0], [0.0; 3], [-0.75, 0.0, 0.0]);
        let out = resample_linear(
            data.view(),
            GridRef::new(&src, FOR, "a"),
            GridRef::new(&dst, FOR, "b"),
        )
        .unwrap();
        let got: Vec<f32> = out.iter().copied().collect();
        let nan = f32::NAN;
        // x = −0.75 and 4.75 lie outside; over −0.5..0 and 4..4.5 the edge value is held;
        // x = 1.25 gets 2 alone (its other neighbour is NaN); x = 1.5 rounds away from 0 to
        // voxel 2 (NaN), x = 2.5 to voxel 3 (4, alone).
        let want = [
            nan, 1.0, 1.0, 1.0, 1.25, 1.5, 1.75, 2.0, 2.0, nan, nan, nan, nan, 4.0, 4.0, 4.0, 4.25,
            4.5, 4.75, 5.0, 5.0, 5.0, nan,
        ];
        assert_eq!(got.len(), want.len());
        for (n, (g, w)) in got.iter().zip(want).enumerate() {
            let x = -0.75 + 0.25 * n as f64;
            if w.is_nan() {
                assert!(g.is_nan(), "x = {x}: {g}");
            } else {
                assert!((g - w).abs() < 1e-6, "x = {x}: {g} vs {w}");
            }
        }
        // In 3-D: a NaN block inside a linear field, resampled onto an oblique finer grid. A
        // target voxel is NaN exactly where the source voxel containing it is, and every finite
        // value lies within the finite neighbours' range.
        let src = grid([16, 16, 8], [2.0, 2.0, 3.0], [0.0; 3], [0.0; 3]);
        let mut data = sample(&src, field);
        for k in 3..5 {
            for j in 6..9 {
                for i in 5..7 {
                    data[[k, j, i]] = f32::NAN;
                }
            }
        }
        data[[6, 12, 12]] = f32::INFINITY;
        let dst = grid(
            [30, 30, 10],
            [1.0, 1.0, 2.3],
            [0.1, 0.05, 0.25],
            [4.0, -2.0, 1.0],
        );
        let out = resample_linear(
            data.view(),
            GridRef::new(&src, FOR, "a"),
            GridRef::new(&dst, FOR, "b"),
        )
        .unwrap();
        let (mut nans, mut finite) = (0, 0);
        for ((k, j, i), &v) in out.indexed_iter() {
            let c = index_of(&src, dst.index_to_lps([i as f64, j as f64, k as f64]));
            if (0..3).any(|r| c[r] < -0.5 || c[r] > src.dims[r] as f64 - 0.5) {
                continue;
            }
            let near = data[[round_in(c[2], 8), round_in(c[1], 16), round_in(c[0], 16)]];
            if near.is_finite() {
                finite += 1;
                assert!(v.is_finite(), "finite voxel became {v} at {c:?}");
                let (x0, x1, _) = corners(c[0], 16);
                let (y0, y1, _) = corners(c[1], 16);
                let (z0, z1, _) = corners(c[2], 8);
                let mut neigh = Vec::new();
                for z in [z0, z1] {
                    for y in [y0, y1] {
                        for x in [x0, x1] {
                            if data[[z, y, x]].is_finite() {
                                neigh.push(data[[z, y, x]]);
                            }
                        }
                    }
                }
                let lo = neigh.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = neigh.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert!(v >= lo - 1e-6 && v <= hi + 1e-6, "{v} outside [{lo}, {hi}]");
            } else {
                nans += 1;
                assert!(v.is_nan());
            }
        }
        assert!(nans > 20 && finite > 1000, "{nans} {finite}");
    }

    #[test]
    fn another_frame_of_reference_is_refused_naming_both_uids() {
        let g = grid([4, 4, 4], [1.0; 3], [0.0; 3], [0.0; 3]);
        let data = Array3::<f32>::zeros((4, 4, 4));
        let e = resample_linear(
            data.view(),
            GridRef::new(&g, Some("1.2.826.0.1.111"), "DWI #7"),
            GridRef::new(&g, Some("1.2.826.0.1.222"), "DSC #9"),
        )
        .unwrap_err()
        .to_string();
        for part in [
            "1.2.826.0.1.111",
            "1.2.826.0.1.222",
            "DWI #7",
            "DSC #9",
            "register",
        ] {
            assert!(e.contains(part), "{part} missing: {e}");
        }
        let m = data.mapv(|_| true);
        assert!(resample_mask(
            m.view(),
            GridRef::new(&g, Some("1.1"), "a"),
            GridRef::new(&g, Some("1.2"), "b")
        )
        .is_err());
        // Without a UID (NIfTI) the grids are assumed to share the scanner space, and the
        // record is told so.
        match check_frames(
            GridRef::new(&g, None, "roi.nii.gz"),
            GridRef::new(&g, Some("1.2"), "DSC"),
        )
        .unwrap()
        {
            FrameMatch::Assumed(s) => assert!(s.contains("roi.nii.gz") && s.contains("1.2"), "{s}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            check_frames(
                GridRef::new(&g, Some("1.2"), "a"),
                GridRef::new(&g, Some(" 1.2 "), "b")
            )
            .unwrap(),
            FrameMatch::Same
        );
        // The identity is exact.
        let d = sample(&g, field);
        let same = resample_linear(
            d.view(),
            GridRef::new(&g, None, "a"),
            GridRef::new(&g, None, "a"),
        )
        .unwrap();
        assert_eq!(same, d);
    }

    #[test]
    fn a_wrong_shape_or_a_singular_affine_is_an_error() {
        let g = grid([4, 3, 2], [1.0; 3], [0.0; 3], [0.0; 3]);
        let wrong = Array3::<f32>::zeros((2, 4, 3));
        let e = resample_linear(
            wrong.view(),
            GridRef::new(&g, None, "map"),
            GridRef::new(&g, None, "b"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("map") && e.contains("shape"), "{e}");
        let mut flat = g.clone();
        flat.affine_lps[2][2] = 0.0;
        let d = Array3::<f32>::zeros((2, 3, 4));
        let e = resample_linear(
            d.view(),
            GridRef::new(&flat, None, "flat"),
            GridRef::new(&g, None, "b"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("singular"), "{e}");
    }
}
