//! `paramap dsc` on bad input: every case fails with a non-zero exit status, says on stderr
//! what is wrong (naming the series, file or frame at fault) and leaves no output behind: the
//! output folder is absent or empty and no `.paramap-partial-*` staging folder remains
//! anywhere below the test's temporary folder. Voxels whose signal cannot be computed are NaN,
//! not a crash. Positive controls show that the intact phantom, and the damaged one with the
//! user's override, succeed through the same command line.

mod common;

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use ndarray::{Array3, Axis};
use paramap::io::dicom::write::Flavour;
use paramap::io::nifti;
use paramap::models::delta_r2star::Echo;
use paramap::pipeline::adc::MaskChoice;
use paramap::pipeline::dsc::{compute, DscInput, DscOptions};
use paramap::pipeline::synth::{write_dsc_phantom, SynthDscOptions};
use paramap::pipeline::Engine;
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec};
use paramap::volume::Geometry;

/// Slices and time points of the default DSC phantom (48×48×4, 60 frames every 1.5 s).
const NZ: usize = 4;
const NT: usize = 60;

/// Writes the classic (one file per image), unshuffled Standard-flavour DSC phantom into
/// `dir`: `dir/dicom/IM_{v·4 + z + 1:05}.dcm` and `dir/nifti/dsc.nii.gz` with `dsc.json`.
fn phantom(spec: &DscPhantomSpec, dir: &Path) -> PathBuf {
    write_dsc_phantom(
        spec,
        &SynthDscOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            shuffle: false,
        },
        dir,
    )
    .expect("the phantom is written");
    dir.to_path_buf()
}

/// The DICOM file of time point `v`, slice `z` (both from 0) of an unshuffled phantom.
fn image(dicom: &Path, v: usize, z: usize) -> PathBuf {
    dicom.join(format!("IM_{:05}.dcm", v * NZ + z + 1))
}

/// Runs the command and checks that it succeeds and writes the maps and the record.
fn succeeds(input: &Path, out: &Path, root: &Path, extra: &[&str], what: &str) {
    let output = common::run("dsc", input, out, extra);
    assert!(
        output.status.success(),
        "{what}: paramap dsc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in ["rcbv.nii.gz", "dsc.json"] {
        assert!(out.join(name).is_file(), "{what}: {name} was not written");
    }
    let staging = common::staging_folders_below(root);
    assert!(
        staging.is_empty(),
        "{what}: staging left behind: {staging:?}"
    );
}

/// AcquisitionTime (TM, HHMMSS.ffffff) in seconds since midnight.
fn acquisition_time_s(obj: &dicom_object::DefaultDicomObject) -> f64 {
    let tm = obj
        .element(tags::ACQUISITION_TIME)
        .expect("the phantom's images carry AcquisitionTime")
        .to_str()
        .expect("AcquisitionTime is text")
        .trim_end_matches(['\0', ' '])
        .to_string();
    let num = |s: &str| s.parse::<f64>().expect("a TM field");
    num(&tm[0..2]) * 3600.0 + num(&tm[2..4]) * 60.0 + num(&tm[4..])
}

fn tm(seconds: f64) -> String {
    format!(
        "{:02}{:02}{:09.6}",
        (seconds / 3600.0) as u32,
        ((seconds % 3600.0) / 60.0) as u32,
        seconds % 60.0
    )
}

/// The phantom's 3-D grid (read back from its NIfTI, as a user's mask would be made).
fn phantom_geometry(ph: &Path) -> Geometry {
    nifti::read(&ph.join("nifti/dsc.nii.gz"))
        .expect("the phantom NIfTI reads")
        .1
}

#[test]
fn the_intact_phantom_succeeds_from_dicom_and_from_nifti_so_the_failures_below_are_the_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let ph = phantom(&DscPhantomSpec::default(), &tmp.path().join("ph"));
    assert_eq!(common::files_below(&ph.join("dicom")).len(), NT * NZ);
    for (what, input) in [
        ("dicom", ph.join("dicom")),
        ("nifti", ph.join("nifti/dsc.nii.gz")),
    ] {
        succeeds(
            &input,
            &tmp.path().join(format!("out_{what}")),
            tmp.path(),
            &[],
            what,
        );
    }
}

