//! The fit residuals of issue 16's quality floor: the SVD deconvolutions' (`deconvolution_nrmse`,
//! models::deconvolution_residual, shaders/deconvolution_residual.wgsl) and the leakage fits'
//! (`leakage_nrmse`, models::leakage_residual, shaders/leakage_residual.wgsl). Near 0 on the
//! noise-free phantom, large on a voxel whose curve no model makes, and that voxel is left out
//! of the response map's classes by the reading's quality floor for every deconvolution; the
//! kernels agree with their CPU twins.

mod common;

use ndarray::{s, Array3};
use paramap::gpu::dsc::DscKernels;
use paramap::models::deconvolution::{deconvolve_cpu, Deconvolution, Method, Tissue};
use paramap::models::deconvolution_residual::residual_cpu;
use paramap::models::leakage_bsw::{self, BswReference};
use paramap::models::leakage_leigh::{self, LeighReference};
use paramap::models::leakage_residual::{self, LeakageRegressors};
use paramap::pipeline::dsc::{compute, DscInput, DscOptions, Leakage};
use paramap::pipeline::reading::{self, ReadingSeries};
use paramap::pipeline::Engine;
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec, WHITE_MATTER};

/// The noise-free phantom with one white-matter voxel's signal made to zig-zag (± 40% every
/// other frame after the baseline): a curve no convolution of the AIF makes. Returns the
/// input, the corrupted voxel `[z, y, x]` and the phantom's labels.
fn phantom_with_a_corrupted_voxel() -> (DscInput, [usize; 3], Array3<u8>) {
    let p = dsc_phantom(&DscPhantomSpec::default());
    let mut input = DscInput::from_phantom(&p);
    let (nz, ny, nx) = p.labels.dim();
    let (z, y) = (nz / 2, ny / 2);
    let x = (0..nx)
        .find(|&x| {
            (x..x + 3).all(|i| p.labels[[z, y, i]] == WHITE_MATTER)
                && (x - 3..x).all(|i| p.labels[[z, y, i]] == WHITE_MATTER)
        })
        .expect("white matter on the middle row")
        + 1;
    let mut curve = input.echo1.data.slice_mut(s![.., z, y, x]);
    for (t, v) in curve.iter_mut().enumerate().skip(12) {
        *v *= if t % 2 == 0 { 1.4 } else { 0.6 };
    }
    (input, [z, y, x], p.labels)
}

/// The finite values of `q` in the voxels `keep` takes: (median, 99th percentile).
fn median_and_p99(q: &Array3<f32>, keep: impl Fn([usize; 3]) -> bool) -> (f32, f32) {
    let mut values: Vec<f32> = q
        .indexed_iter()
        .filter(|&((z, y, x), v)| keep([z, y, x]) && v.is_finite())
        .map(|(_, &v)| v)
        .collect();
    values.sort_by(f32::total_cmp);
    (values[values.len() / 2], values[values.len() * 99 / 100])
}

#[test]
fn svd_residual_is_near_zero_on_the_noise_free_phantom_and_a_corrupted_curve_fails_the_floor() {
    let (input, bad, labels) = phantom_with_a_corrupted_voxel();
    for name in ["osvd", "csvd", "ssvd", "tikhonov"] {
        let opts = DscOptions {
            deconvolution: Some(Method::from_name(name).unwrap()),
            leakage: Leakage::None,
            ..Default::default()
        };
        let r = compute(&input, &opts, &Engine::Cpu).unwrap();
        let p = r.perfusion.as_ref().unwrap();
        let q = p
            .fit_nrmse
            .as_ref()
            .expect("every deconvolution has a residual");
        // Tissue voxels of the noise-free phantom, the corrupted one and vessels left out.
        let (median, p99) = median_and_p99(q, |i| {
            r.brain[i] && i != bad && (1..=3).contains(&labels[i])
        });
        let worst = q[bad];
        eprintln!("{name}: tissue median {median:.4}, 99th percentile {p99:.4}; corrupted voxel {worst:.3}");
        assert!(p99 < 0.05, "{name}: 99th percentile {p99}");
        assert!(worst > 0.5, "{name}: corrupted voxel {worst}");
        // The reading: every voxel's ADC supports treatment effect, so the class follows the
        // rCBV, except where the DSC fit fails the floor.
        let adc = Array3::from_elem(r.rcbv.dim(), 1.4e-3f32);
        let series = |map, fit_nrmse| ReadingSeries {
            map,
            mask: r.brain.view(),
            fit_nrmse,
            geometry: &input.echo1.geometry,
            info: &input.echo1.info,
        };
        let (d, w) = (
            series(r.rcbv.view(), Some(q.view())),
            series(adc.view(), None),
        );
        let t = opts.thresholds;
        let floor = reading::compute(&d, &w, &t, reading::MAX_FIT_NRMSE).unwrap();
        assert_eq!(
            floor.response[bad], 2,
            "{name}: below the floor, indeterminate"
        );
        let no_floor = reading::compute(&d, &w, &t, f64::INFINITY).unwrap();
        assert_ne!(
            no_floor.response[bad], 0,
            "{name}: classified without the floor"
        );
        // The floor only ever turns a voxel whose fit fails it into class 2.
        for ((i, &a), &b) in floor.response.indexed_iter().zip(no_floor.response.iter()) {
            if a != b {
                assert!(
                    a == 2 && q[i] > 0.5,
                    "{name} {i:?}: {b} → {a}, nrmse {}",
                    q[i]
                );
            }
        }
        assert!(floor.below_quality_floor >= 1, "{name}");
    }
}

