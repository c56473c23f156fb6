//! A 3-D head phantom for follow-up visits: known maps at any pose, on any grid.
//!
//! The DSC and DWI phantoms ([`super::dsc`], [`super::dwi`]) are 2-D patterns repeated across
//! slices, which a rigid registration cannot pin down along z. This one is a solid: an
//! ellipsoidal brain (white matter, a 6 mm cortical rim of grey matter), two lateral ventricles,
//! and three spherical lesions placed asymmetrically, so that all six rigid parameters are
//! visible. Each tissue has a DSC baseline signal (S0), a DWI b = 0 signal, a leakage-corrected
//! rCBV (ratio to white matter), a CBF (ml/100g/min) and an ADC (mm²/s), in the ranges of
//! docs/methods.md §1–2 (white matter rCBV 1 and ADC 0.8×10⁻³ mm²/s; CSF ADC 3×10⁻³ mm²/s).
//!
//! A visit is the phantom sampled on a grid after a pose ([`head_visit`]): each voxel is the
//! mean of `supersample³` points within it (partial volume), so a moved visit is the same
//! object, not a resampled image. Lesion perfusion can be scaled per visit
//! ([`HeadSpec::lesion_perfusion_scale`]) to make a known change.

use ndarray::Array3;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::models::registration::apply;
use crate::volume::{Affine, Geometry};

/// The lesions: name, centre (LPS mm, phantom space), radius (mm).
pub const LESIONS: [(&str, [f64; 3], f64); 3] = [
    ("lesion A (right frontal)", [-30.0, -25.0, 15.0], 12.0),
    ("lesion B (left parietal)", [35.0, 30.0, -8.0], 12.0),
    ("lesion C (left frontal)", [20.0, -45.0, 22.0], 10.0),
];

/// Tissue values: (DSC S0, DWI b0, rCBV, CBF ml/100g/min, ADC mm²/s).
type Values = [f64; 5];
const WHITE: Values = [600.0, 500.0, 1.0, 25.0, 0.8e-3];
const GREY: Values = [700.0, 650.0, 2.0, 60.0, 0.9e-3];
const CSF: Values = [1100.0, 1400.0, 0.3, 5.0, 3.0e-3];
const LESION: [Values; 3] = [
    [820.0, 800.0, 3.0, 80.0, 1.1e-3],
    [760.0, 850.0, 2.5, 70.0, 1.3e-3],
    [800.0, 700.0, 2.0, 55.0, 1.0e-3],
];
/// Brain semi-axes (mm, LPS x, y, z).
const BRAIN: [f64; 3] = [68.0, 85.0, 58.0];

/// What a visit is made of.
#[derive(Debug, Clone)]
pub struct HeadSpec {
    /// Grid (x, y, z) and voxel size (mm); axial, centred on the phantom.
    pub dims: [usize; 3],
    pub voxel_mm: [f64; 3],
    /// Points per axis averaged within each voxel.
    pub supersample: usize,
    /// Factor on each lesion's rCBV and CBF ([`LESIONS`] order).
    pub lesion_perfusion_scale: [f64; 3],
    /// Standard deviation of Gaussian noise as a fraction of white matter's value, on S0, b0
    /// and the maps; `None` for none.
    pub noise: Option<f64>,
    pub seed: u64,
}

impl Default for HeadSpec {
    /// A DSC-like grid: 96 × 96 × 24 voxels of 2.0 × 2.0 × 5.0 mm.
    fn default() -> Self {
        HeadSpec {
            dims: [96, 96, 24],
            voxel_mm: [2.0, 2.0, 5.0],
            supersample: 3,
            lesion_perfusion_scale: [1.0; 3],
            noise: None,
            seed: 1,
        }
    }
}

impl HeadSpec {
    /// This spec on `other`'s grid (dims, voxel size, supersampling).
    pub fn with_grid(mut self, other: &HeadSpec) -> Self {
        self.dims = other.dims;
        self.voxel_mm = other.voxel_mm;
        self.supersample = other.supersample;
        self
    }

