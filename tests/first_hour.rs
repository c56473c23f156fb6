//! The first hour of a new user (issue #15): `--backend auto` never computes on a software
//! adapter, Mesa's XDG_RUNTIME_DIR complaint never reaches the screen, a rerun never mixes
//! its files with an earlier run's, Ctrl-C and closed pipes end cleanly, the default DICOM maps
//! display, and `info`/`adc`/`dsc` speak JSON like `run`.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn sample(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(kind)
        .join("dicom")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `paramap adc` on the sample DWI phantom with `--backend BACKEND`: (stdout, stderr, adc.json).
fn adc_with(backend: &str, out: &Path) -> (String, String, serde_json::Value) {
    let output = common::paramap()
        .args(["adc", "--backend", backend, "-o"])
        .arg(out)
        .arg(sample("dwi_phantom"))
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr, json_file(&out.join("adc.json")))
}

#[test]
fn auto_passes_over_a_software_adapter_and_gpu_still_uses_it() {
    let adapter = common::gpu().adapter; // fails with instructions where there is none
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, _, gpu) = adc_with("gpu", &tmp.path().join("gpu"));
    assert_eq!(gpu["backend"]["used"], "gpu");
    assert_eq!(gpu["backend"]["adapter"]["name"], adapter.name.as_str());
    assert!(
        stdout.contains(&adapter.name),
        "the engine is named: {stdout}"
    );
    let (stdout, stderr, auto) = adc_with("auto", &tmp.path().join("auto"));
    assert_eq!(auto["backend_requested"], "auto");
    if adapter.device_type == "Cpu" {
        // lavapipe in CI: auto computes on the CPU, says so and why, and names the adapter.
        assert_eq!(auto["backend"]["used"], "cpu", "{auto}");
        assert!(auto["backend"]["adapter"].is_null());
        let notice = auto["backend_notice"]
            .as_str()
            .expect("the record says why");
        for needle in [adapter.name.as_str(), "software adapter", "--backend gpu"] {
            assert!(notice.contains(needle), "{needle:?} not in {notice}");
            assert!(
                stderr.contains(needle),
                "{needle:?} not on screen: {stderr}"
            );
        }
        assert_eq!(
            stderr.lines().filter(|l| l.contains("passed over")).count(),
            1,
            "one notice line: {stderr}"
        );
        assert!(stdout.contains("CPU ("), "the engine is named: {stdout}");
    } else {
        // A hardware GPU: auto uses it, with no notice.
        assert_eq!(auto["backend"]["used"], "gpu", "{auto}");
        assert!(auto["backend_notice"].is_null(), "{auto}");
    }
}

#[test]
fn run_names_the_engine_on_screen() {
    let tmp = tempfile::tempdir().unwrap();
    let output = common::run("run", &sample("dwi_phantom"), &tmp.path().join("out"), &[]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("computing on CPU ("), "{stderr}");
    let record = json_file(&tmp.path().join("out/run.json"));
    assert!(record["engine"].as_str().unwrap().starts_with("CPU ("));
}

#[test]
fn no_xdg_runtime_dir_line_from_a_gpu_command() {
    common::gpu();
    let tmp = tempfile::tempdir().unwrap();
    for (name, value) in [("unset", None), ("relative", Some("not/absolute"))] {
        let mut cmd = common::paramap();
        match value {
            None => cmd.env_remove("XDG_RUNTIME_DIR"),
            Some(v) => cmd.env("XDG_RUNTIME_DIR", v),
        };
        let output = cmd
            .args(["dsc", "--backend", "gpu", "-o"])
            .arg(tmp.path().join(name))
            .arg(sample("dsc_phantom"))
            .output()
            .unwrap();
        let all = text(&output.stdout) + &text(&output.stderr);
        assert!(output.status.success(), "{all}");
        assert!(all.contains("GPU '"), "it ran on the GPU: {all}");
        assert!(
            !all.contains("XDG_RUNTIME_DIR"),
            "XDG_RUNTIME_DIR {name}: {all}"
        );
    }
}

/// Every file below `dir`, relative to it.
fn relative_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = common::files_below(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
        .collect();
    v.sort();
    v
}

