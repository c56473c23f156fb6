//! ADC on a 128×128×30 volume with 7 b-volumes (b = 0, 500 ×3, 1000 ×3), CPU (f64, all cores)
//! and GPU (f32, the adapter wgpu picks, named in the benchmark id). Run: `cargo bench --bench adc`.

use criterion::{criterion_group, criterion_main, Criterion};
use paramap::gpu::{adc::AdcKernel, GpuContext};
use paramap::models::adc::{fit_cpu, AdcModel, FitMethod};
use paramap::models::trace_weighted::{group_shells, trace_weighted, ShellRules};
use paramap::pipeline::adc::{compute, AdcOptions, MaskChoice};
use paramap::pipeline::Engine;
use paramap::synth::dwi::{dwi_phantom, DwiPhantomSpec};

fn bench(c: &mut Criterion) {
    let phantom = dwi_phantom(&DwiPhantomSpec {
        dims: [128, 128, 30],
        snr: Some(50.0),
        ..Default::default()
    });
    let series = &phantom.series;
    let enc: Vec<_> = series
        .volumes
        .iter()
        .map(|v| v.diffusion.unwrap())
        .collect();
    let shells = group_shells(&enc, &ShellRules::default());
    let trace = trace_weighted(series.data.view(), &shells);
    let n = 128 * 128 * 30;
    let signals: Vec<f32> = trace.iter().copied().collect(); // planar [shell][voxel]
    let model = AdcModel::new(shells.iter().map(|s| s.b).collect(), FitMethod::TraceWls).unwrap();
    let no_mask = AdcOptions {
        mask: MaskChoice::None,
        ..Default::default()
    };

    let mut g = c.benchmark_group("adc_128x128x30_7vol");
    g.sample_size(20);
    g.bench_function("cpu_trace_weighted", |b| {
        b.iter(|| trace_weighted(series.data.view(), &shells))
    });
    g.bench_function("cpu_fit_f64", |b| b.iter(|| fit_cpu(&model, &signals, n)));
    g.bench_function("cpu_pipeline", |b| {
        b.iter(|| compute(series, &no_mask, &Engine::Cpu).unwrap())
    });
    match GpuContext::new() {
        Ok(ctx) => {
            let name = ctx.adapter.label();
            eprintln!(
                "GPU adapter: {name}, driver {} {}",
                ctx.adapter.driver, ctx.adapter.driver_info
            );
            let kernel = AdcKernel::new(&ctx);
            g.bench_function(format!("gpu_fit_f32 [{name}]"), |b| {
                b.iter(|| kernel.fit(&ctx, &model, &signals, n, None).unwrap())
            });
            let engine = Engine::Gpu(Box::new(ctx));
            g.bench_function(format!("gpu_pipeline [{name}]"), |b| {
                b.iter(|| compute(series, &no_mask, &engine).unwrap())
            });
        }
        Err(e) => eprintln!("no GPU benchmark: {e}"),
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
