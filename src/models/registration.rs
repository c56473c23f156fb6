//! Rigid (6 degrees of freedom) registration of one MR volume onto another by Mattes mutual
//! information, and the transform's written forms.
//!
//! **Transform.** A rigid transform maps a point `p` of the *fixed* image's world (LPS mm, the
//! earlier visit) to the point `q = R (p − c) + c + t` of the *moving* image's world (the later
//! visit) showing the same anatomy: `R` a rotation (Euler angles about LPS x, y, then z:
//! `R = Rz·Ry·Rx`), `c` the centre of rotation (the fixed image's centre of mass), `t` a
//! translation in mm. This is the direction of ITK's and ANTs' transforms (Yoo, *Insight into
//! Images*, 2004, ch. 8; `antsApplyTransforms -r fixed -i moving -t T`) and of MRtrix3's
//! `mrtransform -linear` "reverse" convention (the transform maps template points to moving
//! points): resampling the moving image onto the fixed grid evaluates it at `T(p)`
//! ([`crate::volume::resample::resample_linear_through`]).
//!
//! It is written two ways ([`itk_text`], [`ras_text`]): as an ITK text transform
//! (`#Insight Transform File V1.0`, `AffineTransform_double_3_3`, in ITK's LPS world), read by
//! ANTs, ITK-SNAP, 3D Slicer and SimpleITK; and as a 4×4 matrix in RAS mm (NIfTI's world, the
//! same map with the x and y axes negated), for MRtrix3 (`mrtransform -linear`) and nibabel.
//!
//! **Metric.** Mattes mutual information (Mattes et al., IEEE TMI 2003;22:120–128; the
//! `MattesMutualInformation` of ITK and ANTs' `MI[...,32]` rigid stage): a joint histogram of
//! 32 bins, the fixed intensity binned by a zero-order and the moving intensity by a cubic
//! B-spline Parzen window, so the metric is a smooth function of the parameters. Intensities are
//! scaled between 0 and each image's 99.5th percentile. Samples are the fixed voxel centres of
//! each level, each jittered by a seeded random offset within its voxel (fixed value by
//! trilinear interpolation), which removes the grid-aligned interpolation artefacts of MI
//! (Pluim, Maintz and Viergever, Comput Vis Image Underst 2000;77:211–232; Tsao, IEEE TMI
//! 2003;22:854–864). Mutual information compares images of different contrast (a DSC baseline
//! with a DWI b = 0 image: Wells et al., Med Image Anal 1996;1:35–51; Maes et al., IEEE TMI
//! 1997;16:187–198).
//!
//! **Search.** Three resolution levels (block averages over 4, 2 and 1 of the finest voxel
//! size, per axis where the voxel is smaller than that), each a Nelder–Mead simplex search
//! (Nelder and Mead, Comput J 1965;7:308–313; argmin's `NelderMead`) of the six parameters,
//! rotations scaled to mm at 50 mm from the centre; the finest level is searched twice (a
//! restart, as Nelder–Mead can stall; Press et al., *Numerical Recipes*, 3rd ed., §10.5). The
//! start is the better (by the metric) of the scanners' own coordinates (identity) and the
//! alignment of the two images' centres of mass (ANTs' `--initial-moving-transform [f,m,1]`).
//!
//! **Refusal.** Registration is refused with the reason ([`Error::Invalid`], nothing written by
//! the callers) when the images cannot show the same anatomy: centres of mass more than
//! [`RegistrationOptions::max_centre_distance_mm`] apart in scanner coordinates (a follow-up
//! of one head lies within a few cm of the scanner's isocentre); after registration, less than
//! [`RegistrationOptions::min_overlap`] of the fixed foreground inside the moving field of view;
//! or foreground masks that agree with a Dice coefficient (Dice, Ecology 1945;26:297–302) below
//! [`RegistrationOptions::min_dice`] within the common field of view (another body part, or a
//! failed search).

use std::time::Instant;

use argmin::core::{CostFunction, Executor, State};
use argmin::solver::neldermead::NelderMead;
use ndarray::{Array3, ArrayView3, Zip};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::models::mask::background_mask;
use crate::volume::{Affine, Geometry};

