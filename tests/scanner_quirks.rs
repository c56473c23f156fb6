//! Real scanner situations that gave wrong numbers (issue 14, classes 6–9), each on a
//! generated series whose truth is known: a dynamic series crossing midnight, a month's and a
//! year's end; GE multi-shell b-values carried by the gradient vector's length; 12-bit data
//! with an overlay in the high bits; a NIfTI whose pixdim[4] is in milliseconds.

mod common;

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use paramap::io::dicom::write::Flavour;
use paramap::io::nifti;
use paramap::pipeline::adc::{compute, AdcOptions};
use paramap::pipeline::input::{load_dsc, load_dwi, DscInputOptions, InputOptions};
use paramap::pipeline::synth::{
    write_dsc_phantom, write_dwi_phantom, SynthDscOptions, SynthDwiOptions,
};
use paramap::pipeline::Engine;
use paramap::synth::dsc::DscPhantomSpec;
use paramap::synth::dwi::{dwi_phantom, DwiPhantomSpec};

fn text(obj: &dicom_object::DefaultDicomObject, tag: Tag) -> String {
    obj.element(tag)
        .unwrap_or_else(|_| panic!("{tag} present"))
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn put(obj: &mut dicom_object::DefaultDicomObject, tag: Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// TM (HHMMSS.ffffff) in seconds since midnight.
fn tm_seconds(tm: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| tm[r].parse::<f64>().unwrap();
    n(0..2) * 3600.0 + n(2..4) * 60.0 + tm[4..].parse::<f64>().unwrap()
}

fn tm(seconds: f64) -> String {
    format!(
        "{:02}{:02}{:09.6}",
        (seconds / 3600.0) as u32,
        ((seconds % 3600.0) / 60.0) as u32,
        seconds % 60.0
    )
}

/// The shuffled classic DSC phantom (60 time points every 1.5 s) timed by AcquisitionDate and
/// AcquisitionTime alone (no TemporalPositionIdentifier), starting at 23:59:00 on `day`: the
/// run crosses midnight into `next` after 40 time points.
fn dsc_across_midnight(dir: &Path, day: &str, next: &str) -> PathBuf {
    write_dsc_phantom(
        &DscPhantomSpec::default(),
        &SynthDscOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            shuffle: true,
        },
        dir,
    )
    .unwrap();
    let dicom = dir.join("dicom");
    let files = common::files_below(&dicom);
    let times: Vec<f64> = files
        .iter()
        .map(|f| {
            tm_seconds(&text(
                &dicom_object::open_file(f).unwrap(),
                tags::ACQUISITION_TIME,
            ))
        })
        .collect();
    let t0 = times.iter().copied().fold(f64::INFINITY, f64::min);
    let start = 23.0 * 3600.0 + 59.0 * 60.0;
    for (f, t) in files.iter().zip(&times) {
        let mut obj = dicom_object::open_file(f).unwrap();
        obj.remove_element(tags::TEMPORAL_POSITION_IDENTIFIER);
        let at = start + (t - t0);
        let (date, tod) = if at >= 86_400.0 {
            (next, at - 86_400.0)
        } else {
            (day, at)
        };
        put(&mut obj, tags::ACQUISITION_DATE, VR::DA, date);
        put(&mut obj, tags::ACQUISITION_TIME, VR::TM, &tm(tod));
        obj.write_to_file(f).unwrap();
    }
    dicom
}

#[test]
fn a_dsc_series_across_midnight_a_months_and_a_years_end_is_in_order_at_1_5_s() {
    let tmp = tempfile::tempdir().unwrap();
    for (what, day, next) in [
        ("day", "20250314", "20250315"),
        ("month", "20250131", "20250201"),
        ("year", "20251231", "20260101"),
    ] {
        let dir = tmp.path().join(what);
        let dicom = dsc_across_midnight(&dir, day, next);
        let (input, _) =
            load_dsc(&dicom, &DscInputOptions::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!((input.dt_s - 1.5).abs() < 1e-6, "{what}: Δt {}", input.dt_s);
        // Volume order: the phantom's own NIfTI (written in time order) is the truth.
        let (truth, _, _) = nifti::read(&dir.join("nifti/dsc.nii.gz")).unwrap();
        assert_eq!(input.echo1.data.dim(), truth.dim(), "{what}");
        let max = truth.iter().fold(0f32, |m, &x| m.max(x.abs()));
        let worst = input
            .echo1
            .data
            .iter()
            .zip(truth.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-3 * max,
            "{what}: volumes out of order (max difference {worst})"
        );
        let times: Vec<f64> = input
            .echo1
            .volumes
            .iter()
            .map(|v| v.time_s.unwrap())
            .collect();
        for (k, t) in times.iter().enumerate() {
            assert!(
                (t - 1.5 * k as f64).abs() < 1e-3,
                "{what}: time point {k} at {t} s"
            );
        }
    }
    // Through the command line: no advice to use --dt, maps written.
    let out = tmp.path().join("out");
    let output = common::run("dsc", &tmp.path().join("year/dicom"), &out, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("dsc.json")).unwrap()).unwrap();
    assert_eq!(record["sampling_interval_s"], 1.5);
}

#[test]
fn ge_shells_in_the_gradient_length_give_four_b_values_and_the_adc_within_1_percent() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = DwiPhantomSpec {
        bvalues: vec![100.0, 400.0, 900.0],
        ..Default::default()
    };
    write_dwi_phantom(
        &spec,
        &SynthDwiOptions {
            flavour: Flavour::Ge,
            enhanced: false,
            shuffle: false,
            mosaic: false,
        },
        tmp.path(),
    )
    .unwrap();
    let dicom = tmp.path().join("dicom");
    // As GE writes it: (0043,1039) holds the nominal (largest) b for every image, and the
    // lower shells' gradient vectors are scaled by sqrt(b / nominal).
    let ge_b = Tag(0x0043, 0x1039);
    let gradient = [
        Tag(0x0019, 0x10BB),
        Tag(0x0019, 0x10BC),
        Tag(0x0019, 0x10BD),
    ];
    for f in common::files_below(&dicom) {
        let mut obj = dicom_object::open_file(&f).unwrap();
        let b = text(&obj, ge_b)
            .split('\\')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            % 1e9;
        if b > 0.0 {
            let scale = (b / 900.0).sqrt();
            put(&mut obj, ge_b, VR::IS, "1000000900\\8\\0\\0");
            for t in gradient {
                let g: f64 = text(&obj, t).parse().unwrap();
                put(&mut obj, t, VR::DS, &format!("{:.8}", g * scale));
            }
        }
        obj.write_to_file(&f).unwrap();
    }
    let scan = paramap::io::dicom::scan(&dicom).unwrap();
    assert_eq!(scan.series[0].b_values(), vec![0.0, 100.0, 400.0, 900.0]);
    let (series, _) = load_dwi(&dicom, &InputOptions::default()).unwrap();
    let result = compute(&series, &AdcOptions::default(), &Engine::Cpu).unwrap();
    let phantom = dwi_phantom(&spec);
    assert_adc_within_1_percent(&result.adc, &phantom);
}