#[test]
fn a_nifti_without_a_sidecar_takes_dt_from_pixdim4_and_fails_without_one() {
    // No BIDS JSON beside it: Δt comes from the header's pixdim[4] (read without the voxels),
    // TE from --te. With pixdim[4] = 0 there is no Δt at all: the error says to give --dt.
    let tmp = tempfile::tempdir().unwrap();
    let ph = phantom(&DscPhantomSpec::default(), &tmp.path().join("ph"));
    let nifti = ph.join("nifti");
    std::fs::remove_file(nifti.join("dsc.json")).unwrap();
    let input = nifti.join("dsc.nii.gz");
    let out = tmp.path().join("out");
    succeeds(&input, &out, tmp.path(), &["--te", "30"], "pixdim[4]");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("dsc.json")).unwrap()).unwrap();
    assert_eq!(record["timing_source"], "Δt = NIfTI pixdim[4]");
    assert_eq!(record["sampling_interval_s"], 1.5);

    let gz = std::fs::read(&input).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    raw[92..96].copy_from_slice(&0f32.to_le_bytes()); // pixdim[4]
    let no_tr = nifti.join("no_tr.nii");
    std::fs::write(&no_tr, &raw).unwrap();
    common::fails_cleanly(
        "dsc",
        &no_tr,
        &tmp.path().join("out_no_tr"),
        tmp.path(),
        &["--te", "30"],
        &["no_tr.nii", "no sampling interval", "--dt"],
    );
}

#[test]
fn a_series_missing_one_time_point_of_one_slice_fails_saying_slices_hold_different_numbers_of_images(
) {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&DscPhantomSpec::default(), &tmp.path().join("ph")).join("dicom");
    std::fs::remove_file(image(&dicom, 30, 2)).unwrap();
    // The same time point of a complete slice (slice 1) is named as what the image was like.
    let like = image(&dicom, 30, 0);
    let like = like.file_name().unwrap().to_string_lossy();
    common::fails_cleanly(
        "dsc",
        &dicom,
        &tmp.path().join("out"),
        tmp.path(),
        &[],
        &[
            "paramap DSC phantom",
            "slices hold different numbers of images",
            "59 to 60",
            "slice 3",
            "holds 59",
            // time point 30 from 0 is TemporalPositionIdentifier 31
            "the image(s) with TemporalPositionIdentifier 31 (like ",
            &like,
            "are missing",
            "re-send or re-export the complete series",
        ],
    );
}

#[test]
fn acquisition_times_with_a_gap_fail_saying_sampling_is_not_uniform_at_that_time_point_and_dt_overrides(
) {
    let tmp = tempfile::tempdir().unwrap();
    let dicom = phantom(&DscPhantomSpec::default(), &tmp.path().join("ph")).join("dicom");
    // Every slice's images from time point 30 (from 0) on are acquired 1 s later: a 2.5 s
    // step before time point 31 (from 1) where the series samples every 1.5 s. Ordering is by
    // TemporalPositionIdentifier first, and the times still increase.
    for v in 30..NT {
        for z in 0..NZ {
            let f = image(&dicom, v, z);
            let mut obj = dicom_object::open_file(&f).unwrap();
            let shifted = acquisition_time_s(&obj) + 1.0;
            obj.put(DataElement::new(
                tags::ACQUISITION_TIME,
                VR::TM,
                PrimitiveValue::from(tm(shifted).as_str()),
            ));
            obj.write_to_file(&f).unwrap();
            let back = dicom_object::open_file(&f).unwrap();
            assert!((acquisition_time_s(&back) - shifted).abs() < 1e-6);
        }
    }
    common::fails_cleanly(
        "dsc",
        &dicom,
        &tmp.path().join("out"),
        tmp.path(),
        &[],
        &[
            "paramap DSC phantom",
            "sampling is not uniform",
            "time point 31",
            "2.500 s",
            "every 1.500 s",
            "--dt",
        ],
    );
    // The user's override: the same files with --dt 1.5.
    let out = tmp.path().join("out_dt");
    succeeds(&dicom, &out, tmp.path(), &["--dt", "1.5"], "--dt 1.5");
    let record = std::fs::read_to_string(out.join("dsc.json")).unwrap();
    assert!(record.contains("Δt from --dt"), "{record}");
}

#[test]
fn a_series_of_six_frames_fails_saying_a_baseline_needs_at_least_seven() {
    let tmp = tempfile::tempdir().unwrap();
    // `paramap synth dsc` refuses fewer than 20 frames, so the library writes this one.
    let spec = DscPhantomSpec {
        n_t: 6,
        ..Default::default()
    };
    let ph = phantom(&spec, &tmp.path().join("ph"));
    for (what, input) in [
        ("dicom", ph.join("dicom")),
        ("nifti", ph.join("nifti/dsc.nii.gz")),
    ] {
        common::fails_cleanly(
            "dsc",
            &input,
            &tmp.path().join(format!("out_{what}")),
            tmp.path(),
            &[],
            &[
                "the series has 6 time points",
                "a baseline needs at least 7",
                "2 skipped for steady state",
            ],
        );
    }
}

