//! Hostile and odd input (issue 14, classes 1–4): sequences nested 10,000 deep, lengths past
//! the end of the file, a huge NumberOfFrames, 0-item per-frame groups, a multi-byte
//! date-time, Rows = 0, RGB24/complex NIfTI, a NIfTI header extension larger than the file,
//! damaged RLE, a binary value that is not a whole number of values. Every case ends with exit status 1
//! and a message naming the file and the problem (or, where the input is still usable, a
//! success); never a panic, an abort or Rust debug text.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use paramap::io::dicom::write::Flavour;
use paramap::pipeline::synth::{write_dwi_phantom, SynthDwiOptions};
use paramap::synth::dwi::DwiPhantomSpec;

/// Slices of the default DWI phantom (48×48×6, 7 volumes).
const NZ: usize = 6;
const UNDEFINED: u32 = 0xFFFF_FFFF;

fn phantom(dir: &Path, enhanced: bool) -> PathBuf {
    write_dwi_phantom(
        &DwiPhantomSpec::default(),
        &SynthDwiOptions {
            flavour: Flavour::Standard,
            enhanced,
            shuffle: false,
            mosaic: false,
        },
        dir,
    )
    .expect("the phantom is written");
    dir.join("dicom")
}

/// The classic phantom's file of volume `v`, slice `z`.
fn image(dicom: &Path, v: usize, z: usize) -> PathBuf {
    dicom.join(format!("IM_{:05}.dcm", v * NZ + z + 1))
}

/// Checks what every failure must be: exit status 1 (not an abort or a signal), no panic
/// report, no Rust debug text, and every `expected` piece in stderr.
fn clean_exit_1(output: &Output, expected: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status; stderr:\n{stderr}"
    );
    no_crash_text(&stderr);
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    stderr
}

/// No panic report and no Rust debug formatting in what the user reads.
fn no_crash_text(text: &str) {
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "Custom {",
        "{ kind",
        "Some(",
        "None where",
        "Os {",
    ] {
        assert!(!text.contains(bad), "{bad:?} in the output:\n{text}");
    }
}

fn info(input: &Path) -> Output {
    common::paramap()
        .arg("info")
        .arg(input)
        .output()
        .expect("paramap runs")
}

