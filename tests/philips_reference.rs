//! The real Philips Ingenia Elition X DWI series (vendored 4-slice subset, tests/data) against
//! dcm2niix v1.0.20260724's reading of it: volume order, b-values, directions, affine, voxel
//! values; its non-image objects skipped; ADC of brain voxels in the physiological range.

mod common;

use paramap::io::{dicom, fsl, nifti};
use paramap::pipeline::adc::{compute, AdcOptions};
use paramap::pipeline::input::{load_dwi, InputOptions};
use paramap::pipeline::Engine;
use paramap::volume::Geometry;

fn reference(ext: &str) -> std::path::PathBuf {
    common::philips_subset().join(format!(
        "reference_dcm2niix/DTI_Biobank_2mm_MB3S2_EPI_701.{ext}"
    ))
}

#[test]
fn non_image_objects_are_skipped_with_one_summary_line() {
    let scan = dicom::scan(&common::philips_subset().join("DICOM")).unwrap();
    assert_eq!(scan.series.len(), 1);
    assert_eq!(scan.series[0].frames.len(), 68);
    assert_eq!(scan.non_image.len(), 2, "{:?}", scan.non_image);
    assert!(scan.corrupt.is_empty());
    let line = scan.skipped_summary().unwrap();
    assert!(
        line.contains("2 non-image")
            && line.contains("presentation state")
            && line.contains("private Philips"),
        "{line}"
    );
    assert_eq!(scan.series[0].kind(), dicom::SeriesKind::Dwi);
}

#[test]
fn b_values_directions_and_volume_order_match_dcm2niix() {
    let (series, _) = load_dwi(
        &common::philips_subset().join("DICOM"),
        &InputOptions::default(),
    )
    .unwrap();
    let want_b = fsl::read_bval(&reference("bval")).unwrap();
    let want_vec = fsl::read_bvec(&reference("bvec")).unwrap();
    assert_eq!(series.n_volumes(), 17);
    let enc: Vec<_> = series
        .volumes
        .iter()
        .map(|v| v.diffusion.unwrap())
        .collect();
    for (i, d) in enc.iter().enumerate() {
        assert!(
            (d.b - want_b[i]).abs() < 1e-6,
            "volume {i}: b {} vs dcm2niix {}",
            d.b,
            want_b[i]
        );
        let got = fsl::bvec_for(d, &series.geometry);
        for r in 0..3 {
            assert!(
                (got[r] - want_vec[i][r]).abs() < 2e-5,
                "volume {i} bvec {got:?} vs dcm2niix {:?}",
                want_vec[i]
            );
        }
    }
    // what our writer puts in .bval/.bvec is the same text dcm2niix wrote, up to the last digit
    let (bval, _) = fsl::bval_bvec_text(&enc, &series.geometry);
    assert_eq!(
        bval.trim(),
        std::fs::read_to_string(reference("bval")).unwrap().trim()
    );
}

#[test]
fn the_four_near_zero_b_volumes_join_b0_and_twelve_directions_make_b1000() {
    let (series, _) = load_dwi(
        &common::philips_subset().join("DICOM"),
        &InputOptions::default(),
    )
    .unwrap();
    let result = compute(&series, &AdcOptions::default(), &Engine::Cpu).unwrap();
    assert_eq!(result.shells.len(), 2);
    assert_eq!(result.shells[0].b, 0.0);
    assert_eq!(result.shells[0].volumes, vec![0, 4, 8, 12, 16]);
    assert_eq!(result.shells[1].b, 1000.0);
    assert_eq!(result.shells[1].volumes.len(), 12);
}

#[test]
fn affine_and_voxels_match_dcm2niix_nifti() {
    let (series, _) = load_dwi(
        &common::philips_subset().join("DICOM"),
        &InputOptions::default(),
    )
    .unwrap();
    let (want, want_geometry, _) = nifti::read(&reference("nii.gz")).unwrap();
    assert!(series.geometry.max_corner_distance(&want_geometry) < 1e-3);
    for r in 0..3 {
        for c in 0..4 {
            let (a, b) = (
                series.geometry.affine_ras()[r][c],
                want_geometry.affine_ras()[r][c],
            );
            assert!((a - b).abs() < 1e-3, "affine[{r}][{c}] {a} vs dcm2niix {b}");
        }
    }
    assert_eq!(series.data.shape(), want.shape());
    // dcm2niix stores Philips floating-point values (SV·RS+RI)/(RS·SS) as int16 with a slope
    let worst = series
        .data
        .iter()
        .zip(want.iter())
        .map(|(a, b)| ((a - b) / b.abs().max(1.0)).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "largest relative voxel difference {worst}");
    // and our own NIfTI writer keeps that affine on disk
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("dwi.nii.gz");
    nifti::write_series(&p, &series.data, &series.geometry, "t", None).unwrap();
    let (_, back, _): (_, Geometry, _) = nifti::read(&p).unwrap();
    assert!(back.max_corner_distance(&want_geometry) < 1e-3);
}

#[test]
fn brain_adc_is_physiological_on_cpu_and_gpu() {
    let (series, _) = load_dwi(
        &common::philips_subset().join("DICOM"),
        &InputOptions::default(),
    )
    .unwrap();
    let gpu = Engine::Gpu(Box::new(common::gpu()));
    for engine in [Engine::Cpu, gpu] {
        let r = compute(&series, &AdcOptions::default(), &engine).unwrap();
        let inside: Vec<f64> = r
            .adc
            .iter()
            .zip(r.mask.iter())
            .filter(|(_, m)| **m)
            .map(|(a, _)| *a as f64)
            .collect();
        assert!(
            inside.len() > 10_000,
            "mask holds the brain: {}",
            inside.len()
        );
        let median = common::median(inside);
        assert!(
            (0.6e-3..1.2e-3).contains(&median),
            "{}: median ADC {median:e} mm²/s",
            r.backend.used
        );
    }
}
