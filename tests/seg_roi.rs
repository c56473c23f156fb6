//! DICOM Segmentations as ROIs (issue 16): SEGs written by an independent tool, highdicom
//! (tests/data/seg/make_seg.py; the vendored fixture always, a SEG drawn on a phantom series
//! where the Python tools are present), read by `--roi` as one ROI per segment, named by its
//! Segment Label, and measured exactly as the same mask written as NIfTI by nibabel.

mod common;

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use ndarray::Array3;
use paramap::io::dicom::seg;
use paramap::report::{place_roi, read_rois, roi_stat, DrawnRoi};
use paramap::volume::resample::GridRef;
use paramap::volume::Geometry;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/seg")
        .join(name)
}

/// An axial grid of 1.3 mm voxels around the fixture's stack, unrelated to its oblique grid.
fn target() -> Geometry {
    let mut a = [[0.0; 4]; 4];
    for (r, row) in a.iter_mut().enumerate().take(3) {
        row[r] = 1.3;
    }
    a[0][3] = -14.0;
    a[1][3] = -16.0;
    a[2][3] = -12.0;
    a[3][3] = 1.0;
    Geometry {
        dims: [24, 30, 28],
        affine_lps: a,
    }
}

/// A map whose every voxel differs (a linear field plus a ripple), so that equal statistics
/// mean equal voxel sets, not just equal counts.
fn field(g: &Geometry) -> Array3<f32> {
    let [nx, ny, nz] = g.dims;
    Array3::from_shape_fn((nz, ny, nx), |(k, j, i)| {
        let p = g.index_to_lps([i as f64, j as f64, k as f64]);
        (1.0 + 0.01 * p[0] - 0.02 * p[1] + 0.03 * p[2] + 0.001 * (i * 7 + j * 3 + k) as f64) as f32
    })
}

fn nifti_roi(name: &str) -> DrawnRoi {
    let mut r = read_rois(&fixture(name)).unwrap();
    assert_eq!(r.len(), 1);
    r.remove(0)
}

#[test]
fn highdicom_segs_read_as_one_roi_per_segment_equal_to_the_nifti_masks() {
    let a = nifti_roi("lesion_a.nii.gz");
    let b = nifti_roi("lesion_b.nii.gz");
    // make_seg.py printed 29 and 18 voxels.
    assert_eq!(a.mask.iter().filter(|&&x| x).count(), 29);
    assert_eq!(b.mask.iter().filter(|&&x| x).count(), 18);
    let t = target();
    let map = field(&t);
    for file in ["seg_binary.dcm", "seg_fractional.dcm"] {
        let rois = read_rois(&fixture(file)).unwrap();
        let labels: Vec<&str> = rois.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["Lesion A", "Lesion B"], "{file}");
        assert!(
            rois[0].name.ends_with(&format!("{file} [Lesion A]")),
            "{}",
            rois[0].name
        );
        assert!(rois[0].frame_of_reference_uid.is_some());
        // highdicom left the empty first slice out: the SEG's stack is one slice shorter than
        // the source's, and still in the same place in the world.
        assert_eq!(rois[0].geometry.dims, [12, 10, 4], "{file}");
        for (s, n) in rois.iter().zip([&a, &b]) {
            // On the NIfTI's own grid (the source stack): voxel for voxel the same mask.
            let on_source = place_roi(s, GridRef::new(&n.geometry, None, "source")).unwrap();
            assert_eq!(on_source.mask, n.mask, "{file} {}", s.label);
            // On an unrelated axial grid: the same voxels, so the same statistics.
            let grid = GridRef::new(&t, None, "target");
            let (from_seg, from_nifti) = (place_roi(s, grid).unwrap(), place_roi(n, grid).unwrap());
            assert!(from_seg.resampled && from_seg.mask.iter().any(|&x| x));
            assert_eq!(from_seg.mask, from_nifti.mask, "{file} {}", s.label);
            let (x, y) = (
                roi_stat(map.view(), from_seg.mask.view(), "m", "u").unwrap(),
                roi_stat(map.view(), from_nifti.mask.view(), "m", "u").unwrap(),
            );
            assert_eq!(x, y, "{file} {}", s.label);
            // NIfTI stores its affine in f32.
            let rel = (from_seg.drawn_ml / from_nifti.drawn_ml - 1.0).abs();
            assert!(rel < 1e-5, "{} {}", from_seg.drawn_ml, from_nifti.drawn_ml);
        }
    }
}

/// The fixture with one element replaced (or removed), written to `dir`.
fn altered(dir: &Path, edit: impl FnOnce(&mut dicom_object::DefaultDicomObject)) -> PathBuf {
    let mut obj = dicom_object::open_file(fixture("seg_binary.dcm")).unwrap();
    edit(&mut obj);
    let path = dir.join("altered.dcm");
    obj.write_to_file(&path).unwrap();
    path
}