/// Rotations are searched as the arc (mm) they move a point this far from the centre.
const ROTATION_RADIUS_MM: f64 = 50.0;

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

fn mul3(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
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

/// The angle (degrees) of the rotation that takes `a`'s rotation part to `b`'s.
pub fn rotation_difference_deg(a: &Affine, b: &Affine) -> f64 {
    // trace(Aᵀ B) = 1 + 2 cos θ
    let tr: f64 = (0..3)
        .map(|i| (0..3).map(|k| a[k][i] * b[k][i]).sum::<f64>())
        .sum();
    ((tr - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees()
}

/// One image to register: voxel values `[z, y, x]` on `geometry`, an optional foreground mask
/// on the same grid (the run's brain mask; Otsu's foreground, [`background_mask`], when
/// absent), and how messages name it.
#[derive(Debug, Clone, Copy)]
pub struct RegImage<'a> {
    pub data: ArrayView3<'a, f32>,
    pub geometry: &'a Geometry,
    pub mask: Option<ArrayView3<'a, bool>>,
    pub label: &'a str,
}

/// Settings of [`register`]; the defaults are the module's.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrationOptions {
    /// Resolution levels (coarsest first: shrink factors 2^(levels−1) … 1).
    pub levels: usize,
    /// Joint-histogram bins per image (ANTs' rigid default: 32).
    pub bins: usize,
    /// Most samples per metric evaluation (a regular subset of the voxels beyond it).
    pub max_samples: usize,
    /// Most Nelder–Mead iterations per level.
    pub max_iterations: u64,
    /// Refuse when the foreground centres of mass lie further apart than this (mm, scanner
    /// coordinates).
    pub max_centre_distance_mm: f64,
    /// Refuse when less than this share of the fixed foreground lies inside the moving image
    /// after registration.
    pub min_overlap: f64,
    /// Refuse when the foreground masks' Dice coefficient (within the common field of view)
    /// is below this after registration.
    pub min_dice: f64,
    /// Seed of the sample jitter (the result is reproducible).
    pub seed: u64,
}

impl Default for RegistrationOptions {
    fn default() -> Self {
        RegistrationOptions {
            levels: 3,
            bins: 32,
            max_samples: 150_000,
            max_iterations: 400,
            max_centre_distance_mm: 100.0,
            min_overlap: 0.5,
            min_dice: 0.7,
            seed: 17,
        }
    }
}

/// How well the images agree, for the record.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrationQuality {
    /// Mattes mutual information (nats) at the finest level, at the start and at the end.
    pub mattes_mi_start: f64,
    pub mattes_mi_final: f64,
    /// Dice coefficient of the foreground masks within the common field of view, in the
    /// scanners' coordinates (identity) and after registration.
    pub dice_identity: f64,
    pub dice: f64,
    /// Share of the fixed foreground that lies inside the moving image after registration.
    pub overlap: f64,
    /// Which start was used: "identity" or "centres of mass".
    pub start: String,
    /// Metric evaluations over all levels.
    pub evaluations: usize,
    pub seconds: f64,
}

/// A registration result: the fixed → moving transform (LPS) and its quality.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub rigid: Rigid,
    /// Fixed world → moving world, LPS mm ([`Rigid::matrix_lps`]).
    pub matrix_lps: Affine,
    pub quality: RegistrationQuality,
}

/// An image of one pyramid level.
struct LevelImage {
    data: Array3<f32>,
    geometry: Geometry,
}

