//! Every example command line runs (issue #15): each line of README.md's ```sh blocks that
//! starts with `paramap ` or `cargo run --release -- `, and each line of the "Examples:"
//! section of `paramap --help` and of every subcommand's `--help`, is run by the built binary
//! in a fresh working folder of its own, must exit 0, and must leave what it promises (the
//! record and maps of `adc`/`dsc`, `run.json` and the report of `run`, the phantom of `synth`,
//! valid JSON where it redirects `--json`, the tuning file of `bench --tune`, a processed and
//! forwarded study for `listen`).
//!
//! The placeholders in the examples stand for a user's data; [`INPUTS`] says, one by one,
//! what stands in for each (phantoms generated once for the whole test), [`OUTPUTS`] moves the
//! absolute output folders into the example's working folder, and [`PEERS`] points network
//! destinations at a local Orthanc (Debian `orthanc` + `orthanc-dicomweb`, as in
//! `tests/run_to_pacs.rs`). A path, host or file name in an example that none of these lists
//! names fails the test, so that a new example cannot go untested.
//!
//! No example's output mentions `XDG_RUNTIME_DIR` (each runs with the variable unset).
//!
//! Network examples run against local peers, not merely parsed: `--send` and `--stowrs` deliver
//! to the Orthanc (the study is then looked up in it); each `listen` example is started on a
//! free port, receives a DWI series from the `storescu` line its help gives ("Test it with
//! dcmtk"), processes it once quiet, forwards it where the example says, files it under
//! `done/`, and stops with exit status 0 on SIGTERM.
//!
//! The one substitution that is not a placeholder is cost: `bench --size clinical` and
//! `--size large` run as `--size small` ([`COST`]); the sizes differ only in the phantom's
//! dimensions, and every other option of those examples (`--workgroup-sizes`, `--tune`,
//! `--json`) runs as written. `cargo test --release` in README is this test suite itself and is
//! not run from inside it ([`NOT_RUN`]).

mod common;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::orthanc::{free_port, Orthanc};
use paramap::io::dicom::write::{write_series, DicomWriteOptions, Flavour, StudyIds};
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec, WHITE_MATTER};
use paramap::synth::dwi::{dwi_phantom, DwiPhantomSpec};

/// Placeholder inputs and what stands in for each, relative to the generated inputs folder.
const INPUTS: &[(&str, &str, &str)] = &[
    (
        "/data/study/DICOM",
        "study",
        "a study: a DWI (series 701) and a DSC (series 9) phantom, classic DICOM",
    ),
    ("/data/DICOM", "study", "the same study"),
    ("/data/incoming/study_123", "study", "the same study"),
    ("study/", "study", "the same study"),
    (
        "scans/",
        "study/dwi",
        "the study's DWI series (storescu's +sd)",
    ),
    (
        "dwi.nii.gz",
        "dwi.nii.gz",
        "the DWI phantom as NIfTI, with dwi.bval, dwi.bvec, dwi.json beside it",
    ),
    ("scan.nii.gz", "scan.nii.gz", "the same, named scan.*"),
    (
        "brain.nii.gz",
        "brain.nii.gz",
        "the DWI phantom's head (labels > 0), 0/1",
    ),
    (
        "dsc.nii.gz",
        "dsc.nii.gz",
        "the DSC phantom as NIfTI, with dsc.json beside it",
    ),
    (
        "nawm.nii.gz",
        "nawm.nii.gz",
        "the DSC phantom's white matter, 0/1",
    ),
    (
        "lesion.nii.gz",
        "lesion_dsc.nii.gz",
        "the DSC phantom's low-rCBV lesion (region 3)",
    ),
    (
        "lesion_dsc.nii.gz",
        "lesion_dsc.nii.gz",
        "the DSC phantom's low-rCBV lesion (region 3)",
    ),
    ("visit1", "visit1", "a visit: `paramap run` of the study"),
    ("visit2", "visit2", "another `paramap run` of the study"),
    ("visit3", "visit3", "a third"),
    (
        "v1_lesion.nii.gz",
        "lesion_dsc.nii.gz",
        "the DSC phantom's low-rCBV lesion, on each visit's DSC grid",
    ),
    ("v2_lesion.nii.gz", "lesion_dsc.nii.gz", "the same"),
    ("v3_lesion.nii.gz", "lesion_dsc.nii.gz", "the same"),
    (
        "lesion_dwi.nii.gz",
        "lesion_dwi.nii.gz",
        "the DWI phantom's lesion of region 4",
    ),
    (
        "/data/bids",
        "bids",
        "a BIDS dataset: sub-01 and sub-02, ses-1 each, with the DWI and DSC phantoms as NIfTI",
    ),
    (
        "/data/derivatives",
        "derivatives",
        "one output folder for every `bids` example, so that group reads what participant wrote",
    ),
];