    /// The grid: axial, rows along LPS y, centred on the origin.
    pub fn geometry(&self) -> Geometry {
        let mut a = [[0.0; 4]; 4];
        for r in 0..3 {
            a[r][r] = self.voxel_mm[r];
            a[r][3] = -(self.dims[r] as f64 - 1.0) / 2.0 * self.voxel_mm[r];
        }
        a[3][3] = 1.0;
        Geometry {
            dims: self.dims,
            affine_lps: a,
        }
    }
}

/// One visit: images `[z, y, x]` on `geometry`.
#[derive(Debug, Clone)]
pub struct HeadVisit {
    pub geometry: Geometry,
    /// DSC baseline signal; 0 outside the brain.
    pub s0: Array3<f32>,
    /// DWI b = 0 signal; 0 outside the brain.
    pub b0: Array3<f32>,
    /// rCBV (ratio), CBF (ml/100g/min), ADC (mm²/s); NaN outside the brain.
    pub rcbv: Array3<f32>,
    pub cbf: Array3<f32>,
    pub adc: Array3<f32>,
    /// Voxels whose centre lies in the brain.
    pub brain: Array3<bool>,
    /// Per lesion ([`LESIONS`] order): voxels whose centre lies in it.
    pub lesions: Vec<Array3<bool>>,
}

/// The tissue at phantom point `p`: (values, lesion index) or `None` outside the brain.
fn tissue(p: [f64; 3], scale: &[f64; 3]) -> Option<(Values, Option<usize>)> {
    let e = |c: [f64; 3], s: [f64; 3]| (0..3).map(|k| ((p[k] - c[k]) / s[k]).powi(2)).sum::<f64>();
    let r = e([0.0; 3], BRAIN);
    if r > 1.0 {
        return None;
    }
    for (i, (_, c, rad)) in LESIONS.iter().enumerate() {
        if e(*c, [*rad; 3]) <= 1.0 {
            let mut v = LESION[i];
            v[2] *= scale[i];
            v[3] *= scale[i];
            return Some((v, Some(i)));
        }
    }
    // Lateral ventricles: two ellipsoids either side of the midline, the right one larger.
    if e([-9.0, -5.0, 5.0], [6.0, 22.0, 9.0]) <= 1.0 || e([10.0, 0.0, 5.0], [5.0, 18.0, 8.0]) <= 1.0
    {
        return Some((CSF, None));
    }
    // The cortical rim: within 6 mm of the surface (approximately, along the radius).
    let rim = 1.0 - 6.0 / BRAIN.iter().sum::<f64>() * 3.0;
    if r.sqrt() > rim {
        return Some((GREY, None));
    }
    Some((WHITE, None))
}

