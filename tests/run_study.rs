//! `paramap run` on whole study folders: the DWI and DSC series are recognised and processed,
//! other series are skipped with the rule that excluded them, a failing series does not stop
//! the others, and nothing half-written is left.

mod common;

use std::path::Path;

use paramap::io::dicom::write::{write_series, DicomWriteOptions, Flavour};
use paramap::io::dicom::{self};
use paramap::io::nifti;
use paramap::pipeline::study::{recognise, Recognised};
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec};
use paramap::synth::dwi::{dwi_phantom, DwiPhantomSpec};
use paramap::volume::Series4;

fn write(series: &Series4, dir: &Path, description: &str, number: i64) {
    std::fs::create_dir_all(dir).unwrap();
    write_series(
        series,
        dir,
        &DicomWriteOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            series_description: description.into(),
            series_number: number,
            patient_id: "RUN-TEST".into(),
            mosaic: false,
            shuffle_instances: false,
            seed: 1,
            study: None,
        },
    )
    .unwrap();
}

/// A structural-looking series: one volume (the DWI phantom's b = 0), no diffusion encoding.
fn structural() -> Series4 {
    let mut s = dwi_phantom(&DwiPhantomSpec::default()).series;
    s.data = s.data.slice(ndarray::s![0..1, .., .., ..]).to_owned();
    s.volumes.truncate(1);
    s.volumes[0].diffusion = None;
    s
}

/// DWI phantom (#1), DSC phantom (#2), a structural series (#3) and a stray text file.
fn study(root: &Path) {
    write(
        &dwi_phantom(&DwiPhantomSpec::default()).series,
        &root.join("dwi"),
        "ep2d_diff_3scan",
        1,
    );
    write(
        &dsc_phantom(&DscPhantomSpec::default()).series,
        &root.join("dsc"),
        "ep2d_perf",
        2,
    );
    write(&structural(), &root.join("t1"), "t1_mprage_sag", 3);
    std::fs::write(root.join("README.txt"), "not DICOM").unwrap();
}

fn run_json(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap()
}

#[test]
fn run_processes_dwi_and_dsc_and_skips_the_structural_series() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("study"), tmp.path().join("out"));
    study(&input);
    let output = common::run("run", &input, &out, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("2 processed, 0 failed, 1 skipped"),
        "{stdout}"
    );
    assert!(stdout.contains("t1_mprage_sag"), "{stdout}");
    assert!(stdout.contains("one image per slice position"), "{stdout}");
    // Plain line logs when stderr is not a terminal.
    assert!(stderr.contains("] DSC #2 'ep2d_perf'"), "{stderr}");

    let record = run_json(&out);
    let series = record["series"].as_array().unwrap();
    let by_number = |n: i64| {
        series
            .iter()
            .find(|s| s["series_number"] == n)
            .unwrap_or_else(|| panic!("series {n} in run.json"))
    };
    assert_eq!(by_number(1)["kind"], "DWI");
    assert_eq!(by_number(1)["status"], "processed");
    assert_eq!(by_number(2)["kind"], "DSC");
    assert_eq!(by_number(2)["status"], "processed");
    assert_eq!(by_number(3)["status"], "skipped");
    assert!(record["not_used"]
        .as_str()
        .unwrap()
        .contains("1 non-DICOM file(s)"));

    // The maps are the phantoms' truth, not just files: ADC per region against its known value.
    let dwi_dir = out.join("s001_dwi_ep2d_diff_3scan");
    let (adc, _, _) = nifti::read(&dwi_dir.join("adc.nii.gz")).unwrap();
    let truth = dwi_phantom(&DwiPhantomSpec::default());
    let adc = adc.index_axis(ndarray::Axis(0), 0).to_owned();
    for region in paramap::synth::dwi::regions() {
        let got = common::median_in(&adc, &truth.labels, region.label);
        assert!(
            (got - region.adc()).abs() < 0.02 * region.adc(),
            "{}: ADC {got} against truth {}",
            region.name,
            region.adc()
        );
    }
    let dsc_dir = out.join("s002_dsc_ep2d_perf");
    for f in ["rcbv.nii.gz", "cbf.nii.gz", "mtt.nii.gz", "dsc.json"] {
        assert!(
            dsc_dir.join(f).is_file(),
            "{f} missing in {}",
            dsc_dir.display()
        );
    }
    // Each map a DICOM series, a preview, and the study's report.
    for m in ["rcbv", "cbf", "mtt", "tmax", "k2"] {
        assert!(
            dsc_dir.join("preview").join(format!("{m}.png")).is_file(),
            "{m}"
        );
        assert!(dsc_dir.join("dicom").join(m).is_dir(), "{m}");
    }
    assert!(dwi_dir.join("dicom/adc").is_dir());
    // Written without a shared study, the DWI and DSC phantoms are two studies: two reports,
    // each named after its study, both listed in run.json.
    let reports = common::reports_in(&out);
    assert_eq!(reports.len(), 2, "{reports:?}");
    // run.json lists them in the order the studies were met; the names sort by UID.
    let mut listed: Vec<std::path::PathBuf> = run_json(&out)["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().into())
        .collect();
    listed.sort();
    assert_eq!(listed, reports);
    assert!(common::staging_folders_below(tmp.path()).is_empty());
}

