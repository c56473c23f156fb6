//! DICOM output of the maps: the DSC and DWI phantoms are written as one study, read back
//! through the normal ingest, their maps computed and written as derived series in both
//! encodings (Parametric Map and classic MR), and every output is checked against the DICOM
//! standard (dciodvfy), against what dcmdump shows, against the maps' values and against the
//! source files' own study, patient and geometry.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{open_file, DefaultDicomObject, InMemDicomObject};
use ndarray::Array3;
use paramap::io::dicom::derived::{write_derived, DerivedMap, DerivedOptions, Encoding, Quantity};
use paramap::io::dicom::write::{write_echoes, write_series, DicomWriteOptions, Flavour, StudyIds};
use paramap::pipeline::input::{load_dsc, load_dwi, load_nifti, DscInputOptions, InputOptions};
use paramap::pipeline::Engine;
use paramap::volume::{Geometry, SeriesInfo};

const INSTALL: &str = "sudo apt-get install -y dicom3tools dcmtk";

/// Runs an external DICOM tool; its absence fails the test with the line that installs it.
fn tool(name: &str, file: &Path) -> String {
    let out = Command::new(name)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("this test needs `{name}` ({e}); install it with: {INSTALL}"));
    // dciodvfy reports on stderr, dcmdump on stdout.
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One written map: what it holds, and where its files are.
struct Written {
    quantity: Quantity,
    map: Array3<f32>,
    geometry: Geometry,
    /// The source series' files (the truth for study, patient and geometry).
    source_files: Vec<PathBuf>,
    files: Vec<PathBuf>,
    encoding: Encoding,
}

struct Fixture {
    _root: tempfile::TempDir,
    study: PathBuf,
    out: PathBuf,
    written: Vec<Written>,
}

fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut f = common::files_below(dir);
    f.sort();
    f
}

