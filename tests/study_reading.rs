//! One study, one reading, through `paramap run` (issue 16): a study phantom whose DSC and DWI
//! series lie on different grids of one Frame of Reference (DWI coarser and oblique), with
//! lesions built to each response class. The response map, the fractional tumour burden, the
//! readings, the report (in headless Chromium) and the response map's DICOM (dciodvfy, dcm2pnm,
//! Orthanc) are checked against the phantom's truth and against each other.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::chromium::{show_in_chromium_sized, Image};
use common::grid;
use ndarray::Array3;
use paramap::io::nifti;
use paramap::models::roi::roi_summary;
use paramap::report::colormap::CLASS_COLOURS;
use paramap::report::montage::LETTER_COLOUR;
use paramap::report::raster::{Canvas, GLYPH};
use paramap::volume::Geometry;
use serde_json::Value;

/// DSC: axial, 3 × 3 × 5 mm.
fn dsc_grid() -> Geometry {
    grid([64, 64, 8], [3.0, 3.0, 5.0], [0.0; 3], [0.0; 3])
}

/// DWI: coarser (4.4 × 4.4 × 6 mm), oblique (10° about x, 8° about z) and shifted.
fn dwi_grid() -> Geometry {
    grid(
        [44, 44, 10],
        [4.4, 4.4, 6.0],
        [10f64.to_radians(), 0.0, 8f64.to_radians()],
        [2.0, -3.0, 1.5],
    )
}

/// Lesions: cylinders along z (LPS mm), radius `R`.
const R: f64 = 16.0;
/// rCBV 1.2 (DSC region 3) with ADC 1.4×10⁻³ (DWI region 4): treatment-effect-like.
const C_TE: [f64; 2] = [-42.0, -22.0];
/// rCBV 3.0 (DSC region 4) with ADC 0.5×10⁻³: progression-like.
const C_PROG: [f64; 2] = [42.0, -22.0];
/// rCBV 1.2 with ADC 0.5×10⁻³: indeterminate (low rCBV without raised ADC).
const C_INDET: [f64; 2] = [-42.0, 30.0];
/// rCBV 3.0 for x < 42 and 1.2 for x > 42, ADC 1.4×10⁻³: half above rCBV-high.
const C_HALF: [f64; 2] = [42.0, 30.0];
const ARTERY: [f64; 2] = [0.0, 0.0];
const GREY: [f64; 2] = [0.0, -52.0];

fn in_cyl(p: [f64; 3], c: [f64; 2], r: f64) -> bool {
    (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) <= r * r
}

fn brain(p: [f64; 3]) -> bool {
    (p[0] / 85.0).powi(2) + (p[1] / 75.0).powi(2) <= 1.0
}

fn dsc_layout(p: [f64; 3]) -> u8 {
    if !brain(p) {
        0
    } else if in_cyl(p, ARTERY, 5.0) {
        6
    } else if in_cyl(p, C_TE, R) || in_cyl(p, C_INDET, R) {
        3
    } else if in_cyl(p, C_PROG, R) {
        4
    } else if in_cyl(p, C_HALF, R) {
        if p[0] < C_HALF[0] {
            4
        } else {
            3
        }
    } else if in_cyl(p, GREY, 12.0) {
        2
    } else {
        1
    }
}

fn dwi_layout(p: [f64; 3]) -> u8 {
    if !brain(p) {
        0
    } else if in_cyl(p, C_TE, R) || in_cyl(p, C_HALF, R) {
        4
    } else if in_cyl(p, C_PROG, R) || in_cyl(p, C_INDET, R) {
        5
    } else if in_cyl(p, GREY, 12.0) {
        2
    } else {
        1
    }
}

fn sample(g: &Geometry, f: impl Fn([f64; 3]) -> bool) -> Array3<bool> {
    let [nx, ny, nz] = g.dims;
    Array3::from_shape_fn((nz, ny, nx), |(k, j, i)| {
        f(g.index_to_lps([i as f64, j as f64, k as f64]))
    })
}

