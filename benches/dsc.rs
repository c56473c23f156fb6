//! The whole rCBV pipeline (brain mask and whole-brain curve, ΔR2* and first-pass metrics, BSW
//! reference and fit, normalisation) on 128×128×25 voxels × 60 frames, CPU (f64, all cores) and
//! GPU (f32), stage by stage. Run: `cargo bench --bench dsc`.

use criterion::{criterion_group, criterion_main, Criterion};
use paramap::gpu::dsc::DscKernels;
use paramap::gpu::GpuContext;
use paramap::models::deconvolution::{deconvolve_cpu, Deconvolution, Method, Tissue};
use paramap::models::delta_r2star::{compute_cpu, DscAcquisition};
use paramap::models::leakage_bsw::{self, BswReference};
use paramap::pipeline::dsc::{compute, DscInput, DscOptions};
use paramap::pipeline::Engine;
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec};

fn bench(c: &mut Criterion) {
    let p = dsc_phantom(&DscPhantomSpec {
        dims: [128, 128, 25],
        snr: Some(50.0),
        ..Default::default()
    });
    let input = DscInput::from_phantom(&p);
    // The rCBV pipeline of issue #3: no deconvolution here (benchmarked on its own below).
    let opts = DscOptions {
        deconvolution: None,
        ..DscOptions::default()
    };
    // The stages, as the pipeline reports them, once per engine.
    let cpu = compute(&input, &opts, &Engine::Cpu).unwrap();
    eprintln!("CPU stages (s): {:?}", cpu.stages);
    let n = cpu.brain.iter().filter(|&&b| b).count();
    let nt = 60;
    eprintln!("brain voxels: {n} of {}", cpu.brain.len());

    // Per-stage inputs for the kernel benchmarks: the brain voxels' signals, planar.
    let flat: Vec<usize> = cpu
        .brain
        .iter()
        .enumerate()
        .filter_map(|(i, &b)| b.then_some(i))
        .collect();
    let mut s1 = vec![0f32; nt * n];
    for t in 0..nt {
        let vol = input.echo1.data.index_axis(ndarray::Axis(0), t);
        let v = vol.as_slice().unwrap();
        for (k, &i) in flat.iter().enumerate() {
            s1[t * n + k] = v[i];
        }
    }
    let acq: DscAcquisition = cpu.acquisition.clone();
    let maps = compute_cpu(&acq, &s1, &[], n);
    let reference: BswReference = cpu.leakage.clone().unwrap();
    let cbv: Vec<f32> = maps.metrics[n..2 * n].to_vec();

    let mut g = c.benchmark_group("dsc_128x128x25x60");
    g.sample_size(10);
    g.bench_function("cpu_delta_r2star", |b| {
        b.iter(|| compute_cpu(&acq, &s1, &[], n))
    });
    g.bench_function("cpu_leakage_bsw", |b| {
        b.iter(|| leakage_bsw::fit_cpu(&reference, &maps.curves, &cbv, n))
    });
    g.bench_function("cpu_pipeline", |b| {
        b.iter(|| compute(&input, &opts, &Engine::Cpu).unwrap())
    });
    match GpuContext::new() {
        Ok(ctx) => {
            let name = ctx.adapter.label();
            eprintln!(
                "GPU adapter: {name}, driver {} {}",
                ctx.adapter.driver, ctx.adapter.driver_info
            );
            let k = DscKernels::new(&ctx);
            g.bench_function(format!("gpu_delta_r2star [{name}]"), |b| {
                b.iter(|| k.delta_r2star(&ctx, &acq, &s1, &[], n, None).unwrap())
            });
            g.bench_function(format!("gpu_leakage_bsw [{name}]"), |b| {
                b.iter(|| {
                    k.leakage_bsw(&ctx, &reference, &maps.curves, &cbv, n, None)
                        .unwrap()
                })
            });
            let engine = Engine::Gpu(Box::new(ctx));
            let gpu = compute(&input, &opts, &engine).unwrap();
            eprintln!("GPU stages (s): {:?}", gpu.stages);
            g.bench_function(format!("gpu_pipeline [{name}]"), |b| {
                b.iter(|| compute(&input, &opts, &engine).unwrap())
            });
        }
        Err(e) => eprintln!("no GPU benchmark: {e}"),
    }
    g.finish();

    // oSVD on 409,600 voxels × 60 frames: the brain curves of the phantom, repeated.
    let full = compute(&input, &DscOptions::default(), &Engine::Cpu).unwrap();
    let perf = full.perfusion.as_ref().unwrap();
    let total = 409_600;
    let mut curves = vec![0f32; nt * total];
    for t in 0..nt {
        for v in 0..total {
            curves[t * total + v] = maps.curves[t * n + v % n];
        }
    }
    let k2 = vec![0f32; total];
    let cumulative = vec![0f64; nt];
    let ca: Vec<f64> = perf
        .aif
        .curve
        .iter()
        .enumerate()
        .map(|(t, x)| if t < 2 { 0.0 } else { *x })
        .collect();
    let d = Deconvolution::new(&ca, 1.5, Method::Osvd { oi_target: 0.035 }).unwrap();
    let tissue = Tissue {
        curves: &curves,
        k2: &k2,
        cumulative: &cumulative,
        first: 2,
    };
    let mut g = c.benchmark_group("osvd_409600x60");
    g.sample_size(10);
    g.bench_function("cpu_osvd", |b| b.iter(|| deconvolve_cpu(&d, &tissue)));
    if let Ok(ctx) = GpuContext::new() {
        let name = ctx.adapter.label();
        let k = DscKernels::new(&ctx);
        g.bench_function(format!("gpu_osvd [{name}]"), |b| {
            b.iter(|| k.deconvolution(&ctx, &d, &tissue, None).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
