//! Previews and the study report, checked against truth: the phantoms' known maps, the
//! published colormap colours, docs/methods.md §1's table, and what headless Chromium shows.

mod common;

use common::chromium::{decode, show_in_chromium, Image};
use ndarray::{Array3, Array4};
use paramap::report::colormap::{lightness, NAN_COLOUR};
use paramap::report::Curve;
use paramap::report::*;
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec, WHITE_MATTER};
use paramap::synth::dwi::{dwi_phantom, DwiPhantomSpec};

const VIRIDIS_LO: [u8; 3] = [0x44, 0x01, 0x54];
const VIRIDIS_HI: [u8; 3] = [0xfd, 0xe7, 0x25];

fn adc_truth() -> (Array3<f32>, Array3<u8>) {
    let p = dwi_phantom(&DwiPhantomSpec::default());
    (p.adc_truth, p.labels)
}

#[test]
fn adc_montage_shows_each_phantom_region_in_its_viridis_colour_anterior_up() {
    let (adc, labels) = adc_truth();
    let (nz, ny, nx) = adc.dim();
    let mut spec = PreviewSpec::new("ADC", "mm2/s", Colormap::Viridis);
    spec.range = Some((0.0, 3.0e-3));
    let m = montage(adc.view(), &spec).unwrap();
    let img = decode(&m.png);
    assert_eq!((img.w, img.h), (m.width, m.height));
    assert_eq!(m.slices, (0..nz).collect::<Vec<_>>());
    assert_eq!(m.tiles.len(), nz);
    assert_eq!(m.stride, 1);
    assert!(m.zoom >= 2, "a 48×48 slice is enlarged");
    let z = m.zoom;
    // Every voxel of every slice: the pixel block at its place (row ny-1 at the top) has the
    // viridis colour of its true ADC on 0..3e-3.
    for (k, &[tx, ty]) in m.tiles.iter().enumerate() {
        for y in 0..ny {
            for x in 0..nx {
                let want = Colormap::Viridis.rgb(adc[[k, y, x]], 0.0, 3.0e-3);
                for (ox, oy) in [(0, 0), (z - 1, z - 1)] {
                    let got = img.at(tx + x * z + ox, ty + (ny - 1 - y) * z + oy);
                    assert_eq!(got, want, "slice {k} voxel (x {x}, y {y})");
                }
            }
        }
    }
    // The range's ends are the published viridis ends: CSF (3.0e-3) and background (0).
    let [tx, ty] = m.tiles[0];
    let centre = img.at(tx + (nx / 2) * z, ty + (ny / 2) * z);
    assert_eq!(labels[[0, ny / 2, nx / 2]], 3, "CSF at the centre");
    assert_eq!(centre, VIRIDIS_HI);
    assert_eq!(img.at(tx, ty), VIRIDIS_LO, "background corner");
    // Orientation: the restricted lesion sits at high row indices (y = +0.45 in the phantom's
    // frame), so it is drawn in the top half; grey matter (x = -0.42) on the left and the
    // treatment-effect lesion (x = +0.42) on the right, columns unflipped.
    let centroid = |label: u8| {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for py in 0..ny * z {
            for px in 0..nx * z {
                let (x, y) = (px / z, ny - 1 - py / z);
                if labels[[0, y, x]] == label {
                    sx += px as f64;
                    sy += py as f64;
                    n += 1.0;
                }
            }
        }
        (sx / n / (nx * z) as f64, sy / n / (ny * z) as f64)
    };
    assert!(centroid(5).1 < 0.5, "restricted lesion in the top half");
    assert!(centroid(2).0 < 0.5 && centroid(4).0 > 0.5);
    let restricted = Colormap::Viridis.rgb(0.5e-3, 0.0, 3.0e-3);
    let top_half_hits = (0..ny * z / 2)
        .flat_map(|py| (0..nx * z).map(move |px| (px, py)))
        .filter(|&(px, py)| img.at(tx + px, ty + py) == restricted)
        .count();
    assert!(
        top_half_hits > 100,
        "the restricted lesion's colour is drawn in the top half"
    );

    // Colour bar: top row is the high end, bottom row the low end, lightness falls downwards.
    let [bx, by, bw, bh] = m.colour_bar;
    assert_eq!(img.at(bx + bw / 2, by), VIRIDIS_HI);
    assert_eq!(img.at(bx + bw / 2, by + bh - 1), VIRIDIS_LO);
    for r in 1..bh {
        assert!(
            lightness(img.at(bx, by + r)) <= lightness(img.at(bx, by + r - 1)) + 0.05,
            "colour bar row {r}"
        );
    }
    // Tick labels and the unit: white text right of the bar and above it.
    let white_right = (by..by + bh)
        .flat_map(|y| (bx + bw + 6..img.w).map(move |x| (x, y)))
        .filter(|&(x, y)| img.at(x, y) == [255, 255, 255])
        .count();
    assert!(white_right > 40, "tick labels are drawn ({white_right} px)");
    let white_above = (by.saturating_sub(14)..by)
        .flat_map(|y| (bx..img.w).map(move |x| (x, y)))
        .filter(|&(x, y)| img.at(x, y) == [255, 255, 255])
        .count();
    assert!(white_above > 40, "the unit is written above the bar");
    let white_title = (0..24)
        .flat_map(|y| (0..img.w).map(move |x| (x, y)))
        .filter(|&(x, y)| img.at(x, y) == [255, 255, 255])
        .count();
    assert!(white_title > 40, "the title is written");
}

