//! Follow-up visits (issue #17): rigid registration between studies, change maps, the
//! parametric response map and the ±20% rule, `paramap compare`.

mod common;

use std::path::Path;

use ndarray::Array3;
use paramap::models::registration::{
    self, apply, invert, register, rotation_difference_deg, RegImage, RegistrationOptions, Rigid,
};
use paramap::synth::head::{head_visit, HeadSpec, HeadVisit};
use paramap::volume::resample::{resample_linear_through, GridRef};
use paramap::volume::{Affine, Geometry};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// A known pose: rotations (degrees about LPS x, y, z) and shifts (mm), about `centre`.
fn pose(deg: [f64; 3], mm: [f64; 3], centre: [f64; 3]) -> Rigid {
    Rigid {
        angles_rad: deg.map(f64::to_radians),
        translation_mm: mm,
        centre_lps: centre,
    }
}

/// `image` (on `grid`) moved by `truth` (fixed → moving world map): the moving image at `q`
/// shows what the fixed one shows at `truth⁻¹(q)`; resampled trilinearly, outside set to 0,
/// then Gaussian noise of `sigma`.
fn moved(
    image: &Array3<f32>,
    grid: &Geometry,
    truth: &Affine,
    sigma: f64,
    seed: u64,
) -> Array3<f32> {
    let inv = invert(truth).unwrap();
    let g = GridRef::new(grid, None, "visit");
    let mut out = resample_linear_through(image.view(), g, g, &inv).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = Normal::new(0.0, sigma).unwrap();
    out.mapv_inplace(|v| {
        if v.is_finite() {
            (v as f64 + n.sample(&mut rng)).max(0.0) as f32
        } else {
            0.0
        }
    });
    out
}

/// The error of a recovered transform against the truth: the rotation between them (degrees)
/// and the largest displacement (mm) over the foreground's voxel centres.
fn error(found: &Affine, truth: &Affine, mask: &Array3<bool>, grid: &Geometry) -> (f64, f64) {
    let mut worst: f64 = 0.0;
    for ((z, y, x), &m) in mask.indexed_iter() {
        if m {
            let p = grid.index_to_lps([x as f64, y as f64, z as f64]);
            let (a, b) = (apply(found, p), apply(truth, p));
            let d = (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>().sqrt();
            worst = worst.max(d);
        }
    }
    (rotation_difference_deg(found, truth), worst)
}

fn reference_visit() -> HeadVisit {
    head_visit(
        &HeadSpec::default(),
        &Rigid::identity([0.0; 3]).matrix_lps(),
    )
}

#[test]
fn a_phantom_moved_by_known_rigid_transforms_is_registered_within_half_a_mm_and_degree() {
    let fixed = reference_visit();
    let g = &fixed.geometry;
    let centre = [5.0, -10.0, 8.0];
    let poses = [
        pose([10.0, -6.0, 8.0], [15.0, -12.0, 10.0], centre),
        pose([-7.0, 9.0, -10.0], [-10.0, 14.0, -15.0], centre),
    ];
    for (i, p) in poses.iter().enumerate() {
        let truth = p.matrix_lps();
        // Noise 2% of white matter's S0 (SNR 50).
        let later = moved(&fixed.s0, g, &truth, 12.0, i as u64);
        let r = register(
            RegImage {
                data: fixed.s0.view(),
                geometry: g,
                mask: None,
                label: "visit 1",
            },
            RegImage {
                data: later.view(),
                geometry: g,
                mask: None,
                label: "visit 2",
            },
            &RegistrationOptions::default(),
        )
        .unwrap();
        let (deg, mm) = error(&r.matrix_lps, &truth, &fixed.brain, g);
        eprintln!(
            "pose {i}: rotation error {deg:.3}°, worst displacement {mm:.3} mm over the brain; {:?}",
            r.quality
        );
        assert!(deg < 0.5 && mm < 0.5, "pose {i}: {deg}° {mm} mm");
        assert!(r.quality.dice > 0.9 && r.quality.dice > r.quality.dice_identity);
    }
}

/// Writes one series' results as `paramap run` does: `<dir>/<name>/<stem>.nii.gz`.
fn write_series(
    dir: &Path,
    grid: &Geometry,
    images: &[(&str, &Array3<f32>)],
    mask: (&str, &Array3<bool>),
) {
    std::fs::create_dir_all(dir).unwrap();
    for (stem, a) in images {
        paramap::io::nifti::write_map(&dir.join(format!("{stem}.nii.gz")), a, grid, stem).unwrap();
    }
    paramap::io::nifti::write_mask(
        &dir.join(format!("{}.nii.gz", mask.0)),
        mask.1,
        grid,
        "mask",
    )
    .unwrap();
}

/// A visit folder from a DSC-grid and a DWI-grid phantom visit, with the records' Frame of
/// Reference UID (one per visit, as a scanner session gives).
fn write_visit(dir: &Path, dsc: &HeadVisit, dwi: &HeadVisit) {
    let name = dir.file_name().unwrap().to_string_lossy();
    let uid = format!(
        "2.25.{}",
        name.bytes().fold(7u64, |a, b| a * 131 + b as u64)
    );
    for (sub, rec) in [("s002_dsc_perf", "dsc.json"), ("s001_dwi_diff", "adc.json")] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        let json =
            serde_json::json!({"input": {"frame_of_reference_uid": uid, "patient_id": "P1"}});
        std::fs::write(dir.join(sub).join(rec), json.to_string()).unwrap();
    }
    write_series(
        &dir.join("s002_dsc_perf"),
        &dsc.geometry,
        &[("rcbv", &dsc.rcbv), ("cbf", &dsc.cbf), ("s0", &dsc.s0)],
        ("brain_mask", &dsc.brain),
    );
    write_series(
        &dir.join("s001_dwi_diff"),
        &dwi.geometry,
        &[("adc", &dwi.adc), ("s0", &dwi.b0)],
        ("mask", &dwi.brain),
    );
}