#[test]
fn run_uncompressed_writes_every_nifti_map_as_nii() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("study"), tmp.path().join("out"));
    study(&input);
    let output = common::run("run", &input, &out, &["--dicom", "none", "--uncompressed"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (dwi_dir, dsc_dir) = (
        out.join("s001_dwi_ep2d_diff_3scan"),
        out.join("s002_dsc_ep2d_perf"),
    );
    let images: Vec<_> = common::files_below(&out)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".nii"))
        .collect();
    assert!(images.len() > 25, "{images:?}");
    assert!(
        images.iter().all(|p| p.extension().unwrap() == "nii"),
        "{images:?}"
    );
    for f in ["rcbv.nii", "cbf.nii", "brain_mask.nii"] {
        assert!(dsc_dir.join(f).is_file(), "{f}");
    }
    // Still the phantom's truth.
    let (adc, _, _) = nifti::read(&dwi_dir.join("adc.nii")).unwrap();
    let adc = adc.index_axis(ndarray::Axis(0), 0).to_owned();
    let truth = dwi_phantom(&DwiPhantomSpec::default());
    for region in paramap::synth::dwi::regions() {
        let got = common::median_in(&adc, &truth.labels, region.label);
        assert!(
            (got - region.adc()).abs() < 0.02 * region.adc(),
            "{}",
            region.name
        );
    }
}

