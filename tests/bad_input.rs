//! `paramap adc` on bad input: every case fails with a non-zero exit status, says on stderr
//! what is wrong (naming the file, series or folder at fault), and leaves no output behind:
//! the output folder is absent or empty and no `.paramap-partial-*` staging folder remains.
//! A positive control shows that the intact phantom, through the same command line, succeeds.

mod common;

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use paramap::io::dicom::write::Flavour;
use paramap::pipeline::synth::{write_dwi_phantom, SynthDwiOptions};
use paramap::synth::dwi::DwiPhantomSpec;

/// (0018,9117) MR Diffusion Sequence: where the Standard flavour stores the b-values.
const MR_DIFFUSION_SEQUENCE: Tag = Tag(0x0018, 0x9117);

/// Slices of the default phantom (48×48×6, 7 volumes).
const NZ: usize = 6;
const NVOL: usize = 7;

/// Writes the classic (one file per image), unshuffled Standard-flavour phantom into `dir`:
/// `dir/dicom/IM_{v·6 + z + 1:05}.dcm` and `dir/nifti/dwi.nii.gz` with its side files.
fn phantom(spec: &DwiPhantomSpec, dir: &Path) -> PathBuf {
    write_dwi_phantom(
        spec,
        &SynthDwiOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            shuffle: false,
            mosaic: false,
        },
        dir,
    )
    .expect("the phantom is written");
    dir.to_path_buf()
}

/// The DICOM file of volume `v`, slice `z` of an unshuffled phantom.
fn image(dicom: &Path, v: usize, z: usize) -> PathBuf {
    dicom.join(format!("IM_{:05}.dcm", v * NZ + z + 1))
}

fn series_uid(file: &Path) -> String {
    let obj = dicom_object::open_file(file).expect("a phantom file opens");
    let uid = obj
        .element(tags::SERIES_INSTANCE_UID)
        .expect("the phantom has a SeriesInstanceUID")
        .to_str()
        .expect("the UID is text")
        .trim_end_matches(['\0', ' '])
        .to_string();
    uid
}

/// Runs `paramap adc INPUT -o OUT --backend cpu`.
fn adc(input: &Path, out: &Path) -> std::process::Output {
    common::run("adc", input, out, &[])
}

/// [`common::fails_cleanly`] for `paramap adc` without further options.
fn fails_cleanly(input: &Path, out: &Path, root: &Path, expected: &[&str]) -> String {
    common::fails_cleanly("adc", input, out, root, &[], expected)
}

#[test]
fn the_intact_phantom_succeeds_from_dicom_and_from_nifti_so_the_failures_below_are_the_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let ph = phantom(&DwiPhantomSpec::default(), &tmp.path().join("ph"));
    for (what, input) in [
        ("dicom", ph.join("dicom")),
        ("nifti", ph.join("nifti/dwi.nii.gz")),
    ] {
        let out = tmp.path().join(format!("out_{what}"));
        let output = adc(&input, &out);
        assert!(
            output.status.success(),
            "{what}: paramap adc failed on the intact phantom:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for name in ["adc.nii.gz", "adc.json"] {
            assert!(out.join(name).is_file(), "{what}: {name} was not written");
        }
        let staging = common::staging_folders_below(tmp.path());
        assert!(
            staging.is_empty(),
            "{what}: staging left behind: {staging:?}"
        );
    }
}

#[test]
fn an_empty_folder_fails_saying_no_dicom_images_and_that_it_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("empty");
    std::fs::create_dir(&input).unwrap();
    fails_cleanly(
        &input,
        &tmp.path().join("out"),
        tmp.path(),
        &["no DICOM image files", "the folder is empty"],
    );
}

#[test]
fn a_folder_of_text_files_fails_saying_none_of_them_is_dicom() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("notes");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("readme.txt"), "not an image\n").unwrap();
    std::fs::write(input.join("protocol.txt"), "b = 0, 500, 1000\n".repeat(20)).unwrap();
    fails_cleanly(
        &input,
        &tmp.path().join("out"),
        tmp.path(),
        &["no DICOM image files", "2 file(s), none of them DICOM"],
    );
}