/// The interior where the class must hold: 6 mm inside the lesion (more than a DWI voxel, so
/// trilinear ADC does not mix in white matter) and away from the DSC stack's end slices.
fn interior(p: [f64; 3], c: [f64; 2]) -> bool {
    in_cyl(p, c, R - 6.0) && p[2].abs() <= 12.5
}

fn write_roi(path: &Path, g: &Geometry, f: impl Fn([f64; 3]) -> bool) -> PathBuf {
    let m = sample(g, f).mapv(|b| b as u8 as f32);
    nifti::write_map(path, &m, g, "lesion ROI").unwrap();
    path.to_path_buf()
}

struct Study {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
    rois: Vec<PathBuf>,
    study_uid: String,
}

/// The study (DICOM, one Frame of Reference) and its ROIs: te, prog, indet, half drawn on the
/// DSC grid; indet's interior drawn on the DSC grid and on the DWI grid.
fn study() -> Study {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let dir = root.join("study");
    let ids = common::write_study(&dir, (dsc_grid(), dsc_layout), (dwi_grid(), dwi_layout));
    let (d, w) = (dsc_grid(), dwi_grid());
    let rois = vec![
        write_roi(&root.join("te.nii.gz"), &d, |p| in_cyl(p, C_TE, R)),
        write_roi(&root.join("prog.nii.gz"), &d, |p| in_cyl(p, C_PROG, R)),
        write_roi(&root.join("indet.nii.gz"), &d, |p| in_cyl(p, C_INDET, R)),
        write_roi(&root.join("half.nii.gz"), &d, |p| in_cyl(p, C_HALF, R)),
        write_roi(&root.join("indet_core_dsc.nii.gz"), &d, |p| {
            interior(p, C_INDET)
        }),
        write_roi(&root.join("indet_core_dwi.nii.gz"), &w, |p| {
            interior(p, C_INDET)
        }),
    ];
    Study {
        _tmp: tmp,
        root,
        dir,
        rois,
        study_uid: ids.study_uid,
    }
}

