//! The project documents its own methods: docs/methods.md is shipped, and no help text, README
//! or generated report sends a user to `../shared` (which a clone does not have) or to
//! "METHODS §", the internal contract's name.

mod common;

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Text a user reads must not cite files outside the project.
fn assert_cites_only_the_project(text: &str, what: &str) {
    for outside in ["../shared", "shared/METHODS", "METHODS §", "METHODS.md"] {
        assert!(!text.contains(outside), "{what} mentions {outside:?}");
    }
}

#[test]
fn the_methods_document_is_shipped_with_every_section_the_program_cites() {
    let methods = std::fs::read_to_string(root().join("docs/methods.md")).unwrap();
    for section in ["## §1", "## §2", "## §3", "## §4", "## §5", "## References"] {
        assert!(methods.contains(section), "docs/methods.md lacks {section}");
    }
    // The defaults it states are the program's defaults.
    assert_eq!(
        paramap::pipeline::adc::AdcOptions::default()
            .method
            .to_string(),
        "ols"
    );
    let dsc = paramap::pipeline::dsc::DscOptions::default();
    assert_eq!(dsc.leakage, paramap::pipeline::dsc::Leakage::Residue);
    assert_eq!(
        dsc.deconvolution,
        Some(paramap::models::deconvolution::Method::Parametric)
    );
    for default in [
        "`--leakage residue` (the default)",
        "`--deconvolution parametric` (default)",
        "`ols` (default)",
        "`--rcbv-low 1.5`",
        "`--rcbv-high 2.0`",
        "`--adc-high 1.0e-3`",
        "`--b0-threshold`",
        "0.035",
        "`--kh 0.733`",
        "`--rho 1.04`",
    ] {
        assert!(methods.contains(default), "docs/methods.md lacks {default}");
    }
    assert_cites_only_the_project(&methods, "docs/methods.md");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert_cites_only_the_project(&readme, "README.md");
    assert!(readme.contains("docs/methods.md"));
}

#[test]
fn no_help_text_cites_files_outside_the_project() {
    let commands: &[&[&str]] = &[
        &[],
        &["info"],
        &["adc"],
        &["dsc"],
        &["run"],
        &["synth"],
        &["synth", "dwi"],
        &["synth", "dsc"],
        &["bench"],
        &["listen"],
    ];
    for command in commands {
        let output = common::paramap()
            .args(*command)
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success(), "{command:?} --help");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.len() > 200, "{command:?} --help printed {help}");
        assert_cites_only_the_project(&help, &format!("paramap {} --help", command.join(" ")));
    }
    let dsc = common::paramap().args(["dsc", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&dsc.stdout).contains("docs/methods.md §1"));
}

#[test]
fn the_generated_report_and_records_cite_only_the_project() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let output = common::run("run", &root().join("sample_data"), &out, &["--quiet"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut reports = 0;
    for file in common::files_below(&out) {
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "html" | "json" | "csv") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert_cites_only_the_project(&text, &file.display().to_string());
        if ext == "html" {
            assert!(text.contains("docs/methods.md"), "{}", file.display());
            reports += 1;
        }
    }
    assert!(reports >= 1, "no report written");
}

#[test]
fn readme_states_the_rust_version_cargo_toml_requires() {
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("Cargo.toml states rust-version")
        .trim_matches('"');
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let stated: Vec<&str> = readme
        .split("Rust ≥ ")
        .skip(1)
        .map(|rest| rest.split([' ', ',', ')']).next().unwrap())
        .collect();
    assert!(!stated.is_empty(), "README.md states no Rust version");
    for s in stated {
        assert_eq!(
            s, version,
            "README.md says Rust ≥ {s}, Cargo.toml {version}"
        );
    }
}

/// The project paths (`docs/…`, `src/…`, `tests/…`, `shaders/…`, `benches/…`,
/// `sample_data/…`, `.ci/…`, and the top-level Markdown files) that `text` names.
fn cited_paths(text: &str) -> Vec<String> {
    const ROOTS: [&str; 7] = [
        "docs/",
        "src/",
        "tests/",
        "shaders/",
        "benches/",
        "sample_data/",
        ".ci/",
    ];
    let mut out = vec![];
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    for (i, _) in text.char_indices() {
        let rest = &text[i..];
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| is_path_char(c) || c == '<') {
            continue;
        }
        if ROOTS.iter().any(|r| rest.starts_with(r))
            || ["README.md", "BENCHMARKS.md", "Cargo.toml"]
                .iter()
                .any(|f| rest.starts_with(f))
        {
            let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
            // A placeholder (`sNNN_<dwi|dsc>_…/`) or a pattern is not a path.
            if rest[end..].starts_with(['<', '{', '*']) {
                continue;
            }
            let path = rest[..end].trim_end_matches(['.', '/']);
            out.push(path.to_string());
        }
    }
    out
}

#[test]
fn every_project_file_the_docs_and_help_cite_exists() {
    let mut texts = vec![];
    for file in ["README.md", "BENCHMARKS.md", "docs/methods.md"] {
        texts.push((
            file.to_string(),
            std::fs::read_to_string(root().join(file)).unwrap(),
        ));
    }
    for command in [
        &[][..],
        &["info"],
        &["adc"],
        &["dsc"],
        &["run"],
        &["synth", "dwi"],
        &["synth", "dsc"],
        &["bench"],
        &["listen"],
    ] {
        let output = common::paramap()
            .args(command)
            .arg("--help")
            .output()
            .unwrap();
        texts.push((
            format!("paramap {} --help", command.join(" ")),
            String::from_utf8_lossy(&output.stdout).to_string(),
        ));
    }
    let mut checked = 0;
    for (what, text) in &texts {
        for path in cited_paths(text) {
            assert!(
                root().join(&path).exists(),
                "{what} cites {path}, which the project does not have"
            );
            checked += 1;
        }
    }
    // README alone cites docs/methods.md, a dozen tests and the sources of the models.
    assert!(checked > 30, "only {checked} citations found");
}
