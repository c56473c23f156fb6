//! `--method ols` is MRtrix3 `dwi2adc`: on DIPY's real small_64D (b = 0 and 64 directions,
//! each with its own b from 986.9 to 1003.0 s/mm²; tests/data/dipy_small_64D, BSD-3), paramap's
//! ADC equals the ADC MRtrix3 3.0.3 wrote for it to 1e-6 relative in every voxel of the mask.
//! The trace-weighted fit (one point per shell at its mean b) is a different estimator, and on
//! this acquisition differs from it by about 1%.

mod common;

use std::path::{Path, PathBuf};

use ndarray::{Array3, Axis};
use paramap::io::nifti;
use paramap::models::adc::FitMethod;
use paramap::pipeline::adc::{compute, AdcOptions, AdcResult};
use paramap::pipeline::input::{load_dwi, InputOptions};
use paramap::pipeline::Engine;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dipy_small_64D")
}

/// MRtrix3's ADC map (volume 1 of its output; volume 0 is S0), mm²/s, `[z, y, x]`.
fn mrtrix_adc() -> Array3<f32> {
    let (maps, _, _) = nifti::read(&data().join("mrtrix3_dwi2adc.nii")).unwrap();
    assert_eq!(maps.shape(), &[2, 10, 10, 10]);
    maps.index_axis(Axis(0), 1).to_owned()
}

fn fit(method: FitMethod) -> (AdcResult, paramap::volume::Series4) {
    let (series, _) = load_dwi(&data().join("small_64D.nii"), &InputOptions::default()).unwrap();
    assert_eq!(series.n_volumes(), 65);
    let opts = AdcOptions {
        method,
        ..Default::default()
    };
    (compute(&series, &opts, &Engine::Cpu).unwrap(), series)
}

#[test]
fn ols_adc_equals_mrtrix3_dwi2adc_to_1e_6_inside_the_mask() {
    let (result, series) = fit(FitMethod::Ols);
    assert_eq!(
        AdcOptions::default().method,
        FitMethod::Ols,
        "ols is the default"
    );
    // Every volume is a point of the fit, with its own b as the .bval gives it.
    assert_eq!(result.model.n_b(), 65);
    assert!(result.model.bvalues[1..]
        .iter()
        .all(|b| (986.0..=1003.0).contains(b)));
    let reference = mrtrix_adc();
    let (mut compared, mut unfittable) = (0, 0);
    let mut worst: f64 = 0.0;
    for ((z, y, x), &inside) in result.mask.indexed_iter() {
        if !inside {
            continue;
        }
        let ours = result.adc[[z, y, x]] as f64;
        if ours.is_nan() {
            // paramap refuses log(0): such a voxel has a non-positive signal in some volume.
            let signals = series.data.slice(ndarray::s![.., z, y, x]);
            assert!(
                signals.iter().any(|&s| s <= 0.0),
                "NaN at {z},{y},{x} with every signal positive"
            );
            unfittable += 1;
            continue;
        }
        let theirs = reference[[z, y, x]] as f64;
        let rel = ((ours - theirs) / theirs).abs();
        worst = worst.max(rel);
        assert!(
            rel <= 1e-6,
            "voxel {z},{y},{x}: paramap {ours:e}, dwi2adc {theirs:e} (relative {rel:e})"
        );
        compared += 1;
    }
    assert!(compared > 150, "only {compared} voxels compared");
    assert!(
        unfittable < 10,
        "{unfittable} unfittable voxels in the mask"
    );
    eprintln!("{compared} voxels, worst relative difference {worst:e}, {unfittable} NaN");
}

#[test]
fn the_trace_weighted_fit_is_a_different_estimator_by_about_one_percent() {
    let (trace, _) = fit(FitMethod::TraceOls);
    // One point per shell: b = 0 and the mean of the 64 b-values.
    assert_eq!(trace.model.n_b(), 2);
    let reference = mrtrix_adc();
    let mut rel: Vec<f64> = trace
        .mask
        .indexed_iter()
        .filter(|(i, m)| **m && trace.adc[*i].is_finite())
        .map(|(i, _)| ((trace.adc[i] as f64 - reference[i] as f64) / reference[i] as f64).abs())
        .collect();
    rel.sort_by(f64::total_cmp);
    let median = rel[rel.len() / 2];
    assert!(
        (0.002..0.05).contains(&median),
        "median relative difference of trace-ols from dwi2adc: {median:e}"
    );
}

#[test]
fn the_adc_command_defaults_to_ols_and_records_its_points() {
    let out = tempfile::tempdir().unwrap();
    common::paramap()
        .args(["adc", "--backend", "cpu", "--quiet", "-o"])
        .arg(out.path())
        .arg(data().join("small_64D.nii"))
        .assert()
        .success();
    let (adc, _, _) = nifti::read(&out.path().join("adc.nii.gz")).unwrap();
    let (mask, _, _) = nifti::read(&out.path().join("mask.nii.gz")).unwrap();
    let reference = mrtrix_adc();
    let mut compared = 0;
    for ((z, y, x), &m) in mask.index_axis(Axis(0), 0).indexed_iter() {
        let ours = adc[[0, z, y, x]] as f64;
        if m == 0.0 || ours.is_nan() {
            continue;
        }
        let theirs = reference[[z, y, x]] as f64;
        assert!(
            ((ours - theirs) / theirs).abs() <= 1e-6,
            "voxel {z},{y},{x}"
        );
        compared += 1;
    }
    assert!(compared > 150);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("adc.json")).unwrap())
            .unwrap();
    assert_eq!(record["fit_method"], "ols");
    assert!(record["fit_points"]
        .as_str()
        .unwrap()
        .contains("every diffusion volume"));
    assert_eq!(record["fit_b_s_per_mm2"].as_array().unwrap().len(), 65);
}