#[test]
fn a_damaged_or_foreign_seg_is_refused_naming_the_file_and_the_element() {
    let tmp = tempfile::tempdir().unwrap();
    let expect = |path: &Path, words: &[&str]| {
        let e = read_rois(path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        for w in words {
            assert!(e.contains(w), "{w:?} not in {e}");
        }
    };
    // More frames declared than pixel bytes present: refused before anything is allocated.
    let p = altered(tmp.path(), |o| {
        o.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from("4000000"),
        ));
    });
    expect(&p, &["Number of Frames 4000000", "Pixel Data (7FE0,0010)"]);
    let p = altered(tmp.path(), |o| {
        o.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(60000u16),
        ));
    });
    expect(&p, &["Pixel Data (7FE0,0010)", "damaged"]);
    let p = altered(tmp.path(), |o| {
        o.put(DataElement::new(
            tags::SEGMENTATION_TYPE,
            VR::CS,
            PrimitiveValue::from("LABELMAP"),
        ));
    });
    expect(&p, &["Segmentation Type (0062,0001)", "LABELMAP"]);
    let p = altered(tmp.path(), |o| {
        o.remove_element(tags::SEGMENT_SEQUENCE);
    });
    expect(&p, &["Segment Sequence (0062,0002)"]);
    let p = altered(tmp.path(), |o| {
        o.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.4"),
        ));
    });
    expect(
        &p,
        &["SOP Class UID (0008,0016)", seg::SEGMENTATION_STORAGE],
    );
    // Placed on a series of another Frame of Reference: refused with both UIDs.
    let rois = read_rois(&fixture("seg_binary.dcm")).unwrap();
    let uid = rois[0].frame_of_reference_uid.clone().unwrap();
    let t = target();
    let e = place_roi(&rois[0], GridRef::new(&t, Some("1.2.3.4"), "series 7"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&uid) && e.contains("1.2.3.4"), "{e}");
    // compare (one ROI per visit) refuses a SEG of two segments, naming them.
    let e =
        paramap::report::load_roi_on_grid(&fixture("seg_binary.dcm"), GridRef::new(&t, None, "t"))
            .unwrap_err()
            .to_string();
    assert!(e.contains("Lesion A, Lesion B"), "{e}");
}

/// The Python of the CI's virtual environment with highdicom, or None (loudly; a failure
/// under CI).
fn python_with_highdicom() -> Option<PathBuf> {
    let python = std::env::var_os("PARAMAP_PY_TOOLS")
        .map(|d| PathBuf::from(d).join("python"))
        .filter(|p| {
            std::process::Command::new(p)
                .args(["-c", "import highdicom, nibabel"])
                .status()
                .is_ok_and(|s| s.success())
        });
    if python.is_none() {
        let msg = "highdicom not found: set PARAMAP_PY_TOOLS to the bin/ of a virtual environment with `pip install highdicom nibabel` (.ci/run does)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("\n*** SKIPPED: {msg} ***\n").as_bytes(),
        );
    }
    python
}

/// A SEG drawn by highdicom on the DWI phantom's own DICOM images gives, through `paramap run`,
/// the same ADC statistics as the same sphere written as NIfTI by nibabel.
#[test]
fn a_seg_drawn_by_highdicom_on_a_series_gives_run_the_statistics_of_the_nifti_roi() {
    let Some(python) = python_with_highdicom() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let phantom = tmp.path().join("phantom");
    common::dwi_phantom(&phantom, &Default::default());
    let (_, g, _) = paramap::io::nifti::read(&phantom.join("nifti/dwi.nii.gz")).unwrap();
    let centre = g.index_to_lps(g.dims.map(|n| (n as f64 - 1.0) / 2.0 + 3.0));
    // One image per slice position: highdicom references the b = 0 images.
    let (seg, nii) = (
        tmp.path().join("lesion_seg.dcm"),
        tmp.path().join("lesion.nii.gz"),
    );
    let out = std::process::Command::new(&python)
        .arg(fixture("make_seg.py"))
        .arg("series")
        .arg(phantom.join("dicom"))
        .args([&seg, &nii])
        .args(centre.map(|c| c.to_string()))
        .arg("14")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_out = tmp.path().join("out");
    let args = [
        "--roi",
        seg.to_str().unwrap(),
        "--roi",
        nii.to_str().unwrap(),
    ];
    let o = common::run("run", &phantom.join("dicom"), &run_out, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(run_out.join("run.json")).unwrap()).unwrap();
    let rois = record["key_numbers"][0]["rois"].as_array().unwrap();
    assert_eq!(rois.len(), 2, "{rois:?}");
    assert!(rois[0]["roi"]
        .as_str()
        .unwrap()
        .ends_with("lesion_seg.dcm [Lesion]"));
    let (a, b) = (&rois[0]["adc"], &rois[1]["adc"]);
    assert!(a["n"].as_u64().unwrap() > 50, "{a}");
    for k in ["n", "excluded", "mean", "median", "sd", "p10", "p90"] {
        assert_eq!(a[k], b[k], "{k}: SEG {a} NIfTI {b}");
    }
    assert!(record["unmatched_rois"].as_array().unwrap().is_empty());
}