/// Bytes of an explicit VR little endian data set: `depth` sequences (0008,1115), each
/// holding one item, around a PatientID; with defined or undefined lengths; `terminated`
/// false leaves every undefined-length item and sequence open (the file just ends).
fn nested(depth: usize, defined: bool, terminated: bool) -> Vec<u8> {
    let inner: Vec<u8> = [
        &[0x10, 0x00, 0x20, 0x00][..],
        b"LO",
        &4u16.to_le_bytes(),
        b"DEEP",
    ]
    .concat();
    let mut b = Vec::with_capacity(depth * 28 + inner.len());
    for level in 0..depth {
        // What the item at this level holds: the levels below and the PatientID.
        let content = (depth - level - 1) as u32 * 20 + inner.len() as u32;
        let (seq_len, item_len) = if defined {
            (content + 8, content)
        } else {
            (UNDEFINED, UNDEFINED)
        };
        b.extend([0x08, 0x00, 0x15, 0x11]);
        b.extend(b"SQ\0\0");
        b.extend(seq_len.to_le_bytes());
        b.extend([0xFE, 0xFF, 0x00, 0xE0]);
        b.extend(item_len.to_le_bytes());
    }
    b.extend(&inner);
    if !defined && terminated {
        for _ in 0..depth {
            b.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            b.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
    }
    b
}

/// Byte offset of the Pixel Data element (7FE0,0010) of an explicit VR LE file.
fn pixel_data_at(bytes: &[u8]) -> usize {
    bytes
        .windows(6)
        .rposition(|w| {
            w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W'] || w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'B']
        })
        .expect("the file has pixel data")
}

/// Writes `file` again with `extra` bytes inserted just before its pixel data (or, with
/// `cut_after`, replacing everything from there on).
fn insert_before_pixels(file: &Path, extra: &[u8], cut_after: bool) {
    let bytes = std::fs::read(file).unwrap();
    let at = pixel_data_at(&bytes);
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(extra);
    if !cut_after {
        out.extend_from_slice(&bytes[at..]);
    }
    std::fs::write(file, out).unwrap();
}

#[test]
fn sequences_nested_10000_deep_fail_naming_the_file_in_every_form_and_command() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = phantom(&tmp.path().join("ph"), false);
    for (what, defined, terminated) in [
        ("undefined", false, true),
        ("defined", true, true),
        ("unterminated", false, false),
    ] {
        let dicom = tmp.path().join(format!("dicom_{what}"));
        std::fs::create_dir_all(&dicom).unwrap();
        for f in common::files_below(&clean) {
            std::fs::copy(&f, dicom.join(f.file_name().unwrap())).unwrap();
        }
        let hostile = image(&dicom, 2, 3);
        insert_before_pixels(&hostile, &nested(10_000, defined, terminated), !terminated);
        let name = hostile.file_name().unwrap().to_str().unwrap();
        for cmd in ["adc", "dsc"] {
            let out = tmp.path().join(format!("out_{what}_{cmd}"));
            let output = common::run(cmd, &dicom, &out, &[]);
            clean_exit_1(&output, &[name, "nested more than 64 levels"]);
            assert!(
                common::files_below(&out).is_empty(),
                "{what} {cmd}: output left"
            );
        }
        // `info` lists the file as unreadable and describes the rest.
        let output = info(&dicom);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{what}: info failed");
        assert!(
            stdout.contains(name) && stdout.contains("nested more than 64 levels"),
            "{stdout}"
        );
        no_crash_text(&stdout);
    }
}

#[test]
fn a_presentation_state_nested_10000_deep_fails_the_folder_naming_it() {
    // Not an image at all: the pre-scan reaches it before anything decides what it is.
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&tmp.path().join("ph"), false);
    let gsps = dicom.join("PS_0001.dcm");
    let mut obj = dicom_object::open_file(image(&dicom, 0, 0)).unwrap();
    obj.update_meta(|m| m.media_storage_sop_class_uid = "1.2.840.10008.5.1.4.1.1.11.1\0".into());
    obj.remove_element(tags::PIXEL_DATA);
    obj.write_to_file(&gsps).unwrap();
    let mut bytes = std::fs::read(&gsps).unwrap();
    bytes.extend(nested(10_000, false, true));
    std::fs::write(&gsps, bytes).unwrap();
    let output = common::run("adc", &dicom, &tmp.path().join("out"), &[]);
    clean_exit_1(&output, &["PS_0001.dcm", "nested more than 64 levels"]);
}

/// An element (0009,1001) UN that declares `len` bytes, followed by a few.
fn long_element(len: u32) -> Vec<u8> {
    [
        &[0x09, 0x00, 0x01, 0x10][..],
        b"UN\0\0",
        &len.to_le_bytes(),
        &[7u8; 16],
    ]
    .concat()
}