fn dwi_spec() -> HeadSpec {
    HeadSpec {
        dims: [80, 80, 30],
        voxel_mm: [2.5, 2.5, 4.0],
        supersample: 3,
        ..HeadSpec::default()
    }
}

fn read3(p: &Path) -> (Array3<f32>, Geometry) {
    let (d, g, _) = paramap::io::nifti::read(p).unwrap();
    (d.index_axis(ndarray::Axis(0), 0).to_owned(), g)
}

/// Two visits: lesion A's perfusion rises 30%, B's falls 30%, C's is unchanged; the later
/// visit is moved by a known pose. Returns the truth (visit 1 world → visit 2 world).
fn two_visits(root: &Path) -> (Affine, HeadVisit) {
    let noise = Some(0.02);
    let v1 = HeadSpec {
        noise,
        ..HeadSpec::default()
    };
    let first = head_visit(&v1, &Rigid::identity([0.0; 3]).matrix_lps());
    let first_dwi = head_visit(
        &HeadSpec {
            noise,
            ..dwi_spec()
        },
        &Rigid::identity([0.0; 3]).matrix_lps(),
    );
    write_visit(&root.join("visit1"), &first, &first_dwi);
    let truth = pose([6.0, -4.0, 8.0], [9.0, -12.0, 7.0], [0.0; 3]).matrix_lps();
    let inv = invert(&truth).unwrap();
    let later_spec = HeadSpec {
        lesion_perfusion_scale: [1.3, 0.7, 1.0],
        noise,
        seed: 2,
        ..HeadSpec::default()
    };
    let later = head_visit(&later_spec, &inv);
    let later_dwi = head_visit(
        &HeadSpec {
            seed: 3,
            ..later_spec.clone()
        }
        .with_grid(&dwi_spec()),
        &inv,
    );
    write_visit(&root.join("visit2"), &later, &later_dwi);
    // Each visit's own lesion A ROI, on its own DSC grid.
    for (name, v) in [("visit1", &first), ("visit2", &later)] {
        paramap::io::nifti::write_mask(
            &root.join(format!("{name}_lesion_a.nii.gz")),
            &v.lesions[0],
            &v.geometry,
            "ROI",
        )
        .unwrap();
    }
    (truth, first)
}