/// Absolute output folders of the examples, moved into the example's own working folder.
const OUTPUTS: &[(&str, &str)] = &[
    ("/data/maps/study_123", "maps/study_123"),
    ("/srv/paramap", "srv/paramap"),
];

/// Network destinations: the local Orthanc's DICOM node and DICOMweb root.
const PEERS: &[&str] = &["PACS@10.0.0.5:104", "http://pacs:8042/dicom-web"];

/// `bench --size` values run as `small` (see the module's comment).
const COST: &[&str] = &["clinical", "large"];

/// README lines in ```sh blocks that are not run, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo test --release",
        "this test suite itself, run by CI as README says",
    ),
    (
        "cargo install cargo-afl && cargo afl config --build",
        "installs the fuzzing tool (network, minutes): the fuzz crate is outside the build",
    ),
    (
        "fuzz/campaign.sh dicom_file 1000000",
        "a coverage-guided campaign of 10⁶ executions (about an hour); docs/fuzzing.md records them",
    ),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where an example line came from, and the line (comment removed).
#[derive(Clone, Debug)]
struct Example {
    source: String,
    line: String,
}

/// The command lines of README's ```sh blocks.
fn readme_examples() -> Vec<Example> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut in_sh = false;
    let mut out = vec![];
    for line in readme.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && (t == "```sh" || t == "```bash" || t == "```shell");
            continue;
        }
        if !in_sh || t.is_empty() {
            continue;
        }
        let command = strip_comment(t);
        if let Some((_, why)) = NOT_RUN.iter().find(|(l, _)| *l == command) {
            eprintln!("README: not run: {command} ({why})");
            continue;
        }
        let command = match command.strip_prefix("cargo run --release -- ") {
            Some(rest) => format!("paramap {rest}"),
            None => command,
        };
        assert!(
            command.starts_with("paramap "),
            "README.md: a ```sh line that is neither a paramap command nor in NOT_RUN: {t}"
        );
        out.push(Example {
            source: "README.md".into(),
            line: command,
        });
    }
    out
}

