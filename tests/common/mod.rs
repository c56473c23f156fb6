//! Shared test helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use paramap::gpu::{GpuContext, HOW_TO_GET_AN_ADAPTER};

/// The GPU for tests that need one. There is no silent skip: without an adapter the test
/// fails and says how to get one.
pub fn gpu() -> GpuContext {
    // As paramap's main does: a valid XDG_RUNTIME_DIR before the first GPU start, so that Mesa
    // prints no complaint into the test output. Once, before any GPU of this process starts
    // (later callers wait for it).
    static RUNTIME_DIR: std::sync::Once = std::sync::Once::new();
    RUNTIME_DIR.call_once(paramap::gpu::ensure_runtime_dir);
    match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(e) => panic!(
            "this test needs a wgpu adapter and found none ({e}). In CI and on machines without a GPU, {HOW_TO_GET_AN_ADAPTER}."
        ),
    }
}

/// The vendored real Philips series (tests/data/philips_dwi_subset).
pub fn philips_subset() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/philips_dwi_subset")
}

/// The paramap binary built for these tests, with no GPU tuning file (a developer's own
/// `~/.cache/paramap/gpu-tuning.json` would change the workgroup size); a test that needs one
/// sets `PARAMAP_GPU_TUNING` again.
pub fn paramap() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("paramap").expect("the paramap binary is built");
    cmd.env(
        paramap::gpu::tuning::ENV,
        std::env::temp_dir().join(format!(
            "paramap-tests-no-gpu-tuning-{}/none.json",
            std::process::id()
        )),
    );
    cmd
}

/// Writes the DWI phantom `spec` into `dir` (`dicom/` classic standard DICOM, `nifti/dwi.nii.gz`
/// with .bval/.bvec, `truth/`).
pub fn dwi_phantom(dir: &Path, spec: &paramap::synth::dwi::DwiPhantomSpec) {
    paramap::pipeline::synth::write_dwi_phantom(
        spec,
        &paramap::pipeline::synth::SynthDwiOptions {
            flavour: paramap::io::dicom::write::Flavour::Standard,
            enhanced: false,
            shuffle: false,
            mosaic: false,
        },
        dir,
    )
    .expect("phantom written");
}

/// Every file below `dir` (recursively), for checking that nothing was left behind.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return vec![];
    }
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// Median of the finite values.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Every entry (file or folder) below `dir` whose name starts with `.paramap-partial-`.
pub fn staging_folders_below(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".paramap-partial-")
        })
        .map(|e| e.into_path())
        .collect()
}

/// Runs `paramap CMD INPUT -o OUT --backend cpu EXTRA…`.
pub fn run(cmd: &str, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    paramap()
        .arg(cmd)
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(["--backend", "cpu"])
        .args(extra)
        .output()
        .expect("paramap runs")
}

/// Runs `paramap CMD` (see [`run`]) on bad input and checks that it fails, that stderr
/// contains every one of `expected`, and that nothing is left in `out` or anywhere below `root`
/// (the test's temporary folder) as staging. Returns stderr for further checks.
pub fn fails_cleanly(
    cmd: &str,
    input: &Path,
    out: &Path,
    root: &Path,
    extra: &[&str],
    expected: &[&str],
) -> String {
    let output = run(cmd, input, out, extra);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        !output.status.success(),
        "paramap {cmd} {} succeeded on bad input; stderr:\n{stderr}",
        input.display()
    );
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "stderr does not mention {needle:?}:\n{stderr}"
        );
    }
    let left = files_below(out);
    assert!(left.is_empty(), "files left in the output folder: {left:?}");
    let staging = staging_folders_below(root);
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
    stderr
}