/// Block average over `f` voxels per axis (partial blocks at the far edge average what they
/// have); the new voxel centre is its block's centre.
fn shrink(data: ArrayView3<f32>, g: &Geometry, f: [usize; 3]) -> LevelImage {
    let [nx, ny, nz] = g.dims;
    let n = [nx.div_ceil(f[0]), ny.div_ceil(f[1]), nz.div_ceil(f[2])];
    let mut sum = Array3::<f64>::zeros((n[2], n[1], n[0]));
    let mut count = Array3::<f64>::zeros((n[2], n[1], n[0]));
    for ((z, y, x), &v) in data.indexed_iter() {
        let i = (z / f[2], y / f[1], x / f[0]);
        sum[i] += v as f64;
        count[i] += 1.0;
    }
    let out = Zip::from(&sum)
        .and(&count)
        .map_collect(|&s, &c| if c > 0.0 { (s / c) as f32 } else { 0.0 });
    let mut a = g.affine_lps;
    for r in 0..3 {
        a[r][3] += (0..3)
            .map(|c| g.affine_lps[r][c] * (f[c] as f64 - 1.0) / 2.0)
            .sum::<f64>();
        for c in 0..3 {
            a[r][c] *= f[c] as f64;
        }
    }
    LevelImage {
        data: out,
        geometry: Geometry {
            dims: n,
            affine_lps: a,
        },
    }
}

/// Trilinear value at continuous index (x, y, z); `None` outside the voxel centres' box.
#[inline]
fn trilinear(d: &Array3<f32>, c: [f64; 3]) -> Option<f64> {
    let (nz, ny, nx) = d.dim();
    let n = [nx, ny, nz];
    let mut i0 = [0usize; 3];
    let mut w = [0.0f64; 3];
    for a in 0..3 {
        let max = (n[a] - 1) as f64;
        if !(c[a] >= 0.0 && c[a] <= max) {
            if n[a] == 1 && c[a].abs() <= 0.5 {
                i0[a] = 0;
                w[a] = 0.0;
                continue;
            }
            return None;
        }
        let f = c[a].floor().min((n[a].saturating_sub(2)) as f64);
        i0[a] = f as usize;
        w[a] = c[a] - f;
    }
    let s = d.as_slice().expect("standard layout");
    let (sx, sy) = (1usize, nx);
    let sz = nx * ny;
    let step = |a: usize, s: usize| if n[a] > 1 { s } else { 0 };
    let base = i0[2] * sz + i0[1] * sy + i0[0] * sx;
    let (dx, dy, dz) = (step(0, sx), step(1, sy), step(2, sz));
    let v = |o: usize| s[base + o] as f64;
    let c00 = v(0) * (1.0 - w[0]) + v(dx) * w[0];
    let c10 = v(dy) * (1.0 - w[0]) + v(dy + dx) * w[0];
    let c01 = v(dz) * (1.0 - w[0]) + v(dz + dx) * w[0];
    let c11 = v(dz + dy) * (1.0 - w[0]) + v(dz + dy + dx) * w[0];
    let c0 = c00 * (1.0 - w[1]) + c10 * w[1];
    let c1 = c01 * (1.0 - w[1]) + c11 * w[1];
    Some(c0 * (1.0 - w[2]) + c1 * w[2])
}

/// The cubic B-spline kernel.
#[inline]
fn bspline3(u: f64) -> f64 {
    let a = u.abs();
    if a < 1.0 {
        (4.0 - 6.0 * a * a + 3.0 * a * a * a) / 6.0
    } else if a < 2.0 {
        let b = 2.0 - a;
        b * b * b / 6.0
    } else {
        0.0
    }
}

/// The 99.5th percentile of the finite positive values (the top of the intensity scale).
fn top(values: impl Iterator<Item = f32>) -> f64 {
    let mut v: Vec<f32> = values.filter(|x| x.is_finite() && *x > 0.0).collect();
    if v.is_empty() {
        return 1.0;
    }
    let at = ((v.len() - 1) as f64 * 0.995) as usize;
    let t = *v.select_nth_unstable_by(at, f32::total_cmp).1 as f64;
    if t > 0.0 {
        t
    } else {
        1.0
    }
}

/// The metric of one level: fixed samples (world point, fixed bin) and the moving image.
struct Metric {
    points: Vec<[f64; 3]>,
    fixed_bin: Vec<u16>,
    moving: Array3<f32>,
    /// Moving LPS → moving continuous index.
    moving_inv: Affine,
    bins: usize,
}