#[test]
fn a_second_run_into_a_non_empty_folder_is_refused_and_force_replaces_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dwi = sample("dwi_phantom");
    let dsc = sample("dsc_phantom");
    // (command, input, first run's extra flags, second run's): the second writes fewer files.
    let cases: [(&str, &Path, &[&str], &[&str]); 3] = [
        ("adc", &dwi, &["--save-input"], &[]),
        ("dsc", &dsc, &[], &["--deconvolution", "none"]),
        ("run", &dwi, &[], &["--dicom", "none"]),
    ];
    for (cmd, input, first, second) in cases {
        let out = tmp.path().join(cmd);
        let output = common::run(cmd, input, &out, first);
        assert!(output.status.success(), "{}", text(&output.stderr));
        // An unrelated file of the user's, and the first run's files.
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let before = relative_files(&out);
        let refused = common::run(cmd, input, &out, second);
        let stderr = text(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{cmd}: {stderr}");
        assert!(stderr.contains("--force"), "{cmd}: {stderr}");
        assert!(stderr.contains(&out.display().to_string()), "{stderr}");
        assert_eq!(relative_files(&out), before, "{cmd}: nothing touched");
        // Alone in a fresh folder, the second run writes these files …
        let fresh = tmp.path().join(format!("{cmd}_fresh"));
        assert!(common::run(cmd, input, &fresh, second).status.success());
        let wanted = relative_files(&fresh);
        // … and with --force over the first run's folder, exactly these.
        let forced = common::run(cmd, input, &out, &[second, &["--force"]].concat());
        assert!(forced.status.success(), "{}", text(&forced.stderr));
        let got = relative_files(&out);
        let stale: Vec<&PathBuf> = got.iter().filter(|p| !wanted.contains(p)).collect();
        assert!(
            stale.is_empty(),
            "{cmd}: files of the first run survived: {stale:?}"
        );
        assert_eq!(got, wanted, "{cmd}");
        assert!(before.len() > got.len(), "{cmd}: the first run wrote more");
        let aside: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(".paramap"))
            .collect();
        assert!(aside.is_empty(), "{aside:?}");
    }
    // synth writes a folder too.
    let out = tmp.path().join("synth");
    let synth = |extra: &[&str]| {
        common::paramap()
            .args(["synth", "dwi", "-o"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(synth(&[]).status.success());
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let refused = synth(&[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("--force"));
    assert!(synth(&["--force"]).status.success());
    assert!(!out.join("notes.txt").exists());
    assert!(out.join("phantom.json").exists());
}

/// A two-series study large enough that a run takes a while: a DWI and a DSC phantom.
fn big_study(root: &Path) {
    for (kind, size) in [("dwi", "128x128x12"), ("dsc", "96x96x8")] {
        let out = root.join(kind);
        let output = common::paramap()
            .args(["synth", kind, "--size", size, "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        // Only the DICOM series: the NIfTI copies and truth maps are not part of the study.
        std::fs::remove_dir_all(out.join("nifti")).unwrap();
        std::fs::remove_dir_all(out.join("truth")).unwrap();
    }
}

#[test]
fn sigint_during_run_abandons_the_series_removes_staging_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (study, out) = (tmp.path().join("study"), tmp.path().join("out"));
    big_study(&study);
    let mut child = Command::new(env!("CARGO_BIN_EXE_paramap"))
        .args(["run", "--backend", "cpu", "-o"])
        .arg(&out)
        .arg(&study)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let mut signalled = false;
    for line in stderr.lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if !signalled && line.contains(": computing") {
            let kill = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            signalled = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(signalled, "the run never started a series: {log}");
    assert_eq!(status.code(), Some(130), "{log}");
    let staging = common::staging_folders_below(tmp.path());
    assert!(staging.is_empty(), "staging left: {staging:?}");
    let record = json_file(&out.join("run.json"));
    let why = record["interrupted"].as_str().expect("run.json says so");
    let series = record["series"].as_array().unwrap();
    let interrupted: Vec<&serde_json::Value> = series
        .iter()
        .filter(|s| s["status"] == "interrupted")
        .collect();
    assert!(!interrupted.is_empty(), "{record}");
    for s in &interrupted {
        let label = s["label"].as_str().unwrap();
        assert!(why.contains(label), "{label} not named in {why}");
        assert!(s["folder"].is_null());
    }
    // The abandoned series left no folder; run.json and what was finished remain.
    let folders: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('s'))
        .collect();
    let processed = series.iter().filter(|s| s["status"] == "processed").count();
    assert_eq!(folders.len(), processed, "{folders:?}");
    assert!(log.contains("interrupted"), "{log}");
}

#[test]
fn run_json_into_a_closed_pipe_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' run --backend cpu --json -o '{}' '{}' | head -c 10; echo \" status=$?\"",
            env!("CARGO_BIN_EXE_paramap"),
            tmp.path().join("out").display(),
            sample("dwi_phantom").display()
        ))
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(stdout.starts_with('{'), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
    let status = stdout.rsplit("status=").next().unwrap().trim();
    assert!(
        status == "0" || status == "141",
        "status {status}: {stderr}"
    );
    assert!(tmp.path().join("out/run.json").exists());
}

#[test]
fn each_default_dicom_map_renders_through_dcm2pnm() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("study");
    for kind in ["dwi_phantom", "dsc_phantom"] {
        let to = study.join(kind);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(sample(kind)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    let out = tmp.path().join("out");
    let output = common::run("run", &study, &out, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let dicom = common::files_below(&out);
    let mut maps: Vec<PathBuf> = dicom
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    maps.sort();
    maps.dedup();
    // ADC; rCBV, K2, TTP, CBF, CBV, MTT, Tmax; the response map.
    assert_eq!(maps.len(), 9, "{maps:?}");
    for map in maps {
        // Every slice renders with the window the file carries, as a viewer first shows it;
        // at least one shows the map (more than one grey level).
        let mut contrast = false;
        let files: Vec<PathBuf> = std::fs::read_dir(&map)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(files.len() > 1, "classic: one file per slice in {map:?}");
        for file in &files {
            let png = tmp.path().join("render.png");
            let _ = std::fs::remove_file(&png);
            let render = Command::new("dcm2pnm")
                .args(["+on", "+Wi", "1"])
                .arg(file)
                .arg(&png)
                .output()
                .expect("dcmtk's dcm2pnm (Debian: apt-get install -y dcmtk)");
            let stderr = text(&render.stderr);
            assert!(render.status.success(), "{}: {stderr}", file.display());
            assert!(
                !stderr.contains("cannot select VOI window"),
                "{}: {stderr}",
                file.display()
            );
            let decoder =
                png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
            let mut reader = decoder.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert!(info.width == 48 && info.height == 48, "{info:?}");
            let pixels = &buf[..info.buffer_size()];
            contrast |= pixels.iter().min() < pixels.iter().max();
        }
        assert!(contrast, "{}: every slice renders blank", map.display());
    }
}

#[test]
fn info_adc_and_dsc_print_json_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let parse = |output: std::process::Output| -> serde_json::Value {
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&output.stdout)))
    };
    let info = parse(
        common::paramap()
            .args(["info", "--json"])
            .arg(sample("dwi_phantom"))
            .output()
            .unwrap(),
    );
    let series = info["series"].as_array().unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["kind"], "DWI");
    assert_eq!(
        series[0]["b_values_s_per_mm2"],
        serde_json::json!([0.0, 500.0, 1000.0])
    );
    assert_eq!(series[0]["dims_xyz"], serde_json::json!([48, 48, 6]));
    let adc = parse(common::run(
        "adc",
        &sample("dwi_phantom"),
        &tmp.path().join("adc"),
        &["--json"],
    ));
    assert_eq!(adc["command"], "adc");
    assert_eq!(adc["backend"]["used"], "cpu");
    assert_eq!(adc, json_file(&tmp.path().join("adc/adc.json")));
    let dsc = parse(common::run(
        "dsc",
        &sample("dsc_phantom"),
        &tmp.path().join("dsc"),
        &["--json"],
    ));
    assert_eq!(dsc["backend"]["used"], "cpu");
    assert_eq!(dsc, json_file(&tmp.path().join("dsc/dsc.json")));
}