#[test]
fn a_length_past_the_end_of_a_6_kb_file_fails_before_allocating_and_info_stays_small() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&tmp.path().join("ph"), false);
    // Every file of the folder declares a 4 GB element 16 bytes before its end.
    for f in common::files_below(&dicom) {
        insert_before_pixels(&f, &long_element(4_000_000_000), true);
        assert!(std::fs::metadata(&f).unwrap().len() < 8_000);
    }
    let output = common::run("adc", &dicom, &tmp.path().join("out"), &[]);
    clean_exit_1(
        &output,
        &[
            "IM_00001.dcm",
            "(0009,1001)",
            "declares a length of 4000000000 bytes",
            "bytes remain in the file",
        ],
    );
    // Peak memory of `paramap info` on the 42 files, measured by GNU time (kB).
    let timed = std::process::Command::new("/usr/bin/time")
        .args(["-f", "PEAK_KB=%M"])
        .arg(assert_cmd::cargo::cargo_bin("paramap"))
        .arg("info")
        .arg(&dicom)
        .output()
        .expect("this test needs GNU time (/usr/bin/time): sudo apt-get install -y time");
    {
        let stderr = String::from_utf8_lossy(&timed.stderr);
        let peak_kb: u64 = stderr
            .lines()
            .find_map(|l| l.strip_prefix("PEAK_KB="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak in {stderr}"));
        assert!(peak_kb < 100_000, "paramap info peaked at {peak_kb} kB");
        let stdout = String::from_utf8_lossy(&timed.stdout);
        assert!(
            stdout.contains("declares a length of 4000000000 bytes"),
            "{stdout}"
        );
    }
}

#[test]
fn number_of_frames_near_2_31_without_bits_allocated_fails_naming_the_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&tmp.path().join("ph"), false);
    let f = image(&dicom, 0, 0);
    let mut obj = dicom_object::open_file(&f).unwrap();
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("2147483647"),
    ));
    obj.remove_element(tags::BITS_ALLOCATED);
    obj.write_to_file(&f).unwrap();
    let output = common::run("adc", &dicom, &tmp.path().join("out"), &[]);
    clean_exit_1(
        &output,
        &[
            "IM_00001.dcm",
            "2147483647 frame(s)",
            "NumberOfFrames (0028,0008)",
        ],
    );
}

#[test]
fn an_enhanced_object_with_0_per_frame_items_fails_naming_the_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&tmp.path().join("ph"), true);
    let files = common::files_below(&dicom);
    assert_eq!(files.len(), 1, "one Enhanced MR object");
    let mut obj = dicom_object::open_file(&files[0]).unwrap();
    obj.put(DataElement::new(
        Tag(0x5200, 0x9230),
        VR::SQ,
        DataSetSequence::from(Vec::<dicom_object::InMemDicomObject>::new()),
    ));
    obj.write_to_file(&files[0]).unwrap();
    let expected = ["Per-Frame Functional Groups Sequence (5200,9230) has 0 item(s)"];
    for cmd in ["adc", "dsc"] {
        let output = common::run(cmd, &dicom, &tmp.path().join(format!("out_{cmd}")), &[]);
        clean_exit_1(&output, &expected);
    }
    let output = info(&dicom);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(expected[0]),
        "{stdout}"
    );
}

#[test]
fn a_multi_byte_character_in_a_frame_date_time_is_no_time_and_no_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&tmp.path().join("ph"), true);
    let file = common::files_below(&dicom).remove(0);
    let mut obj = dicom_object::open_file(&file).unwrap();
    let mut top = obj
        .element(Tag(0x5200, 0x9230))
        .unwrap()
        .items()
        .unwrap()
        .to_vec();
    for (k, item) in top.iter_mut().enumerate() {
        let mut content = dicom_object::InMemDicomObject::new_empty();
        content.put(DataElement::new(
            Tag(0x0018, 0x9074),
            VR::DT,
            PrimitiveValue::from(format!("20260é{k:02}1200").as_str()),
        ));
        item.put(DataElement::new(
            Tag(0x0020, 0x9111),
            VR::SQ,
            DataSetSequence::from(vec![content]),
        ));
    }
    obj.put(DataElement::new(
        Tag(0x5200, 0x9230),
        VR::SQ,
        DataSetSequence::from(top),
    ));
    obj.write_to_file(&file).unwrap();
    let out = tmp.path().join("out");
    let output = common::run("adc", &dicom, &out, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    no_crash_text(&stderr);
    assert!(out.join("adc.nii.gz").is_file());
    let output = info(&dicom);
    assert!(output.status.success());
}