#[test]
fn twelve_bit_data_with_an_overlay_in_the_high_bits_reads_the_stored_bits_only() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = DwiPhantomSpec::default();
    common::dwi_phantom(tmp.path(), &spec);
    let dicom = tmp.path().join("dicom");
    // 12 stored bits (HighBit 11) in each 16-bit word; an overlay box (bit 15) in the top-left
    // 12×12 pixels of every image, where the phantom has no tissue.
    for f in common::files_below(&dicom) {
        let mut obj = dicom_object::open_file(&f).unwrap();
        let cols: usize = text(&obj, tags::COLUMNS).parse().unwrap();
        let slope: f64 = text(&obj, tags::RESCALE_SLOPE).parse().unwrap();
        let raw = obj
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec();
        let words: Vec<u16> = raw
            .chunks_exact(2)
            .enumerate()
            .map(|(i, c)| {
                let sv = (u16::from_le_bytes([c[0], c[1]]) as f64 / 16.0).round() as u16;
                assert!(sv < 4096);
                let (x, y) = (i % cols, i / cols);
                if x < 12 && y < 12 {
                    sv | 0x8000
                } else {
                    sv
                }
            })
            .collect();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(words.into()),
        ));
        put(
            &mut obj,
            tags::RESCALE_SLOPE,
            VR::DS,
            &format!("{:.9}", slope * 16.0),
        );
        obj.put(DataElement::new(
            tags::BITS_STORED,
            VR::US,
            PrimitiveValue::from(12u16),
        ));
        obj.put(DataElement::new(
            tags::HIGH_BIT,
            VR::US,
            PrimitiveValue::from(11u16),
        ));
        obj.write_to_file(&f).unwrap();
    }
    let (series, _) = load_dwi(&dicom, &InputOptions::default()).unwrap();
    // The phantom's own NIfTI holds the true values: every voxel, the overlay box included,
    // within the 12-bit quantisation (half a step of about 1/1875 of each volume's maximum).
    let (truth, _, _) = nifti::read(&tmp.path().join("nifti/dwi.nii.gz")).unwrap();
    assert_eq!(series.data.dim(), truth.dim());
    for (v, (got, want)) in series.data.outer_iter().zip(truth.outer_iter()).enumerate() {
        let max = want.iter().fold(0f32, |m, &x| m.max(x));
        for (a, b) in got.iter().zip(want.iter()) {
            assert!(
                (a - b).abs() <= 1e-3 * max,
                "volume {v}: {a} where the truth is {b}"
            );
        }
    }
    let result = compute(&series, &AdcOptions::default(), &Engine::Cpu).unwrap();
    let phantom = dwi_phantom(&spec);
    for (l, m) in phantom.labels.iter().zip(result.mask.iter()) {
        assert_eq!(*l != 0, *m, "the mask follows the tissue, not the overlay");
    }
    assert_adc_within_1_percent(&result.adc, &phantom);
}

