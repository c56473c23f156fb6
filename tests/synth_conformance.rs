//! Every object `paramap synth` writes is conformant DICOM: dciodvfy (dicom3tools) reports no
//! error for the DWI phantom in every vendor style (standard tags, Siemens, GE, Philips), as a
//! Siemens mosaic and as Enhanced MR, and for the DSC phantom classic, dual-echo and Enhanced.
//! Each also names its manufacturer (dcm2niix warns without one).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL: &str = "sudo apt-get install -y dicom3tools";

/// dciodvfy's error lines for `file` (it reports on stderr); its absence fails the test with
/// the line that installs it.
fn dciodvfy_errors(file: &Path) -> Vec<String> {
    let out = Command::new("dciodvfy")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("this test needs `dciodvfy` ({e}); install it with: {INSTALL}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    report
        .lines()
        .filter(|l| l.starts_with("Error"))
        .map(|l| format!("{}: {l}", file.display()))
        .collect()
}

/// Writes a phantom with `paramap synth ARGS -o DIR` and returns its DICOM files, sorted.
fn synth(dir: &Path, args: &[&str]) -> Vec<PathBuf> {
    common::paramap()
        .arg("synth")
        .args(args)
        .arg("-o")
        .arg(dir)
        .assert()
        .success();
    let mut files = common::files_below(&dir.join("dicom"));
    files.sort();
    assert!(!files.is_empty(), "synth {args:?} wrote no DICOM");
    files
}

#[test]
fn every_synth_phantom_passes_dciodvfy_without_errors_in_every_vendor_style() {
    let tmp = tempfile::tempdir().unwrap();
    let styles: &[(&str, &[&str], &str)] = &[
        ("dwi_standard", &["dwi", "--vendor", "standard"], "paramap"),
        ("dwi_siemens", &["dwi", "--vendor", "siemens"], "SIEMENS"),
        ("dwi_ge", &["dwi", "--vendor", "ge"], "GE MEDICAL SYSTEMS"),
        (
            "dwi_philips",
            &["dwi", "--vendor", "philips", "--shuffle"],
            "Philips Medical Systems",
        ),
        (
            "dwi_mosaic",
            &["dwi", "--vendor", "siemens", "--mosaic"],
            "SIEMENS",
        ),
        ("dwi_enhanced", &["dwi", "--enhanced"], "paramap"),
        (
            "dwi_enhanced_philips",
            &["dwi", "--enhanced", "--vendor", "philips"],
            "Philips Medical Systems",
        ),
        ("dsc", &["dsc", "--frames", "30"], "paramap"),
        (
            "dsc_dual_echo",
            &["dsc", "--frames", "30", "--te2", "60ms"],
            "paramap",
        ),
        (
            "dsc_enhanced",
            &["dsc", "--frames", "30", "--enhanced"],
            "paramap",
        ),
    ];
    let mut errors = Vec::new();
    for (name, args, manufacturer) in styles {
        let files = synth(&tmp.path().join(name), args);
        // The first, a middle and the last object (every object of a style is built alike).
        for file in [&files[0], &files[files.len() / 2], &files[files.len() - 1]] {
            errors.extend(dciodvfy_errors(file));
            let obj = dicom_object::open_file(file).unwrap();
            let found = obj
                .element(dicom_dictionary_std::tags::MANUFACTURER)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string();
            assert_eq!(&found, manufacturer, "{}", file.display());
        }
    }
    assert!(errors.is_empty(), "dciodvfy errors:\n{}", errors.join("\n"));
}