#[test]
fn rows_or_columns_0_fail_naming_the_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&tmp.path().join("ph"), false);
    for (tag, name) in [
        (tags::ROWS, "Rows (0028,0010) = 0"),
        (tags::COLUMNS, "Columns (0028,0011) = 0"),
    ] {
        let f = image(&dicom, 1, 1);
        let mut obj = dicom_object::open_file(&f).unwrap();
        let before = obj.element(tag).unwrap().clone();
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(0u16)));
        obj.write_to_file(&f).unwrap();
        for cmd in ["adc", "dsc"] {
            let output = common::run(cmd, &dicom, &tmp.path().join(format!("out_{cmd}")), &[]);
            clean_exit_1(&output, &["IM_00008.dcm", name]);
        }
        obj.put(before);
        obj.write_to_file(&f).unwrap();
    }
}

/// A NIfTI-1 single file: 4×4×3×2 voxels of `datatype` (`bitpix` bits), all zero.
fn tiny_nifti(datatype: i16, bitpix: i16) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (k, d) in [4i16, 4, 4, 3, 2, 1, 1, 1].iter().enumerate() {
        h[40 + 2 * k..42 + 2 * k].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for k in 0..5 {
        h[76 + 4 * k..80 + 4 * k].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[123] = 2 | 8;
    h[344..348].copy_from_slice(b"n+1\0");
    h.extend(vec![0u8; 4 * 4 * 3 * 2 * bitpix as usize / 8]);
    h
}

/// A float32 [`tiny_nifti`] with one header extension of 16 bytes whose esize field says
/// `esize` (vox_offset 368).
fn nifti_with_extension(esize: i32) -> Vec<u8> {
    let mut b = tiny_nifti(16, 32);
    b[108..112].copy_from_slice(&368f32.to_le_bytes());
    b[348] = 1;
    let extension: Vec<u8> = [&esize.to_le_bytes()[..], &0i32.to_le_bytes(), b"comment\0"].concat();
    b.splice(352..352, extension);
    b
}

#[test]
fn a_nifti_extension_larger_than_the_file_or_negative_fails_naming_esize() {
    // Found by the NIfTI fuzz target (docs/fuzzing.md): the nifti crate reserves each
    // extension's declared size before reading it (808 MB from a 542-byte file).
    let tmp = tempfile::tempdir().unwrap();
    for (esize, expected) in [
        (
            1 << 30,
            "declares esize = 1073741824 bytes but the file ends 400 bytes into it",
        ),
        (-16, "declares esize = -16, less than the 8 bytes"),
    ] {
        let path = tmp.path().join("ext.nii");
        std::fs::write(&path, nifti_with_extension(esize)).unwrap();
        let output = common::run("adc", &path, &tmp.path().join("out"), &[]);
        clean_exit_1(
            &output,
            &["ext.nii", "header extension at byte 352", expected],
        );
    }
    // A sound extension is read past, the voxels as before.
    let path = tmp.path().join("sound.nii");
    std::fs::write(&path, nifti_with_extension(16)).unwrap();
    let (data, _, _) = paramap::io::nifti::read(&path).unwrap();
    assert_eq!(data.shape(), &[2, 3, 4, 4]);
}

#[test]
fn rgb24_and_complex_nifti_fail_naming_the_datatype_field() {
    let tmp = tempfile::tempdir().unwrap();
    for (code, bits, name) in [
        (128, 24, "RGB24"),
        (32, 64, "complex64"),
        (1792, 128, "complex128"),
    ] {
        let path = tmp.path().join(format!("{name}.nii"));
        std::fs::write(&path, tiny_nifti(code, bits)).unwrap();
        for (cmd, extra) in [("adc", &[][..]), ("dsc", &["--te", "30", "--dt", "1"][..])] {
            let output = common::run(cmd, &path, &tmp.path().join("out"), extra);
            clean_exit_1(
                &output,
                &[
                    &format!("{name}.nii"),
                    &format!("datatype = {code} ({name}"),
                ],
            );
        }
    }
}

#[test]
fn a_nifti_with_a_damaged_header_names_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tiny_nifti(16, 32);
    for (what, patch, expected) in [
        ("magic", (344usize, b"xx1\0".to_vec()), "header field magic"),
        (
            "sizeof_hdr",
            (0, 300i32.to_le_bytes().to_vec()),
            "header field sizeof_hdr = 300",
        ),
        ("nifti2", (0, 540i32.to_le_bytes().to_vec()), "NIfTI-2"),
    ] {
        let mut bytes = good.clone();
        bytes[patch.0..patch.0 + patch.1.len()].copy_from_slice(&patch.1);
        let path = tmp.path().join(format!("{what}.nii"));
        std::fs::write(&path, bytes).unwrap();
        let output = common::run("adc", &path, &tmp.path().join("out"), &[]);
        clean_exit_1(&output, &[&format!("{what}.nii"), expected]);
    }
}