/// Median of `map` over the voxels whose label is `label`.
pub fn median_in(map: &ndarray::Array3<f32>, labels: &ndarray::Array3<u8>, label: u8) -> f64 {
    median(
        map.iter()
            .zip(labels.iter())
            .filter(|(_, &l)| l == label)
            .map(|(x, _)| *x as f64)
            .collect(),
    )
}
/// The HTML reports `paramap run` wrote into `out` (`report_<StudyDate>_<id>.html`, one per
/// study), in name order.
pub fn reports_in(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    name.starts_with("report_") && name.ends_with(".html")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The one report of a run on a one-study folder.
pub fn the_report(out: &Path) -> PathBuf {
    let v = reports_in(out);
    assert_eq!(
        v.len(),
        1,
        "one study, one report in {}: {v:?}",
        out.display()
    );
    v[0].clone()
}

pub mod chromium;
pub mod orthanc;

/// A tool from PyPI in the virtual environment `.ci/run` makes (`PARAMAP_PY_TOOLS`, its `bin/`:
/// bids-validator-deno, pybids, nibabel, Snakemake, SimpleITK, highdicom), or None, loudly:
/// a SKIPPED line straight to the process's stderr, past the test harness's capture, seen on
/// every run; under CI (`CI` set) a missing tool fails the test.
pub fn py_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PARAMAP_PY_TOOLS")
        .map(|d| PathBuf::from(d).join(name))
        .filter(|p| p.exists());
    if found.is_none() {
        let msg = format!(
            "{name} not found: set PARAMAP_PY_TOOLS to the bin/ of a virtual environment with the Python tools .ci/run installs (see .ci/run)"
        );
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("\n*** SKIPPED: {msg} ***\n").as_bytes(),
        );
    }
    found
}

/// [`grid_top_down`] stored rows bottom-up, as the library keeps its volumes.
pub fn grid(
    dims: [usize; 3],
    size: [f64; 3],
    angles: [f64; 3],
    centre: [f64; 3],
) -> paramap::volume::Geometry {
    grid_top_down(dims, size, angles, centre).flipped_y()
}

/// A grid of `dims` with voxel size `size` (mm), rotated by `angles` (radians about LPS x, y,
/// z in turn) about its centre, which sits at `centre` (LPS mm); rows in DICOM's top-down order.
pub fn grid_top_down(
    dims: [usize; 3],
    size: [f64; 3],
    angles: [f64; 3],
    centre: [f64; 3],
) -> paramap::volume::Geometry {
    let (sa, ca) = angles[0].sin_cos();
    let (sb, cb) = angles[1].sin_cos();
    let (sc, cc) = angles[2].sin_cos();
    let rx = [[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]];
    let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
    let rz = [[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]];
    let mul = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| -> [[f64; 3]; 3] {
        std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum()))
    };
    let rot = mul(rz, mul(ry, rx));
    let mut a = [[0.0; 4]; 4];
    for r in 0..3 {
        for c in 0..3 {
            a[r][c] = rot[r][c] * size[c];
        }
    }
    a[3][3] = 1.0;
    let mid: [f64; 3] = std::array::from_fn(|c| (dims[c] - 1) as f64 / 2.0);
    for r in 0..3 {
        a[r][3] = centre[r] - (0..3).map(|c| a[r][c] * mid[c]).sum::<f64>();
    }
    paramap::volume::Geometry {
        dims,
        affine_lps: a,
    }
}

/// A study phantom as a scanner would send it: a DSC and a DWI series (standard DICOM, one
/// study, [`StudyIds`](paramap::io::dicom::write::StudyIds) returned) written below `dir` in
/// `dsc/` and `dwi/`, each on its own grid with its own region layout (labels by LPS point, mm),
/// no vein; the NIfTI copies and truth maps the writers add are removed, so that only the
/// DICOM is the study.
pub fn write_study(
    dir: &Path,
    dsc: (paramap::volume::Geometry, fn([f64; 3]) -> u8),
    dwi: (paramap::volume::Geometry, fn([f64; 3]) -> u8),
) -> paramap::io::dicom::write::StudyIds {
    use paramap::io::dicom::write::{Flavour, StudyIds};
    use paramap::pipeline::synth::{
        write_dsc_phantom_in, write_dwi_phantom_in, SynthDscOptions, SynthDwiOptions,
    };
    let ids = StudyIds::new();
    write_dsc_phantom_in(
        &paramap::synth::dsc::DscPhantomSpec {
            geometry: Some(dsc.0),
            layout: Some(dsc.1),
            vein: false,
            ..Default::default()
        },
        &SynthDscOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            shuffle: false,
        },
        &dir.join("dsc"),
        Some(&ids),
    )
    .unwrap();
    write_dwi_phantom_in(
        &paramap::synth::dwi::DwiPhantomSpec {
            geometry: Some(dwi.0),
            layout: Some(dwi.1),
            ..Default::default()
        },
        &SynthDwiOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            shuffle: false,
            mosaic: false,
        },
        &dir.join("dwi"),
        Some(&ids),
    )
    .unwrap();
    for kind in ["dsc", "dwi"] {
        for sub in ["nifti", "truth"] {
            std::fs::remove_dir_all(dir.join(kind).join(sub)).unwrap();
        }
    }
    ids
}