/// Voxels of `first`'s lesion `l` at least `margin` mm inside its sphere.
fn interior(first: &HeadVisit, l: usize, margin: f64) -> Vec<(usize, usize, usize)> {
    let (_, c, r) = paramap::synth::head::LESIONS[l];
    let g = &first.geometry;
    let [nx, ny, nz] = g.dims;
    let mut v = Vec::new();
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let p = g.index_to_lps([x as f64, y as f64, z as f64]);
                let d = (0..3).map(|k| (p[k] - c[k]).powi(2)).sum::<f64>().sqrt();
                if d < r - margin {
                    v.push((z, y, x));
                }
            }
        }
    }
    v
}

#[test]
fn two_visits_give_each_lesion_its_class_and_the_roi_rule_flags_the_rise() {
    let tmp = tempfile::tempdir().unwrap();
    let (truth, first) = two_visits(tmp.path());
    let out = tmp.path().join("change");
    let output = common::paramap()
        .args(["compare"])
        .arg(tmp.path().join("visit1"))
        .arg(tmp.path().join("visit2"))
        .arg("-o")
        .arg(&out)
        .arg("--roi")
        .arg(tmp.path().join("visit1_lesion_a.nii.gz"))
        .arg("--roi")
        .arg(tmp.path().join("visit2_lesion_a.nii.gz"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{stdout}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    // Both later series were registered, and accurately.
    for p in record["visits"][1]["placements"].as_array().unwrap() {
        assert_eq!(p["how"], "registered", "{p}");
        let m: Vec<Vec<f64>> = serde_json::from_value(p["matrix_lps"].clone()).unwrap();
        let m: Affine = std::array::from_fn(|r| std::array::from_fn(|c| m[r][c]));
        let (deg, mm) = error(&m, &truth, &first.brain, &first.geometry);
        eprintln!("{}: {deg:.3}° {mm:.3} mm", p["series"]);
        assert!(deg < 0.5 && mm < 0.5, "{}: {deg}° {mm} mm", p["series"]);
        assert!(p["registered"]["quality"]["dice"].as_f64().unwrap() > 0.9);
    }
    // The PRM gives each lesion its class in ≥ 90% of its interior voxels.
    let (prm, _) = read3(&out.join("v2_prm_rcbv.nii.gz"));
    let (delta, _) = read3(&out.join("v2_delta_rcbv_pct.nii.gz"));
    for (l, want) in [(0usize, 3.0f32), (1, 1.0), (2, 2.0)] {
        let vox = interior(&first, l, 4.0);
        let hit = vox.iter().filter(|&&i| prm[i] == want).count();
        let share = hit as f64 / vox.len() as f64;
        eprintln!(
            "lesion {l}: {hit}/{} interior voxels of class {want}",
            vox.len()
        );
        assert!(vox.len() > 30 && share >= 0.9, "lesion {l}: {share}");
    }
    // An unchanged region (lesion C, and white matter deep inside) changes within ±5%.
    let c: Vec<f64> = interior(&first, 2, 4.0)
        .iter()
        .map(|&i| delta[i] as f64)
        .collect();
    let med = common::median(c);
    assert!(med.abs() < 5.0, "lesion C median change {med}%");
    let brain = &record["visits"][1]["changes"][0]["shares"][0];
    assert!(
        brain["median_change_pct"].as_f64().unwrap().abs() < 5.0,
        "{brain}"
    );
    // The ROI rule flags lesion A's rise, worded as support.
    let rule = &record["roi_rules"][0];
    assert_eq!(rule["worsening"], true, "{rule}");
    let rc = rule["rcbv_change_pct"].as_f64().unwrap();
    assert!((rc - 30.0).abs() < 5.0, "{rc}");
    let text = rule["statement"].as_str().unwrap();
    assert!(
        text.contains("suggests true progression") && text.contains("not a diagnosis"),
        "{text}"
    );
    assert!(out.join("roi_table.csv").is_file() && out.join("report.html").is_file());
    // The same resampled image from the transform file, by a second tool (nibabel).
    simpleitk_reads_the_itk_file_as_the_ras_matrix(
        &out.join("v2_dsc_itk.txt"),
        &out.join("v2_dsc_ras.txt"),
    );
    nibabel_agrees(
        &tmp.path().join("visit2/s002_dsc_perf/s0.nii.gz"),
        &tmp.path().join("visit1/s002_dsc_perf/s0.nii.gz"),
        &out.join("v2_dsc_ras.txt"),
        &out.join("v2_dsc_s0.nii.gz"),
        &first.brain,
    );
}

/// ITK itself (SimpleITK's `ReadTransform`, the reader ANTs uses too) reads the ITK transform
/// file, and maps points as the RAS matrix written beside it does: ITK works in LPS, so a point
/// p (LPS) must go to F·M·F·p, F = diag(−1, −1, 1) flipping LPS and RAS.
fn simpleitk_reads_the_itk_file_as_the_ras_matrix(itk: &Path, ras: &Path) {
    let Some(python) = common::py_tool("python") else {
        return;
    };
    let script = r#"
import sys, SimpleITK as sitk
tx = sitk.ReadTransform(sys.argv[1])
for p in [(0, 0, 0), (40.5, -20, 10), (-60, 75, -30), (100, 100, 100)]:
    print(*tx.TransformPoint([float(x) for x in p]))
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(itk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SimpleITK could not read {}: {}",
        itk.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Vec<Vec<f64>> = std::fs::read_to_string(ras)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(m.len(), 4, "{m:?}");
    let points = [
        [0.0, 0.0, 0.0],
        [40.5, -20.0, 10.0],
        [-60.0, 75.0, -30.0],
        [100.0, 100.0, 100.0],
    ];
    let text = String::from_utf8(out.stdout).unwrap();
    let theirs: Vec<Vec<f64>> = text
        .lines()
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(theirs.len(), points.len(), "{text}");
    let flip = [-1.0, -1.0, 1.0];
    let mut moved_any = false;
    for (p, t) in points.iter().zip(&theirs) {
        let r: Vec<f64> = (0..3).map(|i| flip[i] * p[i]).collect();
        let q: Vec<f64> = (0..3)
            .map(|i| flip[i] * ((0..3).map(|j| m[i][j] * r[j]).sum::<f64>() + m[i][3]))
            .collect();
        for i in 0..3 {
            assert!(
                (q[i] - t[i]).abs() < 1e-6,
                "point {p:?}: ours {q:?}, SimpleITK {t:?}"
            );
            moved_any |= (t[i] - p[i]).abs() > 0.1;
        }
    }
    assert!(moved_any, "the transform moves nothing: {text}");
}

/// nibabel reads the later image and the 4×4 RAS matrix, moves the image by it
/// (`inv(M)·affine`, nibabel.affines) and samples it on visit 1's grid by trilinear
/// interpolation (numpy); the result must match paramap's within interpolation error.
fn nibabel_agrees(later: &Path, grid: &Path, ras: &Path, paramap_out: &Path, brain: &Array3<bool>) {
    let script = r#"
import sys, numpy as np, nibabel as nib
from nibabel.affines import apply_affine
later, grid, ras, out = sys.argv[1:5]
img, ref = nib.load(later), nib.load(grid)
M = np.loadtxt(ras)
moved = np.linalg.inv(M) @ img.affine            # the later image, moved onto visit 1
data = np.asarray(img.dataobj, dtype=np.float64)
i, j, k = np.meshgrid(*[np.arange(n) for n in ref.shape[:3]], indexing="ij")
vox = apply_affine(np.linalg.inv(moved) @ ref.affine, np.stack([i, j, k], -1))
res = np.full(ref.shape[:3], np.nan)
n = np.array(data.shape[:3])
inside = np.all((vox >= 0) & (vox <= n - 1), axis=-1)
v = vox[inside]
f = np.minimum(np.floor(v).astype(int), n - 2)
w = v - f
acc = 0
for dx in (0, 1):
    for dy in (0, 1):
        for dz in (0, 1):
            wt = (w[:, 0] if dx else 1 - w[:, 0]) * (w[:, 1] if dy else 1 - w[:, 1]) * (w[:, 2] if dz else 1 - w[:, 2])
            acc = acc + wt * data[f[:, 0] + dx, f[:, 1] + dy, f[:, 2] + dz]
res[inside] = acc
nib.save(nib.Nifti1Image(res.astype(np.float32), ref.affine), out)
"#;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nibabel.nii.gz");
    // The python of the CI's virtual environment (PARAMAP_PY_TOOLS, made by .ci/run with
    // nibabel in it), else the one on the PATH.
    let python = std::env::var_os("PARAMAP_PY_TOOLS")
        .map(|d| std::path::PathBuf::from(d).join("python3"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "python3".into());
    let status = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(later)
        .arg(grid)
        .arg(ras)
        .arg(&out)
        .status()
        .expect("python3 runs (this check needs python3 with nibabel and numpy: pip install nibabel numpy)");
    assert!(
        status.success(),
        "the nibabel check failed to run: pip install nibabel numpy"
    );
    let (theirs, _) = read3(&out);
    let (ours, _) = read3(paramap_out);
    let (mut worst, mut n) = (0.0f64, 0);
    for (&b, (&a, &t)) in brain.iter().zip(ours.iter().zip(theirs.iter())) {
        if b && a.is_finite() && t.is_finite() {
            worst = worst.max((a - t).abs() as f64);
            n += 1;
        }
    }
    eprintln!("nibabel vs paramap: worst difference {worst} over {n} brain voxels (S0 ≈ 600)");
    assert!(n > 10_000 && worst < 1.0, "{worst} over {n}");
    // Not vacuous: the later image as it lies (unregistered) differs from both.
    let (unmoved, _) = read3(later);
    let off = brain
        .iter()
        .zip(unmoved.iter().zip(theirs.iter()))
        .filter(|(&b, (u, t))| b && t.is_finite() && (**u - **t).abs() > 100.0)
        .count();
    assert!(off > 1000, "only {off} voxels moved");
}

#[test]
fn a_pair_that_cannot_be_registered_is_refused_with_the_reason_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let id = Rigid::identity([0.0; 3]).matrix_lps();
    let small = HeadSpec {
        supersample: 1,
        ..HeadSpec::default()
    };
    let small_dwi = HeadSpec {
        supersample: 1,
        ..dwi_spec()
    };
    let first = head_visit(&small, &id);
    write_visit(
        &tmp.path().join("visit1"),
        &first,
        &head_visit(&small_dwi, &id),
    );
    // No overlap: the later study lies 400 mm away in the scanner (another field of view).
    let far = pose([0.0; 3], [0.0, 0.0, 400.0], [0.0; 3]).matrix_lps();
    let mut away = head_visit(&small, &id);
    let mut away_dwi = head_visit(&small_dwi, &id);
    for v in [&mut away, &mut away_dwi] {
        v.geometry.affine_lps = registration::compose(&far, &v.geometry.affine_lps);
    }
    write_visit(&tmp.path().join("far"), &away, &away_dwi);
    // Another body part: a long cylinder (a limb or trunk), no head structure.
    let mut body = head_visit(&small, &id);
    let g = body.geometry.clone();
    for ((z, y, x), v) in body.s0.indexed_iter_mut() {
        let p = g.index_to_lps([x as f64, y as f64, z as f64]);
        let inside = (p[0] / 90.0).powi(2) + ((p[1] - 20.0) / 40.0).powi(2) <= 1.0;
        *v = if inside {
            300.0 + 200.0 * ((p[0] / 15.0).sin() > 0.0) as u8 as f32
        } else {
            0.0
        };
        body.brain[[z, y, x]] = inside;
    }
    write_visit(
        &tmp.path().join("body"),
        &body,
        &head_visit(&small_dwi, &id),
    );
    for (later, reason) in [("far", "centres of mass lie"), ("body", "Dice")] {
        let out = tmp.path().join(format!("out_{later}"));
        let output = common::paramap()
            .arg("compare")
            .arg(tmp.path().join("visit1"))
            .arg(tmp.path().join(later))
            .args(["--registration", "always", "-o"])
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{later}: {stderr}");
        assert!(
            stderr.contains("cannot register") && stderr.contains(reason),
            "{later}: {stderr}"
        );
        assert!(stderr.contains(later), "names the series: {stderr}");
        assert!(
            !out.exists()
                && common::files_below(tmp.path())
                    .iter()
                    .all(|p| !p.to_string_lossy().contains(".paramap-partial")),
            "{later}: something was written"
        );
    }
}

/// The whole shared Philips DWI series (../shared/reference/philips_dwi/full, 32 slices of
/// 2 mm; too large to vendor, so run by .ci/run with `--ignored` as philips_full_series is):
/// its b = 0 image moved by a known rigid transform, with noise, registered back b = 0 to b = 0.
#[test]
#[ignore = "needs ../shared/reference/philips_dwi/full (run by .ci/run)"]
fn the_real_philips_b0_moved_by_a_known_transform_is_registered_within_half_a_mm_and_degree() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/philips_dwi/full/DICOM");
    assert!(
        dir.is_dir(),
        "{} is missing: this test needs ../shared beside the project",
        dir.display()
    );
    let (series, _) = paramap::pipeline::input::load_dwi(&dir, &Default::default()).unwrap();
    let b0: Vec<usize> = (0..series.n_volumes())
        .filter(|&v| series.volumes[v].diffusion.is_some_and(|d| d.b < 10.0))
        .collect();
    assert!(!b0.is_empty());
    let mut img = Array3::<f32>::zeros(series.data.index_axis(ndarray::Axis(0), 0).dim());
    for &v in &b0 {
        img += &series.data.index_axis(ndarray::Axis(0), v);
    }
    img /= b0.len() as f32;
    let g = &series.geometry;
    let (mask, _) = paramap::models::mask::background_mask(img.view());
    let centre = g.index_to_lps(g.dims.map(|n| (n as f64 - 1.0) / 2.0));
    let top = img.iter().copied().fold(0.0f32, f32::max) as f64;
    for (i, p) in [
        pose([4.0, -3.0, 5.0], [6.0, -8.0, 3.0], centre),
        pose([-3.0, 2.5, -6.0], [-10.0, 5.0, -4.0], centre),
    ]
    .iter()
    .enumerate()
    {
        let truth = p.matrix_lps();
        let later = moved(&img, g, &truth, 0.01 * top, 10 + i as u64);
        let r = register(
            RegImage {
                data: img.view(),
                geometry: g,
                mask: Some(mask.view()),
                label: "Philips b=0",
            },
            RegImage {
                data: later.view(),
                geometry: g,
                mask: None,
                label: "Philips b=0 moved",
            },
            &RegistrationOptions::default(),
        )
        .unwrap();
        let (deg, mm) = error(&r.matrix_lps, &truth, &mask, g);
        eprintln!(
            "Philips pose {i}: {deg:.3}°, worst {mm:.3} mm; {:?}",
            r.quality
        );
        assert!(deg < 0.5 && mm < 0.5, "pose {i}: {deg}° {mm} mm");
    }
}
