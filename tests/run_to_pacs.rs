//! `paramap run` end to end into a real Orthanc: the maps of a study's DSC and DWI series go
//! out as derived series under the source study, by C-STORE and by STOW-RS, in both encodings;
//! the floats Orthanc gives back are the NIfTI maps; a destination that is down leaves every
//! file on disk and the run says so with its own exit status.

mod common;

use std::path::Path;

use common::orthanc::{free_port, Orthanc};
use dicom_dictionary_std::tags;
use paramap::io::dicom::write::{write_series, DicomWriteOptions, Flavour, StudyIds};
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec};
use paramap::synth::dwi::{dwi_phantom, DwiPhantomSpec};

const FLOAT_PIXEL_DATA: dicom_core::Tag = dicom_core::Tag(0x7FE0, 0x0008);

/// A DWI (#1) and a DSC (#2) phantom series of one patient in one study; returns its UID.
fn study(root: &Path) -> String {
    let ids = StudyIds::new();
    for (series, dir, description, number) in [
        (
            dwi_phantom(&DwiPhantomSpec::default()).series,
            "dwi",
            "ep2d_diff",
            1,
        ),
        (
            dsc_phantom(&DscPhantomSpec::default()).series,
            "dsc",
            "ep2d_perf",
            2,
        ),
    ] {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_series(
            &series,
            &dir,
            &DicomWriteOptions {
                flavour: Flavour::Standard,
                enhanced: false,
                series_description: description.into(),
                series_number: number,
                patient_id: "PACS-TEST".into(),
                mosaic: false,
                shuffle_instances: false,
                seed: 1,
                study: Some(ids.clone()),
            },
        )
        .unwrap();
    }
    ids.study_uid
}

fn run(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    common::paramap()
        .args(["run", "--backend", "cpu", "--attempts", "1"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn text(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// The derived series Orthanc holds under `study_uid`, by Series Description.
fn derived_series(orthanc: &Orthanc, study_uid: &str) -> Vec<(String, Vec<String>)> {
    orthanc
        .series_of_study(study_uid)
        .into_iter()
        .map(|(_, instances)| {
            let first = dicom_object::from_reader(std::io::Cursor::new(
                orthanc.instance_file(&instances[0])[128..].to_vec(),
            ))
            .unwrap();
            (text(&first, tags::SERIES_DESCRIPTION), instances)
        })
        .collect()
}

#[test]
fn run_sends_parametric_maps_by_cstore_under_the_source_study_with_the_nifti_values() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("study"), tmp.path().join("out"));
    let study_uid = study(&input);
    let orthanc = Orthanc::start(&[]);
    // Parametric Map on request (classic is the default).
    let output = run(
        &input,
        &out,
        &[
            "--dicom",
            "parametric-map",
            "--send",
            &orthanc.destination(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{}", orthanc.log());

    let found = derived_series(&orthanc, &study_uid);
    let names: Vec<&str> = found.iter().map(|(d, _)| d.as_str()).collect();
    // Only the maps went (not the source images), each a one-instance Parametric Map series.
    for expected in [
        "paramap ADC",
        "paramap rCBV (leakage corrected)",
        "paramap CBF",
        "paramap MTT",
        "paramap Tmax",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    assert!(found.iter().all(|(_, i)| i.len() == 1), "{found:?}");

    // rCBV as Orthanc gives it back equals the NIfTI map voxel for voxel (DICOM rows run
    // top-down, the NIfTI's bottom-up).
    let (_, instances) = found
        .iter()
        .find(|(d, _)| d == "paramap rCBV (leakage corrected)")
        .unwrap();
    let back = dicom_object::from_reader(std::io::Cursor::new(
        orthanc.instance_file(&instances[0])[128..].to_vec(),
    ))
    .unwrap();
    let floats: Vec<f32> = back
        .element(FLOAT_PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let (nifti, _, _) =
        paramap::io::nifti::read(&out.join("s002_dsc_ep2d_perf/rcbv.nii.gz")).unwrap();
    let (_, nz, ny, nx) = nifti.dim();
    assert_eq!(floats.len(), nz * ny * nx);
    let mut differ = 0;
    for z in 0..nz {
        for r in 0..ny {
            for x in 0..nx {
                let a = floats[(z * ny + r) * nx + x];
                let b = nifti[[0, z, ny - 1 - r, x]];
                differ += (a.to_bits() != b.to_bits()) as usize;
            }
        }
    }
    assert_eq!(
        differ, 0,
        "voxels that differ between Orthanc and the NIfTI map"
    );

    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let d = &record["deliveries"][0];
    assert_eq!(
        d["sent"].as_array().unwrap().len(),
        record["dicom_outputs"].as_array().unwrap().len()
    );
    assert!(d["failed"].as_array().unwrap().is_empty());
    // The report holds the previews.
    let html = std::fs::read_to_string(common::the_report(&out)).unwrap();
    assert!(html.matches("data:image/png;base64,").count() >= 8);
    assert!(html.contains("ep2d_perf") && html.contains("ep2d_diff"));
}

#[test]
fn run_sends_classic_integer_maps_by_stowrs_one_instance_per_slice() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("study"), tmp.path().join("out"));
    let study_uid = study(&input);
    let orthanc = Orthanc::start(&[]);
    let output = run(
        &input,
        &out,
        &["--dicom", "classic", "--stowrs", &orthanc.dicomweb()],
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        orthanc.log()
    );
    let found = derived_series(&orthanc, &study_uid);
    let slices = |d: &str| {
        found
            .iter()
            .find(|(x, _)| x == d)
            .map(|(_, i)| i.len())
            .unwrap_or_else(|| panic!("{d} not in Orthanc"))
    };
    assert_eq!(slices("paramap ADC"), DwiPhantomSpec::default().dims[2]);
    assert_eq!(
        slices("paramap rCBV (leakage corrected)"),
        DscPhantomSpec::default().dims[2]
    );
}

#[test]
fn a_destination_that_is_down_leaves_every_file_and_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("study"), tmp.path().join("out"));
    study(&input);
    let port = free_port();
    let output = run(
        &input,
        &out,
        &["--send", &format!("NOBODY@127.0.0.1:{port}")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("NOBODY"), "{stderr}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let files = record["dicom_outputs"].as_array().unwrap();
    assert!(!files.is_empty());
    assert!(files
        .iter()
        .all(|f| Path::new(f.as_str().unwrap()).is_file()));
    assert!(record["deliveries"][0]["sent"]
        .as_array()
        .unwrap()
        .is_empty());
}