/// The DWI phantom (series 1) and the DSC phantom (series 2) of one patient in one study,
/// read back, their maps computed on the CPU and written in both encodings.
fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let study = root.path().join("study");
    let (dwi_dir, dsc_dir) = (study.join("dwi"), study.join("dsc"));
    std::fs::create_dir_all(&dwi_dir).unwrap();
    std::fs::create_dir_all(&dsc_dir).unwrap();
    let ids = StudyIds::new();
    let options = |description: &str, number| DicomWriteOptions {
        flavour: Flavour::Standard,
        enhanced: false,
        series_description: description.into(),
        series_number: number,
        patient_id: "PARAMAP-STUDY".into(),
        mosaic: false,
        shuffle_instances: true,
        seed: 7,
        study: Some(ids.clone()),
    };
    let dwi = paramap::synth::dwi::dwi_phantom(&Default::default());
    write_series(&dwi.series, &dwi_dir, &options("DWI phantom", 1)).unwrap();
    let dsc = paramap::synth::dsc::dsc_phantom(&Default::default());
    write_echoes(&[&dsc.series], &dsc_dir, &options("DSC phantom", 2)).unwrap();

    let (dwi, _) = load_dwi(
        &study,
        &InputOptions {
            series: Some("1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let adc = paramap::pipeline::adc::compute(&dwi, &Default::default(), &Engine::Cpu).unwrap();
    let (dsc, _) = load_dsc(
        &study,
        &DscInputOptions {
            series: Some("2".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let perf = paramap::pipeline::dsc::compute(&dsc, &Default::default(), &Engine::Cpu).unwrap();
    let cbf = perf.perfusion.as_ref().unwrap().cbf.clone();
    let maps = [
        (
            Quantity::Adc,
            adc.adc.clone(),
            &dwi,
            &dwi_dir,
            "paramap ADC",
            101,
        ),
        (
            Quantity::Rcbv,
            perf.rcbv.clone(),
            &dsc.echo1,
            &dsc_dir,
            "paramap rCBV (leakage corrected)",
            102,
        ),
        (
            Quantity::K2,
            perf.k2.clone(),
            &dsc.echo1,
            &dsc_dir,
            "paramap K2",
            103,
        ),
        (
            Quantity::Cbf,
            cbf,
            &dsc.echo1,
            &dsc_dir,
            "paramap CBF (oSVD)",
            104,
        ),
    ];
    let out = root.path().join("out");
    let mut written = Vec::new();
    for encoding in [Encoding::ParametricMap, Encoding::Classic] {
        for (quantity, map, series, dir, description, number) in &maps {
            let dir_out = out.join(format!("{encoding:?}"));
            let files = write_derived(
                &DerivedMap {
                    data: map.view(),
                    geometry: &series.geometry,
                    quantity: *quantity,
                    series_description: description.to_string(),
                    series_number: *number,
                    derivation: "phantom test; method defaults".into(),
                },
                &series.info,
                &DerivedOptions {
                    encoding,
                    ..Default::default()
                },
                &dir_out,
            )
            .unwrap();
            written.push(Written {
                quantity: *quantity,
                map: map.clone(),
                geometry: series.geometry.clone(),
                source_files: dicom_files(dir),
                files,
                encoding,
            });
        }
    }
    Fixture {
        _root: root,
        study,
        out,
        written,
    }
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.element(tag)
        .unwrap_or_else(|_| panic!("{tag} present"))
        .to_str()
        .unwrap()
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string()
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Vec<f64> {
    obj.element(tag).unwrap().to_multi_float64().unwrap()
}

fn item(obj: &InMemDicomObject, tag: Tag) -> &InMemDicomObject {
    &obj.element(tag).unwrap().items().unwrap()[0]
}

fn open(path: &Path) -> DefaultDicomObject {
    open_file(path).unwrap()
}

/// dciodvfy lines that are errors; warnings are printed for the reader.
fn dciodvfy_errors(file: &Path) -> Vec<String> {
    let report = tool("dciodvfy", file);
    for line in report.lines().filter(|l| l.starts_with("Warning")) {
        eprintln!("{}: {line}", file.display());
    }
    report
        .lines()
        .filter(|l| l.starts_with("Error"))
        .map(|l| format!("{}: {l}", file.display()))
        .collect()
}

#[test]
fn every_derived_series_of_the_dsc_and_dwi_phantoms_passes_dciodvfy_without_errors() {
    let f = fixture();
    let mut errors = Vec::new();
    let mut n = 0;
    for w in &f.written {
        for file in &w.files {
            errors.extend(dciodvfy_errors(file));
            n += 1;
        }
    }
    assert_eq!(
        n,
        4 + 6 + 3 * 4,
        "one Parametric Map per map, one classic file per slice"
    );
    assert!(errors.is_empty(), "dciodvfy errors:\n{}", errors.join("\n"));
}

#[test]
fn dcmdump_shows_the_rwvm_units_references_and_the_source_study() {
    let f = fixture();
    for w in &f.written {
        let source = open(&w.source_files[0]);
        let dump = tool("dcmdump", &w.files[0]);
        let unit = match w.quantity {
            Quantity::Adc => "[um2/s]",
            Quantity::Cbf => "[ml/(100.g)/min]",
            Quantity::Rcbv => "[{ratio}]",
            Quantity::K2 => "[10*-6/s]",
            _ => unreachable!(),
        };
        let mut wanted = vec![
            "(0040,9096)".to_string(), // Real World Value Mapping Sequence
            "(0040,08ea)".to_string(), // Measurement Units Code Sequence
            unit.to_string(),
            "[UCUM]".to_string(),
            "(0008,1115)".to_string(), // Referenced Series Sequence
            "(0008,2112)".to_string(), // Source Image Sequence
            format!("[{}]", text(&source, tags::STUDY_INSTANCE_UID)),
            format!("[{}]", text(&source, tags::PATIENT_ID)),
            format!("[{}]", text(&source, tags::PATIENT_NAME)),
            format!("[{}]", text(&source, tags::FRAME_OF_REFERENCE_UID)),
            format!("[{}]", text(&source, tags::SERIES_INSTANCE_UID)),
        ];
        // every source instance is referenced
        for file in &w.source_files {
            wanted.push(format!("[{}]", text(&open(file), tags::SOP_INSTANCE_UID)));
        }
        for needle in &wanted {
            assert!(
                dump.contains(needle.as_str()),
                "{:?} {:?}: dcmdump does not show {needle}",
                w.encoding,
                w.quantity
            );
        }
        // a new series, not the source's
        let out = open(&w.files[0]);
        assert_ne!(
            text(&out, tags::SERIES_INSTANCE_UID),
            text(&source, tags::SERIES_INSTANCE_UID)
        );
        assert!(text(&out, tags::SERIES_INSTANCE_UID).starts_with("2.25."));
    }
}

/// Row `r` of a DICOM frame is row `ny - 1 - r` of the library's (bottom-up) map.
fn map_value(map: &Array3<f32>, z: usize, r: usize, c: usize) -> f32 {
    map[[z, map.dim().1 - 1 - r, c]]
}

#[test]
fn parametric_map_floats_equal_the_map_and_adc_is_stored_in_um2_per_s() {
    let f = fixture();
    for w in f
        .written
        .iter()
        .filter(|w| w.encoding == Encoding::ParametricMap)
    {
        let obj = open(&w.files[0]);
        let (nz, ny, nx) = w.map.dim();
        let pixels = obj
            .element(tags::FLOAT_PIXEL_DATA)
            .unwrap()
            .to_multi_float32()
            .unwrap();
        assert_eq!(pixels.len(), nz * ny * nx);
        let shared = item(&obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
        let rwvm = item(shared, tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE);
        assert_eq!(floats(rwvm, tags::REAL_WORLD_VALUE_SLOPE), vec![1.0]);
        assert_eq!(floats(rwvm, tags::REAL_WORLD_VALUE_INTERCEPT), vec![0.0]);
        let unit = text(
            item(rwvm, tags::MEASUREMENT_UNITS_CODE_SEQUENCE),
            tags::CODE_VALUE,
        );
        let mut finite = 0;
        for z in 0..nz {
            for r in 0..ny {
                for c in 0..nx {
                    let got = pixels[(z * ny + r) * nx + c];
                    let v = map_value(&w.map, z, r, c);
                    if v.is_nan() {
                        assert!(got.is_nan(), "NaN stays NaN");
                        continue;
                    }
                    finite += 1;
                    if w.quantity.factor() != 1.0 {
                        // ADC: mm²/s × 10⁶ = µm²/s; K2: s⁻¹ × 10⁶ = 10⁻⁶ s⁻¹; to f32 rounding
                        let want = v as f64 * w.quantity.factor();
                        assert!(
                            (got as f64 - want).abs() <= want.abs() * 1e-6,
                            "{:?} {got} for {v}",
                            w.quantity
                        );
                    } else {
                        assert_eq!(
                            got.to_bits(),
                            v.to_bits(),
                            "{:?} stored exactly",
                            w.quantity
                        );
                    }
                }
            }
        }
        assert!(finite > 0);
        if w.quantity == Quantity::Adc {
            assert_eq!(unit, "um2/s");
            // white matter of the phantom (~0.7e-3 mm²/s) reads ~700 µm²/s
            let max = pixels
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0, f32::max);
            assert!(max > 500.0 && max < 5000.0, "ADC max {max} µm²/s");
        }
    }
}

#[test]
fn classic_integers_times_the_rescale_equal_the_map_within_half_a_step() {
    let f = fixture();
    for w in f.written.iter().filter(|w| w.encoding == Encoding::Classic) {
        let (nz, ny, nx) = w.map.dim();
        assert_eq!(w.files.len(), nz);
        let mut negative = false;
        for file in &w.files {
            let obj = open(file);
            let z = text(&obj, tags::INSTANCE_NUMBER).parse::<usize>().unwrap() - 1;
            let slope = floats(&obj, tags::RESCALE_SLOPE)[0];
            assert_eq!(floats(&obj, tags::RESCALE_INTERCEPT)[0], 0.0);
            let rwvm = item(&obj, tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE);
            assert_eq!(floats(rwvm, tags::REAL_WORLD_VALUE_SLOPE)[0], slope);
            if w.quantity == Quantity::Adc {
                assert_eq!(
                    slope, 1.0,
                    "ADC integers are in 10⁻⁶ mm²/s, as scanners store them"
                );
                let unit = text(
                    item(rwvm, tags::MEASUREMENT_UNITS_CODE_SEQUENCE),
                    tags::CODE_VALUE,
                );
                assert_eq!(unit, "um2/s");
            }
            let bytes = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
            let stored: Vec<i16> = bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            assert_eq!(stored.len(), ny * nx);
            for r in 0..ny {
                for c in 0..nx {
                    let s = stored[r * nx + c];
                    negative |= s < 0;
                    let v = map_value(&w.map, z, r, c) as f64;
                    if v.is_nan() {
                        assert_eq!(s, 0, "NaN is stored as 0");
                        continue;
                    }
                    let want = v * w.quantity.factor();
                    assert!(
                        (s as f64 * slope - want).abs() <= slope / 2.0 * (1.0 + 1e-9),
                        "{:?}: {s} × {slope} for {want}",
                        w.quantity
                    );
                }
            }
        }
        if w.quantity == Quantity::K2 {
            assert!(negative, "K2 < 0 voxels keep their sign (signed pixels)");
        }
    }
}

/// (position, orientation) of every image of the source files.
fn source_planes(files: &[PathBuf]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let positions = files
        .iter()
        .map(|f| floats(&open(f), tags::IMAGE_POSITION_PATIENT))
        .collect();
    let orientation = floats(&open(&files[0]), tags::IMAGE_ORIENTATION_PATIENT);
    (positions, orientation)
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn derived_series_reproduce_the_source_geometry() {
    let f = fixture();
    for w in &f.written {
        let (positions, orientation) = source_planes(&w.source_files);
        let frames: Vec<(Vec<f64>, Vec<f64>)> = match w.encoding {
            Encoding::ParametricMap => {
                let obj = open(&w.files[0]);
                let shared = item(&obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
                let iop = floats(
                    item(shared, tags::PLANE_ORIENTATION_SEQUENCE),
                    tags::IMAGE_ORIENTATION_PATIENT,
                );
                obj.element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
                    .unwrap()
                    .items()
                    .unwrap()
                    .iter()
                    .map(|pf| {
                        let ipp = floats(
                            item(pf, tags::PLANE_POSITION_SEQUENCE),
                            tags::IMAGE_POSITION_PATIENT,
                        );
                        (ipp, iop.clone())
                    })
                    .collect()
            }
            Encoding::Classic => w
                .files
                .iter()
                .map(|file| {
                    let obj = open(file);
                    (
                        floats(&obj, tags::IMAGE_POSITION_PATIENT),
                        floats(&obj, tags::IMAGE_ORIENTATION_PATIENT),
                    )
                })
                .collect(),
        };
        assert_eq!(frames.len(), w.map.dim().0);
        for (ipp, iop) in &frames {
            assert!(
                close(iop, &orientation, 1e-6),
                "IOP {iop:?} vs source {orientation:?}"
            );
            assert!(
                positions.iter().any(|p| close(p, ipp, 1e-4)),
                "{:?} {:?}: frame at {ipp:?} is at no source slice position",
                w.encoding,
                w.quantity
            );
        }
        if w.encoding == Encoding::Classic {
            // paramap reads the derived series back onto the source's grid
            let dir = w.files[0].parent().unwrap().to_path_buf();
            let scan = paramap::io::dicom::scan(&dir).unwrap();
            let series = scan
                .series
                .iter()
                .find(|s| s.info.series_number == Some(number_of(w)))
                .unwrap();
            let back = paramap::io::dicom::assemble(series).unwrap();
            assert!(back.geometry.max_corner_distance(&w.geometry) < 1e-4);
        }
    }
}

fn number_of(w: &Written) -> i64 {
    text(&open(&w.files[0]), tags::SERIES_NUMBER)
        .parse()
        .unwrap()
}

#[test]
fn the_scan_captures_what_a_derived_series_inherits_and_both_phantoms_share_one_study() {
    let f = fixture();
    let scan = paramap::io::dicom::scan(&f.study).unwrap();
    assert_eq!(scan.series.len(), 2);
    let sources: Vec<_> = scan
        .series
        .iter()
        .map(|s| s.info.dicom.clone().unwrap())
        .collect();
    for (s, d) in scan.series.iter().zip(&sources) {
        assert_eq!(d.sop_instance_uids.len(), s.files.len());
        assert_eq!(d.sop_class_uid, "1.2.840.10008.5.1.4.1.1.4");
        let first = open(&s.files[0]);
        for tag in [
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::STUDY_INSTANCE_UID,
            tags::STUDY_DATE,
            tags::STUDY_TIME,
            tags::FRAME_OF_REFERENCE_UID,
        ] {
            let kept = d
                .inherited
                .iter()
                .find(|(t, _, _)| *t == (tag.0, tag.1))
                .unwrap_or_else(|| panic!("{tag} captured"));
            assert_eq!(kept.2, text(&first, tag), "{tag}");
        }
    }
    let value = |i: usize, tag: Tag| {
        sources[i]
            .inherited
            .iter()
            .find(|(t, _, _)| *t == (tag.0, tag.1))
            .unwrap()
            .2
            .clone()
    };
    for tag in [
        tags::STUDY_INSTANCE_UID,
        tags::PATIENT_ID,
        tags::FRAME_OF_REFERENCE_UID,
    ] {
        assert_eq!(value(0, tag), value(1, tag), "{tag} shared by the study");
    }
}

#[test]
fn a_folder_holding_the_outputs_is_scanned_and_its_sources_still_found() {
    let f = fixture();
    // the outputs next to the scans, as a PACS export of the whole study would hold them
    let all = f.study.join("derived");
    for w in &f.written {
        let dir = all.join(format!("{:?}", w.encoding));
        std::fs::create_dir_all(&dir).unwrap();
        for file in &w.files {
            std::fs::copy(file, dir.join(file.file_name().unwrap())).unwrap();
        }
    }
    let scan = paramap::io::dicom::scan(&f.study).unwrap();
    let maps = scan
        .non_image
        .iter()
        .filter(|(_, what)| what == "parametric map (derived)")
        .count();
    assert_eq!(
        maps, 4,
        "Parametric Maps are listed as derived, not ingested"
    );
    assert_eq!(
        scan.series.len(),
        2 + 4,
        "the classic maps are series of their own"
    );
    let (dsc, _) = load_dsc(&f.study, &DscInputOptions::default()).unwrap();
    assert_eq!(dsc.echo1.info.series_number, Some(2));
    let (dwi, _) = load_dwi(&f.study, &InputOptions::default()).unwrap();
    assert_eq!(dwi.info.series_number, Some(1));
    assert!(f.out.exists());
}

#[test]
fn a_real_philips_series_gives_derived_series_without_dciodvfy_errors() {
    let root = tempfile::tempdir().unwrap();
    let (series, _) = load_dwi(&common::philips_subset(), &InputOptions::default()).unwrap();
    let adc = paramap::pipeline::adc::compute(&series, &Default::default(), &Engine::Cpu).unwrap();
    for encoding in [Encoding::ParametricMap, Encoding::Classic] {
        let files = write_derived(
            &DerivedMap {
                data: adc.adc.view(),
                geometry: &series.geometry,
                quantity: Quantity::Adc,
                series_description: "paramap ADC".into(),
                series_number: 901,
                derivation: "WLS".into(),
            },
            &series.info,
            &DerivedOptions {
                encoding,
                ..Default::default()
            },
            &root.path().join(format!("{encoding:?}")),
        )
        .unwrap();
        let errors: Vec<String> = files.iter().flat_map(|f| dciodvfy_errors(f)).collect();
        assert!(errors.is_empty(), "dciodvfy errors:\n{}", errors.join("\n"));
        // the scanner's patient and character set come along
        let obj = open(&files[0]);
        assert_eq!(text(&obj, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 100");
        assert_eq!(text(&obj, tags::PATIENT_ID), "Research");
    }
}

#[test]
fn a_nifti_input_becomes_a_new_valid_study_with_a_placeholder_patient() {
    let root = tempfile::tempdir().unwrap();
    let phantom = root.path().join("phantom");
    paramap::pipeline::synth::write_dwi_phantom(
        &Default::default(),
        &paramap::pipeline::synth::SynthDwiOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            shuffle: false,
            mosaic: false,
        },
        &phantom,
    )
    .unwrap();
    let series = load_nifti(&phantom.join("nifti/dwi.nii.gz"), &Default::default()).unwrap();
    assert!(series.info.dicom.is_none());
    let adc = paramap::pipeline::adc::compute(&series, &Default::default(), &Engine::Cpu).unwrap();
    for encoding in [Encoding::ParametricMap, Encoding::Classic] {
        let out = root.path().join(format!("{encoding:?}"));
        let files = write_derived(
            &DerivedMap {
                data: adc.adc.view(),
                geometry: &series.geometry,
                quantity: Quantity::Adc,
                series_description: "paramap ADC".into(),
                series_number: 101,
                derivation: "from NIfTI".into(),
            },
            &series.info,
            &DerivedOptions {
                encoding,
                ..Default::default()
            },
            &out,
        )
        .unwrap();
        let errors: Vec<String> = files.iter().flat_map(|f| dciodvfy_errors(f)).collect();
        assert!(errors.is_empty(), "dciodvfy errors:\n{}", errors.join("\n"));
        let obj = open(&files[0]);
        assert_eq!(text(&obj, tags::PATIENT_NAME), "PARAMAP^NO DICOM SOURCE");
        assert!(text(&obj, tags::STUDY_INSTANCE_UID).starts_with("2.25."));
        assert!(obj.element(tags::REFERENCED_SERIES_SEQUENCE).is_err());
    }
}

#[test]
fn a_bad_uid_root_or_a_map_off_its_grid_is_refused_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let g = Geometry {
        dims: [4, 3, 2],
        affine_lps: [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    };
    let good = Array3::<f32>::zeros((2, 3, 4));
    let wrong = Array3::<f32>::zeros((2, 4, 3));
    let out = root.path().join("out");
    fn map<'a>(data: &'a Array3<f32>, g: &'a Geometry) -> DerivedMap<'a> {
        DerivedMap {
            data: data.view(),
            geometry: g,
            quantity: Quantity::Rcbv,
            series_description: "x".into(),
            series_number: 1,
            derivation: String::new(),
        }
    }
    let err = write_derived(
        &map(&wrong, &g),
        &SeriesInfo::default(),
        &Default::default(),
        &out,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("geometry says"), "{err}");
    let err = write_derived(
        &map(&good, &g),
        &SeriesInfo::default(),
        &DerivedOptions {
            encoding: Encoding::Classic,
            uid_root: "1.02.3".into(),
        },
        &out,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("UID root"), "{err}");
    assert!(common::files_below(root.path()).is_empty());
}
