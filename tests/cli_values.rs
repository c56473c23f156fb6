//! Values on the command line that were easy to get wrong: times carry their unit (`--te 30ms`,
//! `--te 0.03s`, `--dt 1.5s`, `--dt 1500ms`) and implausible bare numbers are refused with the
//! unit they probably meant; `--ref-sphere X,Y,Z,R` is one value, negative coordinates included;
//! `--leakage leigh` writes its k_ep map.

mod common;

use std::path::{Path, PathBuf};

use paramap::io::nifti;

/// A noise-free DSC phantom written by `paramap synth dsc` (48×48×4×60, TE 30 ms, Δt 1.5 s);
/// returns its NIfTI.
fn phantom(dir: &Path) -> PathBuf {
    common::paramap()
        .args(["synth", "dsc", "-o"])
        .arg(dir)
        .assert()
        .success();
    dir.join("nifti/dsc.nii.gz")
}

fn map(dir: &Path, name: &str) -> Vec<f32> {
    let (data, _, _) = nifti::read(&dir.join(format!("{name}.nii.gz"))).unwrap();
    data.iter().copied().collect()
}

#[test]
fn bare_te_in_seconds_and_bare_dt_in_ms_are_refused_with_the_unit_they_meant() {
    let tmp = tempfile::tempdir().unwrap();
    let input = phantom(&tmp.path().join("phantom"));
    let out = tmp.path().join("out");
    for (flag, value, hint) in [
        ("--te", "0.03", "0.03s"),
        ("--dt", "1500", "1500ms"),
        ("--te", "500", "30ms"),
        ("--dt", "0.01", "1500ms"),
    ] {
        let output = common::run("dsc", &input, &out, &[flag, value]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        // The message names the option, the unit a bare number has, and the suggestion.
        assert!(stderr.contains(flag), "{stderr}");
        assert!(stderr.contains(hint), "{stderr}");
        assert!(!out.exists(), "nothing is written for a refused value");
    }
    // Every help line of a time option says its unit.
    let help = common::paramap().args(["dsc", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("30ms or 0.03s") && help.contains("1.5s or 1500ms"));
    let help = common::paramap()
        .args(["synth", "dsc", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("30ms or 0.03s"));
}

#[test]
fn te_30ms_and_te_0_03s_give_identical_maps_and_te_is_really_used() {
    let tmp = tempfile::tempdir().unwrap();
    let input = phantom(&tmp.path().join("phantom"));
    let runs: Vec<PathBuf> = ["30ms", "0.03s", "60ms"]
        .iter()
        .map(|te| {
            let out = tmp.path().join(format!("te_{te}"));
            let o = common::run("dsc", &input, &out, &["--te", te, "--dt", "1500ms", "-q"]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            out
        })
        .collect();
    for name in [
        "cbv_integral",
        "cbv_integral_corrected",
        "rcbv",
        "k2",
        "ttp",
    ] {
        let (a, b) = (map(&runs[0], name), map(&runs[1], name));
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} differs between --te 30ms and --te 0.03s"
        );
    }
    // ΔR2* = −ln(S/S0)/TE: twice the TE halves the CBV, so the option reached the model.
    let (cbv30, cbv60) = (map(&runs[0], "cbv_integral"), map(&runs[2], "cbv_integral"));
    let mut compared = 0;
    for (a, b) in cbv30.iter().zip(&cbv60) {
        if a.is_finite() && a.abs() > 1e-3 {
            assert!((a / b - 2.0).abs() < 1e-4, "CBV {a} at 30 ms, {b} at 60 ms");
            compared += 1;
        }
    }
    assert!(compared > 1000);
    // The record holds Δt = 1.5 s from --dt 1500ms.
    let record = std::fs::read_to_string(runs[0].join("dsc.json")).unwrap();
    assert!(record.contains("Δt from --dt"), "{record}");
}

#[test]
fn ref_sphere_takes_one_value_with_a_negative_coordinate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("phantom");
    let input = phantom(&dir);
    // A white-matter voxel of the phantom whose RAS y is negative, from the truth labels.
    let (labels, geometry, _) = nifti::read(&dir.join("truth/labels.nii.gz")).unwrap();
    let a = geometry.affine_ras();
    let world = |x: usize, y: usize, z: usize| -> [f64; 3] {
        let v = [x as f64, y as f64, z as f64, 1.0];
        [0, 1, 2].map(|r| (0..4).map(|c| a[r][c] * v[c]).sum())
    };
    let centre = labels
        .indexed_iter()
        .filter(|(_, &l)| l == paramap::synth::dsc::WHITE_MATTER as f32)
        .map(|((_, z, y, x), _)| world(x, y, z))
        .find(|c| c[1] < -5.0 && c[0] < -5.0)
        .expect("the phantom has white matter at negative RAS x and y");
    let sphere = format!("{},{},{},1", centre[0], centre[1], centre[2]);
    assert!(
        sphere.starts_with('-'),
        "{sphere}: a value that looks like a flag"
    );
    let out = tmp.path().join("out");
    let o = common::run("dsc", &input, &out, &["--ref-sphere", &sphere, "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record = std::fs::read_to_string(out.join("dsc.json")).unwrap();
    let rule = format!(
        "sphere of radius 1 mm at RAS ({}, {}, {}) mm",
        centre[0], centre[1], centre[2]
    );
    assert!(
        record.contains(&rule),
        "{rule} not in the record:\n{record}"
    );
    // The sphere's one voxel is white matter: every white-matter voxel of the noise-free
    // phantom has rCBV 1.
    let (reference, _, _) = nifti::read(&out.join("reference_mask.nii.gz")).unwrap();
    assert_eq!(reference.iter().filter(|&&m| m != 0.0).count(), 1);
    let rcbv = map(&out, "rcbv");
    let wm: Vec<f64> = labels
        .iter()
        .zip(&rcbv)
        .filter(|(&l, _)| l == paramap::synth::dsc::WHITE_MATTER as f32)
        .map(|(_, &r)| r as f64)
        .collect();
    let median = common::median(wm);
    assert!((median - 1.0).abs() < 1e-3, "white-matter rCBV {median}");

    // Malformed spheres are refused by name.
    for bad in ["25,-10,30", "25,-10,30,0", "a,b,c,d"] {
        let o = common::run("dsc", &input, &out, &["--ref-sphere", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("X,Y,Z,R"));
    }
}

/// `--leakage leigh` writes K1 and the efflux-rate map `kep.nii.gz` (grid values, s⁻¹) and
/// names its model in the record; the phantom's leakage is one-way (−K2·∫Ca, no efflux), so
/// its leaky lesions read k_ep = 0 (median) and their K2 has the true sign. `bsw` writes no
/// k_ep map.
#[test]
fn leakage_leigh_writes_kep_and_finds_no_efflux_in_the_phantoms_one_way_leakage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("phantom");
    let input = phantom(&dir);
    let out = tmp.path().join("leigh");
    let o = common::run("dsc", &input, &out, &["--leakage", "leigh", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let grid = paramap::models::leakage_leigh::kep_grid();
    let kep = map(&out, "kep");
    assert!(kep
        .iter()
        .all(|&k| k.is_nan() || k == 0.0 || grid.iter().any(|&g| g as f32 == k)));
    assert!(out.join("k1.nii.gz").is_file());
    let (labels, _, _) = nifti::read(&dir.join("truth/labels.nii.gz")).unwrap();
    let labels: Vec<f32> = labels.iter().copied().collect();
    let k2 = map(&out, "k2");
    let p = paramap::synth::dsc::dsc_phantom(&Default::default());
    for x in p.regions.iter().filter(|x| x.k2 != 0.0) {
        let median = |m: &[f32]| {
            let mut v: Vec<f32> = m
                .iter()
                .zip(&labels)
                .filter(|(k, &l)| l == x.label as f32 && k.is_finite())
                .map(|(&k, _)| k)
                .collect();
            v.sort_by(f32::total_cmp);
            v[v.len() / 2]
        };
        assert_eq!(median(&kep), 0.0, "{}: k_ep", x.name);
        assert_eq!(median(&k2).signum(), x.k2.signum() as f32, "{}: K2", x.name);
    }
    let record = std::fs::read_to_string(out.join("dsc.json")).unwrap();
    assert!(record.contains("bidirectional BSW"), "{record}");
    let bsw = tmp.path().join("bsw");
    let o = common::run("dsc", &input, &bsw, &["--leakage", "bsw", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!bsw.join("kep.nii.gz").exists());
}

/// Values a newcomer gets wrong, refused before anything is written and named with what to do:
/// ρ in kg/m³, kH out of range, an SNR of 0, a second echo equal to the first, a `--roi` that
/// does not exist, and a reference sphere outside the image (named with the image's extent).
#[test]
fn implausible_values_and_missing_files_are_refused_naming_what_to_give() {
    let tmp = tempfile::tempdir().unwrap();
    let input = phantom(&tmp.path().join("phantom"));
    let out = tmp.path().join("out");
    for (extra, expected) in [
        (&["--rho", "1040"][..], &["--rho", "1.04"][..]),
        (&["--rho", "0"], &["--rho"]),
        (&["--kh", "5"], &["--kh"]),
        (
            &["--ref-sphere", "25,-10,30,6"],
            &["no voxel centre lies in it", "z -10…5 mm"],
        ),
    ] {
        common::fails_cleanly("dsc", &input, &out, tmp.path(), extra, expected);
    }
    let roi = tmp.path().join("nosuch.nii.gz");
    common::fails_cleanly(
        "run",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data"),
        &out,
        tmp.path(),
        &["--roi", roi.to_str().unwrap()],
        &["nosuch.nii.gz: no such file"],
    );
    for (extra, expected) in [
        (&["--snr", "0"][..], "the SNR is a positive ratio"),
        (&["--te", "30ms", "--te2", "30ms"], "--te2 equals --te"),
    ] {
        let synth = common::paramap()
            .args(["synth", "dsc", "-o"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&synth.stderr);
        assert!(
            !synth.status.success() && stderr.contains(expected),
            "{stderr}"
        );
        assert!(!out.exists(), "nothing written");
    }
    // `info` on the DSC NIfTI reads its sidecar and says what it looks like.
    let info = common::paramap().arg("info").arg(&input).output().unwrap();
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(
        stdout.contains("TE 30 ms") && stdout.contains("as DSC for `paramap dsc`"),
        "{stdout}"
    );
}
