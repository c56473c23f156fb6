//! Every phantom `paramap synth` can write is processed by `paramap adc` / `paramap dsc` with
//! their defaults: a sweep over the synth options (sizes, frames, sampling, echo times, noise,
//! vendors, encodings). The maps' accuracy is asserted elsewhere (tests/phantom_adc.rs,
//! tests/dsc_truth.rs); here, that nothing a user can make is refused.

mod common;

fn synth_then(kind: &str, synth: &[&str], command: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let phantom = tmp.path().join("phantom");
    let made = common::paramap()
        .args(["synth", kind, "-o"])
        .arg(&phantom)
        .args(synth)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "synth {kind} {synth:?}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let output = common::run(
        command,
        &phantom.join("dicom"),
        &tmp.path().join("out"),
        &[],
    );
    assert!(
        output.status.success(),
        "{command} on synth {kind} {synth:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_dsc_phantom_synth_writes_is_processed_by_dsc_defaults() {
    for options in [
        &[][..],
        &["--frames", "20"],
        &["--frames", "30"],
        &["--frames", "120", "--dt", "0.75s"],
        &["--dt", "2.5s"],
        &["--te", "20ms", "--snr", "30"],
        &["--te", "15ms", "--te2", "45ms"],
        &["--snr", "20"],
        &["--size", "32x40x3", "--snr", "50", "--enhanced"],
        &["--shuffle", "--seed", "7", "--snr", "100"],
    ] {
        synth_then("dsc", options, "dsc");
    }
}

#[test]
fn every_dwi_phantom_synth_writes_is_processed_by_adc_defaults() {
    for options in [
        &[][..],
        &["--bvalues", "1000"],
        &["--bvalues", "50,400,800,1500,3000", "--snr", "20"],
        &["--vendor", "siemens", "--mosaic"],
        &["--vendor", "ge"],
        &["--vendor", "philips", "--enhanced"],
        &["--size", "20x24x2", "--shuffle"],
    ] {
        synth_then("dwi", options, "adc");
    }
}

/// Two phantoms written with one `--study-uid` are one study to `paramap run`: one report.
#[test]
fn phantoms_written_into_one_study_give_one_report() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("study");
    for kind in ["dwi", "dsc"] {
        let made = common::paramap()
            .args(["synth", kind, "-o"])
            .arg(study.join(kind))
            .args(["--study-uid", "2.25.1234567", "--snr", "50"])
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let out = tmp.path().join("out");
    let output = common::run("run", &study, &out, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // One study: one report (the_report checks there is no second).
    common::the_report(&out);
    let bad = common::paramap()
        .args(["synth", "dsc", "-o"])
        .arg(tmp.path().join("x"))
        .args(["--study-uid", "2.25.x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a DICOM UID"));
}