impl Metric {
    fn new(
        fixed: &LevelImage,
        moving: &LevelImage,
        opts: &RegistrationOptions,
        fixed_top: f64,
        moving_top: f64,
    ) -> Result<Self> {
        let [nx, ny, nz] = fixed.geometry.dims;
        let total = nx * ny * nz;
        let stride = total.div_ceil(opts.max_samples.max(1)).max(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let bins = opts.bins.max(4);
        let (mut points, mut fixed_bin) = (Vec::new(), Vec::new());
        let jitter = |n: usize, rng: &mut rand::rngs::StdRng| {
            if n > 1 {
                rng.random_range(-0.5..0.5)
            } else {
                0.0
            }
        };
        for idx in (0..total).step_by(stride) {
            let (x, y, z) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
            let c = [
                (x as f64 + jitter(nx, &mut rng)).clamp(0.0, (nx - 1) as f64),
                (y as f64 + jitter(ny, &mut rng)).clamp(0.0, (ny - 1) as f64),
                (z as f64 + jitter(nz, &mut rng)).clamp(0.0, (nz - 1) as f64),
            ];
            let Some(v) = trilinear(&fixed.data, c) else {
                continue;
            };
            let b = ((v / fixed_top).clamp(0.0, 1.0) * (bins - 1) as f64).round() as u16;
            points.push(fixed.geometry.index_to_lps(c));
            fixed_bin.push(b);
        }
        let moving_inv = moving.geometry.inverse_affine_lps().ok_or_else(|| {
            Error::Invalid("registration: the moving image's affine is singular".into())
        })?;
        let scale = (bins - 1) as f64 / moving_top;
        Ok(Metric {
            points,
            fixed_bin,
            moving: moving
                .data
                .mapv(|v| ((v as f64 * scale).clamp(0.0, (bins - 1) as f64)) as f32),
            moving_inv,
            bins,
        })
    }

    /// Mattes MI (nats) and the share of samples inside the moving image, for `m` (fixed →
    /// moving LPS).
    fn evaluate(&self, m: &Affine) -> (f64, f64) {
        let idx = compose(&self.moving_inv, m);
        let b = self.bins;
        let w = b + 4;
        let chunk = 4096;
        let (hist, inside) = self
            .points
            .par_chunks(chunk)
            .zip(self.fixed_bin.par_chunks(chunk))
            .fold(
                || (vec![0.0f64; b * w], 0usize),
                |(mut h, mut n), (pts, fb)| {
                    for (p, &f) in pts.iter().zip(fb) {
                        let c = apply(&idx, *p);
                        if let Some(v) = trilinear(&self.moving, c) {
                            n += 1;
                            let lo = v.floor() as isize - 1;
                            let row = f as usize * w;
                            for k in lo..lo + 4 {
                                let wt = bspline3(k as f64 - v);
                                // Bins −2 … b+1 are stored at 0 … b+3.
                                let col = (k + 2) as usize;
                                h[row + col] += wt;
                            }
                        }
                    }
                    (h, n)
                },
            )
            .reduce(
                || (vec![0.0f64; b * w], 0usize),
                |(mut a, na), (c, nc)| {
                    for (x, y) in a.iter_mut().zip(c) {
                        *x += y;
                    }
                    (a, na + nc)
                },
            );
        let share = inside as f64 / self.points.len().max(1) as f64;
        let total: f64 = hist.iter().sum();
        if total <= 0.0 {
            return (0.0, share);
        }
        let mut pf = vec![0.0; b];
        let mut pm = vec![0.0; w];
        for f in 0..b {
            for m in 0..w {
                let p = hist[f * w + m] / total;
                pf[f] += p;
                pm[m] += p;
            }
        }
        let mut mi = 0.0;
        for f in 0..b {
            for m in 0..w {
                let p = hist[f * w + m] / total;
                if p > 0.0 {
                    mi += p * (p / (pf[f] * pm[m])).ln();
                }
            }
        }
        (mi, share)
    }

    /// The cost minimised: −MI, or (too little overlap to judge) a value above any −MI.
    fn cost(&self, m: &Affine) -> f64 {
        let (mi, share) = self.evaluate(m);
        if share < 0.25 {
            1.0 - share
        } else {
            -mi
        }
    }
}

/// Search parameters (rotations as mm of arc) → [`Rigid`].
fn rigid_of(u: &[f64], centre: [f64; 3]) -> Rigid {
    Rigid {
        angles_rad: [
            u[0] / ROTATION_RADIUS_MM,
            u[1] / ROTATION_RADIUS_MM,
            u[2] / ROTATION_RADIUS_MM,
        ],
        translation_mm: [u[3], u[4], u[5]],
        centre_lps: centre,
    }
}

struct Problem<'a> {
    metric: &'a Metric,
    centre: [f64; 3],
    evaluations: &'a std::sync::atomic::AtomicUsize,
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, u: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        self.evaluations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.metric.cost(&rigid_of(u, self.centre).matrix_lps()))
    }
}

