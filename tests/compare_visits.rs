//! Follow-up visits (issue #17): rigid registration between studies, change maps, the
//! parametric response map and the ±20% rule, `paramap compare`.

mod common;

use std::path::Path;

use ndarray::Array3;
use paramap::models::registration::{
    self, apply, invert, register, rotation_difference_deg, RegImage, RegistrationOptions, Rigid,
};
use paramap::synth::head::{head_visit, HeadSpec, HeadVisit};
use paramap::volume::resample::{resample_linear_through, GridRef};
use paramap::volume::{Affine, Geometry};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// A known pose: rotations (degrees about LPS x, y, z) and shifts (mm), about `centre`.
fn pose(deg: [f64; 3], mm: [f64; 3], centre: [f64; 3]) -> Rigid {
    Rigid {
        angles_rad: deg.map(f64::to_radians),
        translation_mm: mm,
        centre_lps: centre,
    }
}

/// `image` (on `grid`) moved by `truth` (fixed → moving world map): the moving image at `q`
/// shows what the fixed one shows at `truth⁻¹(q)`; resampled trilinearly, outside set to 0,
/// then Gaussian noise of `sigma`.
fn moved(image: &Array3<f32>, grid: &Geometry, truth: &Affine, sigma: f64, seed: u64) -> Array3<f32> {
    let inv = invert(truth).unwrap();
    let g = GridRef::new(grid, None, "visit");
    let mut out = resample_linear_through(image.view(), g, g, &inv).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = Normal::new(0.0, sigma).unwrap();
    out.mapv_inplace(|v| {
        if v.is_finite() {
            (v as f64 + n.sample(&mut rng)).max(0.0) as f32
        } else {
            0.0
        }
    });
    out
}

/// The error of a recovered transform against the truth: the rotation between them (degrees)
/// and the largest displacement (mm) over the foreground's voxel centres.
fn error(found: &Affine, truth: &Affine, mask: &Array3<bool>, grid: &Geometry) -> (f64, f64) {
    let mut worst: f64 = 0.0;
    for ((z, y, x), &m) in mask.indexed_iter() {
        if m {
            let p = grid.index_to_lps([x as f64, y as f64, z as f64]);
            let (a, b) = (apply(found, p), apply(truth, p));
            let d = (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>().sqrt();
            worst = worst.max(d);
        }
    }
    (rotation_difference_deg(found, truth), worst)
}

fn reference_visit() -> HeadVisit {
    head_visit(&HeadSpec::default(), &Rigid::identity([0.0; 3]).matrix_lps())
}

#[test]
fn a_phantom_moved_by_known_rigid_transforms_is_registered_within_half_a_mm_and_degree() {
    let fixed = reference_visit();
    let g = &fixed.geometry;
    let centre = [5.0, -10.0, 8.0];
    let poses = [
        pose([10.0, -6.0, 8.0], [15.0, -12.0, 10.0], centre),
        pose([-7.0, 9.0, -10.0], [-10.0, 14.0, -15.0], centre),
    ];
    for (i, p) in poses.iter().enumerate() {
        let truth = p.matrix_lps();
        // Noise 2% of white matter's S0 (SNR 50).
        let later = moved(&fixed.s0, g, &truth, 12.0, i as u64);
        let r = register(
            RegImage {
                data: fixed.s0.view(),
                geometry: g,
                mask: None,
                label: "visit 1",
            },
            RegImage {
                data: later.view(),
                geometry: g,
                mask: None,
                label: "visit 2",
            },
            &RegistrationOptions::default(),
        )
        .unwrap();
        let (deg, mm) = error(&r.matrix_lps, &truth, &fixed.brain, g);
        eprintln!(
            "pose {i}: rotation error {deg:.3}°, worst displacement {mm:.3} mm over the brain; {:?}",
            r.quality
        );
        assert!(deg < 0.5 && mm < 0.5, "pose {i}: {deg}° {mm} mm");
        assert!(r.quality.dice > 0.9 && r.quality.dice > r.quality.dice_identity);
    }
}