/// `paramap ARGS --help` as a user sees it off a terminal (clap wraps at 100 columns).
fn help(args: &[&str]) -> String {
    let output = common::paramap()
        .args(args)
        .arg("--help")
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// Every subcommand whose help is read; those with subcommands of their own have examples in
/// theirs (checked: `synth --help` lists `dwi` and `dsc`).
const HELPS: &[&[&str]] = &[
    &[],
    &["info"],
    &["adc"],
    &["dsc"],
    &["run"],
    &["synth", "dwi"],
    &["synth", "dsc"],
    &["bench"],
    &["listen"],
    &["bids"],
];

/// The lines of each help's "Examples:" section (up to the first blank line). Each must be one
/// whole command: an example that clap wraps at 100 columns would not run when copied.
fn help_examples() -> (Vec<Example>, Vec<String>) {
    let mut out = vec![];
    let mut storescu = vec![];
    for args in HELPS {
        let text = help(args);
        let source = format!("paramap {} --help", args.join(" "));
        let Some(at) = text.find("\nExamples:\n") else {
            panic!("{source} has no Examples: section");
        };
        let mut n = 0;
        for line in text[at + "\nExamples:\n".len()..].lines() {
            if line.trim().is_empty() {
                break;
            }
            assert!(
                line.starts_with("  paramap "),
                "{source}: an example line that is not a whole `paramap` command (wrapped at 100 columns? keep examples shorter): {line:?}"
            );
            out.push(Example {
                source: source.clone(),
                line: strip_comment(line.trim()),
            });
            n += 1;
        }
        assert!(n > 0, "{source}: an empty Examples: section");
        for line in text.lines() {
            if let Some(at) = line.find("storescu ") {
                storescu.push(strip_comment(line[at..].trim()));
            }
        }
    }
    // `synth` itself only lists its two phantoms.
    let synth = help(&["synth"]);
    assert!(synth.contains("dwi") && synth.contains("dsc"), "{synth}");
    (out, storescu)
}

/// The command without a trailing `# comment`.
fn strip_comment(line: &str) -> String {
    let line = match line.find(" #") {
        Some(at) => &line[..at],
        None => line,
    };
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The generated inputs, shared by every example.
struct Inputs {
    dir: PathBuf,
}

/// Writes every input of [`INPUTS`] into `dir`.
fn make_inputs(dir: &Path) -> Inputs {
    use paramap::io::nifti;
    let ids = StudyIds::new();
    let dwi = dwi_phantom(&DwiPhantomSpec::default());
    // A head-sized field (192 mm across, 10 slices of 8 mm: centres at z = −40…32 mm), so that
    // the documented `--ref-sphere 25,-10,30,6` (RAS mm) lies in the phantom's white matter.
    let dsc_spec = DscPhantomSpec {
        dims: [48, 48, 10],
        voxel_mm: [4.0, 4.0, 8.0],
        snr: Some(50.0),
        ..Default::default()
    };
    let dsc = dsc_phantom(&dsc_spec);
    for (series, sub, description, number) in [
        (&dwi.series, "dwi", "ep2d_diff", 701),
        (&dsc.series, "dsc", "ep2d_perf", 9),
    ] {
        let to = dir.join("study").join(sub);
        std::fs::create_dir_all(&to).unwrap();
        write_series(
            series,
            &to,
            &DicomWriteOptions {
                flavour: Flavour::Standard,
                enhanced: false,
                series_description: description.into(),
                series_number: number,
                patient_id: "EXAMPLES".into(),
                mosaic: false,
                shuffle_instances: false,
                seed: 1,
                study: Some(ids.clone()),
            },
        )
        .unwrap();
    }
    // The NIfTI inputs, as `paramap synth` writes them.
    let synth = dir.join("synth");
    paramap::pipeline::synth::write_dwi_phantom(
        &DwiPhantomSpec::default(),
        &paramap::pipeline::synth::SynthDwiOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            shuffle: false,
            mosaic: false,
        },
        &synth.join("dwi"),
    )
    .unwrap();
    paramap::pipeline::synth::write_dsc_phantom(
        &dsc_spec,
        &paramap::pipeline::synth::SynthDscOptions {
            flavour: Flavour::Standard,
            enhanced: false,
            shuffle: false,
        },
        &synth.join("dsc"),
    )
    .unwrap();
    for (stem, from) in [("dwi", "dwi"), ("scan", "dwi")] {
        for ext in ["nii.gz", "bval", "bvec", "json"] {
            std::fs::copy(
                synth.join(format!("dwi/nifti/{from}.{ext}")),
                dir.join(format!("{stem}.{ext}")),
            )
            .unwrap();
        }
    }
    for ext in ["nii.gz", "json"] {
        std::fs::copy(
            synth.join(format!("dsc/nifti/dsc.{ext}")),
            dir.join(format!("dsc.{ext}")),
        )
        .unwrap();
    }
    // The BIDS dataset of `paramap bids`, from the same NIfTI files.
    let bids = dir.join("bids");
    std::fs::create_dir_all(&bids).unwrap();
    std::fs::write(
        bids.join("dataset_description.json"),
        r#"{"Name": "paramap examples", "BIDSVersion": "1.10.0"}"#,
    )
    .unwrap();
    for sub in ["01", "02"] {
        let d = bids.join(format!("sub-{sub}/ses-1"));
        std::fs::create_dir_all(d.join("dwi")).unwrap();
        std::fs::create_dir_all(d.join("perf")).unwrap();
        for ext in ["nii.gz", "bval", "bvec", "json"] {
            std::fs::copy(
                synth.join(format!("dwi/nifti/dwi.{ext}")),
                d.join(format!("dwi/sub-{sub}_ses-1_dwi.{ext}")),
            )
            .unwrap();
        }
        for ext in ["nii.gz", "json"] {
            std::fs::copy(
                synth.join(format!("dsc/nifti/dsc.{ext}")),
                d.join(format!("perf/sub-{sub}_ses-1_dsc.{ext}")),
            )
            .unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("derivatives")).unwrap();
    let mask = |labels: &ndarray::Array3<u8>,
                keep: &dyn Fn(u8) -> bool,
                g: &paramap::volume::Geometry,
                name: &str| {
        let m = labels.mapv(keep);
        nifti::write_mask(&dir.join(name), &m, g, "example mask").unwrap();
    };
    let (gw, gd) = (&dwi.series.geometry, &dsc.series.geometry);
    mask(&dwi.labels, &|l| l > 0, gw, "brain.nii.gz");
    mask(&dwi.labels, &|l| l == 4, gw, "lesion_dwi.nii.gz");
    mask(&dsc.labels, &|l| l == WHITE_MATTER, gd, "nawm.nii.gz");
    mask(&dsc.labels, &|l| l == 3, gd, "lesion_dsc.nii.gz");
    // Visits for `compare`: runs of the study.
    for visit in ["visit1", "visit2", "visit3"] {
        common::paramap()
            .args(["run", "--backend", "cpu", "--quiet", "-o"])
            .arg(dir.join(visit))
            .arg(dir.join("study"))
            .assert()
            .success();
    }
    for (_, path, _) in INPUTS {
        assert!(dir.join(path).exists(), "input {path} not made");
    }
    Inputs {
        dir: dir.to_path_buf(),
    }
}

/// An example with its placeholders replaced: the shell line and what it promises.
struct Prepared {
    shell: String,
    words: Vec<String>,
    /// The output folder (`-o`), in the working folder.
    output: Option<PathBuf>,
    /// The file a `--json … > FILE` writes.
    redirect: Option<PathBuf>,
}

fn looks_like_a_path_or_peer(word: &str) -> bool {
    word.contains('/')
        || word.contains('@')
        || word.starts_with("http")
        || [".nii.gz", ".nii", ".json", ".csv", ".dcm", ".bval", ".bvec"]
            .iter()
            .any(|e| word.ends_with(e))
}

/// Replaces the placeholders of `ex` (run in `cwd`); `port` stands for the listener's 11112.
/// Panics on a path, file or host that no list names.
fn prepare(ex: &Example, inputs: &Inputs, orthanc: &Orthanc, cwd: &Path, port: u16) -> Prepared {
    let words: Vec<&str> = ex.line.split(' ').collect();
    let is_bench = words.get(1) == Some(&"bench");
    let mut out = vec![];
    let mut output = None;
    let mut redirect = None;
    for (i, w) in words.iter().enumerate() {
        let prev = if i > 0 { words[i - 1] } else { "" };
        let is_output = prev == "-o" || prev == "--output";
        let mapped = if let Some((_, to, _)) = INPUTS
            .iter()
            .find(|(p, _, _)| p == w)
            .filter(|_| !is_output)
        {
            inputs.dir.join(to).display().to_string()
        } else if let Some(rest) = w.strip_prefix("sample_data") {
            let path = format!("{}{rest}", root().join("sample_data").display());
            assert!(
                Path::new(&path).exists(),
                "{}: {w} does not exist",
                ex.source
            );
            path
        } else if *w == PEERS[0] {
            orthanc.destination()
        } else if *w == PEERS[1] {
            orthanc.dicomweb()
        } else if *w == "11112" && (prev == "--port" || words[0] == "storescu") {
            port.to_string()
        } else if is_bench && prev == "--size" && COST.contains(w) {
            "small".to_string()
        } else if is_output {
            let rel = match OUTPUTS.iter().find(|(p, _)| p == w) {
                Some((_, to)) => to.to_string(),
                None => {
                    assert!(
                        !w.starts_with('/'),
                        "{}: `{}`: the output {w} is absolute and not in OUTPUTS",
                        ex.source,
                        ex.line
                    );
                    w.to_string()
                }
            };
            output = Some(cwd.join(&rel));
            rel
        } else if prev == ">" {
            assert!(!w.starts_with('/'), "{}: {w}", ex.source);
            redirect = Some(cwd.join(w));
            w.to_string()
        } else {
            assert!(
                !looks_like_a_path_or_peer(w) || *w == "127.0.0.1",
                "{}: `{}`: {w:?} looks like a placeholder that INPUTS, OUTPUTS and PEERS do not name; add what stands in for it",
                ex.source,
                ex.line
            );
            w.to_string()
        };
        out.push(mapped);
    }
    let shell = out
        .iter()
        .map(|w| {
            if w == ">" || w == "&&" {
                w.clone()
            } else {
                format!("'{w}'")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    Prepared {
        shell,
        words: out,
        output,
        redirect,
    }
}

/// A shell in `cwd` that finds the built `paramap` first on its PATH, with its own GPU tuning
/// file (so that `bench --tune` touches nothing of the user's) and no `XDG_RUNTIME_DIR`, as on
/// many servers: Mesa's complaint about it must not appear in any example's output.
fn shell(cwd: &Path, line: &str) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_paramap")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -eo pipefail; {line}"))
        .current_dir(cwd)
        .env("PATH", path)
        .env_remove("XDG_RUNTIME_DIR")
        .env(paramap::gpu::tuning::ENV, cwd.join("gpu-tuning.json"));
    cmd
}

fn has(dir: &Path, file: &str, what: &str) {
    assert!(
        dir.join(file).exists(),
        "{what}: {} lacks {file}; it holds {:?}",
        dir.display(),
        common::files_below(dir)
    );
}

/// Checks what the example promises once it has exited 0.
fn kept_its_promise(ex: &Example, p: &Prepared, cwd: &Path, stdout: &str, orthanc: &Orthanc) {
    let what = format!("{}: `{}`", ex.source, ex.line);
    let words: Vec<&str> = p.words.iter().map(String::as_str).collect();
    let flag = |f: &str| words.contains(&f);
    let nii = if flag("--uncompressed") {
        "nii"
    } else {
        "nii.gz"
    };
    if let Some(file) = &p.redirect {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{what}: {e}"));
        let _: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e})"));
    }
    if flag("--json") && p.redirect.is_none() {
        let _: serde_json::Value = serde_json::from_str(stdout)
            .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}): {stdout}"));
    }
    match words[1] {
        "info" if !flag("--json") => {
            assert!(stdout.contains("kind: DWI"), "{what}: {stdout}")
        }
        "adc" => {
            let o = p.output.as_ref().unwrap();
            has(o, "adc.json", &what);
            has(o, &format!("adc.{nii}"), &what);
            has(o, &format!("s0.{nii}"), &what);
        }
        "dsc" => {
            let o = p.output.as_ref().unwrap();
            for map in ["rcbv", "k2", "cbf", "mtt", "tmax"] {
                has(o, &format!("{map}.{nii}"), &what);
            }
            has(o, "dsc.json", &what);
        }
        "run" => {
            let o = p.output.as_ref().unwrap();
            common::the_report(o);
            let record: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(o.join("run.json")).unwrap())
                    .unwrap();
            let series = record["series"].as_array().unwrap();
            let processed = series.iter().filter(|s| s["status"] == "processed").count();
            assert_eq!(processed, 2, "{what}: DWI and DSC processed: {record}");
            if flag("--roi") {
                assert!(
                    record["readings"].as_array().is_some_and(|r| !r.is_empty()),
                    "{what}: the ROIs give a reading: {record}"
                );
            }
            if flag("--send") || flag("--stowrs") {
                let uid = series[0]["study_uid"].as_str().unwrap();
                assert!(
                    !orthanc.series_of_study(uid).is_empty(),
                    "{what}: Orthanc holds nothing of study {uid}"
                );
            }
        }
        "synth" => {
            let o = p.output.as_ref().unwrap();
            has(o, "phantom.json", &what);
            has(o, &format!("nifti/{}.nii.gz", words[2]), &what);
            if flag("--te2") {
                has(o, "nifti/dsc_e2.nii.gz", &what);
            }
            assert!(!common::files_below(&o.join("dicom")).is_empty(), "{what}");
        }
        "compare" => {
            let o = p.output.as_ref().unwrap();
            has(o, "compare.json", &what);
            has(o, &format!("v2_prm_rcbv.{nii}"), &what);
            if flag("--roi") {
                has(o, "roi_table.csv", &what);
            }
        }
        "bids" if words[4] == "participant" => {
            let d = Path::new(words[3]).join("paramap");
            has(&d, "dataset_description.json", &what);
            has(
                &d,
                "sub-01/ses-1/perf/sub-01_ses-1_desc-leakagecorrected_rCBV.nii.gz",
                &what,
            );
            has(&d, "sub-01/ses-1/dwi/sub-01_ses-1_ADC.nii.gz", &what);
        }
        "bids" => has(
            &Path::new(words[3]).join("paramap"),
            "group_stats.tsv",
            &what,
        ),
        "bench" => {
            if flag("--tune") {
                has(cwd, "gpu-tuning.json", &what);
            }
            if p.redirect.is_none() {
                assert!(stdout.contains("cpu (f64)"), "{what}: {stdout}");
            }
        }
        _ => {}
    }
}