/// Bolus curves: the AIF through an exponential residue of random flow, MTT and delay, with
/// noise and a random leakage term; plus a NaN curve and a zero curve.
fn curves(nt: usize, n: usize, aif: &[f64]) -> (Vec<f32>, Vec<f32>, Vec<f64>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let mut c = vec![0f32; nt * n];
    let mut k2 = vec![0f32; n];
    for v in 0..n {
        let (flow, mtt, delay) = (
            rng.random_range(0.005..0.02),
            rng.random_range(2.0..10.0),
            rng.random_range(0..4usize),
        );
        for t in 0..nt {
            let x: f64 = (0..=t.saturating_sub(delay))
                .map(|j| flow * aif[j] * (-((t - delay - j) as f64) * 1.5 / mtt).exp() * 1.5)
                .sum();
            c[t * n + v] = (x + rng.random_range(-0.05..0.05)) as f32;
        }
        k2[v] = rng.random_range(-0.02..0.02);
    }
    for t in 0..nt {
        c[t * n] = if t == 20 { f32::NAN } else { 1.0 };
        c[t * n + 1] = 0.0;
    }
    k2[1] = 0.0;
    let mut cumulative = vec![0.0; nt];
    for t in 1..nt {
        cumulative[t] = cumulative[t - 1] + 1.5 * aif[t] / 10.0;
    }
    (c, k2, cumulative)
}

/// A bolus of `nt` frames `dt` s apart, arriving at 12 s: `scale`·(t/3)³·e^(−t/1.5), t in s
/// from arrival.
fn bolus(nt: usize, dt: f64, scale: f64) -> Vec<f64> {
    (0..nt)
        .map(|i| {
            let t = i as f64 * dt - 12.0;
            if t > 0.0 {
                scale * (t / 3.0).powi(3) * (-t / 1.5).exp()
            } else {
                0.0
            }
        })
        .collect()
}

/// A residual kernel's output against its CPU twin's, voxel by voxel: NaN in the same voxels,
/// else within 1e-5 + 1e-4·|cpu| (f32 against f64). Returns the largest difference.
fn assert_agree(name: &str, gpu: &[f32], cpu: &[f32]) -> f32 {
    assert_eq!(gpu.len(), cpu.len(), "{name}");
    let mut worst = 0f32;
    for (v, (&g, &cp)) in gpu.iter().zip(cpu).enumerate() {
        assert_eq!(
            g.is_nan(),
            cp.is_nan(),
            "{name} voxel {v}: gpu {g} cpu {cp}"
        );
        if cp.is_nan() {
            continue;
        }
        worst = worst.max((g - cp).abs());
        assert!(
            (g - cp).abs() <= 1e-5 + 1e-4 * cp.abs(),
            "{name} voxel {v}: gpu {g} cpu {cp}"
        );
    }
    worst
}

