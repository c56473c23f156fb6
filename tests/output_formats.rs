//! `--uncompressed`: `paramap adc` and `paramap dsc` write plain `.nii` instead of `.nii.gz`,
//! with the same values, the same grid and every name in the JSON record changed to match,
//! the optional 4-D images (`--save-input`, `--save-curves`) included.

mod common;

use std::path::Path;

use paramap::io::dicom::write::Flavour;
use paramap::io::nifti;
use paramap::pipeline::synth::{write_dsc_phantom, SynthDscOptions};
use paramap::synth::dsc::DscPhantomSpec;
use paramap::synth::dwi::DwiPhantomSpec;

/// Runs `cmd` on `input` twice (default and `--uncompressed`) and checks that every image of
/// the first run has its `.nii` twin in the second, holding the same voxels and affine, and
/// that the second run wrote no `.nii.gz` at all.
fn same_maps_either_way(cmd: &str, input: &Path, extra: &[&str], record: &str, at_least: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let (gz, plain) = (tmp.path().join("gz"), tmp.path().join("nii"));
    for (out, format) in [(&gz, &[][..]), (&plain, &["--uncompressed"][..])] {
        let o = common::run(cmd, input, out, &[extra, format].concat());
        assert!(
            o.status.success(),
            "{cmd} {format:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let names = |dir: &Path, ext: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(ext))
            .collect();
        v.sort();
        v
    };
    let compressed = names(&gz, ".nii.gz");
    assert!(compressed.len() >= at_least, "{cmd}: {compressed:?}");
    let four_d = if cmd == "dsc" { "delta_r2star" } else { "dwi" };
    assert!(
        compressed.contains(&format!("{four_d}.nii.gz")),
        "{cmd}: {compressed:?}"
    );
    assert!(names(&plain, ".nii.gz").is_empty(), "{cmd}: gzip written");
    let stems: Vec<String> = compressed
        .iter()
        .map(|n| n.trim_end_matches(".nii.gz").to_string())
        .collect();
    assert_eq!(
        names(&plain, ".nii"),
        stems.iter().map(|s| format!("{s}.nii")).collect::<Vec<_>>(),
        "{cmd}: the same images"
    );
    for stem in &stems {
        let (a, ga, _) = nifti::read(&gz.join(format!("{stem}.nii.gz"))).unwrap();
        let path = plain.join(format!("{stem}.nii"));
        let (b, gb, h) = nifti::read(&path).unwrap();
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()) && a.dim() == b.dim(),
            "{cmd} {stem}: values differ"
        );
        assert!(ga.max_corner_distance(&gb) < 1e-6, "{cmd} {stem}: grid");
        // Not compressed: the header, the extension flag and the voxels, nothing less.
        let bytes = (h.bitpix as u64 / 8) * b.len() as u64;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 352 + bytes);
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(plain.join(record)).unwrap()).unwrap();
    let outputs: Vec<&str> = json["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for stem in &stems {
        assert!(
            outputs.contains(&format!("{stem}.nii").as_str()),
            "{cmd}: {record} lists {stem}.nii: {outputs:?}"
        );
    }
    assert!(!outputs.iter().any(|o| o.ends_with(".nii.gz")));
}

#[test]
fn adc_uncompressed_writes_the_same_maps_as_nii() {
    let tmp = tempfile::tempdir().unwrap();
    common::dwi_phantom(
        tmp.path(),
        &DwiPhantomSpec {
            snr: Some(50.0),
            ..Default::default()
        },
    );
    same_maps_either_way(
        "adc",
        &tmp.path().join("nifti/dwi.nii.gz"),
        &["--save-input"],
        "adc.json",
        6,
    );
}

#[test]
fn dsc_uncompressed_writes_the_same_maps_as_nii() {
    let tmp = tempfile::tempdir().unwrap();
    write_dsc_phantom(
        &DscPhantomSpec::default(),
        &SynthDscOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            shuffle: false,
        },
        tmp.path(),
    )
    .unwrap();
    // With the 4-D ΔR2*(t) as well, written beside the maps.
    same_maps_either_way(
        "dsc",
        &tmp.path().join("dicom"),
        &["--save-curves"],
        "dsc.json",
        21,
    );
}
