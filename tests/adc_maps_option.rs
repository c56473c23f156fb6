//! `paramap adc --maps`: only the images named are written (and listed in adc.json with their
//! units), each the same bits as in a run that writes every image; an unknown name is refused
//! naming the images there are.

mod common;

use std::path::Path;

use paramap::io::nifti;

fn data(dir: &Path, stem: &str) -> Vec<u32> {
    let (d, _, _) = nifti::read(&dir.join(format!("{stem}.nii.gz"))).unwrap();
    d.iter().map(|x| x.to_bits()).collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn maps_writes_only_the_images_named_each_the_same_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let phantom = tmp.path().join("phantom");
    common::paramap()
        .args(["synth", "dwi", "--snr", "30", "-o"])
        .arg(&phantom)
        .assert()
        .success();
    let input = phantom.join("nifti/dwi.nii.gz");
    for method in ["ols", "trace-wls"] {
        let all = tmp.path().join(format!("all-{method}"));
        assert!(
            common::run("adc", &input, &all, &["-q", "--method", method])
                .status
                .success()
        );
        let record = |dir: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join("adc.json")).unwrap()).unwrap()
        };
        let full = record(&all);
        for (k, (list, stems)) in [
            ("adc,s0", vec!["adc", "s0"]),
            ("s0, adc.nii.gz,adc", vec!["adc", "s0"]),
            ("fit_nrmse,mask", vec!["fit_nrmse", "mask"]),
            ("trace", vec!["trace"]),
        ]
        .into_iter()
        .enumerate()
        {
            let some = tmp.path().join(format!("{method}-{k}"));
            let output = common::run(
                "adc",
                &input,
                &some,
                &["-q", "--method", method, "--maps", list],
            );
            assert!(output.status.success(), "{list}: {output:?}");
            let mut expected: Vec<String> = stems.iter().map(|s| format!("{s}.nii.gz")).collect();
            expected.push("adc.json".into());
            if stems.contains(&"trace") {
                expected.push("trace.bval".into());
            }
            expected.sort();
            assert_eq!(names(&some), expected, "{method} --maps {list}");
            for stem in &stems {
                assert!(
                    data(&some, stem) == data(&all, stem),
                    "{method} --maps {list}: {stem}"
                );
            }
            let record = record(&some);
            let units = record["units"].as_object().unwrap();
            let mut in_units: Vec<&str> = units.keys().map(|k| k.as_str()).collect();
            in_units.sort();
            let mut want = stems.clone();
            want.sort();
            assert_eq!(in_units, want, "{list}");
            for key in ["invalid_voxels_nan", "mask"] {
                assert_eq!(record[key], full[key], "{method} --maps {list}: {key}");
            }
        }
    }
    let bad = tmp.path().join("bad");
    let output = common::run("adc", &input, &bad, &["--maps", "adc,md"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("'md'") && stderr.contains("adc, s0, fit_nrmse, mask, trace"),
        "{stderr}"
    );
    assert!(!bad.exists());
}
