//! The GPU runner's chunking, transfer overlap, workgroup size and kernel timestamps move the
//! same arithmetic around and change no output: whole pipelines, one chunk against many,
//! overlapped against stage by stage, 64 threads per workgroup against 1, 32 and 256, timed on
//! the GPU's clock or not, compared bit for bit.

mod common;

use paramap::pipeline::adc::{self, AdcOptions};
use paramap::pipeline::dsc::{self, DscInput, DscOptions};
use paramap::pipeline::Engine;
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec};
use paramap::synth::dwi::{dwi_phantom, DwiPhantomSpec};

/// (chunk cap, overlap, threads per workgroup, timestamps) of each run compared with the
/// first, which has one chunk, no overlap, 64 threads and no timestamps.
const RUNS: [(Option<usize>, bool, u32, bool); 6] = [
    (Some(997), false, 64, false),
    (Some(997), true, 64, true),
    (None, true, 64, true),
    (None, true, 32, false),
    (Some(997), true, 256, true),
    (None, false, 1, true),
];

/// The stage clock is one per process: a test that reads it runs alone among those that
/// write it.
static CLOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn engine(overlap: bool, workgroup: u32, timestamps: bool) -> Engine {
    let mut ctx = common::gpu()
        .with_workgroup_size(workgroup)
        .expect("lavapipe and every real adapter allow 1 to 256 threads");
    ctx.overlap = overlap;
    ctx.timestamps = timestamps && ctx.timestamp_queries;
    Engine::Gpu(Box::new(ctx))
}

fn same_bits(a: &ndarray::Array3<f32>, b: &ndarray::Array3<f32>, what: &str) {
    assert_eq!(a.dim(), b.dim());
    let differ = a
        .iter()
        .zip(b.iter())
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{what}: {differ} voxels differ");
}

#[test]
fn adc_maps_are_identical_in_one_chunk_many_chunks_overlapped_or_serial_any_workgroup() {
    let _clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let p = dwi_phantom(&DwiPhantomSpec {
        snr: Some(30.0),
        ..Default::default()
    });
    let run = |chunk: Option<usize>, overlap: bool, workgroup: u32, timestamps: bool| {
        adc::compute(
            &p.series,
            &AdcOptions {
                chunk_voxels: chunk,
                ..Default::default()
            },
            &engine(overlap, workgroup, timestamps),
        )
        .unwrap()
    };
    let whole = run(None, false, 64, false);
    for (chunk, overlap, workgroup, timestamps) in RUNS {
        let other = run(chunk, overlap, workgroup, timestamps);
        let what = format!(
            "chunk {chunk:?}, overlap {overlap}, workgroup {workgroup}, timestamps {timestamps}"
        );
        same_bits(&whole.adc, &other.adc, &format!("ADC, {what}"));
        same_bits(&whole.s0, &other.s0, &format!("S0, {what}"));
        same_bits(&whole.nrmse, &other.nrmse, &format!("NRMSE, {what}"));
    }
}

#[test]
fn dsc_maps_are_identical_in_one_chunk_many_chunks_overlapped_or_serial_any_workgroup() {
    let _clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let p = dsc_phantom(&DscPhantomSpec {
        snr: Some(40.0),
        ..Default::default()
    });
    let input = DscInput::from_phantom(&p);
    let run = |chunk: Option<usize>, overlap: bool, workgroup: u32, timestamps: bool| {
        dsc::compute(
            &input,
            &DscOptions {
                chunk_voxels: chunk,
                ..Default::default()
            },
            &engine(overlap, workgroup, timestamps),
        )
        .unwrap()
    };
    let whole = run(None, false, 64, false);
    let brain = whole.brain.iter().filter(|&&b| b).count();
    assert_ne!(brain % 997, 0, "the last chunk is a short one");
    for (chunk, overlap, workgroup, timestamps) in RUNS {
        let other = run(chunk, overlap, workgroup, timestamps);
        let what = format!(
            "chunk {chunk:?}, overlap {overlap}, workgroup {workgroup}, timestamps {timestamps}"
        );
        same_bits(&whole.rcbv, &other.rcbv, &format!("rCBV, {what}"));
        same_bits(&whole.k2, &other.k2, &format!("K2, {what}"));
        same_bits(&whole.ttp, &other.ttp, &format!("TTP, {what}"));
        let (pw, po) = (
            whole.perfusion.as_ref().unwrap(),
            other.perfusion.as_ref().unwrap(),
        );
        same_bits(&pw.cbf, &po.cbf, &format!("CBF, {what}"));
        same_bits(&pw.mtt, &po.mtt, &format!("MTT, {what}"));
        same_bits(&pw.tmax, &po.tmax, &format!("Tmax, {what}"));
    }
}

