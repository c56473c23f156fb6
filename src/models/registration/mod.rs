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
//! It is written two ways ([`crate::io::transform::itk_text`],
//! [`crate::io::transform::ras_text`]): as an ITK text transform
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
//!
//! The pieces: [`rigid`] (the transform and its matrices), [`mattes`] (the metric and the
//! image pyramid), the search here; the transform's text files are `crate::io::transform`'s.

mod mattes;
mod rigid;

use std::time::Instant;

use argmin::core::{CostFunction, Executor, State};
use argmin::solver::neldermead::NelderMead;
use ndarray::{Array3, ArrayView3};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::models::mask::background_mask;
use crate::volume::{Affine, Geometry};

use mattes::{shrink, top, Metric};

pub use rigid::{apply, compose, invert, rotation_difference_deg, Rigid};

/// Rotations are searched as the arc (mm) they move a point this far from the centre.
const ROTATION_RADIUS_MM: f64 = 50.0;

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
