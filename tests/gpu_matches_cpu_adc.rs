//! The GPU kernel (shaders/adc.wgsl, f32) against its CPU twin (models::adc, f64), voxel by
//! voxel: relative difference ≤ 1e-4 where ADC > 1e-5 mm²/s, identical NaN positions.

mod common;

use paramap::gpu::adc::AdcKernel;
use paramap::models::adc::{fit_cpu, AdcMaps, AdcModel, FitMethod};
use paramap::pipeline::adc::{compute, AdcOptions};
use paramap::pipeline::Engine;
use paramap::synth::dwi::{dwi_phantom, DwiPhantomSpec};
use rand::{Rng, SeedableRng};

/// Random decays (ADC 0 to 3.5e-3, S0 10 to 5000, 5% multiplicative noise), plus voxels that
/// must be invalid: zero, negative and NaN signals.
fn random_signals(model: &AdcModel, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let nb = model.n_b();
    let mut s = vec![0f32; nb * n];
    for v in 0..n {
        let adc: f64 = rng.random_range(0.0..3.5e-3);
        let s0: f64 = rng.random_range(10.0..5000.0);
        for i in 0..nb {
            let noise: f64 = 1.0 + rng.random_range(-0.05..0.05);
            s[i * n + v] = (s0 * (-model.bvalues[i] * adc).exp() * noise) as f32;
        }
        match v % 97 {
            0 => s[v] = 0.0,
            1 => s[(nb - 1) * n + v] = -5.0,
            2 => s[n + v] = f32::NAN,
            _ => {}
        }
    }
    s
}

fn assert_agree(gpu: &AdcMaps, cpu: &AdcMaps, what: &str) {
    assert_eq!(gpu.len(), cpu.len());
    let mut compared = 0;
    for v in 0..cpu.len() {
        let (g, c) = (gpu.adc[v], cpu.adc[v]);
        assert_eq!(
            g.is_nan(),
            c.is_nan(),
            "{what}: voxel {v} NaN on one path only (gpu {g}, cpu {c})"
        );
        assert_eq!(
            gpu.s0[v].is_nan(),
            cpu.s0[v].is_nan(),
            "{what}: voxel {v} S0 NaN mismatch"
        );
        if c.is_nan() {
            continue;
        }
        if c.abs() > 1e-5 {
            let rel = ((g - c) / c).abs();
            assert!(
                rel <= 1e-4,
                "{what}: voxel {v} ADC gpu {g:e} cpu {c:e} (rel {rel:e})"
            );
            compared += 1;
        }
        let rel_s0 = ((gpu.s0[v] - cpu.s0[v]) / cpu.s0[v]).abs();
        assert!(
            rel_s0 <= 1e-4,
            "{what}: voxel {v} S0 gpu {} cpu {}",
            gpu.s0[v],
            cpu.s0[v]
        );
        assert!(
            (gpu.nrmse[v] - cpu.nrmse[v]).abs() <= 1e-4 + 1e-3 * cpu.nrmse[v].abs(),
            "{what}: voxel {v} NRMSE gpu {} cpu {}",
            gpu.nrmse[v],
            cpu.nrmse[v]
        );
    }
    assert!(
        compared > cpu.len() / 2,
        "{what}: too few voxels compared ({compared})"
    );
}

#[test]
fn gpu_matches_cpu_on_random_decays_for_every_method() {
    let ctx = common::gpu();
    let kernel = AdcKernel::new(&ctx);
    let bvalues = vec![0.0, 50.0, 200.0, 500.0, 800.0, 1000.0, 1500.0];
    for method in FitMethod::ALL {
        let model = AdcModel::new(bvalues.clone(), method).unwrap();
        let n = 20_000;
        let signals = random_signals(&model, n, 7);
        let cpu = fit_cpu(&model, &signals, n);
        let gpu = kernel.fit(&ctx, &model, &signals, n, None).unwrap();
        assert_agree(&gpu, &cpu, &format!("random, {method}"));
        assert!(
            cpu.adc.iter().any(|x| x.is_nan()),
            "the invalid voxels are exercised"
        );
    }
}