#[test]
fn a_truncated_dicom_file_fails_naming_that_file_as_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&DwiPhantomSpec::default(), &tmp.path().join("ph")).join("dicom");
    let victim = image(&dicom, 1, 3);
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    fails_cleanly(
        &dicom,
        &tmp.path().join("out"),
        tmp.path(),
        &[&name, "not a readable DICOM file", "truncated"],
    );
}

#[test]
fn a_truncated_nifti_fails_naming_the_file_the_volume_and_truncation() {
    // The NIfTI reader streams slice by slice: a file cut short fails at the first slice it
    // cannot read, with the file named, not with a panic or a half-filled volume.
    let tmp = tempfile::tempdir().unwrap();
    let nifti = phantom(&DwiPhantomSpec::default(), &tmp.path().join("ph")).join("nifti");
    let gz = std::fs::read(nifti.join("dwi.nii.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    let cut = nifti.join("cut.nii");
    std::fs::write(&cut, &raw[..raw.len() * 2 / 3]).unwrap();
    for ext in ["bval", "bvec", "json"] {
        std::fs::copy(
            nifti.join(format!("dwi.{ext}")),
            nifti.join(format!("cut.{ext}")),
        )
        .unwrap();
    }
    fails_cleanly(
        &cut,
        &tmp.path().join("out"),
        tmp.path(),
        &[
            "cut.nii",
            "cannot read the voxel data at volume",
            "truncated",
        ],
    );
}

#[test]
fn a_series_without_one_middle_slice_fails_saying_a_slice_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&DwiPhantomSpec::default(), &tmp.path().join("ph")).join("dicom");
    for v in 0..NVOL {
        std::fs::remove_file(image(&dicom, v, 2)).unwrap();
    }
    fails_cleanly(
        &dicom,
        &tmp.path().join("out"),
        tmp.path(),
        &["a slice is missing", "5 slices found"],
    );
}

#[test]
fn a_series_missing_one_image_of_one_slice_fails_saying_slices_hold_different_numbers_of_images() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&DwiPhantomSpec::default(), &tmp.path().join("ph")).join("dicom");
    std::fs::remove_file(image(&dicom, 4, 2)).unwrap();
    fails_cleanly(
        &dicom,
        &tmp.path().join("out"),
        tmp.path(),
        &[
            "slices hold different numbers of images",
            "6 to 7",
            // volume 4 is b = 1000 along x: the message names the image that is missing
            "the image(s) with b=1000 s/mm² direction (1.000, 0.000, 0.000) are missing",
        ],
    );
}

#[test]
fn two_series_of_different_matrix_sizes_in_one_folder_fail_listing_both_and_suggesting_series() {
    let tmp = tempfile::tempdir().unwrap();
    let big = phantom(&DwiPhantomSpec::default(), &tmp.path().join("big")).join("dicom");
    let small_spec = DwiPhantomSpec {
        dims: [32, 32, 6],
        ..Default::default()
    };
    let small = phantom(&small_spec, &tmp.path().join("small")).join("dicom");
    let (big_uid, small_uid) = (
        series_uid(&image(&big, 0, 0)),
        series_uid(&image(&small, 0, 0)),
    );
    assert_ne!(big_uid, small_uid);
    for f in common::files_below(&small) {
        let name = format!("S_{}", f.file_name().unwrap().to_string_lossy());
        std::fs::copy(&f, big.join(name)).unwrap();
    }
    fails_cleanly(
        &big,
        &tmp.path().join("out"),
        tmp.path(),
        &["several image series", "--series", &big_uid, &small_uid],
    );
}