#[test]
fn zero_or_negative_signal_voxels_are_nan_in_every_map_while_their_neighbours_are_finite() {
    let phantom = dsc_phantom(&DscPhantomSpec::default());
    let labels = &phantom.labels;
    let (nz, ny, nx) = labels.dim();
    // White-matter voxels whose 4 in-plane neighbours are white matter too.
    let interior = |z: usize, y: usize, x: usize| {
        [(0, 0), (1, 0), (0, 1), (2, 1), (1, 2)]
            .iter()
            .all(|&(dy, dx)| labels[[z, y + dy - 1, x + dx - 1]] == 1)
    };
    let mut picks: Vec<[usize; 3]> = Vec::new();
    'outer: for z in 0..nz {
        for y in (1..ny - 1).step_by(7) {
            for x in (1..nx - 1).step_by(7) {
                if interior(z, y, x) {
                    picks.push([z, y, x]);
                    if picks.len() == 4 {
                        break 'outer;
                    }
                }
            }
        }
    }
    assert_eq!(picks.len(), 4, "four interior white-matter voxels");
    let (zeroed, negative) = (&picks[..3], picks[3]);
    let mut series = phantom.series.clone();
    for &[z, y, x] in zeroed {
        series.data[[20, z, y, x]] = 0.0;
    }
    for t in 0..NT {
        series.data[[t, negative[0], negative[1], negative[2]]] = -5.0;
    }
    let input = DscInput {
        echo1: series,
        echo2: None,
        dt_s: 1.5,
        echo: Echo::Single { te: 0.03 },
        timing_source: String::new(),
        mapped: [None, None],
    };
    let neighbours =
        |[z, y, x]: [usize; 3]| [[z, y, x - 1], [z, y, x + 1], [z, y - 1, x], [z, y + 1, x]];

    // The automatic brain mask: a voxel zero in one frame is in it, and NaN.
    let r = compute(&input, &DscOptions::default(), &Engine::Cpu)
        .expect("zero and negative signal voxels do not stop the analysis");
    let maps = [
        ("cbv_integral", &r.cbv_integral),
        ("rcbv", &r.rcbv),
        ("k2", &r.k2),
        ("ttp", &r.ttp),
    ];
    for &p in zeroed {
        assert!(r.brain[p], "{p:?} is inside the automatic brain mask");
        for (name, m) in maps {
            assert!(
                m[p].is_nan(),
                "{name}{p:?} = {} where the signal is 0",
                m[p]
            );
            for q in neighbours(p) {
                assert!(m[q].is_finite(), "{name}{q:?} next to {p:?} = {}", m[q]);
            }
        }
        assert_eq!(r.rcbv_class[p], 0, "an invalid voxel has no class");
    }
    assert!(r.invalid_voxels >= zeroed.len());
    // A voxel negative throughout has a mean below the Otsu threshold: outside the automatic
    // mask, where every map is 0 by definition.
    assert!(!r.brain[negative]);
    for (name, m) in maps {
        assert_eq!(m[negative], 0.0, "{name}{negative:?} outside the brain");
    }

    // With a brain mask that includes it, the negative voxel is NaN, not a crash.
    let brain: Array3<bool> = labels.mapv(|l| l != 0);
    let opts = DscOptions {
        brain_mask: MaskChoice::User(brain, PathBuf::from("phantom labels")),
        ..DscOptions::default()
    };
    let r = compute(&input, &opts, &Engine::Cpu)
        .expect("zero and negative signal voxels do not stop the analysis");
    let maps = [
        ("cbv_integral", &r.cbv_integral),
        ("rcbv", &r.rcbv),
        ("k2", &r.k2),
        ("ttp", &r.ttp),
    ];
    for &p in zeroed.iter().chain([&negative]) {
        assert!(r.brain[p]);
        for (name, m) in maps {
            assert!(
                m[p].is_nan(),
                "{name}{p:?} = {} where the signal is ≤ 0",
                m[p]
            );
            for q in neighbours(p) {
                assert!(m[q].is_finite(), "{name}{q:?} next to {p:?} = {}", m[q]);
            }
        }
    }
    assert!(r.invalid_voxels >= picks.len());
    // The automatic white-matter reference of this noise-free phantom (over half of its brain
    // shares one CBV) is white matter, and nothing else.
    let reference: Vec<u8> = r
        .reference_mask
        .iter()
        .zip(labels.iter())
        .filter(|(&m, _)| m)
        .map(|(_, &l)| l)
        .collect();
    assert!(
        reference.len() > 100,
        "{} reference voxels",
        reference.len()
    );
    assert!(
        reference.iter().all(|&l| l == 1),
        "the reference leaves white matter"
    );
    assert!(r.reference_corrected.value.is_finite() && r.reference_corrected.value > 0.0);
}