/// One Nelder–Mead search from `start` with simplex steps `step` (mm).
fn search(problem: Problem, start: &[f64], step: f64, iterations: u64) -> Result<(Vec<f64>, f64)> {
    let mut simplex = vec![start.to_vec()];
    for i in 0..start.len() {
        let mut v = start.to_vec();
        v[i] += step;
        simplex.push(v);
    }
    let err = |e: argmin::core::Error| Error::Invalid(format!("registration search: {e}"));
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(1e-7)
        .map_err(err)?;
    let res = Executor::new(problem, solver)
        .configure(|s| s.max_iters(iterations))
        .run()
        .map_err(err)?;
    let state = res.state();
    let best = state
        .get_best_param()
        .cloned()
        .unwrap_or_else(|| start.to_vec());
    Ok((best, state.get_best_cost()))
}

/// Centre of mass (LPS) of an image's positive values inside `mask`.
fn centre_of_mass(data: ArrayView3<f32>, mask: ArrayView3<bool>, g: &Geometry) -> Option<[f64; 3]> {
    let mut s = [0.0f64; 3];
    let mut w = 0.0;
    for ((z, y, x), &v) in data.indexed_iter() {
        if mask[[z, y, x]] && v.is_finite() && v > 0.0 {
            let p = g.index_to_lps([x as f64, y as f64, z as f64]);
            for r in 0..3 {
                s[r] += v as f64 * p[r];
            }
            w += v as f64;
        }
    }
    (w > 0.0).then(|| s.map(|x| x / w))
}

/// Dice of the fixed mask and the moving mask carried onto the fixed grid through `m`, within
/// the common field of view; and the share of the fixed mask inside the moving grid.
fn mask_agreement(
    fixed_mask: ArrayView3<bool>,
    fixed: &Geometry,
    moving_mask: ArrayView3<bool>,
    moving: &Geometry,
    m: &Affine,
) -> (f64, f64) {
    let inv = moving.inverse_affine_lps().expect("checked");
    let idx = compose(&inv, &compose(m, &fixed.affine_lps));
    let [mx, my, mz] = moving.dims;
    let (mut both, mut a, mut b, mut fixed_n, mut fixed_in) = (0usize, 0usize, 0usize, 0, 0);
    for ((z, y, x), &f) in fixed_mask.indexed_iter() {
        let c = apply(&idx, [x as f64, y as f64, z as f64]);
        let n = [mx, my, mz];
        let inside = (0..3).all(|r| c[r] >= -0.5 && c[r] <= n[r] as f64 - 0.5);
        if f {
            fixed_n += 1;
            fixed_in += usize::from(inside);
        }
        if !inside {
            continue;
        }
        let r = |v: f64, n: usize| (v.round().max(0.0) as usize).min(n - 1);
        let mv = moving_mask[[r(c[2], mz), r(c[1], my), r(c[0], mx)]];
        both += usize::from(f && mv);
        a += usize::from(f);
        b += usize::from(mv);
    }
    let dice = if a + b == 0 {
        0.0
    } else {
        2.0 * both as f64 / (a + b) as f64
    };
    (dice, fixed_in as f64 / fixed_n.max(1) as f64)
}

