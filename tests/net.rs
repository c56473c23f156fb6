//! Delivery to a real PACS: a Debian Orthanc with its DICOMweb plugin receives phantom series
//! and a float parametric map by C-STORE and by STOW-RS; what Orthanc then holds is compared
//! with what was sent (study, series, instance count, pixel bytes, float values of the NIfTI
//! map). And a destination that is down: every attempt made, nothing reported as sent, the
//! files left where they were.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::orthanc::{free_port, Orthanc};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use paramap::io::dicom::write::{new_uid, Flavour};
use paramap::net::{deliver, Destination, Retry};
use paramap::pipeline::synth::{write_dwi_phantom, SynthDwiOptions};
use paramap::synth::dwi::DwiPhantomSpec;

const PARAMETRIC_MAP_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.30";
const FLOAT_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0008);

fn quick_retry() -> Retry {
    Retry {
        attempts: 3,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(50),
    }
}

/// A small DWI phantom as DICOM; returns its files.
fn phantom(dir: &Path, enhanced: bool) -> Vec<PathBuf> {
    let spec = DwiPhantomSpec {
        dims: [16, 16, 2],
        bvalues: vec![1000.0],
        ..Default::default()
    };
    write_dwi_phantom(
        &spec,
        &SynthDwiOptions {
            flavour: Flavour::Standard,
            enhanced,
            shuffle: false,
            mosaic: false,
        },
        dir,
    )
    .expect("phantom written");
    let mut files = common::files_below(&dir.join("dicom"));
    files.sort();
    assert!(!files.is_empty());
    files
}