#[test]
fn masked_voxels_are_black_nan_voxels_grey_and_the_range_is_the_2_98_percentile() {
    // A ramp 0..99 along x, one slice of 4 rows.
    let mut map = Array3::from_shape_fn((1, 4, 100), |(_, _, x)| x as f32);
    map[[0, 1, 10]] = f32::NAN;
    let mut mask = Array3::from_elem((1, 4, 100), true);
    mask[[0, 2, 20]] = false;
    let mut spec = PreviewSpec::new("ramp", "", Colormap::Viridis);
    spec.mask = Some(mask.view());
    let m = montage(map.view(), &spec).unwrap();
    // 398 finite values inside the mask; the ends of the percentile range are close to 2 and 97.
    assert_eq!(m.finite_voxels, 398);
    let (lo, hi) = m.range;
    assert!(
        (lo - 2.0).abs() < 0.1 && (hi - 97.0).abs() < 0.1,
        "{lo} {hi}"
    );
    assert!(m.automatic_range);
    let img = decode(&m.png);
    let [tx, ty] = m.tiles[0];
    let px = |x: usize, y: usize| img.at(tx + x * m.zoom, ty + (3 - y) * m.zoom);
    assert_eq!(px(10, 1), NAN_COLOUR);
    assert_eq!(px(20, 2), [0, 0, 0]);
    assert_eq!(px(0, 0), VIRIDIS_LO, "below the range: first colour");
    assert_eq!(px(99, 0), VIRIDIS_HI, "above the range: last colour");
}

#[test]
fn a_large_stack_is_subsampled_to_a_bounded_image() {
    let map = Array3::from_shape_fn((40, 512, 512), |(z, _, _)| z as f32);
    let m = montage(map.view(), &PreviewSpec::new("big", "s", Colormap::Magma)).unwrap();
    assert!(m.slices.len() <= paramap::report::montage::MAX_SLICES);
    assert_eq!(m.slices[0], 0);
    assert!(m.stride >= 2);
    assert!(
        m.width <= 1400 && m.height <= 3000,
        "{}×{}",
        m.width,
        m.height
    );
}

#[test]
fn bad_preview_requests_are_errors_not_panics() {
    let map = Array3::<f32>::zeros((2, 3, 4));
    let other = Array3::from_elem((2, 4, 3), true);
    let mut spec = PreviewSpec::new("ADC", "mm2/s", Colormap::Viridis);
    spec.mask = Some(other.view());
    let e = montage_png(map.view(), &spec).unwrap_err().to_string();
    assert!(e.contains("ADC") && e.contains("mask grid"), "{e}");
    let mut spec = PreviewSpec::new("ADC", "mm2/s", Colormap::Viridis);
    spec.range = Some((1.0, 1.0));
    let e = montage_png(map.view(), &spec).unwrap_err().to_string();
    assert!(e.contains("low < high"), "{e}");
    spec.range = None;
    let empty = Array3::<f32>::zeros((0, 3, 4));
    assert!(montage_png(empty.view(), &spec).is_err());
    // All NaN: drawn, grey, not an error.
    let nan = Array3::from_elem((1, 2, 2), f32::NAN);
    let m = montage(nan.view(), &spec).unwrap();
    assert_eq!(m.finite_voxels, 0);
    assert_eq!(decode(&m.png).at(m.tiles[0][0], m.tiles[0][1]), NAN_COLOUR);
}

// ---- docs/methods.md §1 reading ----