/// The progress recorder is one per process: the tests that read it run one at a time.
static RECORDER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn long_stages_count_files_to_the_end() {
    let _recorder = RECORDER.lock().unwrap_or_else(|e| e.into_inner());
    paramap::progress::record();
    let scan = paramap::io::dicom::scan(&sample("dwi_phantom")).unwrap();
    let series = paramap::io::dicom::assemble(&scan.series[0]).unwrap();
    assert_eq!(series.n_volumes(), 7);
    let stages = paramap::progress::finished();
    for stage in ["reading DICOM headers", "reading DICOM pixels"] {
        // 42 files: 7 volumes of 6 slices, every one counted.
        assert!(
            stages.contains(&(stage.to_string(), 42, 42)),
            "{stage}: {stages:?}"
        );
    }
}

#[test]
fn the_dsc_fit_counts_every_voxel_to_the_end_on_cpu_and_gpu() {
    use paramap::pipeline::dsc::{compute, DscInput, DscOptions};
    use paramap::pipeline::Engine;
    let _recorder = RECORDER.lock().unwrap_or_else(|e| e.into_inner());
    let input = DscInput::from_phantom(&paramap::synth::dsc::dsc_phantom(&Default::default()));
    // Chunks of 997 voxels on the GPU: the bar moves chunk by chunk.
    let opts = DscOptions {
        chunk_voxels: Some(997),
        ..Default::default()
    };
    for (name, engine) in [
        ("CPU", Engine::Cpu),
        ("GPU", Engine::Gpu(Box::new(common::gpu()))),
    ] {
        paramap::progress::record();
        let r = compute(&input, &opts, &engine).unwrap();
        let brain = r.brain.iter().filter(|&&b| b).count() as u64;
        assert!(brain > 997 * 2, "several chunks: {brain} voxels");
        let fits: Vec<(String, u64, u64)> = paramap::progress::finished()
            .into_iter()
            .filter(|(stage, _, _)| stage == "parametric fit (voxels)")
            .collect();
        // The default (residue-domain leakage, parametric deconvolution) fits once.
        assert_eq!(
            fits,
            vec![("parametric fit (voxels)".to_string(), brain, brain)],
            "{name}"
        );
    }
}

