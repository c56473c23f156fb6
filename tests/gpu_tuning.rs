//! The workgroup size `paramap bench --tune` saved is the one `adc` runs with on that adapter
//! (lavapipe in CI), `--workgroup-size` overrides it, and a tuning file that cannot be used
//! leaves the default with a notice, never a failed run. (`tests/bench_command.rs` shows that
//! `--tune` saves the fastest size.)

mod common;

use std::path::Path;

use paramap::gpu::tuning::{TunedAdapter, TuningFile, ENV};
use paramap::synth::dwi::DwiPhantomSpec;

/// `paramap adc --backend gpu` with the tuning file `tuning`; (stderr, backend record, ADC
/// map bytes).
fn adc(
    input: &Path,
    out: &Path,
    tuning: &Path,
    extra: &[&str],
) -> (String, serde_json::Value, Vec<u8>) {
    let output = common::paramap()
        .env(ENV, tuning)
        .args(["adc", "--backend", "gpu", "--uncompressed", "-o"])
        .arg(out)
        .arg(input)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{stderr}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("adc.json")).unwrap()).unwrap();
    let map = std::fs::read(out.join("adc.nii")).unwrap();
    (stderr, record["backend"].clone(), map)
}

fn tuned(adapter: &serde_json::Value, size: u32) -> TuningFile {
    TuningFile {
        adapters: vec![TunedAdapter {
            adapter: serde_json::from_value(adapter.clone()).unwrap(),
            workgroup_size: size,
            kernels_s: Default::default(),
            clock: "gpu".into(),
            measured: "adc on small".into(),
            paramap: "test".into(),
            date: "2026-11-21".into(),
        }],
    }
}

#[test]
fn adc_runs_with_the_tuned_workgroup_size_unless_told_otherwise() {
    let _adapter = common::gpu(); // fails with instructions where there is no adapter
    let tmp = tempfile::tempdir().unwrap();
    common::dwi_phantom(tmp.path(), &DwiPhantomSpec::default());
    let input = tmp.path().join("nifti/dwi.nii.gz");
    let tuning = tmp.path().join("gpu-tuning.json");
    let out = |name: &str| tmp.path().join(name);

    // No tuning file: the default, said so.
    let (_, default, reference) = adc(&input, &out("default"), &tuning, &[]);
    assert_eq!(default["workgroup_size"], 64);
    assert!(default["workgroup_size_source"]
        .as_str()
        .unwrap()
        .starts_with("default"));

    // A measurement for this adapter: used, and recorded with where it came from.
    tuned(&default["adapter"], 32).save(&tuning).unwrap();
    let (_, backend, map) = adc(&input, &out("tuned"), &tuning, &[]);
    assert_eq!(backend["workgroup_size"], 32);
    let source = backend["workgroup_size_source"].as_str().unwrap();
    assert!(
        source.contains("paramap bench --tune") && source.contains("gpu-tuning.json"),
        "{source}"
    );
    assert_eq!(map, reference, "the same ADC map at any workgroup size");

    // --workgroup-size wins over the measurement.
    let (_, backend, _) = adc(&input, &out("asked"), &tuning, &["--workgroup-size", "128"]);
    assert_eq!(backend["workgroup_size"], 128);
    assert_eq!(backend["workgroup_size_source"], "--workgroup-size");

    // Another adapter's measurement changes nothing here.
    let mut other = default["adapter"].clone();
    other["driver_info"] = "another driver version".into();
    tuned(&other, 32).save(&tuning).unwrap();
    let (_, backend, _) = adc(&input, &out("other"), &tuning, &[]);
    assert_eq!(backend["workgroup_size"], 64);

    // A size this adapter cannot run, and a damaged file: the default, with a notice.
    tuned(&default["adapter"], 1 << 20).save(&tuning).unwrap();
    let (stderr, backend, _) = adc(&input, &out("impossible"), &tuning, &[]);
    assert_eq!(backend["workgroup_size"], 64);
    assert!(
        stderr.contains("ignoring the tuned workgroup size") && stderr.contains("bench --tune"),
        "{stderr}"
    );
    std::fs::write(&tuning, b"{ not json").unwrap();
    let (stderr, backend, map) = adc(&input, &out("damaged"), &tuning, &[]);
    assert_eq!(backend["workgroup_size"], 64);
    assert!(
        stderr.contains("ignoring the GPU tuning file") && stderr.contains("gpu-tuning.json"),
        "{stderr}"
    );
    assert_eq!(map, reference);
}

#[test]
fn run_uses_the_tuned_size_and_its_own_workgroup_size_option() {
    let adapter = common::gpu(); // fails with instructions where there is no adapter
    let tmp = tempfile::tempdir().unwrap();
    common::dwi_phantom(tmp.path(), &DwiPhantomSpec::default());
    let tuning = tmp.path().join("gpu-tuning.json");
    let record = serde_json::to_value(&adapter.adapter).unwrap();
    tuned(&record, 128).save(&tuning).unwrap();
    // `run` (and `listen`, which shares its processing options) on the DICOM study.
    let run = |name: &str, extra: &[&str]| -> serde_json::Value {
        let out = tmp.path().join(name);
        let output = common::paramap()
            .env(ENV, &tuning)
            .args(["run", "--backend", "gpu", "--dicom", "none", "-o"])
            .arg(&out)
            .arg(tmp.path().join("dicom"))
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json = common::files_below(&out)
            .into_iter()
            .find(|p| p.ends_with("adc.json"))
            .expect("an ADC record");
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(json).unwrap()).unwrap()
            ["backend"]
            .clone()
    };
    let backend = run("tuned", &[]);
    assert_eq!(backend["workgroup_size"], 128);
    assert!(backend["workgroup_size_source"]
        .as_str()
        .unwrap()
        .contains("bench --tune"));
    let backend = run("asked", &["--workgroup-size", "32"]);
    assert_eq!(backend["workgroup_size"], 32);
    assert_eq!(backend["workgroup_size_source"], "--workgroup-size");
}
