//! The library's layers hold: a module imports only modules at or below its own layer, the
//! order `src/lib.rs` documents. A lower layer that reaches up (say `io` calling into `net`, or
//! `models` into `gpu`) fails here, naming the file and the path it used, so the layering is
//! kept by the build rather than by review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and its layer, lowest first; equal numbers may use each
/// other. The same order as `src/lib.rs`'s "Layers" list.
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("log", 0),
    ("progress", 0),
    ("volume", 1),
    ("maps", 2),
    ("io", 3),
    ("interrupt", 4),
    ("models", 5),
    ("net", 6),
    ("gpu", 7),
    ("synth", 8),
    ("report", 9),
    ("pipeline", 10),
    ("cli", 11),
];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments (doc links may name any module) and without string literals'
/// contents would be ideal; comments are enough here, since no string spells `crate::`.
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`, single or grouped
/// (`crate::{io, models::adc}`).
fn modules_named(code: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    files.sort();
    let mut breaches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let own = layer_of(module).unwrap_or_else(|| {
            panic!("src/{module} is not in LAYERS: give it a layer here and in src/lib.rs")
        });
        let source = std::fs::read_to_string(file).unwrap();
        for named in modules_named(&code_of(&source)) {
            let Some(theirs) = layer_of(&named) else {
                continue;
            };
            if theirs > own {
                breaches
                    .entry(format!("src/{}", rel.display()))
                    .or_default()
                    .push(format!(
                        "crate::{named} (layer {theirs} above {module}'s {own})"
                    ));
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "lower layers import higher ones:\n{breaches:#?}"
    );
}

#[test]
fn every_module_of_the_library_has_a_layer_and_lib_rs_lists_them_in_order() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    for m in &declared {
        assert!(
            layer_of(m).is_some(),
            "`pub mod {m}` has no layer in LAYERS"
        );
    }
    // The "Layers" list of lib.rs's documentation names the modules in LAYERS' order.
    let documented: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let mut ordered: Vec<&str> = documented.clone();
    ordered.sort_by_key(|m| layer_of(m).unwrap_or(u8::MAX));
    assert_eq!(
        documented, ordered,
        "src/lib.rs lists the layers out of order"
    );
    for m in &documented {
        assert!(
            layer_of(m).is_some(),
            "src/lib.rs documents `{m}`, which has no layer"
        );
    }
}

#[test]
fn the_reader_of_imports_sees_single_and_grouped_paths() {
    let code =
        "use crate::io::nifti;\nuse crate::{gpu, models::adc};\nlet x = crate::report::html::x;";
    assert_eq!(modules_named(code), ["io", "gpu", "models", "report"]);
    assert_eq!(code_of("let a = 1; // crate::gpu"), "let a = 1; ");
}