#[test]
fn gpu_matches_cpu_on_65_volumes_each_with_its_own_b() {
    // What `ols` and `wls` feed the kernel: every volume with its own b, here b = 0 and 64
    // directions spread over 987–1003 s/mm² as in DIPY's small_64D (more points than the CPU
    // twin's logarithm cache holds).
    let ctx = common::gpu();
    let kernel = AdcKernel::new(&ctx);
    let bvalues: Vec<f64> = std::iter::once(0.0)
        .chain((0..64).map(|i| 987.0 + (i * 37 % 64) as f64 * 0.25))
        .collect();
    for method in [FitMethod::Ols, FitMethod::Wls] {
        let model = AdcModel::new(bvalues.clone(), method).unwrap();
        let n = 10_000;
        let signals = random_signals(&model, n, 13);
        let cpu = fit_cpu(&model, &signals, n);
        let gpu = kernel.fit(&ctx, &model, &signals, n, None).unwrap();
        assert_agree(&gpu, &cpu, &format!("65 volumes, {method}"));
    }
}

#[test]
fn tiny_chunks_give_the_same_maps_as_one_chunk() {
    let ctx = common::gpu();
    let kernel = AdcKernel::new(&ctx);
    let model = AdcModel::new(vec![0.0, 500.0, 1000.0], FitMethod::Wls).unwrap();
    let n = 5_001;
    let signals = random_signals(&model, n, 11);
    let whole = kernel.fit(&ctx, &model, &signals, n, None).unwrap();
    let chunked = kernel.fit(&ctx, &model, &signals, n, Some(97)).unwrap();
    // Bit for bit: chunking only moves the same arithmetic around.
    for v in 0..n {
        assert_eq!(
            whole.adc[v].to_bits(),
            chunked.adc[v].to_bits(),
            "voxel {v}"
        );
        assert_eq!(whole.s0[v].to_bits(), chunked.s0[v].to_bits(), "voxel {v}");
    }
    assert!(AdcKernel::max_chunk_voxels(&ctx, 3) > 97);
}

#[test]
fn gpu_matches_cpu_on_the_noisy_phantom_with_identical_masks_for_every_method() {
    let phantom = dwi_phantom(&DwiPhantomSpec {
        snr: Some(30.0),
        dims: [64, 64, 4],
        ..Default::default()
    });
    let gpu_engine = Engine::Gpu(Box::new(common::gpu()));
    for method in FitMethod::ALL {
        phantom_agrees(&phantom, method, &gpu_engine);
    }
}

fn phantom_agrees(phantom: &paramap::synth::dwi::DwiPhantom, method: FitMethod, gpu: &Engine) {
    let opts = AdcOptions {
        method,
        ..Default::default()
    };
    let cpu = compute(&phantom.series, &opts, &Engine::Cpu).unwrap();
    let gpu = compute(
        &phantom.series,
        &AdcOptions {
            chunk_voxels: Some(1000),
            ..opts
        },
        gpu,
    )
    .unwrap();
    // ols/wls fit the 7 volumes, the others the 3 trace-weighted images.
    assert_eq!(cpu.model.n_b(), if method.per_volume() { 7 } else { 3 });
    assert_eq!(cpu.mask, gpu.mask);
    let as_maps = |r: &paramap::pipeline::adc::AdcResult| AdcMaps {
        adc: r.adc.iter().copied().collect(),
        s0: r.s0.iter().copied().collect(),
        nrmse: r.nrmse.iter().copied().collect(),
    };
    // outside the mask both are 0: restrict to the mask
    let inside: Vec<usize> = cpu
        .mask
        .iter()
        .enumerate()
        .filter_map(|(i, &m)| m.then_some(i))
        .collect();
    let pick = |m: AdcMaps| AdcMaps {
        adc: inside.iter().map(|&i| m.adc[i]).collect(),
        s0: inside.iter().map(|&i| m.s0[i]).collect(),
        nrmse: inside.iter().map(|&i| m.nrmse[i]).collect(),
    };
    assert_agree(
        &pick(as_maps(&gpu)),
        &pick(as_maps(&cpu)),
        &format!("phantom SNR 30, {method}"),
    );
    assert_eq!(gpu.backend.used, "gpu");
    assert_eq!(cpu.backend.used, "cpu");
}