#[test]
fn a_reference_mask_in_the_background_fails_saying_it_lies_outside_the_brain() {
    let tmp = tempfile::tempdir().unwrap();
    let ph = phantom(&DscPhantomSpec::default(), &tmp.path().join("ph"));
    let g = phantom_geometry(&ph);
    let [nx, ny, nz] = g.dims;
    // The four in-plane corners (4×4 voxels each) of every slice: background.
    let corners = Array3::from_shape_fn((nz, ny, nx), |(_, y, x)| {
        (y < 4 || y >= ny - 4) && (x < 4 || x >= nx - 4)
    });
    let mask = tmp.path().join("corners.nii.gz");
    nifti::write_mask(&mask, &corners, &g, "background corners").unwrap();
    let mask_arg = mask.to_string_lossy().to_string();
    for (what, input) in [
        ("dicom", ph.join("dicom")),
        ("nifti", ph.join("nifti/dsc.nii.gz")),
    ] {
        common::fails_cleanly(
            "dsc",
            &input,
            &tmp.path().join(format!("out_{what}")),
            tmp.path(),
            &["--ref-mask", &mask_arg],
            &[
                "normal-appearing white matter reference",
                "corners.nii.gz",
                "lies outside the brain",
                "only 0 of its 256 voxels are inside the brain mask",
            ],
        );
    }
}

#[test]
fn an_empty_reference_mask_fails_saying_it_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let ph = phantom(&DscPhantomSpec::default(), &tmp.path().join("ph"));
    let g = phantom_geometry(&ph);
    let [nx, ny, nz] = g.dims;
    let mask = tmp.path().join("empty.nii.gz");
    nifti::write_mask(&mask, &Array3::from_elem((nz, ny, nx), false), &g, "empty").unwrap();
    common::fails_cleanly(
        "dsc",
        &ph.join("nifti/dsc.nii.gz"),
        &tmp.path().join("out"),
        tmp.path(),
        &["--ref-mask", &mask.to_string_lossy()],
        &[
            "empty.nii.gz",
            "the reference region is empty",
            "no voxel selected",
        ],
    );
}

#[test]
fn a_reference_mask_on_another_grid_fails_saying_its_grid_differs_from_the_series() {
    let tmp = tempfile::tempdir().unwrap();
    let ph = phantom(&DscPhantomSpec::default(), &tmp.path().join("ph"));
    let g = Geometry {
        dims: [32, 32, NZ],
        ..phantom_geometry(&ph)
    };
    let mask = tmp.path().join("small.nii.gz");
    nifti::write_mask(
        &mask,
        &Array3::from_elem((NZ, 32, 32), true),
        &g,
        "32x32 grid",
    )
    .unwrap();
    common::fails_cleanly(
        "dsc",
        &ph.join("dicom"),
        &tmp.path().join("out"),
        tmp.path(),
        &["--ref-mask", &mask.to_string_lossy()],
        &[
            "small.nii.gz",
            "reference mask grid (4, 32, 32)",
            "differs from the series",
            "(4, 48, 48)",
        ],
    );
}

#[test]
fn a_flat_series_without_a_bolus_fails_saying_no_bolus_found_and_suggesting_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let ph = phantom(&DscPhantomSpec::default(), &tmp.path().join("ph"));
    let file = ph.join("nifti/dsc.nii.gz");
    let (mut data, g, _) = nifti::read(&file).unwrap();
    assert_eq!(data.dim().0, NT);
    let frame5 = data.index_axis(Axis(0), 5).to_owned();
    for mut vol in data.axis_iter_mut(Axis(0)) {
        vol.assign(&frame5);
    }
    // Same file name, so the BIDS sidecar (EchoTime, RepetitionTime) still applies.
    nifti::write_series(&file, &data, &g, "flat: every frame is frame 5", Some(1.5)).unwrap();
    common::fails_cleanly(
        "dsc",
        &file,
        &tmp.path().join("out"),
        tmp.path(),
        &[],
        &[
            "no bolus found",
            "check that this is a DSC series",
            "--baseline",
        ],
    );
}