fn read(rcbv: Option<f64>, adc: Option<f64>) -> Reading {
    read_rcbv_adc(rcbv, adc, &ReadingThresholds::default()).unwrap()
}

#[test]
fn low_rcbv_with_high_adc_supports_treatment_effect() {
    let r = read(Some(1.2), Some(1.3e-3));
    assert_eq!(r.class, ReadingClass::SupportsTreatmentEffect);
    assert!(
        r.statement.contains("rCBV 1.20 < 1.5")
            && r.statement.contains("1.30×10⁻³ mm²/s > 1.00×10⁻³ mm²/s")
            && r.statement.contains("pseudoprogression")
            && r.statement.contains("not a diagnosis"),
        "{}",
        r.statement
    );
}

#[test]
fn high_rcbv_supports_progression_whatever_the_adc() {
    for adc in [None, Some(0.6e-3), Some(1.6e-3)] {
        let r = read(Some(2.7), adc);
        assert_eq!(r.class, ReadingClass::SupportsProgression);
        assert!(r.statement.contains("2.70 > 2") && r.statement.contains("not a diagnosis"));
    }
}

#[test]
fn between_thresholds_or_low_rcbv_with_low_adc_meets_neither() {
    for rcbv in [1.5, 1.8, 2.0] {
        let r = read(Some(rcbv), Some(1.3e-3));
        assert_eq!(r.class, ReadingClass::Indeterminate, "rCBV {rcbv}");
        assert!(r.statement.contains("between"));
    }
    let r = read(Some(1.2), Some(0.8e-3));
    assert_eq!(r.class, ReadingClass::Indeterminate);
    assert!(r.statement.contains("neither"));
    // ADC exactly at the threshold is not above it.
    assert_eq!(
        read(Some(1.2), Some(1.0e-3)).class,
        ReadingClass::Indeterminate
    );
}

#[test]
fn missing_values_give_no_reading() {
    assert_eq!(
        read(None, Some(1.3e-3)).class,
        ReadingClass::InsufficientData
    );
    assert_eq!(
        read(Some(f64::NAN), None).class,
        ReadingClass::InsufficientData
    );
    let r = read(Some(1.2), None);
    assert_eq!(r.class, ReadingClass::InsufficientData);
    assert!(r.statement.contains("needs ADC"));
    assert!(r.statement.contains("not a diagnosis"));
}

#[test]
fn thresholds_are_parameters() {
    let strict = ReadingThresholds {
        rcbv_low: 1.0,
        rcbv_high: 1.75,
        adc_high_mm2_s: 1.2e-3,
    };
    let r = read_rcbv_adc(Some(1.2), Some(1.3e-3), &strict).unwrap();
    assert_eq!(r.class, ReadingClass::Indeterminate);
    assert_eq!(r.thresholds, strict);
    let r = read_rcbv_adc(Some(1.8), Some(1.3e-3), &strict).unwrap();
    assert_eq!(r.class, ReadingClass::SupportsProgression);
    let r = read_rcbv_adc(Some(0.9), Some(1.1e-3), &strict).unwrap();
    assert_eq!(
        r.class,
        ReadingClass::Indeterminate,
        "ADC 1.1e-3 is not above 1.2e-3"
    );
    let bad = ReadingThresholds {
        rcbv_low: 2.5,
        ..Default::default()
    };
    assert!(read_rcbv_adc(Some(1.0), Some(1e-3), &bad).is_err());
}

#[test]
fn adc_in_scanner_integer_units_is_refused() {
    // 1300 (10⁻⁶ mm²/s, as scanners store ADC) passed where mm²/s is expected.
    let e = read_rcbv_adc(Some(1.2), Some(1300.0), &ReadingThresholds::default()).unwrap_err();
    assert!(e.to_string().contains("10⁻⁶"), "{e}");
}