/// The phantom sampled on `spec`'s grid after a pose: `world_to_phantom` maps a point of the
/// grid's world (LPS mm) to the phantom point it shows (the identity for the reference pose;
/// for a head moved by `T` (phantom → world), `T⁻¹`).
pub fn head_visit(spec: &HeadSpec, world_to_phantom: &Affine) -> HeadVisit {
    let g = spec.geometry();
    let [nx, ny, nz] = spec.dims;
    let n = spec.supersample.max(1);
    let offsets: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64 - 0.5).collect();
    let scale = spec.lesion_perfusion_scale;
    let voxels: Vec<([f64; 5], f64, bool, Option<usize>)> = (0..nx * ny * nz)
        .into_par_iter()
        .map(|idx| {
            let (x, y, z) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
            let mut sum = [0.0; 5];
            let mut inside = 0.0;
            for &dz in &offsets {
                for &dy in &offsets {
                    for &dx in &offsets {
                        let w = g.index_to_lps([x as f64 + dx, y as f64 + dy, z as f64 + dz]);
                        if let Some((v, _)) = tissue(apply(world_to_phantom, w), &scale) {
                            for k in 0..5 {
                                sum[k] += v[k];
                            }
                            inside += 1.0;
                        }
                    }
                }
            }
            let total = (n * n * n) as f64;
            let centre = tissue(
                apply(
                    world_to_phantom,
                    g.index_to_lps([x as f64, y as f64, z as f64]),
                ),
                &scale,
            );
            // Signals: partial volume with a zero background; maps: the mean over the brain
            // part of the voxel.
            let mut v = [0.0; 5];
            v[0] = sum[0] / total;
            v[1] = sum[1] / total;
            for k in 2..5 {
                v[k] = if inside > 0.0 {
                    sum[k] / inside
                } else {
                    f64::NAN
                };
            }
            (
                v,
                inside / total,
                centre.is_some(),
                centre.and_then(|c| c.1),
            )
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let noise = spec
        .noise
        .map(|s| Normal::new(0.0, s).expect("finite noise"));
    let mut draw = |wm: f64| noise.map_or(0.0, |d| d.sample(&mut rng) * wm);
    let shape = (nz, ny, nx);
    let mut out = HeadVisit {
        geometry: g,
        s0: Array3::zeros(shape),
        b0: Array3::zeros(shape),
        rcbv: Array3::from_elem(shape, f32::NAN),
        cbf: Array3::from_elem(shape, f32::NAN),
        adc: Array3::from_elem(shape, f32::NAN),
        brain: Array3::from_elem(shape, false),
        lesions: vec![Array3::from_elem(shape, false); LESIONS.len()],
    };
    for (idx, (v, frac, brain, lesion)) in voxels.into_iter().enumerate() {
        let i = (idx / (nx * ny), (idx / nx) % ny, idx % nx);
        out.s0[i] = (v[0] + draw(WHITE[0])).max(0.0) as f32;
        out.b0[i] = (v[1] + draw(WHITE[1])).max(0.0) as f32;
        if brain {
            out.brain[i] = true;
            out.rcbv[i] = (v[2] + draw(WHITE[2])) as f32;
            out.cbf[i] = (v[3] + draw(WHITE[3])) as f32;
            out.adc[i] = (v[4] + draw(WHITE[4])) as f32;
        } else if frac == 0.0 {
            // Noise-free background: the run's maps hold 0 (signals) outside the brain.
            out.s0[i] = 0.0;
            out.b0[i] = 0.0;
        }
        if let Some(l) = lesion {
            out.lesions[l][i] = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::registration::Rigid;

    #[test]
    fn the_phantom_holds_its_tissues_and_moves_as_posed() {
        let spec = HeadSpec {
            dims: [48, 48, 12],
            voxel_mm: [4.0, 4.0, 10.0],
            supersample: 1,
            ..HeadSpec::default()
        };
        let at_rest = head_visit(&spec, &Rigid::identity([0.0; 3]).matrix_lps());
        assert!(at_rest.lesions.iter().all(|l| l.iter().any(|&b| b)));
        let a = &at_rest.lesions[0];
        let vals: Vec<f32> = at_rest
            .rcbv
            .iter()
            .zip(a)
            .filter(|(_, &m)| m)
            .map(|(v, _)| *v)
            .collect();
        assert!(vals.iter().all(|&v| (v - 3.0).abs() < 1e-6), "{vals:?}");
        // Shifted by +20 mm in x (phantom → world), lesion A's centre moves 5 voxels.
        let shift = Rigid {
            translation_mm: [20.0, 0.0, 0.0],
            ..Rigid::identity([0.0; 3])
        }
        .matrix_lps();
        let inv = crate::models::registration::invert(&shift).unwrap();
        let moved = head_visit(&spec, &inv);
        let cx = |m: &Array3<bool>| {
            let (s, n) = m
                .indexed_iter()
                .filter(|(_, &b)| b)
                .fold((0.0, 0.0), |(s, n), ((_, _, x), _)| (s + x as f64, n + 1.0));
            s / n
        };
        assert!((cx(&moved.lesions[0]) - cx(&at_rest.lesions[0]) - 5.0).abs() < 0.3);
    }
}