#[test]
fn a_failing_series_does_not_stop_the_others_and_leaves_nothing_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("study"), tmp.path().join("out"));
    study(&input);
    // A DSC series with no bolus in it: recognised by its timing, but it cannot be processed.
    let mut flat = dsc_phantom(&DscPhantomSpec::default()).series;
    flat.data.fill(100.0);
    write(&flat, &input.join("flat"), "ep2d_perf_no_contrast", 4);
    let output = common::run("run", &input, &out, &["--json"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "a failed series must give a non-zero exit status"
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    let failed: Vec<&serde_json::Value> = summary["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert_eq!(failed[0]["series_number"], 4);
    assert!(!failed[0]["reason"].as_str().unwrap().is_empty());
    assert_eq!(
        summary["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "processed")
            .count(),
        2
    );
    // The same record is on disk, and the failed series left no folder and no staging.
    assert_eq!(run_json(&out)["series"], summary["series"]);
    let folders: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        !folders.iter().any(|f| f.starts_with("s004")),
        "{folders:?}"
    );
    assert!(common::staging_folders_below(tmp.path()).is_empty());
}

#[test]
fn recognition_rules_tell_dsc_from_dce_fmri_and_single_b_dwi() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dsc = dsc_phantom(&DscPhantomSpec::default()).series;
    write(&dsc, &root.join("dsc"), "ep2d_perf", 1);
    let mut dce = dsc.clone();
    dce.info.echo_time_s = Some(0.0018);
    write(&dce, &root.join("dce"), "t1_vibe_dynamic", 2);
    write(&dsc, &root.join("bold"), "ep2d_bold_resting_state", 3);
    let mut short = dsc.clone();
    short.data = short.data.slice(ndarray::s![0..8, .., .., ..]).to_owned();
    short.volumes.truncate(8);
    write(&short, &root.join("short"), "ep2d_perf_short", 4);
    let mut dwi = dwi_phantom(&DwiPhantomSpec::default()).series;
    dwi.data = dwi.data.slice(ndarray::s![1..4, .., .., ..]).to_owned();
    dwi.volumes = dwi.volumes[1..4].to_vec();
    write(&dwi, &root.join("dwi_b500_only"), "ep2d_diff_b500", 5);

    let scan = dicom::scan(root).unwrap();
    let verdict = |n: i64| {
        let s = scan
            .series
            .iter()
            .find(|s| s.info.series_number == Some(n))
            .unwrap();
        recognise(s)
    };
    assert_eq!(verdict(1).kind, Some(Recognised::Dsc));
    let dce = verdict(2);
    assert_eq!(dce.kind, None);
    assert!(dce.reason.contains("T1-weighted"), "{}", dce.reason);
    let bold = verdict(3);
    assert_eq!(bold.kind, None);
    assert!(bold.reason.contains("fMRI"), "{}", bold.reason);
    let short = verdict(4);
    assert_eq!(short.kind, None);
    assert!(
        short.reason.contains("at least 20 time points"),
        "{}",
        short.reason
    );
    let single_b = verdict(5);
    assert_eq!(single_b.kind, None);
    assert!(
        single_b.reason.contains("one b-value"),
        "{}",
        single_b.reason
    );
}

#[test]
fn run_on_a_folder_without_dicom_fails_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("empty");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("notes.txt"), "hello").unwrap();
    let output = common::run("run", &input, &tmp.path().join("out"), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("none of them DICOM"), "{stderr}");
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn rois_give_statistics_and_the_methods_reading_in_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("study"), tmp.path().join("out"));
    let ids = paramap::io::dicom::write::StudyIds::new();
    let dwi = dwi_phantom(&DwiPhantomSpec::default());
    let dsc = dsc_phantom(&DscPhantomSpec::default());
    for (series, dir, description, number) in [
        (&dwi.series, "dwi", "ep2d_diff", 1),
        (&dsc.series, "dsc", "ep2d_perf", 2),
    ] {
        let dir = input.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_series(
            series,
            &dir,
            &DicomWriteOptions {
                flavour: Flavour::Standard,
                enhanced: false,
                series_description: description.into(),
                series_number: number,
                patient_id: "ROI-TEST".into(),
                mosaic: false,
                shuffle_instances: false,
                seed: 1,
                study: Some(ids.clone()),
            },
        )
        .unwrap();
    }
    // The DSC phantom's region 3 is its low-rCBV lesion (rCBV 1.2 by construction); the DWI
    // phantom's region 4 its treatment-effect lesion (ADC 1.4×10⁻³ mm²/s). The two phantoms do
    // not share their anatomy, so each ROI is read by itself, with both maps at its place
    // (tests/study_reading.rs reads one lesion seen by both series).
    let roi = |labels: &ndarray::Array3<u8>, label: u8, g: &paramap::volume::Geometry, name| {
        let path = tmp.path().join(name);
        let mask = labels.mapv(|l| (l == label) as u8 as f32);
        nifti::write_map(&path, &mask, g, "ROI").unwrap();
        path
    };
    let dsc_roi = roi(&dsc.labels, 3, &dsc.series.geometry, "dsc_roi.nii.gz");
    let dwi_roi = roi(&dwi.labels, 4, &dwi.series.geometry, "dwi_roi.nii.gz");
    // A third ROI drawn half a metre away (another session's field of view): no grid takes it,
    // and the record says why for each series.
    let mut far = dsc.series.geometry.clone();
    far.affine_lps[2][3] += 500.0;
    let far_roi = roi(&dsc.labels, 3, &far, "far_roi.nii.gz");
    let rois = [
        dsc_roi.to_str().unwrap(),
        dwi_roi.to_str().unwrap(),
        far_roi.to_str().unwrap(),
    ];
    let output = common::run(
        "run",
        &input,
        &out,
        &["--roi", rois[0], "--roi", rois[1], "--roi", rois[2]],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record = run_json(&out);
    let readings = record["readings"].as_array().unwrap();
    assert_eq!(readings.len(), 2, "one reading per ROI: {readings:?}");
    for r in readings {
        assert!(r[1].as_str().unwrap().contains("not a diagnosis"), "{r}");
    }
    let unmatched = record["unmatched_rois"].as_array().unwrap();
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert!(unmatched[0]["roi"]
        .as_str()
        .unwrap()
        .ends_with("far_roi.nii.gz"));
    let reasons = unmatched[0]["reasons"].as_array().unwrap();
    assert_eq!(
        reasons.len(),
        2,
        "one reason per processed series: {reasons:?}"
    );
    for r in reasons {
        assert!(
            r.as_str()
                .unwrap()
                .contains("lies outside its field of view"),
            "{r}"
        );
    }
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("far_roi.nii.gz lies on no processed series' grid"),
        "the run says so"
    );
    let key = &record["key_numbers"][0]["rois"];
    // Each ROI on the grid it was drawn on measures its lesion's truth.
    let rcbv = key[0]["rcbv"]["median"].as_f64().unwrap();
    assert!((rcbv - 1.2).abs() < 0.1, "DSC lesion rCBV {rcbv}");
    let adc = key[1]["adc"]["median"].as_f64().unwrap();
    assert!((adc - 1.4e-3).abs() < 0.03e-3, "DWI lesion ADC {adc}");
    let html = std::fs::read_to_string(common::the_report(&out)).unwrap();
    assert!(html.contains("Key numbers"));
    assert!(html.contains("dsc_roi.nii.gz") && html.contains("dwi_roi.nii.gz"));
    // The report's reader, who may never open run.json, is told of the ROI without numbers.
    let unmatched = &html[html
        .find("ROIs without statistics")
        .expect("the report lists the unmatched ROI")..];
    assert!(
        unmatched.contains("far_roi.nii.gz") && unmatched.contains("outside its field of view"),
        "{}",
        &unmatched[..unmatched.len().min(600)]
    );
}

