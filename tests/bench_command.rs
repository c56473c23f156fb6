//! `paramap bench --size small` runs on the CPU and on the GPU adapter (lavapipe in CI), and
//! reports that the GPU maps agree with the CPU's, for each workgroup size asked for.

mod common;

#[test]
fn bench_small_runs_on_cpu_and_gpu_and_reports_agreement_per_workgroup_size() {
    let _gpu = common::gpu(); // fails with instructions where there is no adapter
    let out = common::paramap()
        .args([
            "bench",
            "--size",
            "small",
            "--json",
            "--workgroup-sizes",
            "64,128",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    for pipeline in ["adc", "dsc (rCBV + BSW + oSVD)"] {
        let of: Vec<&serde_json::Value> =
            rows.iter().filter(|r| r["pipeline"] == pipeline).collect();
        assert!(
            of.len() >= 3,
            "{pipeline}: a CPU row and at least one GPU row per workgroup size"
        );
        let sizes: Vec<u64> = of[1..]
            .iter()
            .map(|r| r["workgroup_size"].as_u64().unwrap())
            .collect();
        assert!(sizes.contains(&64) && sizes.contains(&128), "{sizes:?}");
        assert!(of[0]["workgroup_size"].is_null(), "the CPU has none");
        assert_eq!(of[0]["agreement"], "reference");
        assert!(of[0]["backend"].as_str().unwrap().starts_with("cpu"));
        for gpu in &of[1..] {
            let text = gpu["agreement"].as_str().unwrap();
            let share: f64 = text
                .trim_start_matches("rCBV ")
                .split('%')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(share >= 99.9, "{pipeline} on {}: {text}", gpu["backend"]);
            assert!(
                gpu["kernels_s"].as_f64().unwrap() > 0.0,
                "GPU stages are timed"
            );
            assert!(gpu["upload_s"].as_f64().unwrap() > 0.0);
            // Timestamp queries (lavapipe has them): the kernels on the GPU's clock.
            let clock = &gpu["kernels_gpu_clock_s"];
            if gpu["backend"].as_str().unwrap().contains("llvmpipe") {
                assert!(clock.is_number(), "lavapipe times kernels on its clock");
            }
            if let Some(t) = clock.as_f64() {
                assert!(t > 0.0 && t <= gpu["compute_s"].as_f64().unwrap(), "{t}");
            }
        }
        for r in &of {
            assert!(
                r["ingest_s"].as_f64().unwrap() > 0.0 && r["voxels_per_s"].as_f64().unwrap() > 0.0
            );
        }
    }
}