#[test]
fn an_image_of_another_matrix_size_under_the_same_series_uid_fails_saying_it_mixes_matrix_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let big = phantom(&DwiPhantomSpec::default(), &tmp.path().join("big")).join("dicom");
    let small_spec = DwiPhantomSpec {
        dims: [32, 32, 6],
        ..Default::default()
    };
    let small = phantom(&small_spec, &tmp.path().join("small")).join("dicom");
    let uid = series_uid(&image(&big, 0, 0));
    let mut stray = dicom_object::open_file(image(&small, 0, 0)).unwrap();
    stray.put(DataElement::new(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(uid.as_str()),
    ));
    let stray_path = big.join("IM_STRAY.dcm");
    stray.write_to_file(&stray_path).unwrap();
    assert_eq!(
        series_uid(&stray_path),
        uid,
        "the stray image joined the series"
    );
    fails_cleanly(
        &big,
        &tmp.path().join("out"),
        tmp.path(),
        &["mixes matrix sizes", "32×32", "48×48", &uid],
    );
}

#[test]
fn a_dwi_series_without_diffusion_tags_fails_saying_no_b_values_were_found_and_how_to_give_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&DwiPhantomSpec::default(), &tmp.path().join("ph")).join("dicom");
    let files = common::files_below(&dicom);
    assert_eq!(files.len(), NZ * NVOL);
    for f in &files {
        let mut obj = dicom_object::open_file(f).unwrap();
        assert!(
            obj.remove_element(MR_DIFFUSION_SEQUENCE),
            "{} had an MR Diffusion Sequence",
            f.display()
        );
        obj.write_to_file(f).unwrap();
    }
    let uid = series_uid(&files[0]);
    fails_cleanly(
        &dicom,
        &tmp.path().join("out"),
        tmp.path(),
        &["no diffusion b-values found", "--bval", &uid],
    );
}

#[test]
fn a_nifti_whose_bval_lacks_a_value_fails_naming_the_bval_file_and_both_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let nifti = phantom(&DwiPhantomSpec::default(), &tmp.path().join("ph")).join("nifti");
    let bval = nifti.join("dwi.bval");
    let values: Vec<String> = std::fs::read_to_string(&bval)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(values.len(), NVOL);
    std::fs::write(&bval, format!("{}\n", values[..NVOL - 1].join(" "))).unwrap();
    fails_cleanly(
        &nifti.join("dwi.nii.gz"),
        &tmp.path().join("out"),
        tmp.path(),
        &["dwi.bval", "has 6 b-values but", "has 7 volumes"],
    );
}

#[test]
fn an_output_folder_below_a_regular_file_fails_saying_it_cannot_write_output_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&DwiPhantomSpec::default(), &tmp.path().join("ph")).join("dicom");
    let area = tempfile::tempdir().unwrap();
    let afile = area.path().join("afile");
    std::fs::write(&afile, "precious\n").unwrap();
    let out = afile.join("out");
    fails_cleanly(&dicom, &out, tmp.path(), &["cannot write output", "afile"]);
    assert_eq!(std::fs::read_to_string(&afile).unwrap(), "precious\n");
    let entries: Vec<PathBuf> = walkdir::WalkDir::new(area.path())
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .collect();
    assert_eq!(
        entries,
        vec![afile],
        "nothing but the file in the way exists"
    );
}

#[test]
fn a_series_whose_orientation_is_not_two_unit_vectors_fails_naming_the_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&DwiPhantomSpec::default(), &tmp.path().join("ph")).join("dicom");
    for f in common::files_below(&dicom) {
        let mut obj = dicom_object::open_file(&f).unwrap();
        obj.put(DataElement::new(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            PrimitiveValue::from("0\\0\\0\\0\\0\\0"),
        ));
        obj.write_to_file(&f).unwrap();
    }
    fails_cleanly(
        &dicom,
        &tmp.path().join("out"),
        tmp.path(),
        &[
            "(0020,0037)",
            "ImageOrientationPatient",
            "not orthogonal unit vectors",
        ],
    );
}