#[test]
fn roi_medians_of_the_phantoms_give_the_expected_readings() {
    // DSC phantom: region 3 is the low-rCBV lesion (CBV 2.4 against white matter's 2.0: rCBV
    // 1.2), region 4 the high-rCBV one (6.0 / 2.0 = 3.0).
    let dsc = dsc_phantom(&DscPhantomSpec::default());
    let wm = dsc
        .regions
        .iter()
        .find(|r| r.label == WHITE_MATTER)
        .unwrap()
        .cbv;
    let rcbv = dsc.labels.mapv(|l| {
        dsc.regions
            .iter()
            .find(|r| r.label == l)
            .map_or(0.0, |r| (r.cbv / wm) as f32)
    });
    let low = roi_stat(
        rcbv.view(),
        dsc.labels.mapv(|l| l == 3).view(),
        "rCBV",
        "ratio",
    )
    .unwrap();
    let high = roi_stat(
        rcbv.view(),
        dsc.labels.mapv(|l| l == 4).view(),
        "rCBV",
        "ratio",
    )
    .unwrap();
    assert!((low.median - 1.2).abs() < 1e-6 && low.sd.abs() < 1e-6 && low.n > 10);
    assert!((high.median - 3.0).abs() < 1e-6);
    // DWI phantom: region 4 is the treatment-effect lesion, ADC 1.4e-3 mm²/s.
    let (adc, labels) = adc_truth();
    let adc_roi = roi_stat(adc.view(), labels.mapv(|l| l == 4).view(), "ADC", "mm2/s").unwrap();
    assert!((adc_roi.median - 1.4e-3).abs() < 1e-9);
    let t = ReadingThresholds::default();
    let r = read_rcbv_adc(Some(low.median), Some(adc_roi.median), &t).unwrap();
    assert_eq!(r.class, ReadingClass::SupportsTreatmentEffect);
    let r = read_rcbv_adc(Some(high.median), Some(adc_roi.median), &t).unwrap();
    assert_eq!(r.class, ReadingClass::SupportsProgression);
}

