//! `paramap compare` on raw study folders (issue #17): two DICOM phantom studies (two visits,
//! each its own study and Frame of Reference, on different DSC grids) are processed first as
//! `paramap run` would, then compared. Checked: the visit dates and their order, the report
//! (visits side by side, change maps, PRM legend, ROI plot over time with the ±20% band,
//! registration quality), and the change maps and PRMs as DICOM derived series in the later
//! study (dciodvfy, dcm2pnm, Orthanc by `--send`), referencing both visits' source series.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use paramap::io::dicom::write::StudyIds;
use paramap::volume::Geometry;

/// An axial grid turned by `deg` about z (common::grid's other angles 0).
fn grid(dims: [usize; 3], size: [f64; 3], deg: f64, centre: [f64; 3]) -> Geometry {
    common::grid(dims, size, [0.0, 0.0, deg.to_radians()], centre)
}

const R: f64 = 16.0;
/// Lesion A: rCBV 1.2 at visit 1 (DSC region 3), 3.0 at visit 2 (region 4).
const A: [f64; 2] = [-42.0, -22.0];
/// Lesion B: rCBV 3.0 at both visits.
const B: [f64; 2] = [42.0, -22.0];

fn in_cyl(p: [f64; 3], c: [f64; 2], r: f64) -> bool {
    (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) <= r * r
}

/// Brain: an ellipsoid (so that it varies along z, and registers in z).
fn brain(p: [f64; 3]) -> bool {
    (p[0] / 85.0).powi(2) + (p[1] / 75.0).powi(2) + (p[2] / 30.0).powi(2) <= 1.0
}

fn layout(p: [f64; 3], a_region: u8) -> u8 {
    if !brain(p) {
        0
    } else if in_cyl(p, [0.0, 0.0], 5.0) {
        6
    } else if in_cyl(p, A, R) {
        a_region
    } else if in_cyl(p, B, R) {
        4
    } else if in_cyl(p, [0.0, -52.0], 12.0) {
        2
    } else {
        1
    }
}

fn layout_v1(p: [f64; 3]) -> u8 {
    layout(p, 3)
}

fn layout_v2(p: [f64; 3]) -> u8 {
    layout(p, 4)
}

fn dwi_layout(p: [f64; 3]) -> u8 {
    if !brain(p) {
        0
    } else if in_cyl(p, A, R) {
        4
    } else {
        1
    }
}

/// Sets StudyDate/StudyTime in every file below `dir`.
fn date_study(dir: &Path, date: &str, time: &str) {
    for f in common::files_below(dir) {
        let Ok(mut obj) = dicom_object::open_file(&f) else {
            continue; // the phantom's record (phantom.json)
        };
        obj.put(dicom_core::DataElement::new(
            tags::STUDY_DATE,
            dicom_core::VR::DA,
            dicom_core::PrimitiveValue::from(date),
        ));
        obj.put(dicom_core::DataElement::new(
            tags::STUDY_TIME,
            dicom_core::VR::TM,
            dicom_core::PrimitiveValue::from(time),
        ));
        obj.write_to_file(&f).unwrap();
    }
}

/// One visit's study: DSC on `g` and DWI, one study and Frame of Reference; returns its ids.
fn study(dir: &Path, g: Geometry, layout: fn([f64; 3]) -> u8, date: &str) -> StudyIds {
    let dwi_grid = grid([44, 44, 10], [4.4, 4.4, 6.0], 0.0, [0.0; 3]);
    let ids = common::write_study(dir, (g, layout), (dwi_grid, dwi_layout));
    date_study(dir, date, "093000");
    ids
}

fn roi(path: &Path, g: &Geometry) -> PathBuf {
    let [nx, ny, nz] = g.dims;
    let m = ndarray::Array3::from_shape_fn((nz, ny, nx), |(k, j, i)| {
        let p = g.index_to_lps([i as f64, j as f64, k as f64]);
        in_cyl(p, A, R - 3.0) && brain(p)
    });
    paramap::io::nifti::write_mask(path, &m, g, "lesion A").unwrap();
    path.to_path_buf()
}

