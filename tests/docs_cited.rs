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