#[test]
fn a_rerun_over_earlier_classic_maps_skips_them_as_derived_and_dicom_none_writes_none() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("study");
    study(&input);
    // The first run writes its classic (MR Image Storage) maps inside the study folder.
    let first = common::run(
        "run",
        &input,
        &input.join("previous"),
        &["--dicom", "classic"],
    );
    assert!(first.status.success());
    let out = tmp.path().join("out");
    let second = common::run("run", &input, &out, &["--dicom", "none"]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let record = run_json(&out);
    let series = record["series"].as_array().unwrap();
    let processed = series.iter().filter(|s| s["status"] == "processed").count();
    assert_eq!(processed, 2, "only the source DWI and DSC: {record}");
    // ADC from the DWI; rCBV, K2, TTP, CBF, CBV, MTT, Tmax from the DSC (the two series are
    // in different studies here, so there is no response map).
    let derived: Vec<&serde_json::Value> = series
        .iter()
        .filter(|s| s["reason"].as_str().unwrap().contains("a derived map"))
        .collect();
    assert_eq!(derived.len(), 8, "{record}");
    assert!(derived.iter().all(|s| s["status"] == "skipped"));
    for dir in ["s001_dwi_ep2d_diff_3scan", "s002_dsc_ep2d_perf"] {
        assert!(out.join(dir).join("preview").is_dir());
        assert!(
            !out.join(dir).join("dicom").exists(),
            "--dicom none wrote DICOM"
        );
    }
}

#[test]
fn bad_run_options_fail_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("study");
    study(&input);
    for (flags, expected) in [
        (vec!["--dicom", "jpeg"], "jpeg"),
        (vec!["--uid-root", "1.2.x"], "1.2.x"),
        (
            vec!["--stowrs", "ftp://pacs/dicom-web"],
            "ftp://pacs/dicom-web",
        ),
    ] {
        let out = tmp.path().join("out");
        let output = common::run("run", &input, &out, &flags);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!out.exists(), "{flags:?} wrote {}", out.display());
    }
}

#[test]
fn the_reading_thresholds_drive_the_rcbv_class_map_too() {
    // The DSC phantom's region 4 has rCBV 3: above 2.0 (class 3) by default, between 1.0 and
    // 5.0 (class 2) when the thresholds say so.
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("study");
    let p = dsc_phantom(&DscPhantomSpec::default());
    write(&p.series, &input.join("dsc"), "ep2d_perf", 2);
    let class_of_lesion = |out: &Path, extra: &[&str]| {
        let output = common::run("run", &input, out, extra);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (c, _, _) = nifti::read(&out.join("s002_dsc_ep2d_perf/rcbv_class.nii.gz")).unwrap();
        let c = c.index_axis(ndarray::Axis(0), 0).to_owned();
        common::median_in(&c, &p.labels, 4)
    };
    assert_eq!(class_of_lesion(&tmp.path().join("a"), &[]), 3.0);
    assert_eq!(
        class_of_lesion(
            &tmp.path().join("b"),
            &["--rcbv-low", "1.0", "--rcbv-high", "5.0"]
        ),
        2.0
    );
}