#[test]
fn the_residual_kernel_matches_its_cpu_twin_for_every_method() {
    let ctx = common::gpu();
    let kernels = DscKernels::new(&ctx);
    let (nt, n) = (60, 2000);
    let aif = bolus(nt, 1.5, 40.0);
    let (c, k2, cumulative) = curves(nt, n, &aif);
    let tissue = Tissue {
        curves: &c,
        k2: &k2,
        cumulative: &cumulative,
        first: 3,
    };
    for name in ["csvd", "ssvd", "tikhonov", "osvd"] {
        let d = Deconvolution::new(&aif, 1.5, Method::from_name(name).unwrap()).unwrap();
        let components = deconvolve_cpu(&d, &tissue)[3 * n..].to_vec();
        let cpu = residual_cpu(&d, &tissue, &components);
        let gpu = kernels
            .deconvolution_residual(&ctx, &d, &tissue, &components, Some(777))
            .unwrap();
        assert!(
            cpu[0].is_nan() && cpu[1].is_nan(),
            "{name}: NaN and zero curves"
        );
        let worst = assert_agree(name, &gpu, &cpu);
        let median = common::median(cpu.iter().map(|&x| x as f64).collect());
        eprintln!("{name}: median nrmse {median:.4}, largest |gpu − cpu| {worst:.2e}");
        assert!(median > 0.0 && median < 0.5, "{name}: median {median}");
    }
}

#[test]
fn the_leakage_residual_is_small_where_the_model_holds_and_large_on_a_corrupted_curve() {
    let (input, bad, labels) = phantom_with_a_corrupted_voxel();
    for leakage in [Leakage::Bsw, Leakage::Leigh] {
        let opts = DscOptions {
            leakage,
            deconvolution: Some(Method::from_name("osvd").unwrap()),
            ..Default::default()
        };
        let r = compute(&input, &opts, &Engine::Cpu).unwrap();
        let q = r
            .leakage_nrmse
            .as_ref()
            .expect("BSW and Leigh have a residual");
        let (median, p99) = median_and_p99(q, |i| {
            r.reference_mask[i] && i != bad && labels[i] == WHITE_MATTER
        });
        eprintln!(
            "{leakage:?}: white matter median {median:.4}, 99th percentile {p99:.4}; corrupted voxel {:.3}",
            q[bad]
        );
        assert!(p99 < 0.05, "{leakage:?}: {p99}");
        assert!(q[bad] > 0.5, "{leakage:?}: corrupted voxel {}", q[bad]);
    }
}

#[test]
fn the_leakage_residual_kernel_matches_its_cpu_twin_for_bsw_and_leigh() {
    let ctx = common::gpu();
    let kernels = DscKernels::new(&ctx);
    let (nt, n, dt) = (60, 2000, 1.5);
    let rbar = bolus(nt, dt, 8.0);
    let (c, _, _) = curves(nt, n, &rbar);
    let cbv = vec![1.0f32; n];
    let b = BswReference::new(rbar.clone(), dt, (3, nt), (8, nt), 100).unwrap();
    let l = LeighReference::new(&b, dt, (8, nt)).unwrap();
    for (name, reg, fits, which) in [
        (
            "bsw",
            LeakageRegressors::bsw(&b),
            leakage_bsw::fit_cpu(&b, &c, &cbv, n),
            vec![0u32; n],
        ),
        {
            let fits = leakage_leigh::fit_cpu(&l, &c, &cbv, n);
            let which = leakage_residual::leigh_indices(&l, &fits[2 * n..3 * n]);
            ("leigh", LeakageRegressors::leigh(&l), fits, which)
        },
    ] {
        let (k1, k2) = (&fits[..n], &fits[n..2 * n]);
        let cpu = leakage_residual::residual_cpu(&reg, &c, k1, k2, &which);
        let gpu = kernels
            .leakage_residual(&ctx, &reg, &c, k1, k2, &which, Some(777))
            .unwrap();
        let worst = assert_agree(name, &gpu, &cpu);
        assert!(
            cpu[0].is_nan() && cpu[1].is_nan(),
            "{name}: NaN and zero curves"
        );
        let median = common::median(cpu.iter().map(|&x| x as f64).collect());
        eprintln!("{name}: median nrmse {median:.4}, largest |gpu − cpu| {worst:.2e}");
        assert!(median > 0.0 && median < 1.0, "{name}: {median}");
    }
}