/// The DSC phantom's NIfTI, uncompressed, with pixdim[4] and the time unit of xyzt_units
/// replaced; no sidecar beside it.
fn dsc_nifti_in(dir: &Path, name: &str, pixdim4: f32, time_code: u8) -> PathBuf {
    let ph = dir.join("ph");
    if !ph.exists() {
        write_dsc_phantom(
            &DscPhantomSpec::default(),
            &SynthDscOptions {
                flavour: Flavour::Standard,
                enhanced: false,
                shuffle: false,
            },
            &ph,
        )
        .unwrap();
    }
    let gz = std::fs::read(ph.join("nifti/dsc.nii.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    raw[92..96].copy_from_slice(&pixdim4.to_le_bytes());
    raw[123] = (raw[123] & 0x07) | time_code;
    let path = dir.join(name);
    std::fs::write(&path, raw).unwrap();
    path
}

#[test]
fn a_nifti_in_milliseconds_or_microseconds_gives_dt_in_seconds_and_no_time_unit_asks_for_dt() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, pixdim4, code, unit) in [
        ("ms.nii", 1500.0, 16, "ms"),
        ("us.nii", 1_500_000.0, 24, "µs"),
        ("s.nii", 1.5, 8, ""),
    ] {
        let input = dsc_nifti_in(tmp.path(), name, pixdim4, code);
        let out = tmp.path().join(format!("out_{name}"));
        let output = common::run("dsc", &input, &out, &["--te", "30"]);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("dsc.json")).unwrap()).unwrap();
        assert_eq!(record["sampling_interval_s"], 1.5, "{name}");
        assert!(
            record["timing_source"].as_str().unwrap().contains(unit),
            "{name}: {}",
            record["timing_source"]
        );
    }
    for (name, code, what) in [
        ("unknown.nii", 0, "code 0, unknown"),
        ("hz.nii", 32, "code 32"),
    ] {
        let input = dsc_nifti_in(tmp.path(), name, 1.5, code);
        let out = tmp.path().join(format!("out_{name}"));
        let output = common::run("dsc", &input, &out, &["--te", "30"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        for needle in [name, "pixdim[4] = 1.5", what, "--dt"] {
            assert!(stderr.contains(needle), "{name}: no {needle:?} in {stderr}");
        }
        assert!(common::files_below(&out).is_empty());
    }
}

/// Every region's median ADC within 1% of the phantom's truth.
fn assert_adc_within_1_percent(
    adc: &ndarray::Array3<f32>,
    phantom: &paramap::synth::dwi::DwiPhantom,
) {
    for r in &phantom.regions {
        let median = common::median_in(adc, &phantom.labels, r.label);
        assert!(
            (median - r.adc()).abs() / r.adc() < 0.01,
            "{}: ADC {median:e} vs truth {:e}",
            r.name,
            r.adc()
        );
    }
}