fn finite(data: ArrayView3<f32>) -> Array3<f32> {
    data.mapv(|v| if v.is_finite() { v.max(0.0) } else { 0.0 })
}

fn check_shape(img: &RegImage) -> Result<()> {
    let [nx, ny, nz] = img.geometry.dims;
    let ok = img.data.dim() == (nz, ny, nx) && img.mask.is_none_or(|m| m.dim() == (nz, ny, nx));
    if !ok {
        return Err(Error::Invalid(format!(
            "registration: {}'s data {:?} (z, y, x) or mask does not fit its grid {:?} (x, y, z)",
            img.label,
            img.data.dim(),
            img.geometry.dims
        )));
    }
    if img.geometry.inverse_affine_lps().is_none() {
        return Err(Error::Invalid(format!(
            "registration: {}'s voxel-to-world affine is singular",
            img.label
        )));
    }
    Ok(())
}

/// Registers `moving` onto `fixed` (the module's method): the fixed → moving rigid transform
/// and its quality.
///
/// Errors ([`Error::Invalid`], naming both images and the measured value): the refusals of the
/// module (too far apart, too little overlap, masks that disagree), an image with no
/// foreground, shapes that do not fit their grids, a singular affine.
pub fn register(
    fixed: RegImage,
    moving: RegImage,
    opts: &RegistrationOptions,
) -> Result<Registration> {
    let t0 = Instant::now();
    check_shape(&fixed)?;
    check_shape(&moving)?;
    let refuse = |why: String| {
        Error::Invalid(format!(
            "cannot register {} onto {}: {why}; nothing was written",
            moving.label, fixed.label
        ))
    };
    let fd = finite(fixed.data);
    let md = finite(moving.data);
    let fmask = fixed
        .mask
        .map(|m| m.to_owned())
        .unwrap_or_else(|| background_mask(fd.view()).0);
    let mmask = moving
        .mask
        .map(|m| m.to_owned())
        .unwrap_or_else(|| background_mask(md.view()).0);
    let fcom = centre_of_mass(fd.view(), fmask.view(), fixed.geometry).ok_or_else(|| {
        refuse(format!(
            "{} has no foreground (no positive value inside its mask)",
            fixed.label
        ))
    })?;
    let mcom = centre_of_mass(md.view(), mmask.view(), moving.geometry).ok_or_else(|| {
        refuse(format!(
            "{} has no foreground (no positive value inside its mask)",
            moving.label
        ))
    })?;
    let shift: [f64; 3] = std::array::from_fn(|r| mcom[r] - fcom[r]);
    let distance = shift.iter().map(|x| x * x).sum::<f64>().sqrt();
    if distance > opts.max_centre_distance_mm {
        return Err(refuse(format!(
            "their centres of mass lie {distance:.0} mm apart in scanner coordinates (more than {} mm): the images do not show the same part of the body, or do not overlap",
            opts.max_centre_distance_mm
        )));
    }
    let (dice_identity, _) = mask_agreement(
        fmask.view(),
        fixed.geometry,
        mmask.view(),
        moving.geometry,
        &Rigid::identity(fcom).matrix_lps(),
    );

    // The pyramid: the finest voxel size of the two images sets the levels' spacing.
    let finest = fixed
        .geometry
        .voxel_size()
        .into_iter()
        .chain(moving.geometry.voxel_size())
        .fold(f64::INFINITY, f64::min);
    let fixed_top = top(fd.iter().copied());
    let moving_top = top(md.iter().copied());
    let levels = opts.levels.max(1);
    let evaluations = std::sync::atomic::AtomicUsize::new(0);
    let mut u = vec![0.0; 6];
    let mut start_name = String::new();
    let mut mi_start = f64::NAN;
    let mut metric_final = None;
    for level in 0..levels {
        let factor = (1usize << (levels - 1 - level)) as f64;
        let spacing = finest * factor;
        let factors = |g: &Geometry| {
            g.voxel_size()
                .map(|s| ((spacing / s).round() as usize).max(1))
        };
        let f = shrink(fd.view(), fixed.geometry, factors(fixed.geometry));
        let m = shrink(md.view(), moving.geometry, factors(moving.geometry));
        let metric = Metric::new(&f, &m, opts, fixed_top, moving_top)?;
        if level == 0 {
            // Start from the scanners' coordinates or from the centres of mass, the better.
            let com = [0.0, 0.0, 0.0, shift[0], shift[1], shift[2]];
            let c_id = metric.cost(&rigid_of(&u, fcom).matrix_lps());
            let c_com = metric.cost(&rigid_of(&com, fcom).matrix_lps());
            if c_com < c_id {
                u = com.to_vec();
                start_name = "centres of mass".into();
            } else {
                start_name = "identity".into();
            }
        }
        let step = 2.0 * spacing;
        let problem = || Problem {
            metric: &metric,
            centre: fcom,
            evaluations: &evaluations,
        };
        if level == levels - 1 {
            mi_start = -metric.cost(&rigid_of(&u, fcom).matrix_lps());
        }
        let (best, _) = search(problem(), &u, step, opts.max_iterations)?;
        u = best;
        if level == levels - 1 {
            let (best, _) = search(problem(), &u, 0.25 * step, opts.max_iterations)?;
            u = best;
            metric_final = Some(metric);
        }
    }
    let rigid = rigid_of(&u, fcom);
    let matrix = rigid.matrix_lps();
    let mi_final = metric_final
        .map(|m| m.evaluate(&matrix).0)
        .unwrap_or(f64::NAN);
    let (dice, overlap) = mask_agreement(
        fmask.view(),
        fixed.geometry,
        mmask.view(),
        moving.geometry,
        &matrix,
    );
    if overlap < opts.min_overlap {
        return Err(refuse(format!(
            "after registration only {:.0}% of {}'s foreground lies inside {} (at least {:.0}% needed): the fields of view do not overlap enough",
            overlap * 100.0,
            fixed.label,
            moving.label,
            opts.min_overlap * 100.0
        )));
    }
    if dice < opts.min_dice {
        return Err(refuse(format!(
            "after registration their foreground masks agree with a Dice coefficient of {dice:.2} within the common field of view (at least {} needed): the images do not show the same anatomy (another body part or another patient?), or the search failed",
            opts.min_dice
        )));
    }
    Ok(Registration {
        rigid,
        matrix_lps: matrix,
        quality: RegistrationQuality {
            mattes_mi_start: mi_start,
            mattes_mi_final: mi_final,
            dice_identity,
            dice,
            overlap,
            start: start_name,
            evaluations: evaluations.into_inner(),
            seconds: t0.elapsed().as_secs_f64(),
        },
    })
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

    #[test]
    fn itk_text_reads_back_and_a_centred_itk_transform_is_understood() {
        let r = Rigid {
            angles_rad: [0.05, 0.1, -0.15],
            translation_mm: [1.5, 2.5, -3.5],
            centre_lps: [4.0, 5.0, 6.0],
        };
        let m = r.matrix_lps();
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

    #[test]
    fn shrinking_keeps_the_world_position_of_a_block() {
        let g = Geometry {
            dims: [4, 4, 2],
            affine_lps: [
                [2.0, 0.0, 0.0, -3.0],
                [0.0, 2.0, 0.0, 5.0],
                [0.0, 0.0, 5.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        };
        let d = Array3::from_shape_fn((2, 4, 4), |(_, _, x)| x as f32);
        let s = shrink(d.view(), &g, [2, 2, 1]);
        assert_eq!(s.geometry.dims, [2, 2, 2]);
        // Block (0, 0) averages x = 0, 1: value 0.5, centre at x index 0.5 → −3 + 1.
        assert_eq!(s.data[[0, 0, 0]], 0.5);
        assert_eq!(s.geometry.index_to_lps([0.0, 0.0, 0.0]), [-2.0, 6.0, 0.0]);
        assert_eq!(s.geometry.voxel_size(), [4.0, 4.0, 5.0]);
    }
}