#[test]
fn an_roi_mask_is_read_from_nifti_and_must_lie_on_the_maps_grid() {
    let p = dwi_phantom(&DwiPhantomSpec::default());
    let g = &p.series.geometry;
    let dir = tempfile::tempdir().unwrap();
    let lesion = p.labels.mapv(|l| l == 4);
    let path = dir.path().join("roi.nii.gz");
    paramap::io::nifti::write_mask(&path, &lesion, g, "lesion").unwrap();
    let roi = load_roi(&path, g).unwrap();
    assert_eq!(roi, lesion);
    let s = roi_stat(p.adc_truth.view(), roi.view(), "ADC", "mm2/s").unwrap();
    assert_eq!(s.n, lesion.iter().filter(|&&b| b).count());

    let mut moved = g.clone();
    moved.affine_lps[0][3] += 3.0;
    let e = load_roi(&path, &moved).unwrap_err().to_string();
    assert!(e.contains("mm away") && e.contains("roi.nii.gz"), "{e}");
    let mut other = g.clone();
    other.dims = [g.dims[0], g.dims[1], g.dims[2] + 1];
    assert!(load_roi(&path, &other)
        .unwrap_err()
        .to_string()
        .contains("matrix"));
    let empty = dir.path().join("empty.nii.gz");
    paramap::io::nifti::write_mask(&empty, &lesion.mapv(|_| false), g, "").unwrap();
    assert!(load_roi(&empty, g)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    let four_d = dir.path().join("4d.nii.gz");
    let (nz, ny, nx) = lesion.dim();
    paramap::io::nifti::write_series(&four_d, &Array4::<f32>::ones((2, nz, ny, nx)), g, "", None)
        .unwrap();
    assert!(load_roi(&four_d, g)
        .unwrap_err()
        .to_string()
        .contains("3-D"));
}

// ---- DSC curve plot ----

fn phantom_curves() -> (Vec<f64>, Vec<f64>, f64) {
    let spec = DscPhantomSpec::default();
    let p = dsc_phantom(&spec);
    let gm = p.tissue.iter().find(|(l, _)| *l == 2).unwrap().1.clone();
    (p.aif, gm, spec.dt_s)
}

const AIF_RED: [u8; 3] = [200, 30, 30];
const TISSUE_BLUE: [u8; 3] = [30, 80, 200];

#[test]
fn curve_plot_puts_the_aif_peak_at_its_true_time_before_the_tissue_peak() {
    let (aif, tissue, dt) = phantom_curves();
    let curves = [
        (
            "AIF",
            Curve {
                values: &aif,
                colour: AIF_RED,
            },
        ),
        (
            "grey matter",
            Curve {
                values: &tissue,
                colour: TISSUE_BLUE,
            },
        ),
    ];
    let png = curves_png(&CurvePlot {
        title: "AIF and tissue",
        dt_s: dt,
        unit: "s^-1",
        curves: &curves,
    })
    .unwrap();
    let img = decode(&png);
    // The time axis is the longest black horizontal run; it spans 0 .. (n-1)·dt.
    let (mut axis_y, mut axis_x0, mut axis_len) = (0, 0, 0);
    for y in 0..img.h {
        let mut run = 0;
        for x in 0..img.w {
            if img.at(x, y) == [0, 0, 0] {
                run += 1;
                if run > axis_len {
                    (axis_y, axis_x0, axis_len) = (y, x + 1 - run, run);
                }
            } else {
                run = 0;
            }
        }
    }
    assert!(axis_len > img.w / 2, "a time axis is drawn");
    let duration = (aif.len() - 1) as f64 * dt;
    // The topmost pixel of each curve marks its peak (each is scaled to its own peak). The
    // legend's colour swatches sit in the right half, and both peaks come in the first third.
    let peak_time = |colour: [u8; 3]| {
        let (mut best_y, mut xs) = (usize::MAX, Vec::new());
        for y in 0..axis_y {
            for x in axis_x0..axis_x0 + axis_len / 2 {
                if img.at(x, y) == colour {
                    if y < best_y {
                        best_y = y;
                        xs.clear();
                    }
                    if y == best_y {
                        xs.push(x);
                    }
                }
            }
        }
        assert!(!xs.is_empty(), "curve drawn");
        let x = xs.iter().sum::<usize>() as f64 / xs.len() as f64;
        (x - axis_x0 as f64) / (axis_len - 1) as f64 * duration
    };
    // The phantom's AIF: gamma variate alpha 3, beta 1.5 s from 15 s peaks at 15 + 4.5 s.
    let t_aif = peak_time(AIF_RED);
    assert!((t_aif - 19.5).abs() <= dt, "AIF peak drawn at {t_aif:.1} s");
    let t_tissue = peak_time(TISSUE_BLUE);
    assert!(
        t_tissue > t_aif,
        "tissue peaks after the AIF ({t_tissue:.1} s)"
    );
}

// ---- The HTML report in headless Chromium ----

fn study_report() -> (StudyReport, Vec<u8>, Vec<u8>) {
    let (adc, labels) = adc_truth();
    let mut spec = PreviewSpec::new("ADC", "mm2/s", Colormap::Viridis);
    spec.range = Some((0.0, 3.0e-3));
    let adc_png = montage_png(adc.view(), &spec).unwrap();
    let dsc = dsc_phantom(&DscPhantomSpec::default());
    let rcbv = dsc.labels.mapv(|l| {
        dsc.regions
            .iter()
            .find(|r| r.label == l)
            .map_or(0.0, |r| (r.cbv / 2.0) as f32)
    });
    let mut spec = PreviewSpec::new("rCBV (leakage-corrected)", "ratio", Colormap::Magma);
    spec.range = Some((0.0, 4.0));
    let rcbv_png = montage_png(rcbv.view(), &spec).unwrap();
    let (aif, tissue, dt) = phantom_curves();
    let curves = [
        (
            "AIF",
            Curve {
                values: &aif,
                colour: AIF_RED,
            },
        ),
        (
            "mean brain",
            Curve {
                values: &tissue,
                colour: TISSUE_BLUE,
            },
        ),
    ];
    let plot = curves_png(&CurvePlot {
        title: "AIF and mean tissue curve",
        dt_s: dt,
        unit: "s^-1",
        curves: &curves,
    })
    .unwrap();
    let adc_roi = roi_stat(adc.view(), labels.mapv(|l| l == 4).view(), "ADC", "mm2/s").unwrap();
    let rcbv_roi = roi_stat(
        rcbv.view(),
        dsc.labels.mapv(|l| l == 3).view(),
        "rCBV",
        "ratio",
    )
    .unwrap();
    let reading = read_rcbv_adc(
        Some(rcbv_roi.median),
        Some(adc_roi.median),
        &ReadingThresholds::default(),
    )
    .unwrap();
    let report = StudyReport {
        title: "Phantom study <&> report".into(),
        patient_id: Some("PHANTOM^01".into()),
        study_uid: Some("1.2.826.0.1.3680043.10.1234".into()),
        generated_by: "paramap test".into(),
        series: vec![
            SeriesReport {
                label: "DWI phantom".into(),
                kind: "DWI".into(),
                maps: vec![MapPreview {
                    name: "ADC".into(),
                    unit: "mm2/s".into(),
                    png: adc_png.clone(),
                }],
                record: serde_json::json!({"command": "adc", "fit_method": "wls",
                    "units": {"adc": "mm2/s"}, "shells": [{"b": 0.0}, {"b": 1000.0}]}),
                roi: vec![adc_roi],
                ..Default::default()
            },
            SeriesReport {
                label: "DSC phantom".into(),
                kind: "DSC".into(),
                maps: vec![MapPreview {
                    name: "rCBV".into(),
                    unit: "ratio".into(),
                    png: rcbv_png.clone(),
                }],
                plots: vec![("AIF and mean tissue curve".into(), plot)],
                record: serde_json::json!({"command": "dsc", "thresholds": {"low": 1.5, "high": 2.0}}),
                roi: vec![rcbv_roi],
                notes: vec!["leakage correction on".into()],
            },
        ],
        skipped: vec![("3 T1 MPRAGE".into(), "not a DWI or DSC series".into())],
        reading: Some(reading),
        ..Default::default()
    };
    (report, adc_png, rcbv_png)
}

/// Pixels of `img` within 2 per channel of a colour of `table[from..]`.
fn count_colormap_pixels(img: &Image, table: &[[u8; 3]]) -> usize {
    use std::collections::HashSet;
    let set: HashSet<[u8; 3]> = table.iter().copied().collect();
    let near = |p: [u8; 3]| {
        set.contains(&p)
            || table
                .iter()
                .any(|c| (0..3).all(|k| (c[k] as i32 - p[k] as i32).abs() <= 2))
    };
    let mut cache = std::collections::HashMap::new();
    (0..img.h)
        .flat_map(|y| (0..img.w).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = img.at(x, y);
            *cache.entry(p).or_insert_with(|| near(p))
        })
        .count()
}