/// Runs one `listen` example: started on a free port, fed the DWI series by the help's
/// storescu line, it processes and forwards the study and stops on SIGTERM.
fn run_listen(ex: &Example, storescu: &str, inputs: &Inputs, orthanc: &Orthanc, cwd: &Path) {
    let what = format!("{}: `{}`", ex.source, ex.line);
    let port = free_port();
    let p = prepare(ex, inputs, orthanc, cwd, port);
    let mut child = shell(cwd, &format!("exec {}", p.shell))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let mut wait_for = |needle: &[&str], patience: Duration| -> String {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    log.push_str(&line);
                    log.push('\n');
                    if needle.iter().any(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => {
                    panic!("{what}: no line with {needle:?} in {patience:?}; the log:\n{log}")
                }
            }
        }
    };
    wait_for(&["listening on"], Duration::from_secs(30));
    let sender = Example {
        source: "paramap listen --help".into(),
        line: storescu.to_string(),
    };
    let s = prepare(&sender, inputs, orthanc, cwd, port);
    let sent = shell(cwd, &s.shell).output().unwrap_or_else(|e| {
        panic!("{what}: dcmtk's storescu ({e}); Debian: apt-get install -y dcmtk")
    });
    assert!(
        sent.status.success(),
        "{what}: `{}`: {}",
        s.shell,
        String::from_utf8_lossy(&sent.stderr)
    );
    let quiet: f64 = p
        .words
        .iter()
        .position(|w| w == "--quiet-period")
        .map(|i| p.words[i + 1].parse().unwrap())
        .unwrap_or(10.0);
    let done = wait_for(
        &["processed;", "FAILED"],
        Duration::from_secs_f64(quiet + 180.0),
    );
    assert!(done.contains("processed;"), "{what}: {done}");
    let node = p.output.as_ref().unwrap();
    let receipts: Vec<PathBuf> = common::files_below(&node.join("done"))
        .into_iter()
        .filter(|f| f.ends_with("paramap-listen.json"))
        .collect();
    assert_eq!(receipts.len(), 1, "{what}: {receipts:?}\n{log}");
    if p.words.iter().any(|w| w == "--send" || w == "--stowrs") {
        let receipt: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&receipts[0]).unwrap()).unwrap();
        let uid = receipt["study_uid"].as_str().unwrap();
        assert!(
            !orthanc.series_of_study(uid).is_empty(),
            "{what}: Orthanc holds nothing of study {uid}: {receipt}"
        );
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    // The rest of its log, to the end.
    for line in rx.iter() {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(status.success(), "{what}: {status:?}\n{log}");
    assert!(!log.contains("XDG_RUNTIME_DIR"), "{what}:\n{log}");
}