/// Turns `file` into an RLE Lossless object whose one fragment is `fragment`.
fn as_rle(file: &Path, fragment: Vec<u8>) {
    let mut obj = dicom_object::open_file(file).unwrap();
    obj.update_meta(|m| m.transfer_syntax = "1.2.840.10008.1.2.5\0".into());
    let value: Value<dicom_object::InMemDicomObject> = Value::PixelSequence(
        dicom_core::value::PixelFragmentSequence::new(Vec::<u32>::new(), vec![fragment]),
    );
    obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, value));
    obj.write_to_file(file).unwrap();
}

/// An RLE header (PS3.5 Annex G): `n` segments at `offsets`, then `body`.
fn rle(n: u32, offsets: &[u32], body: &[u8]) -> Vec<u8> {
    let mut h = n.to_le_bytes().to_vec();
    for k in 0..15 {
        h.extend(offsets.get(k).copied().unwrap_or(0).to_le_bytes());
    }
    h.extend(body);
    h
}

#[test]
fn damaged_rle_fragments_fail_naming_the_file_and_the_pixel_data() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = phantom(&tmp.path().join("ph"), false);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("short", vec![1, 0, 0]),
        (
            "one segment for 16 bits",
            rle(1, &[64], &[0x81, 0x00, 0x81, 0x00]),
        ),
        (
            "offset past the end",
            rle(2, &[64, 1_000_000], &[0x81, 0x00]),
        ),
        ("too many segments", rle(200, &[64], &[0x81, 0x00])),
        (
            "literal run past the end",
            rle(2, &[64, 66], &[0x7F, 0x01, 0x7F, 0x01]),
        ),
    ];
    for (what, fragment) in cases {
        let dicom = tmp.path().join(what.replace(' ', "_"));
        std::fs::create_dir_all(&dicom).unwrap();
        for f in common::files_below(&clean) {
            std::fs::copy(&f, dicom.join(f.file_name().unwrap())).unwrap();
        }
        as_rle(&image(&dicom, 0, 0), fragment);
        let out = tmp.path().join("out");
        let output = common::run("adc", &dicom, &out, &[]);
        clean_exit_1(&output, &["IM_00001.dcm"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("pixel data (7FE0,0010) cannot be decoded"),
            "{what}: {stderr}"
        );
        assert!(common::files_below(&out).is_empty());
    }
}

#[test]
fn a_truncated_file_names_the_element_and_offset_not_just_premature_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&tmp.path().join("ph"), false);
    let f = image(&dicom, 0, 0);
    let bytes = std::fs::read(&f).unwrap();
    let at = pixel_data_at(&bytes);
    // Cut inside the value of the element before the pixel data, and inside the pixel
    // data's own header.
    for cut in [at - 3, at + 5] {
        std::fs::write(&f, &bytes[..cut]).unwrap();
        let output = common::run("adc", &dicom, &tmp.path().join("out"), &[]);
        let stderr = clean_exit_1(&output, &["IM_00001.dcm", "truncated"]);
        assert!(stderr.contains(" at byte "), "no offset: {stderr}");
    }
}