#[test]
fn adc_with_an_impossible_workgroup_size_fails_before_writing_anything() {
    let _adapter = common::gpu(); // fails with instructions where there is no adapter
    let tmp = tempfile::tempdir().unwrap();
    common::dwi_phantom(tmp.path(), &DwiPhantomSpec::default());
    let out = tmp.path().join("out");
    let output = common::paramap()
        .args([
            "adc",
            "--backend",
            "gpu",
            "--workgroup-size",
            "100000",
            "-o",
        ])
        .arg(&out)
        .arg(tmp.path().join("nifti/dwi.nii.gz"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("100000 threads") && stderr.contains("use 1 to"),
        "{stderr}"
    );
    assert!(common::files_below(&out).is_empty());
}

#[test]
fn an_impossible_workgroup_size_is_refused_naming_the_limit() {
    for size in [0, 1 << 20] {
        let message = common::gpu()
            .with_workgroup_size(size)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            message.contains(&format!("{size} threads")) && message.contains("use 1 to"),
            "{message}"
        );
    }
}

#[test]
fn kernels_are_timed_on_the_gpu_clock_where_the_adapter_can() {
    // lavapipe has timestamp queries (timestampComputeAndGraphics): the overlapped run then
    // records the kernels' time without waiting between stages, and it is no longer than the
    // whole run's wall time.
    let _alone = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut ctx = common::gpu();
    assert!(
        ctx.timestamp_queries || !ctx.adapter.name.contains("llvmpipe"),
        "lavapipe offers timestamp queries"
    );
    if !ctx.timestamp_queries {
        return;
    }
    ctx.timestamps = true;
    let p = dwi_phantom(&DwiPhantomSpec::default());
    paramap::gpu::reset_stage_clock();
    let clock = std::time::Instant::now();
    adc::compute(
        &p.series,
        &AdcOptions {
            chunk_voxels: Some(4096),
            ..Default::default()
        },
        &Engine::Gpu(Box::new(ctx)),
    )
    .unwrap();
    let wall = clock.elapsed().as_secs_f64();
    let st = paramap::gpu::stage_clock();
    assert!(st.gpu_timed_dispatches > 1, "several chunks timed: {st:?}");
    assert!(
        st.gpu_kernel_s > 0.0 && st.gpu_kernel_s <= wall,
        "{st:?}, wall {wall}"
    );
}

#[test]
fn each_pipeline_is_compiled_once_per_device_and_workgroup_size() {
    // `run` and `listen` process series after series on one context: the shaders are
    // compiled for the first and reused after, by clones of the context too.
    let ctx = common::gpu();
    let engine = Engine::Gpu(Box::new(ctx.clone()));
    let dwi = dwi_phantom(&DwiPhantomSpec::default());
    let dsc_input = DscInput::from_phantom(&dsc_phantom(&DscPhantomSpec::default()));
    let mut counts = Vec::new();
    for _ in 0..2 {
        adc::compute(&dwi.series, &AdcOptions::default(), &engine).unwrap();
        counts.push(ctx.compiled_pipelines());
        dsc::compute(&dsc_input, &DscOptions::default(), &engine).unwrap();
        counts.push(ctx.compiled_pipelines());
    }
    // ADC: 1; DSC with its defaults adds the two kernels it uses (ΔR2* and the parametric
    // fit; BSW, the gamma variate and SVD are compiled only when asked for); the second round
    // adds none.
    assert_eq!(counts, vec![1, 3, 3, 3]);
    // Another workgroup size is another pipeline.
    let other = Engine::Gpu(Box::new(ctx.clone().with_workgroup_size(128).unwrap()));
    adc::compute(&dwi.series, &AdcOptions::default(), &other).unwrap();
    assert_eq!(ctx.compiled_pipelines(), 4);
}
