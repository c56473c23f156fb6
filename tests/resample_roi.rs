//! Resampling by world geometry through NIfTI files, and lesion ROIs drawn on one series
//! measured on another's grid (issue 16: "ROIs drawn on the DWI grid give the same ADC
//! statistics as on the DSC grid within 2%").

mod common;

use common::grid_top_down as grid;
use ndarray::Array3;
use paramap::io::nifti;
use paramap::models::roi::{roi_summary, RoiSummary};
use paramap::report::load_roi_on_grid;
use paramap::volume::resample::{resample_linear, resample_mask, GridRef};
use paramap::volume::Geometry;

fn sample(g: &Geometry, f: impl Fn([f64; 3]) -> f64) -> Array3<f32> {
    let [nx, ny, nz] = g.dims;
    Array3::from_shape_fn((nz, ny, nx), |(k, j, i)| {
        f(g.index_to_lps([i as f64, j as f64, k as f64])) as f32
    })
}

/// The DSC-like grid: axial, 1.8 × 1.8 × 4 mm.
fn dsc_grid() -> Geometry {
    grid([96, 96, 24], [1.8, 1.8, 4.0], [0.0; 3], [0.0, 0.0, 0.0])
}

/// The DWI-like grid: coarser (2.6 × 2.6 × 5 mm), oblique (12° about x, 8° about z), shifted,
/// and stored with rows bottom-up as paramap stores DICOM rows.
fn dwi_grid() -> Geometry {
    grid(
        [72, 72, 20],
        [2.6, 2.6, 5.0],
        [12f64.to_radians(), 0.0, 8f64.to_radians()],
        [3.0, -4.0, 2.5],
    )
    .flipped_y()
}

const FOR: Option<&str> = Some("1.2.826.0.1.3680043.8.498.1");

#[test]
fn a_linear_map_written_on_two_grids_of_one_frame_resamples_to_the_analytic_value() {
    let field = |p: [f64; 3]| 2.0 + 0.01 * p[0] - 0.015 * p[1] + 0.02 * p[2];
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dsc_grid(), dwi_grid());
    for (from, to) in [(&a, &b), (&b, &a)] {
        let path = dir.path().join("map.nii.gz");
        nifti::write_map(&path, &sample(from, field), from, "linear field").unwrap();
        let (data, g_read, _) = nifti::read(&path).unwrap();
        let map = data.index_axis(ndarray::Axis(0), 0).to_owned();
        let out = resample_linear(
            map.view(),
            GridRef::new(&g_read, FOR, "source"),
            GridRef::new(to, FOR, "target"),
        )
        .unwrap();
        let inv = g_read.inverse_affine_lps().unwrap();
        let (mut interior, mut worst) = (0, 0.0f64);
        for ((k, j, i), &v) in out.indexed_iter() {
            let p = to.index_to_lps([i as f64, j as f64, k as f64]);
            let c: [f64; 3] =
                std::array::from_fn(|r| (0..3).map(|q| inv[r][q] * p[q]).sum::<f64>() + inv[r][3]);
            if (0..3).all(|r| c[r] >= 0.0 && c[r] <= (g_read.dims[r] - 1) as f64) {
                interior += 1;
                worst = worst.max((v as f64 - field(p)).abs());
            }
        }
        eprintln!("interior voxels {interior}, worst error {worst:.2e}");
        assert!(interior > 20_000, "{interior}");
        assert!(worst < 1e-5, "worst interior error {worst}");
    }
}

/// A smooth ADC field (mm²/s): a steep gradient (about 1% of the lesion's mean per mm, so an ROI
/// placed 2.5 mm off fails the 2% test) and a ripple.
fn adc_field(p: [f64; 3]) -> f64 {
    1.0e-3 + 1.2e-5 * p[0] - 1.0e-5 * p[1] + 0.8e-5 * p[2] + 5e-5 * (p[0] / 9.0).sin()
}

const CENTRE: [f64; 3] = [10.0, -12.0, 6.0];
const RADIUS_MM: f64 = 14.0;