#[test]
fn a_binary_value_whose_length_is_not_whole_values_fails_naming_the_element() {
    // Found by the C-STORE fuzz target (docs/fuzzing.md): the parser reads a US value of 257
    // bytes as 128 values and drops the last byte, then reads the next header one byte early,
    // where text passed for a 4-byte length of 800 MB, which it reserved.
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&tmp.path().join("ph"), false);
    let f = image(&dicom, 0, 0);
    let odd_us: Vec<u8> = [
        &[0x29, 0x00, 0x01, 0x10][..],
        b"US",
        &5u16.to_le_bytes(),
        b"12345",
    ]
    .concat();
    insert_before_pixels(&f, &odd_us, false);
    let expected = [
        "IM_00001.dcm",
        "(0029,1001)",
        "has value representation US but a length of 5 bytes, not a multiple of its 2-byte values",
    ];
    let output = common::run("adc", &dicom, &tmp.path().join("out"), &[]);
    clean_exit_1(&output, &expected);
    let output = info(&dicom);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        expected.iter().all(|e| stdout.contains(e)),
        "paramap info: {stdout}"
    );
    // In implicit VR the dictionary gives the VR: Rows (0028,0010) is US; a data set received
    // by the listener with a 3-byte Rows is refused, naming it.
    let implicit: Vec<u8> = [
        &[0x28, 0x00, 0x10, 0x00][..],
        &3u32.to_le_bytes(),
        &[0, 1, 2],
        &[0x28, 0x00, 0x11, 0x00],
        &2u32.to_le_bytes(),
        &[8, 0],
    ]
    .concat();
    let refused = paramap::net::listen::parse_data_set(&implicit, "1.2.840.10008.1.2").unwrap_err();
    assert!(
        refused.contains("(0028,0010)") && refused.contains("US") && refused.contains("3 bytes"),
        "{refused}"
    );
    // And whole values are read as before.
    let sound: Vec<u8> = [&[0x28, 0x00, 0x10, 0x00][..], &2u32.to_le_bytes(), &[8, 0]].concat();
    assert!(paramap::net::listen::parse_data_set(&sound, "1.2.840.10008.1.2").is_ok());
}

#[test]
fn the_enhanced_phantom_in_implicit_vr_big_endian_and_deflated_passes_the_pre_scan_unchanged() {
    // The pre-scan must not refuse what is sound: the Enhanced MR object (functional groups
    // nest three levels) re-encoded by dcmtk's dcmconv gives the same ADC map.
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&tmp.path().join("ph"), true);
    let out = tmp.path().join("out_explicit");
    assert!(common::run("adc", &dicom, &out, &[]).status.success());
    let (reference, _, _) = paramap::io::nifti::read(&out.join("adc.nii.gz")).unwrap();
    for (flag, what) in [
        ("+ti", "implicit"),
        ("+tb", "big_endian"),
        ("+td", "deflated"),
    ] {
        let dir = tmp.path().join(what);
        std::fs::create_dir_all(&dir).unwrap();
        for f in common::files_below(&dicom) {
            let status = std::process::Command::new("dcmconv")
                .arg(flag)
                .arg(&f)
                .arg(dir.join(f.file_name().unwrap()))
                .status()
                .expect("this test needs dcmtk's dcmconv: sudo apt-get install -y dcmtk");
            assert!(status.success());
        }
        let out = tmp.path().join(format!("out_{what}"));
        let output = common::run("adc", &dir, &out, &[]);
        assert!(
            output.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (adc, _, _) = paramap::io::nifti::read(&out.join("adc.nii.gz")).unwrap();
        assert_eq!(adc.dim(), reference.dim());
        for (a, b) in adc.iter().zip(reference.iter()) {
            assert!(a == b || (a.is_nan() && b.is_nan()), "{what}: {a} vs {b}");
        }
    }
}