fn text(obj: &dicom_object::InMemDicomObject, t: Tag) -> String {
    obj.element(t)
        .map(|e| {
            e.to_str()
                .unwrap()
                .trim_end_matches(['\0', ' '])
                .to_string()
        })
        .unwrap_or_default()
}

#[test]
fn compare_processes_two_study_folders_orders_them_by_date_and_writes_change_maps_as_dicom_in_the_later_study(
) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let g1 = grid([64, 64, 12], [3.0, 3.0, 5.0], 0.0, [0.0; 3]);
    // Visit 2: another session, so another Frame of Reference and a grid turned and shifted.
    let g2 = grid([64, 64, 12], [3.0, 3.0, 5.0], 6.0, [4.0, -3.0, 2.0]);
    let ids1 = study(&root.join("early"), g1.clone(), layout_v1, "20260105");
    let ids2 = study(&root.join("late"), g2.clone(), layout_v2, "20260202");
    let r1 = roi(&root.join("roi_early.nii.gz"), &g1);
    let r2 = roi(&root.join("roi_late.nii.gz"), &g2);
    let orthanc = common::orthanc::Orthanc::start(&[]);
    let out = root.join("change");
    // Given in the wrong order: the later study first.
    let output = common::paramap()
        .arg("compare")
        .arg(root.join("late"))
        .arg(root.join("early"))
        .arg("-o")
        .arg(&out)
        .args(["--backend", "cpu", "--roi"])
        .arg(&r2)
        .arg("--roi")
        .arg(&r1)
        .args(["--send", &orthanc.destination(), "--attempts", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("not given in date order"), "{stderr}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();

    // Both study folders were processed into OUT/visits/<position>/.
    for n in ["1", "2"] {
        assert!(
            out.join("visits").join(n).join("run.json").is_file(),
            "visits/{n}"
        );
    }
    // Visit 1 is the earlier study (given second), with its date.
    let v = &record["visits"];
    assert_eq!(v[0]["study_date"], "20260105", "{v}");
    assert_eq!(v[0]["given_position"], 2);
    assert_eq!(v[1]["study_date"], "20260202");
    assert_eq!(v[0]["study_uid"], ids1.study_uid.as_str());
    assert_eq!(v[1]["study_uid"], ids2.study_uid.as_str());
    assert!(record["notices"][0]
        .as_str()
        .unwrap()
        .contains("not given in date order"));
    // The ROI rule: lesion A's rCBV rose from 1.2 to 3.0 (+150%).
    let rule = &record["roi_rules"][0];
    assert_eq!(rule["worsening"], true, "{rule}");
    let rc = rule["rcbv_change_pct"].as_f64().unwrap();
    assert!((rc - 150.0).abs() < 25.0, "{rc}");
    // The DSC of visit 2 was registered (another Frame of Reference), with its quality.
    let p = &v[1]["placements"][0];
    assert_eq!(p["how"], "registered", "{p}");
    assert!(p["registered"]["quality"]["dice"].as_f64().unwrap() > 0.9);

    // The report: dates, visits side by side, change maps and PRMs with a legend, the
    // registration table, the ROI table and the plot over time with its ±20% band.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for want in [
        "2026-01-05 09:30",
        "2026-02-02 09:30",
        "not given in date order",
        "visit 1 (2026-01-05 09:30): ",
    ] {
        assert!(html.contains(want), "report lacks {want}");
    }
    assert!(html.contains("visit 2 (2026-02-02 09:30): "));
    assert!(html.contains("visit 2 − visit 1: ") && html.contains(" change (%)"));
    assert!(
        html.contains("PRM (±20%)") && html.contains("increased") && html.contains("decreased")
    );
    assert!(html.contains("Mattes MI") && html.contains("Dice of brain masks"));
    assert!(html.contains("<svg") && html.contains("class=\"band\"") && !html.contains("<script"));
    assert_eq!(html.matches("<polyline").count(), 3, "rCBV, CBF, ADC lines");
    assert!(html.contains("not a diagnosis"));

    // DICOM: change maps and PRMs of visit 2 in visit 2's study, on its DSC grid.
    let dsc2: Vec<PathBuf> = common::files_below(&root.join("late/dsc/dicom"))
        .into_iter()
        .filter(|f| dicom_object::open_file(f).is_ok())
        .collect();
    let src = dicom_object::open_file(&dsc2[0]).unwrap();
    let src_series = text(&src, tags::SERIES_INSTANCE_UID);
    let positions: Vec<Vec<f64>> = dsc2
        .iter()
        .map(|f| {
            let o = dicom_object::open_file(f).unwrap();
            text(&o, tags::IMAGE_POSITION_PATIENT)
                .split('\\')
                .map(|x| x.trim().parse().unwrap())
                .collect()
        })
        .collect();
    let dicom = out.join("dicom");
    for series in [
        "v2_delta_rcbv_pct",
        "v2_prm_rcbv",
        "v2_delta_adc_pct",
        "v2_prm_adc",
    ] {
        let files = common::files_below(&dicom.join(series));
        assert_eq!(
            files.len(),
            g2.dims[2],
            "{series}: one classic file per slice"
        );
        for f in &files {
            let v = Command::new("dciodvfy")
                .arg(f)
                .output()
                .expect("dciodvfy (Debian: apt-get install -y dicom3tools)");
            let report = String::from_utf8_lossy(&v.stderr).to_string()
                + &String::from_utf8_lossy(&v.stdout);
            let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("Error")).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", f.display());
        }
        let obj = dicom_object::open_file(&files[0]).unwrap();
        assert_eq!(text(&obj, tags::STUDY_INSTANCE_UID), ids2.study_uid);
        assert_eq!(
            text(&obj, tags::FRAME_OF_REFERENCE_UID),
            ids2.frame_of_reference_uid
        );
        let ipp: Vec<f64> = text(&obj, tags::IMAGE_POSITION_PATIENT)
            .split('\\')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        assert!(
            positions
                .iter()
                .any(|p| (0..3).all(|k| (p[k] - ipp[k]).abs() < 1e-3)),
            "{series}: {ipp:?} is a slice position of visit 2's DSC"
        );
        // References: visit 2's series in this study, visit 1's under its own study.
        let here = obj.element(tags::REFERENCED_SERIES_SEQUENCE).unwrap();
        let here = &here.items().unwrap()[0];
        if series.contains("rcbv") {
            assert_eq!(text(here, tags::SERIES_INSTANCE_UID), src_series);
        }
        let other = obj
            .element(tags::STUDIES_CONTAINING_OTHER_REFERENCED_INSTANCES_SEQUENCE)
            .unwrap();
        let other = &other.items().unwrap()[0];
        assert_eq!(text(other, tags::STUDY_INSTANCE_UID), ids1.study_uid);
        let n_sources = obj
            .element(tags::SOURCE_IMAGE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .len();
        let n_here = here
            .element(tags::REFERENCED_INSTANCE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .len();
        assert!(n_sources > n_here, "{series}: the sources of both visits");
    }
    // dcm2pnm renders a PRM slice through the lesion with distinct classes.
    let prm = common::files_below(&dicom.join("v2_prm_rcbv"));
    let png = root.join("prm.png");
    let r = Command::new("dcm2pnm")
        .args(["+on", "+Wi", "1"])
        .arg(&prm[prm.len() / 2])
        .arg(&png)
        .output()
        .expect("dcmtk's dcm2pnm (Debian: apt-get install -y dcmtk)");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let img = common::chromium::decode(&std::fs::read(&png).unwrap());
    let levels: std::collections::BTreeSet<u8> = img.rgb.iter().copied().collect();
    assert!(levels.len() >= 3, "{levels:?}");
    // All of them (rCBV, CBF and ADC changes and PRMs) in PACS, under visit 2's study.
    let n_files = common::files_below(&dicom).len();
    assert_eq!(n_files, 6 * g2.dims[2]);
    let in_pacs: usize = orthanc
        .series_of_study(&ids2.study_uid)
        .iter()
        .map(|(_, i)| i.len())
        .sum();
    assert_eq!(in_pacs, n_files, "{}", orthanc.log());
    assert_eq!(
        record["deliveries"][0]["sent"].as_array().unwrap().len(),
        n_files
    );
}
