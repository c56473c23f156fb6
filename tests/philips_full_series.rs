//! The whole shared Philips series (544 images, 32 slices, 3 non-image objects), which is too
//! large to vendor. It lives in ../shared/reference beside the project; `.ci/run` runs this
//! test there with `--ignored`. On a clone without ../shared it is ignored, never passed.

mod common;

use std::path::PathBuf;

use paramap::io::{dicom, fsl, nifti};
use paramap::pipeline::input::{load_dwi, InputOptions};

fn full() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/philips_dwi/full")
}

#[test]
#[ignore = "needs ../shared/reference/philips_dwi/full (run by .ci/run)"]
fn full_philips_series_matches_dcm2niix() {
    let root = full();
    assert!(
        root.exists(),
        "{} is missing: this test needs ../shared beside the project",
        root.display()
    );
    let scan = dicom::scan(&root.join("DICOM")).unwrap();
    assert_eq!(
        scan.non_image.len(),
        3,
        "three non-image objects skipped: {:?}",
        scan.non_image
    );
    let (series, _) = load_dwi(&root.join("DICOM"), &InputOptions::default()).unwrap();
    assert_eq!(series.geometry.dims, [112, 112, 32]);
    assert_eq!(series.n_volumes(), 17);
    let refdir = root.join("reference_dcm2niix");
    let find = |ext: &str| {
        std::fs::read_dir(&refdir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with(ext))
            .unwrap()
    };
    let want_b = fsl::read_bval(&find(".bval")).unwrap();
    let got_b: Vec<f64> = series
        .volumes
        .iter()
        .map(|v| v.diffusion.unwrap().b)
        .collect();
    assert_eq!(got_b.len(), want_b.len());
    for (g, w) in got_b.iter().zip(&want_b) {
        assert!((g - w).abs() < 1e-6);
    }
    let (want, want_geometry, _) = nifti::read(&find(".nii.gz")).unwrap();
    assert!(series.geometry.max_corner_distance(&want_geometry) < 1e-3);
    assert_eq!(series.data.shape(), want.shape());
}