fn uid(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn open_bytes(bytes: &[u8]) -> dicom_object::DefaultDicomObject {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    dicom_object::open_file(tmp.path()).expect("Orthanc returns a readable DICOM file")
}

/// What a sent file must be found as in Orthanc.
struct Sent {
    study: String,
    series: String,
    pixels: Vec<u8>,
}

fn describe(files: &[PathBuf], pixel_tag: Tag) -> HashMap<String, Sent> {
    files
        .iter()
        .map(|f| {
            let obj = dicom_object::open_file(f).unwrap();
            (
                uid(&obj, tags::SOP_INSTANCE_UID),
                Sent {
                    study: uid(&obj, tags::STUDY_INSTANCE_UID),
                    series: uid(&obj, tags::SERIES_INSTANCE_UID),
                    pixels: obj.element(pixel_tag).unwrap().to_bytes().unwrap().to_vec(),
                },
            )
        })
        .collect()
}

/// Every sent instance is in Orthanc, in its series under its source study, with the same
/// pixel bytes; and the series holds exactly the instances sent.
fn assert_orthanc_holds(orthanc: &Orthanc, sent: &HashMap<String, Sent>, pixel_tag: Tag) {
    let mut per_series: HashMap<(&str, &str), usize> = HashMap::new();
    for s in sent.values() {
        *per_series.entry((&s.study, &s.series)).or_default() += 1;
    }
    for ((study, series), n) in per_series {
        let found = orthanc.series_of_study(study);
        let Some((_, instances)) = found.iter().find(|(uid, _)| uid == series) else {
            panic!(
                "Orthanc has no series {series} under study {study} (it has {:?}); log:\n{}",
                found.iter().map(|(s, _)| s).collect::<Vec<_>>(),
                orthanc.log()
            );
        };
        assert_eq!(
            instances.len(),
            n,
            "instances of series {series} in Orthanc"
        );
        for id in instances {
            let back = open_bytes(&orthanc.instance_file(id));
            let sop = uid(&back, tags::SOP_INSTANCE_UID);
            let original = sent
                .get(&sop)
                .unwrap_or_else(|| panic!("Orthanc holds {sop}, which was not sent"));
            let pixels = back.element(pixel_tag).unwrap().to_bytes().unwrap();
            assert!(
                pixels.as_ref() == original.pixels.as_slice(),
                "pixel data of {sop} differs after the round trip"
            );
        }
    }
}

/// A float parametric map (PS3.3 A.75) of `values` (nz × ny × nx), with Float Pixel Data.
fn parametric_map(values: &ndarray::Array3<f32>, path: &Path) {
    let (nz, ny, nx) = values.dim();
    let mut obj = InMemDicomObject::new_empty();
    let sop = new_uid();
    let put = |obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, v));
    };
    put(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        PARAMETRIC_MAP_STORAGE.into(),
    );
    put(
        &mut obj,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        sop.as_str().into(),
    );
    put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, new_uid().into());
    put(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        new_uid().into(),
    );
    put(&mut obj, tags::MODALITY, VR::CS, "MR".into());
    put(&mut obj, tags::PATIENT_ID, VR::LO, "PARAMAP-NET".into());
    put(&mut obj, tags::PATIENT_NAME, VR::PN, "PARAMAP^NET".into());
    put(&mut obj, tags::SERIES_NUMBER, VR::IS, "901".into());
    put(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1".into());
    put(
        &mut obj,
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    put(
        &mut obj,
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(ny as u16),
    );
    put(
        &mut obj,
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(nx as u16),
    );
    put(
        &mut obj,
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        nz.to_string().into(),
    );
    put(
        &mut obj,
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(32u16),
    );
    let floats: Vec<f32> = values.iter().copied().collect();
    put(
        &mut obj,
        FLOAT_PIXEL_DATA,
        VR::OF,
        PrimitiveValue::F32(floats.into()),
    );
    obj.with_meta(
        FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(PARAMETRIC_MAP_STORAGE)
            .media_storage_sop_instance_uid(sop.as_str())
            .transfer_syntax("1.2.840.10008.1.2.1"),
    )
    .unwrap()
    .write_to_file(path)
    .unwrap();
}

/// A map with fractions, negatives, zero and a large value, written as NIfTI and read back:
/// the values a parametric map must carry unchanged.
fn nifti_map(dir: &Path) -> ndarray::Array3<f32> {
    let (nz, ny, nx) = (3, 8, 8);
    let map = ndarray::Array3::from_shape_fn((nz, ny, nx), |(z, y, x)| {
        (x as f32 - 3.5) * 0.001_234_5 + y as f32 * 1.0e-4 - z as f32 * 417.25
    });
    let geometry = paramap::volume::Geometry {
        dims: [nx, ny, nz],
        affine_lps: [
            [2.0, 0.0, 0.0, -8.0],
            [0.0, 2.0, 0.0, -8.0],
            [0.0, 0.0, 3.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    };
    let path = dir.join("adc.nii.gz");
    paramap::io::nifti::write_map(&path, &map, &geometry, "ADC").unwrap();
    let (data, _, _) = paramap::io::nifti::read(&path).unwrap();
    data.index_axis(ndarray::Axis(0), 0).to_owned()
}

fn floats_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn assert_map_in_orthanc(orthanc: &Orthanc, file: &Path, truth: &ndarray::Array3<f32>) {
    let obj = dicom_object::open_file(file).unwrap();
    let found = orthanc.series_of_study(&uid(&obj, tags::STUDY_INSTANCE_UID));
    assert_eq!(found.len(), 1, "one series under the map's study");
    assert_eq!(found[0].0, uid(&obj, tags::SERIES_INSTANCE_UID));
    assert_eq!(found[0].1.len(), 1);
    let back = open_bytes(&orthanc.instance_file(&found[0].1[0]));
    assert_eq!(uid(&back, tags::SOP_CLASS_UID), PARAMETRIC_MAP_STORAGE);
    let values = floats_of(&back.element(FLOAT_PIXEL_DATA).unwrap().to_bytes().unwrap());
    let expected: Vec<f32> = truth.iter().copied().collect();
    assert_eq!(values.len(), expected.len());
    for (i, (a, b)) in values.iter().zip(&expected).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "voxel {i}: {a} from Orthanc, {b} in the NIfTI map"
        );
    }
}

#[test]
fn cstore_files_each_series_under_its_source_study_with_identical_pixels() {
    let orthanc = Orthanc::start(&[]);
    let root = tempfile::tempdir().unwrap();
    let classic = phantom(&root.path().join("classic"), false);
    let enhanced = phantom(&root.path().join("enhanced"), true);
    let truth = nifti_map(root.path());
    let map = root.path().join("adc_map.dcm");
    parametric_map(&truth, &map);
    // Three SOP classes (MR, Enhanced MR, Parametric Map) in one batch, one association.
    let files: Vec<PathBuf> = classic
        .iter()
        .chain(&enhanced)
        .chain([&map])
        .cloned()
        .collect();
    let dest: Destination = orthanc.destination().parse().unwrap();
    let deliveries = deliver(&files, Some(&dest), None, &quick_retry()).unwrap();
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    d.check()
        .unwrap_or_else(|e| panic!("{e}\nOrthanc log:\n{}", orthanc.log()));
    assert_eq!(d.n_sent(), files.len());
    assert_eq!(d.attempts, 1);
    assert!(d
        .summary()
        .starts_with(&format!("sent {} files", files.len())));
    let sent: Vec<PathBuf> = classic.iter().chain(&enhanced).cloned().collect();
    assert_orthanc_holds(
        &orthanc,
        &describe(&sent, tags::PIXEL_DATA),
        tags::PIXEL_DATA,
    );
    assert_map_in_orthanc(&orthanc, &map, &truth);
}

#[test]
fn stowrs_files_each_series_under_its_source_study_with_identical_pixels() {
    let orthanc = Orthanc::start(&[]);
    let root = tempfile::tempdir().unwrap();
    let classic = phantom(&root.path().join("classic"), false);
    let truth = nifti_map(root.path());
    let map = root.path().join("adc_map.dcm");
    parametric_map(&truth, &map);
    let files: Vec<PathBuf> = classic.iter().chain([&map]).cloned().collect();
    let deliveries = deliver(&files, None, Some(&orthanc.dicomweb()), &quick_retry()).unwrap();
    let d = &deliveries[0];
    assert!(d.destination.starts_with("STOW-RS"));
    d.check()
        .unwrap_or_else(|e| panic!("{e}\nOrthanc log:\n{}", orthanc.log()));
    assert_eq!(d.n_sent(), files.len());
    assert_orthanc_holds(
        &orthanc,
        &describe(&classic, tags::PIXEL_DATA),
        tags::PIXEL_DATA,
    );
    assert_map_in_orthanc(&orthanc, &map, &truth);
}

#[test]
fn a_destination_that_is_down_gets_every_attempt_and_nothing_is_reported_sent() {
    let root = tempfile::tempdir().unwrap();
    let files = phantom(&root.path().join("p"), false);
    // Nothing listens on a port just released.
    let closed = free_port();
    let dest: Destination = format!("NOBODY@127.0.0.1:{closed}").parse().unwrap();
    let retry = quick_retry();
    let deliveries = deliver(
        &files,
        Some(&dest),
        Some(&format!("http://127.0.0.1:{closed}/dicom-web")),
        &retry,
    )
    .unwrap();
    assert_eq!(deliveries.len(), 2);
    for d in &deliveries {
        assert_eq!(d.n_sent(), 0, "{}", d.destination);
        assert_eq!(d.n_failed(), files.len());
        assert_eq!(d.attempts, retry.attempts, "{}", d.destination);
        let e = d.check().unwrap_err().to_string();
        assert!(
            e.contains(&format!("0 of {} files delivered", files.len())),
            "{e}"
        );
        assert!(e.contains("NOT sent"), "{e}");
        assert!(e.contains("gave up after 3 attempts"), "{e}");
        // The message says where the files are, and they are still there.
        let folder = files[0].parent().unwrap().display().to_string();
        assert!(e.contains(&folder), "{e}");
        assert!(!d.summary().starts_with("sent"));
    }
    assert!(deliveries[0].failed[0]
        .reason
        .contains("could not open an association"));
    for f in &files {
        assert!(f.is_file(), "{} was removed", f.display());
    }
}

#[test]
fn a_file_that_is_not_dicom_is_reported_and_the_others_still_go() {
    let orthanc = Orthanc::start(&[]);
    let root = tempfile::tempdir().unwrap();
    let mut files = phantom(&root.path().join("p"), false);
    let junk = root.path().join("p/dicom/junk.dcm");
    std::fs::write(&junk, b"not DICOM at all").unwrap();
    files.insert(1, junk.clone());
    let dest: Destination = orthanc.destination().parse().unwrap();
    let d = deliver(&files, Some(&dest), None, &quick_retry())
        .unwrap()
        .remove(0);
    assert_eq!(d.n_sent(), files.len() - 1);
    assert_eq!(d.failed.len(), 1);
    assert_eq!(d.failed[0].file, junk);
    assert!(d.failed[0].reason.contains("not a readable DICOM file"));
    // One file missing means the study was not sent.
    assert!(d.check().is_err());
}