#[test]
fn html_report_opens_in_headless_chromium_without_errors_and_shows_the_maps() {
    let (report, adc_png, rcbv_png) = study_report();
    let html = render(&report);
    // Self-contained: every image is inline, nothing is fetched.
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 3);
    assert!(html.contains("Phantom study &lt;&amp;&gt; report"));
    assert!(html.contains("supports treatment effect") && html.contains("not a diagnosis"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    std::fs::write(&path, &html).unwrap();

    let shown = show_in_chromium(&path);
    assert!(
        shown.console.is_empty(),
        "the page logged:\n{}",
        shown.console.join("\n")
    );
    let shot = &shown.screenshot;
    assert_eq!((shot.w, shot.h), (1200, 2000));

    // The maps are on screen: the screenshot holds (nearly) as many viridis pixels as the ADC
    // montage and as many bright magma pixels as the rCBV montage. Magma's darkest quarter is
    // left out: it is too close to the black of text and backgrounds.
    let viridis = Colormap::Viridis.table();
    let magma = &Colormap::Magma.table()[64..];
    let want_v = count_colormap_pixels(&decode(&adc_png), &viridis);
    let want_m = count_colormap_pixels(&decode(&rcbv_png), magma);
    let got_v = count_colormap_pixels(shot, &viridis);
    let got_m = count_colormap_pixels(shot, magma);
    assert!(want_v > 20_000 && want_m > 10_000, "{want_v} {want_m}");
    assert!(
        got_v as f64 >= 0.9 * want_v as f64,
        "ADC map not shown: {got_v} viridis pixels on screen, {want_v} in the montage"
    );
    assert!(
        got_m as f64 >= 0.9 * want_m as f64,
        "rCBV map not shown: {got_m} magma pixels on screen, {want_m} in the montage"
    );
}

#[test]
fn the_chromium_check_catches_a_page_that_loads_outside_files_or_shows_no_map() {
    // The same report with a reference to an outside image added, and a page with no map: the
    // first must be caught on the console, the second by the pixel count.
    let (report, adc_png, _) = study_report();
    let html = render(&report).replace("<body>", "<body><img src=\"missing.png\" alt=\"x\">");
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.html");
    std::fs::write(&broken, html).unwrap();
    let shown = show_in_chromium(&broken);
    assert!(
        shown.console.iter().any(|l| l.contains("missing.png")),
        "a refused load shows on the console: {:?}",
        shown.console
    );

    let blank = StudyReport {
        title: "no maps".into(),
        ..Default::default()
    };
    let path = dir.path().join("blank.html");
    std::fs::write(&path, render(&blank)).unwrap();
    let shown = show_in_chromium(&path);
    assert!(shown.console.is_empty(), "{:?}", shown.console);
    let viridis = Colormap::Viridis.table();
    let want = count_colormap_pixels(&decode(&adc_png), &viridis);
    assert!(count_colormap_pixels(&shown.screenshot, &viridis) < want / 10);
}
