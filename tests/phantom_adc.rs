//! The DWI digital reference object: ADC recovered per region against the truth it was built
//! with, through every ingest path (classic DICOM in each vendor's convention, Enhanced MR
//! multi-frame, NIfTI with .bval/.bvec).

mod common;

use std::path::Path;

use paramap::io::dicom::write::Flavour;
use paramap::pipeline::adc::{compute, AdcOptions, AdcResult};
use paramap::pipeline::input::{load_dwi, InputOptions};
use paramap::pipeline::synth::{write_dwi_phantom, SynthDwiOptions};
use paramap::pipeline::Engine;
use paramap::synth::dwi::{dwi_phantom, DwiPhantom, DwiPhantomSpec};

/// Per region: relative error of the region's median ADC (an ROI reading), and the largest
/// relative error of any voxel.
fn region_errors(result: &AdcResult, phantom: &DwiPhantom) -> Vec<(&'static str, f64, f64)> {
    phantom
        .regions
        .iter()
        .map(|r| {
            let values: Vec<f64> = phantom
                .labels
                .iter()
                .zip(result.adc.iter())
                .filter(|(l, _)| **l == r.label)
                .map(|(_, &a)| a as f64)
                .collect();
            assert!(values.len() > 20, "region {} has voxels", r.name);
            let rel = |a: f64| ((a - r.adc()) / r.adc()).abs();
            let max = values.iter().map(|&a| rel(a)).fold(0.0, f64::max);
            (r.name, rel(common::median(values)), max)
        })
        .collect()
}

fn load(dir: &Path) -> paramap::volume::Series4 {
    load_dwi(dir, &InputOptions::default()).unwrap().0
}

#[test]
fn noise_free_phantom_recovers_every_region_to_1e_6_on_the_cpu_with_every_method() {
    // The anisotropic white matter included: every method gives its mean diffusivity.
    let phantom = dwi_phantom(&DwiPhantomSpec::default());
    for method in paramap::models::adc::FitMethod::ALL {
        let opts = AdcOptions {
            method,
            ..Default::default()
        };
        let result = compute(&phantom.series, &opts, &Engine::Cpu).unwrap();
        for (name, _, max) in region_errors(&result, &phantom) {
            assert!(max < 1e-6, "{method}, {name}: max relative error {max:e}");
        }
    }
    let result = compute(&phantom.series, &AdcOptions::default(), &Engine::Cpu).unwrap();
    // the background is outside the automatic mask, every region inside it
    for (l, m) in phantom.labels.iter().zip(result.mask.iter()) {
        assert_eq!(*l != 0, *m);
    }
}

#[test]
fn rician_noise_at_snr_50_keeps_each_regions_median_adc_within_2_percent() {
    let phantom = dwi_phantom(&DwiPhantomSpec {
        snr: Some(50.0),
        seed: 3,
        ..Default::default()
    });
    let result = compute(&phantom.series, &AdcOptions::default(), &Engine::Cpu).unwrap();
    for (name, median, _) in region_errors(&result, &phantom) {
        assert!(median < 0.02, "{name}: region median ADC off by {median}");
    }
}

#[test]
fn every_dicom_convention_and_nifti_give_the_phantom_truth() {
    // DICOM stores 16-bit integers with a per-volume rescale, so the recovery is as good as
    // that quantisation allows (about 1e-4 of each region's value).
    let spec = DwiPhantomSpec::default();
    let phantom = dwi_phantom(&spec);
    for (flavour, enhanced, mosaic) in [
        (Flavour::Standard, false, false),
        (Flavour::Siemens, false, false),
        (Flavour::Siemens, false, true),
        (Flavour::Ge, false, false),
        (Flavour::Philips, false, false),
        (Flavour::Standard, true, false),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let spec = DwiPhantomSpec {
            append_isotropic: flavour == Flavour::Philips,
            ..spec.clone()
        };
        write_dwi_phantom(
            &spec,
            &SynthDwiOptions {
                flavour,
                enhanced,
                shuffle: true,
                mosaic,
            },
            tmp.path(),
        )
        .unwrap();
        let what = format!(
            "{flavour:?}{}{}",
            if enhanced { " enhanced" } else { "" },
            if mosaic { " mosaic" } else { "" }
        );
        if mosaic {
            let scan = paramap::io::dicom::scan(&tmp.path().join("dicom")).unwrap();
            assert_eq!(scan.series[0].files.len(), 7, "one mosaic file per volume");
            assert_eq!(
                scan.series[0].frames.len(),
                7 * spec.dims[2],
                "every tile is a slice"
            );
        }
        for input in [
            tmp.path().join("dicom"),
            tmp.path().join("nifti/dwi.nii.gz"),
        ] {
            let series = load(&input);
            assert_eq!(series.geometry.dims, spec.dims, "{what}");
            assert!(
                series
                    .geometry
                    .max_corner_distance(&phantom.series.geometry)
                    < 1e-3,
                "{what}: geometry"
            );
            let expected_volumes = 7 + if flavour == Flavour::Philips && input.ends_with("dicom") {
                2
            } else {
                0
            };
            if input.ends_with("dicom") {
                assert_eq!(series.n_volumes(), expected_volumes, "{what}");
            }
            let result = compute(&series, &AdcOptions::default(), &Engine::Cpu).unwrap();
            assert_eq!(
                result.shells.iter().map(|s| s.b).collect::<Vec<_>>(),
                vec![0.0, 500.0, 1000.0],
                "{what}"
            );
            if flavour == Flavour::Philips && input.ends_with("dicom") {
                assert_eq!(
                    result.shells[2].dropped_isotropic.len(),
                    1,
                    "{what}: Philips isotropic volume dropped"
                );
            }
            for (name, _, max) in region_errors(&result, &phantom) {
                assert!(
                    max < 2e-3,
                    "{what} from {}: {name} max relative error {max:e}",
                    input.display()
                );
            }
        }
    }
}