#[test]
fn listen_log_lines_start_with_a_utc_timestamp_and_sigterm_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paramap"))
        .args(["listen", "--port", "0", "--bind", "127.0.0.1", "-o"])
        .arg(tmp.path().join("node"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listening on"), "{first}");
    let stamp = first.split(' ').next().unwrap();
    assert!(stamp.ends_with('Z'), "UTC: {first}");
    let when = chrono::DateTime::parse_from_rfc3339(stamp).expect("ISO 8601 / RFC 3339");
    let age = chrono::Utc::now().signed_duration_since(when);
    assert!(age.num_seconds().abs() < 60, "{first}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    assert!(status.success(), "{status:?}: {rest:?}");
}

#[test]
fn sigint_during_dsc_stops_at_once_leaving_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let phantom = tmp.path().join("phantom");
    let made = common::paramap()
        .args(["synth", "dsc", "--size", "128x128x16", "-o"])
        .arg(&phantom)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let out = tmp.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_paramap"))
        .args(["dsc", "--backend", "cpu", "-o"])
        .arg(&out)
        .arg(phantom.join("nifti/dsc.nii.gz"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run takes seconds (128×128×16×60 on the CPU); interrupt it early on.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(common::staging_folders_below(tmp.path()).is_empty());
    assert!(
        !out.exists(),
        "a half-written output folder: {:?}",
        common::files_below(&out)
    );
}

#[test]
fn each_default_dicom_map_renders_in_orthancs_preview() {
    let orthanc = common::orthanc::Orthanc::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let output = common::run(
        "run",
        &sample("dsc_phantom"),
        &out,
        &["--send", &orthanc.destination(), "--attempts", "1"],
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stderr),
        orthanc.log()
    );
    let record = json_file(&out.join("run.json"));
    let study_uid = record["series"][0]["study_uid"].as_str().unwrap();
    let series = orthanc.series_of_study(study_uid);
    // rCBV, K2, TTP, CBF, CBV, MTT, Tmax: classic, one instance per slice (4 slices).
    assert_eq!(series.len(), 7, "{series:?}");
    for (uid, instances) in series {
        assert_eq!(instances.len(), 4, "{uid}");
        for id in instances {
            let (status, body) = orthanc.preview(&id);
            assert_eq!(status, 200, "{uid} {id}: {}", text(&body));
            let decoder = png::Decoder::new(std::io::Cursor::new(body));
            let mut reader = decoder.read_info().expect("a PNG");
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert_eq!((info.width, info.height), (48, 48));
        }
    }
}