fn run(s: &Study, out: &Path, extra: &[&str]) -> Value {
    let mut args: Vec<String> = Vec::new();
    for r in &s.rois {
        args.push("--roi".into());
        args.push(r.display().to_string());
    }
    args.extend(extra.iter().map(|e| e.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = common::run("run", &s.dir, out, &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap()
}

fn response_map(out: &Path) -> Array3<u8> {
    let (data, g, _) = nifti::read(&out.join("response/response.nii.gz")).unwrap();
    assert_eq!(g.dims, dsc_grid().dims);
    assert!(g.max_corner_distance(&dsc_grid()) < 1e-3);
    data.index_axis(ndarray::Axis(0), 0).mapv(|v| v as u8)
}

/// Share of the interior voxels of the lesion at `c` (restricted by `part`) in class `want`.
fn class_share(
    response: &Array3<u8>,
    c: [f64; 2],
    part: impl Fn([f64; 3]) -> bool,
    want: u8,
) -> (f64, usize) {
    let g = dsc_grid();
    let inside = sample(&g, |p| interior(p, c) && part(p));
    let n = inside.iter().filter(|&&b| b).count();
    let hit = inside
        .iter()
        .zip(response.iter())
        .filter(|&(&b, &v)| b && v == want)
        .count();
    (hit as f64 / n.max(1) as f64, n)
}

fn key_roi<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["key_numbers"][0]["rois"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["roi"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("no key numbers for {name}"))
}

/// The single report of the run, checked against run.json's list and the naming rule.
fn the_report(out: &Path, record: &Value) -> PathBuf {
    let reports: Vec<PathBuf> = record["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| PathBuf::from(r.as_str().unwrap()))
        .collect();
    assert_eq!(reports.len(), 1, "one study, one report: {reports:?}");
    let html: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    assert_eq!(html, reports, "run.json lists the report written");
    let name = reports[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    // The phantom has a study date and no accession number: the UID's last digits stand in.
    assert!(
        name.starts_with("report_20") && name.contains("_uid") && name.ends_with(".html"),
        "{name}"
    );
    reports[0].clone()
}

/// The number at the head of a key-numbers cell: "2.972 (2.746–3.227)", "50.0%".
fn cell_number(text: &str) -> f64 {
    let head: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e'))
        .collect();
    head.parse()
        .unwrap_or_else(|_| panic!("no number in cell {text:?}"))
}

/// Every `data-key` cell of the report equals run.json's value at that path, as the cell
/// rounds it. Returns the number of cells checked.
fn report_numbers_equal_the_record(html: &str, record: &Value) -> usize {
    let mut checked = 0;
    for part in html.split("data-key=\"").skip(1) {
        let (key, rest) = part.split_once('"').unwrap();
        let text = rest[1..].split('<').next().unwrap();
        let text = text.replace("&amp;", "&");
        // key_numbers.rois[2].ftb.above_high → run.json key_numbers[0].rois[2].ftb.above_high
        let mut v = &record["key_numbers"][0];
        for seg in key.trim_start_matches("key_numbers.").split('.') {
            let (name, index) = match seg.split_once('[') {
                Some((n, i)) => (n, Some(i.trim_end_matches(']').parse::<usize>().unwrap())),
                None => (seg, None),
            };
            v = &v[name];
            if let Some(i) = index {
                v = &v[i];
            }
        }
        let want = v
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: no number in run.json ({v})"));
        let got = cell_number(&text);
        let (want, tol) = if text.ends_with('%') {
            (100.0 * want, 0.051)
        } else if key.contains("adc.") {
            (want * 1e3, 6e-4 * (want * 1e3).abs())
        } else if key.ends_with("voxels") {
            (want, 0.0)
        } else {
            (want, 6e-4 * want.abs())
        };
        assert!(
            (got - want).abs() <= tol,
            "{key}: the report shows {text}, run.json holds {want}"
        );
        checked += 1;
    }
    checked
}

/// Top rows at which `colour` (exactly) appears at least `min` times.
fn first_row_with(img: &Image, colours: &[[u8; 3]], min: usize) -> Option<usize> {
    (0..img.h).find(|&y| {
        (0..img.w)
            .filter(|&x| colours.contains(&img.at(x, y)))
            .count()
            >= min
    })
}

fn last_row_with(img: &Image, colour: [u8; 3]) -> Option<usize> {
    (0..img.h)
        .rev()
        .find(|&y| (0..img.w).any(|x| img.at(x, y) == colour))
}

/// Solid rectangles of `colour` of a legend swatch's size (40 × 16 px): a map's class blobs are
/// round, never a full rectangle, and the colour bar's blocks are 16 px wide.
fn swatches(img: &Image, colour: [u8; 3]) -> usize {
    let mut seen = vec![false; img.w * img.h];
    let mut found = 0;
    for y in 0..img.h {
        for x in 0..img.w {
            if seen[y * img.w + x] || img.at(x, y) != colour {
                continue;
            }
            let (mut x0, mut x1, mut y0, mut y1, mut n) = (x, x, y, y, 0usize);
            let mut stack = vec![(x, y)];
            seen[y * img.w + x] = true;
            while let Some((px, py)) = stack.pop() {
                n += 1;
                (x0, x1, y0, y1) = (x0.min(px), x1.max(px), y0.min(py), y1.max(py));
                let mut push = |qx: usize, qy: usize| {
                    if qx < img.w
                        && qy < img.h
                        && !seen[qy * img.w + qx]
                        && img.at(qx, qy) == colour
                    {
                        seen[qy * img.w + qx] = true;
                        stack.push((qx, qy));
                    }
                };
                push(px + 1, py);
                push(px.wrapping_sub(1), py);
                push(px, py + 1);
                push(px, py.wrapping_sub(1));
            }
            let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
            if n == w * h && (w, h) == (40, 16) {
                found += 1;
            }
        }
    }
    found
}

/// Places where the montage's boxed orientation letter `ch` appears, pixel for pixel.
fn letter_hits(img: &Image, ch: char) -> usize {
    let size = GLYPH + 2;
    let mut c = Canvas::new(size, size, [0, 0, 0]);
    c.text(1, 1, &ch.to_string(), LETTER_COLOUR, 1);
    let template: Vec<[u8; 3]> = (0..size * size)
        .map(|i| c.get(i % size, i / size))
        .collect();
    let mut hits = 0;
    for y in 0..img.h.saturating_sub(size) {
        for x in 0..img.w.saturating_sub(size) {
            if img.at(x, y) != template[0] {
                continue;
            }
            if (0..size * size).all(|i| img.at(x + i % size, y + i / size) == template[i]) {
                hits += 1;
            }
        }
    }
    hits
}

#[test]
fn a_study_phantom_through_run_gives_each_lesion_its_class_a_report_to_read_first_and_a_response_series_in_pacs(
) {
    let s = study();
    let out = s.root.join("out");
    let orthanc = common::orthanc::Orthanc::start(&[]);
    let record = run(
        &s,
        &out,
        &["--send", &orthanc.destination(), "--attempts", "1"],
    );

    // --- Each lesion its class in >= 95% of its interior.
    let response = response_map(&out);
    let any = |_: [f64; 3]| true;
    for (what, c, part, want) in [
        (
            "treatment-effect lesion",
            C_TE,
            &any as &dyn Fn([f64; 3]) -> bool,
            1u8,
        ),
        ("progression lesion", C_PROG, &any, 3),
        ("indeterminate lesion", C_INDET, &any, 2),
        (
            "half lesion, high half",
            C_HALF,
            &|p: [f64; 3]| p[0] < C_HALF[0] - 4.0,
            3,
        ),
        (
            "half lesion, low half",
            C_HALF,
            &|p: [f64; 3]| p[0] > C_HALF[0] + 4.0,
            1,
        ),
    ] {
        let (share, n) = class_share(&response, c, part, want);
        eprintln!(
            "{what}: class {want} in {:.1}% of {n} interior voxels",
            100.0 * share
        );
        assert!(n >= 50, "{what}: {n} interior voxels");
        assert!(share >= 0.95, "{what}: class {want} in {share}");
    }

    // --- FTB of the half lesion (ROI drawn on the DSC grid): 50% +/- 5% above rCBV-high.
    let half = key_roi(&record, "half.nii.gz");
    let above = half["ftb"]["above_high"].as_f64().unwrap();
    eprintln!("half lesion FTB above rCBV-high: {:.1}%", 100.0 * above);
    assert!((above - 0.5).abs() <= 0.05, "{above}");
    // The readings of the ROI medians.
    for (roi, class) in [
        ("te.nii.gz", "supports_treatment_effect"),
        ("prog.nii.gz", "supports_progression"),
        ("indet.nii.gz", "indeterminate"),
    ] {
        assert_eq!(
            key_roi(&record, roi)["reading"]["class"].as_str().unwrap(),
            class,
            "{roi}"
        );
    }
    let te = key_roi(&record, "te.nii.gz");
    assert!(
        (te["rcbv"]["median"].as_f64().unwrap() - 1.2).abs() < 0.06,
        "{te}"
    );
    assert!((te["adc"]["median"].as_f64().unwrap() - 1.4e-3).abs() < 0.03e-3);
    assert!(te["response_classes"][1].as_f64().unwrap() > 0.6, "{te}");

    // --- ROIs drawn on the DWI grid give the ADC statistics of the same ROI on the DSC grid
    // (ADC resampled there) within 2%, and the lesion's truth: the core lies 6 mm inside the
    // lesion, whose surroundings differ by 40% or more (white matter 0.7×10⁻³, grey matter
    // 0.85×10⁻³), so an ROI placed a DWI voxel and a half off, or across a flipped axis, fails.
    let core_dwi = &key_roi(&record, "indet_core_dwi.nii.gz")["adc"];
    let (adc_dsc, _, _) = nifti::read(&out.join("response/adc.nii.gz")).unwrap();
    let (roi_dsc, _, _) = nifti::read(&s.root.join("indet_core_dsc.nii.gz")).unwrap();
    let on_dsc = roi_summary(
        adc_dsc.index_axis(ndarray::Axis(0), 0),
        roi_dsc
            .index_axis(ndarray::Axis(0), 0)
            .mapv(|v| v > 0.5)
            .view(),
    )
    .unwrap();
    for (what, a, b) in [
        ("mean", core_dwi["mean"].as_f64().unwrap(), on_dsc.mean),
        (
            "median",
            core_dwi["median"].as_f64().unwrap(),
            on_dsc.median,
        ),
        ("10th pct", core_dwi["p10"].as_f64().unwrap(), on_dsc.p10),
        ("90th pct", core_dwi["p90"].as_f64().unwrap(), on_dsc.p90),
    ] {
        eprintln!("ADC {what}: DWI-grid ROI {a:.4e}, DSC-grid ROI {b:.4e}");
        assert!((a - b).abs() <= 0.02 * b, "ADC {what}: {a} vs {b}");
    }
    for what in ["mean", "median", "p10", "p90"] {
        let v = core_dwi[what].as_f64().unwrap();
        assert!(
            (v - 0.5e-3).abs() <= 0.02 * 0.5e-3,
            "ADC {what} {v} vs truth 0.5e-3"
        );
    }
    assert!(core_dwi["n"].as_u64().unwrap() >= 50, "{core_dwi}");

    // --- The report: named after the study, the user's permissions, run.json's numbers.
    let report = the_report(&out, &record);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = s.root.join("plain");
        std::fs::write(&plain, "x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&report), mode(&plain), "report");
        assert_eq!(mode(&out.join("run.json")), mode(&plain), "run.json");
    }
    let html = std::fs::read_to_string(&report).unwrap();
    let cells = report_numbers_equal_the_record(&html, &record);
    // Per ROI rCBV, ADC, three FTB shares, three class shares; reference CBV and voxels; AIF.
    assert_eq!(cells, 6 * 8 + 3, "key-number cells checked");
    let key_at = html.find("id=\"key-numbers\"").unwrap();
    let first_map = html.find("<figure>").unwrap();
    let methods = html.find("id=\"methods\"").unwrap();
    let full = html.find("Full JSON record").unwrap();
    assert!(key_at < first_map && first_map < methods && methods < full);
    assert!(html[full..].contains("</details>"), "the record is folded");
    assert!(html.contains("PARAMAP-PHANTOM") && html.contains("Study date: <b>20"));
    assert!(!html.contains("<script"));

    let shown = show_in_chromium_sized(&report, 1280, 2400);
    assert!(
        shown.console.is_empty(),
        "the page logged:\n{}",
        shown.console.join("\n")
    );
    let shot = &shown.screenshot;
    let header = [0xd9, 0xe6, 0xf2];
    let table_top = first_row_with(shot, &[header], 20).expect("the key-numbers table is shown");
    let table_bottom = last_row_with(shot, header).unwrap();
    let map_top = first_row_with(shot, &[CLASS_COLOURS[1], CLASS_COLOURS[3]], 10)
        .expect("the response map is shown");
    eprintln!("key numbers rows {table_top}-{table_bottom}, first map row {map_top}");
    assert!(
        table_bottom < map_top,
        "the key numbers come before the maps"
    );
    for (k, colour) in CLASS_COLOURS.iter().enumerate() {
        assert_eq!(swatches(shot, *colour), 1, "legend swatch of class {k}");
    }
    for ch in ['R', 'L', 'A', 'P'] {
        let hits = letter_hits(shot, ch);
        assert!(hits >= 8, "orientation letter {ch} shown {hits} times");
    }
    assert_eq!(letter_hits(shot, 'S'), 0, "no S/I letters on axial images");

    // --- Fits 1280 px: no horizontal scroll at a 1280 px wide window, every <details> open,
    // and the first ROI's key numbers above the fold of a 1280×800 window.
    let layout = common::chromium::layout_in_chromium(&report, 1280, 800);
    eprintln!("{layout:?}");
    assert!(
        layout.scroll_width <= 1280.0,
        "the report is {} px wide at 1280 px: {:?}",
        layout.scroll_width,
        layout.overflowing
    );
    let fold = layout.inner_height;
    assert!(layout.key_top.unwrap() < fold, "{layout:?}");
    assert!(
        layout.first_row_bottom.unwrap() <= fold,
        "the first ROI's key numbers are below the fold: {layout:?}"
    );

    // --- The response map's DICOM: valid, rendered, and in PACS under the source study.
    let dicom_dir = out.join("response/dicom/response");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dicom_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        dsc_grid().dims[2],
        "one classic file per slice"
    );
    let mut grey_levels = std::collections::BTreeSet::new();
    for f in &files {
        let v = Command::new("dciodvfy")
            .arg(f)
            .output()
            .expect("dciodvfy (Debian: apt-get install -y dicom3tools)");
        let report =
            String::from_utf8_lossy(&v.stderr).to_string() + &String::from_utf8_lossy(&v.stdout);
        let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("Error")).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", f.display());
        let png = s.root.join("render.png");
        let _ = std::fs::remove_file(&png);
        let r = Command::new("dcm2pnm")
            .args(["+on", "+Wi", "1"])
            .arg(f)
            .arg(&png)
            .output()
            .expect("dcmtk's dcm2pnm (Debian: apt-get install -y dcmtk)");
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "{}: {stderr}", f.display());
        assert!(!stderr.contains("cannot select VOI window"), "{stderr}");
        let img = common::chromium::decode(&std::fs::read(&png).unwrap());
        assert_eq!((img.w, img.h), (64, 64));
        grey_levels.extend(img.rgb.iter().copied());
    }
    assert!(
        grey_levels.len() >= 4,
        "dcm2pnm shows the four classes as distinct grey levels: {grey_levels:?}"
    );
    let mut in_pacs = None;
    for (_, instances) in orthanc.series_of_study(&s.study_uid) {
        let obj = dicom_object::from_reader(std::io::Cursor::new(
            orthanc.instance_file(&instances[0])[128..].to_vec(),
        ))
        .unwrap();
        let text = |t| {
            obj.element(t)
                .map(|e| e.to_str().unwrap().trim().to_string())
                .unwrap_or_default()
        };
        if text(dicom_core::Tag(0x0008, 0x103E)).contains("Response") {
            assert_eq!(text(dicom_core::Tag(0x0020, 0x000D)), s.study_uid);
            in_pacs = Some(instances.len());
        }
    }
    assert_eq!(
        in_pacs,
        Some(dsc_grid().dims[2]),
        "the response series is in Orthanc under the source study\n{}",
        orthanc.log()
    );

    // --- Thresholds as options move the classes, the reading and the report together.
    let out2 = s.root.join("out2");
    let record2 = run(&s, &out2, &["--rcbv-low", "1.0", "--rcbv-high", "1.1"]);
    let response2 = response_map(&out2);
    let (share, _) = class_share(&response2, C_TE, any, 3);
    assert!(share >= 0.95, "rCBV 1.2 > 1.1: progression-like in {share}");
    let te2 = key_roi(&record2, "te.nii.gz");
    assert_eq!(te2["reading"]["class"], "supports_progression");
    assert!((te2["ftb"]["above_high"].as_f64().unwrap() - 1.0).abs() < 0.02);
    assert_eq!(
        record2["key_numbers"][0]["thresholds"]["rcbv_high"].as_f64(),
        Some(1.1)
    );
    let html2 = std::fs::read_to_string(the_report(&out2, &record2)).unwrap();
    assert_eq!(report_numbers_equal_the_record(&html2, &record2), 6 * 8 + 3);
    assert!(html2.contains("<th>&gt; 1.1</th>") && html2.contains("rCBV low 1, rCBV high 1.1"));
    assert!(!html2.contains("<th>&gt; 2</th>"));
}