/// The lesion as a reader would draw it on `g`: the voxels whose centre lies in the sphere.
fn lesion_on(g: &Geometry) -> Array3<bool> {
    sample(g, |p| {
        let d2: f64 = (0..3).map(|r| (p[r] - CENTRE[r]).powi(2)).sum();
        if d2 <= RADIUS_MM * RADIUS_MM {
            1.0
        } else {
            0.0
        }
    })
    .mapv(|v| v > 0.5)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// Mean, median and the 10th/90th percentiles within `tol`, the SD within `sd_tol` (relative).
fn compare(what: &str, got: &RoiSummary, truth: &RoiSummary, tol: f64, sd_tol: f64) {
    eprintln!(
        "{what}: n {} vs {}; mean {:.4e} vs {:.4e} ({:.2}%), median {:.2}%, p10 {:.2}%, p90 {:.2}%, SD {:.3e} vs {:.3e} ({:.2}%)",
        got.n,
        truth.n,
        got.mean,
        truth.mean,
        100.0 * rel(got.mean, truth.mean),
        100.0 * rel(got.median, truth.median),
        100.0 * rel(got.p10, truth.p10),
        100.0 * rel(got.p90, truth.p90),
        got.sd,
        truth.sd,
        100.0 * rel(got.sd, truth.sd),
    );
    for (name, g, t) in [
        ("mean", got.mean, truth.mean),
        ("median", got.median, truth.median),
        ("p10", got.p10, truth.p10),
        ("p90", got.p90, truth.p90),
    ] {
        assert!(rel(g, t) < tol, "{what}: {name} {g} vs {t}");
    }
    assert!(
        rel(got.sd, truth.sd) < sd_tol,
        "{what}: SD {} vs {}",
        got.sd,
        truth.sd
    );
}

#[test]
fn an_roi_drawn_on_the_dwi_grid_gives_the_adc_statistics_of_the_same_roi_on_the_dsc_grid() {
    let (dsc, dwi) = (dsc_grid(), dwi_grid());
    let dir = tempfile::tempdir().unwrap();
    let dsc_ref = GridRef::new(&dsc, FOR, "DSC #5");
    let dwi_ref = GridRef::new(&dwi, FOR, "DWI #3");
    // ADC as the DWI fit gives it (on its own grid), and resampled onto the DSC grid.
    let adc_dwi = sample(&dwi, adc_field);
    let adc_on_dsc = resample_linear(adc_dwi.view(), dwi_ref, dsc_ref).unwrap();
    // The truth: the lesion drawn on the DSC grid over the ADC field there.
    let truth_dsc = roi_summary(sample(&dsc, adc_field).view(), lesion_on(&dsc).view()).unwrap();
    let truth_dwi = roi_summary(adc_dwi.view(), lesion_on(&dwi).view()).unwrap();

    // The same sphere drawn on each grid (no resampling) already differs in shape, so in SD.
    compare(
        "the lesion drawn on each grid",
        &truth_dwi,
        &truth_dsc,
        0.02,
        0.05,
    );
    // Drawn on the DWI grid, measured on the DSC grid.
    let roi_path = dir.path().join("lesion_on_dwi.nii.gz");
    nifti::write_mask(&roi_path, &lesion_on(&dwi), &dwi, "lesion").unwrap();
    let roi = load_roi_on_grid(&roi_path, dsc_ref).unwrap();
    assert!(roi.resampled);
    let note = roi.frame_note.as_deref().unwrap();
    assert!(
        note.contains("lesion_on_dwi.nii.gz") && note.contains(FOR.unwrap()),
        "{note}"
    );
    let sphere_ml = 4.0 / 3.0 * std::f64::consts::PI * RADIUS_MM.powi(3) / 1000.0;
    eprintln!(
        "ROI volume: sphere {sphere_ml:.2} mL, drawn on DWI {:.2} mL, on the DSC grid {:.2} mL",
        roi.drawn_ml, roi.ml
    );
    assert!(
        rel(roi.ml, roi.drawn_ml) < 0.05,
        "{} vs {}",
        roi.ml,
        roi.drawn_ml
    );
    let got = roi_summary(adc_on_dsc.view(), roi.mask.view()).unwrap();
    assert_eq!(got.excluded, 0);
    compare(
        "DWI-drawn ROI on the DSC grid",
        &got,
        &truth_dsc,
        0.02,
        0.05,
    );

    // Drawn on the DSC grid, measured on the DWI map's own grid.
    let roi_path = dir.path().join("lesion_on_dsc.nii.gz");
    nifti::write_mask(&roi_path, &lesion_on(&dsc), &dsc, "lesion").unwrap();
    let roi = load_roi_on_grid(&roi_path, dwi_ref).unwrap();
    let got = roi_summary(adc_dwi.view(), roi.mask.view()).unwrap();
    compare(
        "DSC-drawn ROI on the DWI grid",
        &got,
        &truth_dwi,
        0.02,
        0.05,
    );
    compare(
        "DSC-drawn ROI on the DWI grid vs the DSC truth",
        &got,
        &truth_dsc,
        0.02,
        0.05,
    );

    // The test can fail: the same ROI placed 2.5 mm off (along LPS x) is more than 2% away.
    let mut off = dsc.clone();
    off.affine_lps[0][3] += 2.5;
    let moved = roi_summary(sample(&dsc, adc_field).view(), lesion_on(&off).view()).unwrap();
    eprintln!(
        "ROI 2.5 mm off: mean {:.2}% away",
        100.0 * rel(moved.mean, truth_dsc.mean)
    );
    assert!(rel(moved.mean, truth_dsc.mean) > 0.02, "{moved:?}");

    // On its own grid the ROI is taken as drawn.
    let same = load_roi_on_grid(&roi_path, dsc_ref).unwrap();
    assert!(!same.resampled && same.frame_note.is_none());
    assert_eq!(same.mask, lesion_on(&dsc));
    // The nearest-neighbour mask equals resample_mask's.
    assert_eq!(
        roi.mask,
        resample_mask(
            lesion_on(&dsc).view(),
            GridRef::new(&dsc, None, "x"),
            dwi_ref
        )
        .unwrap()
    );
}

#[test]
fn an_roi_outside_the_maps_grid_is_refused_naming_the_file_and_the_grid() {
    let dsc = dsc_grid();
    let dir = tempfile::tempdir().unwrap();
    // Drawn 300 mm away (another session's coordinates).
    let far = grid([20, 20, 10], [2.0, 2.0, 4.0], [0.0; 3], [300.0, 0.0, 0.0]);
    let path = dir.path().join("elsewhere.nii.gz");
    nifti::write_mask(&path, &Array3::from_elem((10, 20, 20), true), &far, "").unwrap();
    let e = load_roi_on_grid(&path, GridRef::new(&dsc, FOR, "DSC #5"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("elsewhere.nii.gz") && e.contains("DSC #5") && e.contains("field of view"),
        "{e}"
    );
}

/// A lesion of the study phantom: centre (LPS mm), radius (mm), rCBV, and ADC (mm²/s).
struct Lesion {
    centre: [f64; 3],
    radius: f64,
    rcbv: f64,
    adc: f64,
    want: u8,
}

const LESIONS: [Lesion; 3] = [
    Lesion {
        centre: [-35.0, 20.0, 0.0],
        radius: 14.0,
        rcbv: 1.0,
        adc: 1.4e-3,
        want: 1,
    },
    Lesion {
        centre: [35.0, 20.0, 0.0],
        radius: 14.0,
        rcbv: 3.0,
        adc: 0.9e-3,
        want: 3,
    },
    Lesion {
        centre: [0.0, -35.0, 0.0],
        radius: 14.0,
        rcbv: 1.75,
        adc: 1.4e-3,
        want: 2,
    },
];

/// The fourth lesion: half (x > its centre) at rCBV 2.6, half at 1.7, ADC 1.1×10⁻³.
const HALF: [f64; 3] = [0.0, 35.0, 8.0];

fn inside(p: [f64; 3], c: [f64; 3], r: f64) -> bool {
    (0..3).map(|k| (p[k] - c[k]).powi(2)).sum::<f64>() <= r * r
}

fn phantom_rcbv(p: [f64; 3]) -> f64 {
    for l in &LESIONS {
        if inside(p, l.centre, l.radius) {
            return l.rcbv;
        }
    }
    if inside(p, HALF, 14.0) {
        return if p[0] > HALF[0] { 2.6 } else { 1.7 };
    }
    1.0
}

fn phantom_adc(p: [f64; 3]) -> f64 {
    for l in &LESIONS {
        if inside(p, l.centre, l.radius) {
            return l.adc;
        }
    }
    if inside(p, HALF, 14.0) {
        return 1.1e-3;
    }
    0.8e-3
}

#[test]
fn the_response_map_of_a_study_phantom_gives_each_lesion_its_class_and_the_half_lesion_half_burden()
{
    use paramap::models::response::{response_map, ReadingThresholds};
    use paramap::models::roi::fractional_tumour_burden;
    let (dsc, dwi) = (dsc_grid(), dwi_grid());
    let (dsc_ref, dwi_ref) = (
        GridRef::new(&dsc, FOR, "DSC #5"),
        GridRef::new(&dwi, FOR, "DWI #3"),
    );
    let rcbv = sample(&dsc, phantom_rcbv);
    // ADC fitted on the coarser, oblique DWI grid, with a failed fit (NaN) in the middle of
    // the treatment-effect lesion, then resampled onto the DSC grid.
    let mut adc_dwi = sample(&dwi, phantom_adc);
    let inv = dwi.inverse_affine_lps().unwrap();
    let c = LESIONS[0].centre;
    let ijk: [usize; 3] = std::array::from_fn(|r| {
        ((0..3).map(|q| inv[r][q] * c[q]).sum::<f64>() + inv[r][3]).round() as usize
    });
    adc_dwi[[ijk[2], ijk[1], ijk[0]]] = f32::NAN;
    let adc = resample_linear(adc_dwi.view(), dwi_ref, dsc_ref).unwrap();
    // The brain: within the DWI slab, whose oblique 100 mm does not cover the DSC grid's
    // corners (ADC is NaN there, and the map 0: tested below).
    let brain = sample(&dsc, |p| {
        if inside(p, [0.0, 0.0, 0.0], 70.0) && p[2].abs() < 30.0 {
            1.0
        } else {
            0.0
        }
    })
    .mapv(|v| v > 0.5);
    let t = ReadingThresholds::default();
    let classes = response_map(rcbv.view(), adc.view(), brain.view(), None, &t).unwrap();

    // Interior: more than one DWI voxel diagonal (6.2 mm) inside the lesion's edge.
    let share = |classes: &Array3<u8>, l: &Lesion, class: u8| {
        let (mut n, mut hit, mut zeros) = (0, 0, 0);
        for ((k, j, i), &v) in classes.indexed_iter() {
            let p = dsc.index_to_lps([i as f64, j as f64, k as f64]);
            if inside(p, l.centre, l.radius - 6.5) {
                n += 1;
                hit += usize::from(v == class);
                zeros += usize::from(v == 0);
            }
        }
        (hit as f64 / n as f64, n, zeros)
    };
    for l in &LESIONS {
        let (s, n, zeros) = share(&classes, l, l.want);
        eprintln!(
            "lesion at {:?}: class {} in {:.1}% of {n} interior voxels ({zeros} unclassified)",
            l.centre,
            l.want,
            100.0 * s
        );
        assert!(s >= 0.95, "lesion {:?}: {s}", l.centre);
    }
    // The failed ADC fit leaves a hole of its own size (one DWI voxel ≈ 34 mm³ ≈ 3 DSC voxels
    // of 13 mm³), unclassified, and nothing more.
    let zeros_in_brain = classes
        .iter()
        .zip(brain.iter())
        .filter(|&(&c, &b)| b && c == 0)
        .count();
    eprintln!("unclassified brain voxels (failed ADC fit): {zeros_in_brain}");
    assert!((1..=6).contains(&zeros_in_brain), "{zeros_in_brain}");
    assert!(classes.iter().zip(brain.iter()).all(|(&c, &b)| b || c == 0));
    // Outside the DWI grid ADC is unknown: NaN on the DSC grid, so the whole brain mask there
    // is unclassified.
    let everywhere = Array3::from_elem(rcbv.dim(), true);
    let all = response_map(rcbv.view(), adc.view(), everywhere.view(), None, &t).unwrap();
    let beyond = adc.iter().filter(|a| a.is_nan()).count();
    assert!(beyond > 10_000, "{beyond}");
    assert_eq!(all.iter().filter(|&&c| c == 0).count(), beyond);

    // Thresholds move the classes: with rCBV high at 1.6 the 1.75 lesion reads progression-like.
    let strict = ReadingThresholds {
        rcbv_high: 1.6,
        ..t
    };
    let moved = response_map(rcbv.view(), adc.view(), brain.view(), None, &strict).unwrap();
    let (s, _, _) = share(&moved, &LESIONS[2], 3);
    assert!(s >= 0.95, "{s}");

    // The half lesion, drawn on the DWI grid, measured on the DSC rCBV map: FTB 50% ± 5%.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.nii.gz");
    let drawn = sample(&dwi, |p| if inside(p, HALF, 14.0) { 1.0 } else { 0.0 }).mapv(|v| v > 0.5);
    nifti::write_mask(&path, &drawn, &dwi, "half lesion").unwrap();
    let roi = load_roi_on_grid(&path, dsc_ref).unwrap();
    let f = fractional_tumour_burden(rcbv.view(), roi.mask.view(), &t).unwrap();
    eprintln!(
        "half lesion: above high {:.1}%, between {:.1}%, below low {:.1}% of {} voxels",
        100.0 * f.above_high,
        100.0 * f.between,
        100.0 * f.below_low,
        f.n
    );
    assert!((f.above_high - 0.5).abs() <= 0.05, "{f:?}");
}