#[test]
fn every_example_in_readme_and_help_runs_and_keeps_its_promise() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = make_inputs(&tmp.path().join("inputs"));
    let orthanc = Orthanc::start(&[]);
    let readme = readme_examples();
    let (help, storescu) = help_examples();
    // The extraction found them: README's two commands and its "Use" block, every help's list.
    assert!(readme.len() >= 19, "README examples: {readme:?}");
    assert!(help.len() >= 30, "help examples: {help:?}");
    assert_eq!(storescu.len(), 1, "listen's storescu line: {storescu:?}");
    let mut seen = BTreeSet::new();
    let examples: Vec<Example> = readme
        .into_iter()
        .chain(help)
        .filter(|e| seen.insert(e.line.clone()))
        .collect();
    // Every placeholder is known before anything runs.
    for ex in &examples {
        prepare(ex, &inputs, &orthanc, tmp.path(), 0);
    }
    let (listen, others): (Vec<Example>, Vec<Example>) = examples
        .into_iter()
        .partition(|e| e.line.starts_with("paramap listen "));
    assert!(listen.len() >= 3, "{listen:?}");
    let workdir = |i: usize| {
        let d = tmp.path().join(format!("example{i:02}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    // The listeners wait for their quiet period: they run side by side, the others one by one.
    std::thread::scope(|scope| {
        for (i, ex) in listen.iter().enumerate() {
            let cwd = workdir(100 + i);
            let (inputs, orthanc, storescu) = (&inputs, &orthanc, &storescu[0]);
            scope.spawn(move || {
                let clock = Instant::now();
                run_listen(ex, storescu, inputs, orthanc, &cwd);
                eprintln!(
                    "ran in {:.1} s: {} ({})",
                    clock.elapsed().as_secs_f64(),
                    ex.line,
                    ex.source
                );
            });
        }
        let mut ran = BTreeSet::new();
        for (i, ex) in others.iter().enumerate() {
            let cwd = workdir(i);
            let p = prepare(ex, &inputs, &orthanc, &cwd, 0);
            // Two examples that differ only in a placeholder or a cost substitution run once.
            if !ran.insert(p.shell.clone()) {
                eprintln!("the same as one run above: {} ({})", ex.line, ex.source);
                continue;
            }
            let clock = Instant::now();
            let output = shell(&cwd, &p.shell).output().unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&output.stdout).to_string(),
                String::from_utf8_lossy(&output.stderr).to_string(),
            );
            assert!(
                output.status.success(),
                "{}: `{}` exited {:?} (run as {}):\n{stderr}",
                ex.source,
                ex.line,
                output.status.code(),
                p.shell,
            );
            assert!(
                !(stdout.clone() + &stderr).contains("XDG_RUNTIME_DIR"),
                "{}: `{}`:\n{stdout}\n{stderr}",
                ex.source,
                ex.line
            );
            kept_its_promise(ex, &p, &cwd, &stdout, &orthanc);
            eprintln!(
                "ran in {:.1} s: {} ({})",
                clock.elapsed().as_secs_f64(),
                ex.line,
                ex.source
            );
        }
    });
}
