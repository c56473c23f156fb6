//! Issue #20: the speed work changes no map. Every image `paramap adc` and `paramap dsc` write
//! on the CPU (f64 twin) for the DWI phantom, the DSC phantom and the vendored Philips series
//! must equal, bit for bit, the images the code wrote before that work (commit a2a6efc), whose
//! checksums are in `tests/data/maps_unchanged.json`.
//!
//! Tolerance per map: **none** (bit for bit) for every map listed there: ADC, S0, NRMSE, mask
//! and trace of the ADC runs; every DSC map. The speed work kept each voxel's arithmetic in the
//! same order (the residuals' `exp` taken once per distinct b-value is the same call on the same
//! argument; the exact 99.9th percentile found with a bounded heap instead of a selection is
//! the same value; fits written straight into the maps instead of through a planar copy).
//!
//! Portability: the maps use glibc's `log`/`exp` (the FMA variants where the CPU has FMA, as
//! every x86-64 CI runner of this project has) and the same Rust and Debian versions on this
//! machine and in CI; a CPU without FMA could differ in the last bit of a few voxels, which
//! this test would report by map.
//!
//! Files not listed (maps added after the fixture, e.g. a new quality map) are not checked
//! here. To record the checksums again (only after a change that is meant to change maps, and
//! saying so in the commit): `PARAMAP_BLESS=1 cargo test --release --test maps_unchanged`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::paramap;

const FIXTURE: &str = "tests/data/maps_unchanged.json";

/// FNV-1a (64-bit) of the image data: the bytes from the header's vox_offset on. The header
/// is left out (it carries no voxel value).
fn data_checksum(path: &Path) -> (String, usize, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let vox_offset = f32::from_le_bytes(bytes[108..112].try_into().unwrap()) as usize;
    let datatype = i16::from_le_bytes(bytes[70..72].try_into().unwrap());
    let data = &bytes[vox_offset..];
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    // NaN count (float32 images only), a readable hint when a checksum differs.
    let nans = if datatype == 16 {
        data.chunks_exact(4)
            .filter(|c| f32::from_le_bytes((*c).try_into().unwrap()).is_nan())
            .count()
    } else {
        0
    };
    (format!("{h:016x}"), data.len(), nans)
}

/// Every `.nii` below `dir`, by path relative to it.
fn images(dir: &Path) -> BTreeMap<String, (String, usize, usize)> {
    common::files_below(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "nii"))
        .map(|p| {
            let name = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (name, data_checksum(&p))
        })
        .collect()
}

fn run_ok(args: &[&str]) {
    let out = paramap().args(args).output().expect("paramap runs");
    assert!(
        out.status.success(),
        "paramap {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The runs whose maps are fixed: (case name, its output folder).
fn produce(tmp: &Path) -> Vec<(String, PathBuf)> {
    let mut cases = vec![];
    let dwi = tmp.join("dwi");
    run_ok(&[
        "synth",
        "dwi",
        "-o",
        s(&dwi),
        "--size",
        "64x64x12",
        "--snr",
        "50",
    ]);
    let dwi_nii = dwi.join("nifti/dwi.nii.gz");
    for method in ["ols", "wls", "trace-wls", "trace-ols", "two-point"] {
        let out = tmp.join(format!("adc_{method}"));
        run_ok(&[
            "adc",
            s(&dwi_nii),
            "-o",
            s(&out),
            "--backend",
            "cpu",
            "--uncompressed",
            "--method",
            method,
            "-q",
        ]);
        cases.push((format!("dwi phantom, adc --method {method}"), out));
    }
    let philips = common::philips_subset().join("DICOM");
    let out = tmp.join("adc_philips");
    run_ok(&[
        "adc",
        s(&philips),
        "-o",
        s(&out),
        "--backend",
        "cpu",
        "--uncompressed",
        "-q",
    ]);
    cases.push(("philips subset, adc".into(), out));
    let dsc = tmp.join("dsc");
    run_ok(&[
        "synth",
        "dsc",
        "-o",
        s(&dsc),
        "--size",
        "64x64x6",
        "--snr",
        "50",
    ]);
    let out = tmp.join("dsc_out");
    run_ok(&[
        "dsc",
        s(&dsc.join("nifti/dsc.nii.gz")),
        "-o",
        s(&out),
        "--backend",
        "cpu",
        "--uncompressed",
        "-q",
    ]);
    cases.push(("dsc phantom, dsc (defaults)".into(), out));
    cases
}

#[test]
fn every_map_is_bit_for_bit_what_it_was_before_the_speed_work() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = produce(tmp.path());
    let mut now: BTreeMap<String, BTreeMap<String, (String, usize, usize)>> = BTreeMap::new();
    for (name, out) in &cases {
        now.insert(name.clone(), images(out));
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    if std::env::var_os("PARAMAP_BLESS").is_some() {
        let json = serde_json::to_string_pretty(&now).unwrap();
        std::fs::write(&fixture, json + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&fixture).expect("tests/data/maps_unchanged.json");
    let expected: BTreeMap<String, BTreeMap<String, (String, usize, usize)>> =
        serde_json::from_str(&text).unwrap();
    let mut differ = vec![];
    for (case, maps) in &expected {
        let got = now
            .get(case)
            .unwrap_or_else(|| panic!("case {case} not run"));
        assert!(!maps.is_empty(), "{case}: the fixture lists no image");
        for (file, want) in maps {
            match got.get(file) {
                None => differ.push(format!("{case}: {file} was not written")),
                Some(g) if g != want => differ.push(format!(
                    "{case}: {file}: checksum {} ({} bytes, {} NaN) against {} ({} bytes, {} NaN) before",
                    g.0, g.1, g.2, want.0, want.1, want.2
                )),
                Some(_) => {}
            }
        }
    }
    assert!(differ.is_empty(), "maps changed:\n{}", differ.join("\n"));
}
