//! The DSC kernels (shaders/delta_r2star.wgsl, leakage_bsw.wgsl, leakage_leigh.wgsl,
//! gamma_variate.wgsl; f32) against their CPU twins (models::delta_r2star, leakage_bsw,
//! leakage_leigh, gamma_variate; f64), voxel by
//! voxel, on random curves and on the leaky phantom; and the whole DSC pipeline's maps.

mod common;

use paramap::gpu::dsc::DscKernels;
use paramap::models::delta_r2star::{compute_cpu, DscAcquisition, Echo, METRICS};
use paramap::models::gamma_variate::{self, GammaWindow};
use paramap::models::leakage_bsw::{self, BswReference};
use paramap::models::leakage_leigh::{self, LeighReference};
use paramap::pipeline::dsc::{compute, DscInput, DscOptions, Leakage};
use paramap::pipeline::Engine;
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec};
use rand::{Rng, SeedableRng};

/// Relative agreement (`rel`) against max(|CPU value|, `floor`); same NaN positions. The floor
/// is about a quarter of white matter's value of that map: an integral that crosses zero in a
/// noisy voxel has no meaningful relative error, and f32 sums of ~60 logarithms carry an
/// absolute error of a few 1e-4 s⁻¹·s.
fn assert_close(gpu: &[f32], cpu: &[f32], rel: f32, scale: f32, what: &str) {
    assert_eq!(gpu.len(), cpu.len(), "{what}");
    let mut compared = 0;
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        assert_eq!(
            g.is_nan(),
            c.is_nan(),
            "{what}[{i}]: NaN on one path only (gpu {g}, cpu {c})"
        );
        if c.is_nan() {
            continue;
        }
        let tol = rel * c.abs().max(scale);
        assert!(
            (g - c).abs() <= tol,
            "{what}[{i}]: gpu {g} cpu {c} (tolerance {tol})"
        );
        compared += 1;
    }
    assert!(compared > 0, "{what}: nothing compared");
}

/// Random bolus curves: S0 100..2000, peak ΔR2* 2..60 s⁻¹, arrival 8..14, MTT 2..10 s,
/// a T1 or T2* leakage tail, 2% noise; and voxels with zero, negative and NaN signal.
fn random_signals(nt: usize, n: usize, te: f64, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut s = vec![0f32; nt * n];
    for v in 0..n {
        let s0: f64 = rng.random_range(100.0..2000.0);
        let peak: f64 = rng.random_range(2.0..60.0);
        let arrival: f64 = rng.random_range(8.0..14.0);
        let width: f64 = rng.random_range(2.0..10.0);
        let leak: f64 = rng.random_range(-0.05..0.05);
        for t in 0..nt {
            let tau = (t as f64 - arrival).max(0.0) * 1.5;
            let dr2 = peak * (tau / width).powi(2) * (2.0 - tau / width).exp() * 0.5 + leak * tau;
            let noise = 1.0 + rng.random_range(-0.02..0.02);
            s[t * n + v] = (s0 * (-te * dr2).exp() * noise) as f32;
        }
        match v % 101 {
            0 => s[20 * n + v] = 0.0,
            1 => s[30 * n + v] = -3.0,
            2 => s[5 * n + v] = f32::NAN,
            _ => {}
        }
    }
    s
}

fn acquisition(nt: usize, echo: Echo) -> DscAcquisition {
    DscAcquisition {
        n_t: nt,
        dt: 1.5,
        echo,
        baseline: (2, 8),
        bolus: (8, nt),
        integration: (8, nt),
        late: (nt - 6, nt),
    }
}

#[test]
fn delta_r2star_kernel_matches_its_cpu_twin_on_random_curves_single_and_dual_echo() {
    let ctx = common::gpu();
    let kernels = DscKernels::new(&ctx);
    let (nt, n) = (60, 6000);
    for echo in [
        Echo::Single { te: 0.03 },
        Echo::Dual {
            te1: 0.015,
            te2: 0.045,
        },
    ] {
        let s1 = random_signals(nt, n, 0.015, 5);
        let s2 = match echo {
            Echo::Dual { .. } => random_signals(nt, n, 0.045, 6),
            Echo::Single { .. } => Vec::new(),
        };
        let acq = acquisition(nt, echo);
        let cpu = compute_cpu(&acq, &s1, &s2, n);
        // a chunk size that does not divide n, to exercise chunking too
        let gpu = kernels
            .delta_r2star(&ctx, &acq, &s1, &s2, n, Some(1777))
            .unwrap();
        assert_close(
            &gpu.curves,
            &cpu.curves,
            1e-4,
            0.5,
            &format!("{echo:?} ΔR2*(t)"),
        );
        for (k, name) in METRICS.iter().enumerate() {
            let (g, c) = (
                &gpu.metrics[k * n..(k + 1) * n],
                &cpu.metrics[k * n..(k + 1) * n],
            );
            // ΔR2* spreads of the baseline and late means are near 0: compare them against
            // the curve's scale rather than their own
            let scale = match *name {
                "baseline_sd" | "late_mean" | "peak" => 0.5,
                "cbv" => 10.0,
                "psr" => 1.0,
                _ => 1e-3,
            };
            assert_close(g, c, 1e-4, scale, &format!("{echo:?} {name}"));
        }
        assert!(
            cpu.metrics.iter().any(|x| x.is_nan()),
            "the invalid voxels are exercised"
        );
    }
}

#[test]
fn leakage_and_gamma_kernels_match_their_cpu_twins() {
    let ctx = common::gpu();
    let kernels = DscKernels::new(&ctx);
    let (nt, n) = (60, 5000);
    let s1 = random_signals(nt, n, 0.03, 9);
    let acq = acquisition(nt, Echo::Single { te: 0.03 });
    let maps = compute_cpu(&acq, &s1, &[], n);
    let cbv: Vec<f32> = maps.metrics[n..2 * n].to_vec();
    // R̄: the mean of the valid curves
    let mut rbar = vec![0.0; nt];
    let mut count = 0.0;
    for v in (0..n).filter(|&v| !cbv[v].is_nan()) {
        for (t, r) in rbar.iter_mut().enumerate() {
            *r += maps.curves[t * n + v] as f64;
        }
        count += 1.0;
    }
    rbar.iter_mut().for_each(|x| *x /= count);
    let r = BswReference::new(rbar, 1.5, (2, nt), (8, nt), count as usize).unwrap();
    let cpu = leakage_bsw::fit_cpu(&r, &maps.curves, &cbv, n);
    let gpu = kernels
        .leakage_bsw(&ctx, &r, &maps.curves, &cbv, n, Some(999))
        .unwrap();
    assert_close(&gpu[..n], &cpu[..n], 1e-4, 0.05, "K1");
    assert_close(&gpu[n..2 * n], &cpu[n..2 * n], 1e-4, 2.5e-3, "K2");
    assert_close(&gpu[2 * n..], &cpu[2 * n..], 1e-4, 10.0, "corrected CBV");

    let k2: Vec<f32> = cpu[n..2 * n].to_vec();
    let w = GammaWindow {
        start: 8,
        end: 30,
        t0_frame: 7,
        dt: 1.5,
    };
    let cpu_g = gamma_variate::fit_cpu(&w, &maps.curves, &k2, &r.cumulative, n);
    let gpu_g = kernels
        .gamma_variate(&ctx, &w, &maps.curves, &k2, &r.cumulative, Some(1234))
        .unwrap();
    // The gamma fit solves a small regression in f32 on the GPU: compare the CBV it gives.
    assert_close(
        &gpu_g[3 * n..],
        &cpu_g[3 * n..],
        1e-3,
        10.0,
        "gamma-variate CBV",
    );
}

/// The Leigh kernel against its twin on `curves` (`[t * n + v]`): the same NaNs; where both
/// pick the same k_ep, K1, K2 and the corrected CBV within 1e-4 (floors as BSW's); where they
/// pick different grid points, the two fits must explain the curve equally to f32 rounding
/// (the CPU's explained sum of squares at the GPU's k_ep within 1e-5 of Σy² of its best), and
/// such ties may be at most 1% of the voxels. Returns (valid voxels, voxels with another k_ep).
fn check_leigh(
    ctx: &paramap::gpu::GpuContext,
    r: &LeighReference,
    curves: &[f32],
    cbv: &[f32],
    n: usize,
) -> (usize, usize) {
    let kernels = DscKernels::new(ctx);
    let cpu = leakage_leigh::fit_cpu(r, curves, cbv, n);
    let gpu = kernels
        .leakage_leigh(ctx, r, curves, cbv, n, Some(777))
        .unwrap();
    let nt = r.rbar.len();
    let (mut valid, mut ties) = (0, 0);
    let mut same = vec![true; n];
    for v in 0..n {
        let (kg, kc) = (gpu[2 * n + v], cpu[2 * n + v]);
        assert_eq!(kg.is_nan(), kc.is_nan(), "k_ep[{v}]: NaN on one path only");
        if kc.is_nan() {
            continue;
        }
        valid += 1;
        if kg != kc {
            same[v] = false;
            ties += 1;
            let ys: Vec<f64> = (0..nt).map(|t| curves[t * n + v] as f64).collect();
            let b1 = leakage_leigh::b1(r, &ys);
            let at = |k: f32| {
                let i = r
                    .kep
                    .iter()
                    .position(|&x| x as f32 == k)
                    .expect("a grid value");
                leakage_leigh::fit_at(r, i, &ys, b1).2
            };
            let yy: f64 = (r.fit.0..r.fit.1).map(|t| ys[t] * ys[t]).sum();
            let gap = at(kc) - at(kg);
            assert!(
                (0.0..=1e-5 * yy).contains(&gap),
                "voxel {v}: k_ep gpu {kg} cpu {kc}, explained differs by {gap} of {yy}"
            );
        }
    }
    assert!(
        ties * 100 <= valid,
        "{ties} of {valid} voxels pick another k_ep"
    );
    let keep = |x: &[f32]| -> Vec<f32> {
        x.iter()
            .zip(&same)
            .map(|(&x, &s)| if s { x } else { f32::NAN })
            .collect()
    };
    for (row, name, scale) in [(0, "K1", 0.05), (1, "K2", 2.5e-3)] {
        let (g, c) = (&gpu[row * n..(row + 1) * n], &cpu[row * n..(row + 1) * n]);
        assert_close(&keep(g), &keep(c), 1e-4, scale, name);
    }
    // The corrected CBV is CBV + K2·∫E: relative to the larger of its two terms (with large
    // k_ep the correction can be several times the result, and carries K2's 1e-4).
    let mut worst = 0f64;
    for v in (0..n).filter(|&v| same[v] && !cpu[3 * n + v].is_nan()) {
        let k = r
            .kep
            .iter()
            .position(|&x| x as f32 == cpu[2 * n + v])
            .unwrap();
        let term = (cpu[n + v] as f64 * r.weighted_integral[k]).abs();
        let scale = (cbv[v].abs() as f64).max(term).max(10.0);
        let e = (gpu[3 * n + v] as f64 - cpu[3 * n + v] as f64).abs() / scale;
        assert!(
            e <= 1e-4,
            "corrected CBV[{v}]: gpu {} cpu {} (relative {e})",
            gpu[3 * n + v],
            cpu[3 * n + v]
        );
        worst = worst.max(e);
    }
    eprintln!("corrected CBV: worst relative difference {worst:.1e}");
    (valid, ties)
}

#[test]
fn leigh_kernel_matches_its_cpu_twin_on_random_curves_and_the_phantom() {
    let ctx = common::gpu();
    // Random curves, R̄ the mean of the valid ones (as the BSW test above).
    let (nt, n) = (60, 5000);
    let s1 = random_signals(nt, n, 0.03, 13);
    let acq = acquisition(nt, Echo::Single { te: 0.03 });
    let maps = compute_cpu(&acq, &s1, &[], n);
    let cbv: Vec<f32> = maps.metrics[n..2 * n].to_vec();
    let mut rbar = vec![0.0; nt];
    let mut count = 0.0;
    for v in (0..n).filter(|&v| !cbv[v].is_nan()) {
        for (t, r) in rbar.iter_mut().enumerate() {
            *r += maps.curves[t * n + v] as f64;
        }
        count += 1.0;
    }
    rbar.iter_mut().for_each(|x| *x /= count);
    let b = BswReference::new(rbar, 1.5, (2, nt), (8, nt), count as usize).unwrap();
    let r = LeighReference::new(&b, 1.5, (8, nt)).unwrap();
    let (valid, ties) = check_leigh(&ctx, &r, &maps.curves, &cbv, n);
    eprintln!("random curves: {ties} of {valid} voxels pick another k_ep");

    // The leaky phantom at SNR 40: the kernel on the CPU pipeline's brain curves, R̄ and CBV.
    let p = dsc_phantom(&DscPhantomSpec {
        snr: Some(40.0),
        ..Default::default()
    });
    let input = DscInput::from_phantom(&p);
    let opts = DscOptions {
        leakage: Leakage::Leigh,
        deconvolution: None,
        chunk_voxels: Some(1000),
        ..Default::default()
    };
    let cpu = compute(&input, &opts, &Engine::Cpu).unwrap();
    assert_eq!(cpu.leakage_model, Leakage::Leigh);
    let curves = &cpu.delta_r2star;
    let n = curves.voxels.len();
    let flat_cbv: Vec<f32> = cpu.cbv_integral.iter().copied().collect();
    let cbv: Vec<f32> = curves.voxels.iter().map(|&v| flat_cbv[v]).collect();
    let b = cpu.leakage.as_ref().unwrap();
    let integration = (cpu.timing.baseline_end, b.rbar.len());
    let r = LeighReference::new(b, input.dt_s, integration).unwrap();
    let (valid, ties) = check_leigh(&ctx, &r, &curves.values, &cbv, n);
    eprintln!("phantom: {ties} of {valid} voxels pick another k_ep");
    // The twin gives the pipeline's maps (the same reference and window).
    let fits = leakage_leigh::fit_cpu(&r, &curves.values, &cbv, n);
    let kep: Vec<f32> = cpu.kep.as_ref().unwrap().iter().copied().collect();
    for (i, &v) in curves.voxels.iter().enumerate() {
        let (a, b) = (kep[v], fits[2 * n + i]);
        assert!(a == b || (a.is_nan() && b.is_nan()), "kep[{v}]: {a} {b}");
    }

    // The pipeline on the GPU: its ΔR2* and R̄ come from f32 kernels (1e-4 apart), so the
    // leakage maps are compared at 1e-3 where both pick the same k_ep (at most 1% may not).
    let gpu = compute(&input, &opts, &Engine::Gpu(Box::new(common::gpu()))).unwrap();
    let flat = |a: &ndarray::Array3<f32>| a.iter().copied().collect::<Vec<f32>>();
    let kg = flat(gpu.kep.as_ref().unwrap());
    for (g, c) in kg.iter().zip(&kep) {
        assert_eq!(g.is_nan(), c.is_nan(), "kep: NaN on one path only");
    }
    let same: Vec<bool> = kg.iter().zip(&kep).map(|(g, c)| g == c).collect();
    let differ = same.iter().filter(|&&s| !s).count() - kep.iter().filter(|x| x.is_nan()).count();
    eprintln!("phantom pipeline: {differ} voxels with another k_ep");
    assert!(
        differ * 100 <= valid,
        "{differ} of {valid} voxels pick another k_ep"
    );
    let keep = |x: Vec<f32>| -> Vec<f32> {
        x.into_iter()
            .zip(&same)
            .map(|(x, &s)| if s { x } else { f32::NAN })
            .collect()
    };
    for (name, g, c, scale) in [
        (
            "k1",
            gpu.k1.as_ref().unwrap(),
            cpu.k1.as_ref().unwrap(),
            0.05,
        ),
        ("k2", &gpu.k2, &cpu.k2, 2.5e-3),
        (
            "cbv_integral_corrected",
            &gpu.cbv_integral_corrected,
            &cpu.cbv_integral_corrected,
            10.0,
        ),
    ] {
        assert_close(&keep(flat(g)), &keep(flat(c)), 1e-3, scale, name);
    }
}

#[test]
fn whole_dsc_pipeline_maps_agree_on_the_noisy_leaky_phantom() {
    let p = dsc_phantom(&DscPhantomSpec {
        snr: Some(40.0),
        ..Default::default()
    });
    let input = DscInput::from_phantom(&p);
    let opts = DscOptions {
        chunk_voxels: Some(1000),
        ..Default::default()
    };
    let cpu = compute(&input, &opts, &Engine::Cpu).unwrap();
    let gpu = compute(&input, &opts, &Engine::Gpu(Box::new(common::gpu()))).unwrap();
    assert_eq!(cpu.brain, gpu.brain, "same brain mask");
    assert_eq!(cpu.timing, gpu.timing);
    assert_eq!(
        cpu.leakage_reference_mask, gpu.leakage_reference_mask,
        "same leakage reference voxels"
    );
    // The automatic white-matter reference is chosen on the corrected CBV, which carries the
    // parametric fit's K2: where the two paths pick neighbouring grid points (below), a voxel
    // at the edge of the reference's CBV window may fall on either side. At most 1% may.
    let reference_differs = cpu
        .reference_mask
        .iter()
        .zip(gpu.reference_mask.iter())
        .filter(|(a, b)| a != b)
        .count();
    let reference_size = cpu.reference_mask.iter().filter(|&&x| x).count();
    eprintln!("white-matter reference: {reference_differs} of {reference_size} voxels differ");
    assert!(
        reference_differs * 100 <= reference_size,
        "{reference_differs} of {reference_size} white-matter reference voxels differ"
    );
    let flat = |a: &ndarray::Array3<f32>| a.iter().copied().collect::<Vec<f32>>();
    for (name, g, c, scale) in [
        ("cbv_integral", &gpu.cbv_integral, &cpu.cbv_integral, 10.0),
        ("ttp", &gpu.ttp, &cpu.ttp, 1.0),
        ("peak", &gpu.peak, &cpu.peak, 0.5),
        ("psr", &gpu.psr, &cpu.psr, 1.0),
    ] {
        assert_close(&flat(g), &flat(c), 1e-4, scale, name);
    }
    // rCBV divides by the reference's median CBV: one reference voxel more or less (above)
    // moves it, and every voxel's rCBV with it, by a few 1e-4.
    assert_close(
        &flat(&gpu.rcbv_uncorrected),
        &flat(&cpu.rcbv_uncorrected),
        1e-3,
        0.3,
        "rcbv_uncorrected",
    );
    // The maps of the parametric fit (the default leakage correction and deconvolution): its
    // grid search compares f32 or f64 projections, so in the few voxels whose two best grid
    // points score alike to f32 rounding the paths pick neighbours (as the kernel test above
    // shows); at most 0.1% of voxels may (3 of 9,216 do here, all with the same cause), and the
    // rest agree to 1e-4.
    let (pg, pc) = (
        gpu.perfusion.as_ref().unwrap(),
        cpu.perfusion.as_ref().unwrap(),
    );
    for (name, g, c, scale) in [
        // K2's floor is the phantom's leakage (1.5e-4 s⁻¹): f32 sums over 60 frames of ∫Ca
        // (up to 2000) carry about 1e-8 s⁻¹.
        ("k2", &gpu.k2, &cpu.k2, 1.5e-4),
        (
            "cbv_integral_corrected",
            &gpu.cbv_integral_corrected,
            &cpu.cbv_integral_corrected,
            10.0,
        ),
        ("rcbv", &gpu.rcbv, &cpu.rcbv, 0.3),
        ("cbf", &pg.cbf, &pc.cbf, 5.0),
        ("mtt", &pg.mtt, &pc.mtt, 1.0),
        ("tmax", &pg.tmax, &pc.tmax, 0.25),
        ("cbv", &pg.cbv, &pc.cbv, 1.0),
    ] {
        let (g, c) = (flat(g), flat(c));
        let differ = g
            .iter()
            .zip(&c)
            .filter(|(g, c)| {
                assert_eq!(g.is_nan(), c.is_nan(), "{name}: NaN on one path only");
                !c.is_nan() && (**g - **c).abs() > 1e-4 * c.abs().max(scale)
            })
            .count();
        eprintln!("{name}: {differ} of {} voxels differ beyond 1e-4", c.len());
        assert!(differ * 1000 <= c.len(), "{name}: {differ} voxels differ");
    }
    let classes_differ = gpu
        .rcbv_class
        .iter()
        .zip(cpu.rcbv_class.iter())
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        classes_differ * 100 <= gpu.rcbv_class.len(),
        "{classes_differ} classes differ"
    );
}

#[test]
fn deconvolution_kernel_matches_its_cpu_twin_for_every_method() {
    use paramap::gpu::dsc::DscKernels;
    use paramap::models::deconvolution::{deconvolve_cpu, Deconvolution, Method, Tissue};
    let ctx = common::gpu();
    let kernels = DscKernels::new(&ctx);
    let (nt, n) = (60, 3000);
    let s1 = random_signals(nt, n, 0.03, 21);
    let acq = acquisition(nt, Echo::Single { te: 0.03 });
    let maps = compute_cpu(&acq, &s1, &[], n);
    // an AIF: the curve of the voxel with the highest, earliest peak
    let aif: Vec<f64> = (0..nt)
        .map(|t| {
            10.0 * maps.curves[t * n
                + (0..n)
                    .filter(|&v| !maps.metrics[3 * n + v].is_nan())
                    .max_by(|&a, &b| maps.metrics[3 * n + a].total_cmp(&maps.metrics[3 * n + b]))
                    .unwrap()] as f64
        })
        .collect();
    let k2 = vec![0.0f32; n];
    let cumulative = vec![0.0f64; nt];
    // The steady-state frames before 3 count as zero on both paths.
    let tissue = Tissue {
        curves: &maps.curves,
        k2: &k2,
        cumulative: &cumulative,
        first: 3,
    };
    for name in ["csvd", "ssvd", "tikhonov", "osvd"] {
        let d = Deconvolution::new(&aif, 1.5, Method::from_name(name).unwrap()).unwrap();
        let cpu = deconvolve_cpu(&d, &tissue);
        let gpu = kernels
            .deconvolution(&ctx, &d, &tissue, Some(1111))
            .unwrap();
        let (mut other_k, mut compared) = (0, 0);
        for v in 0..n {
            let (gp, cp) = (gpu[v], cpu[v]);
            assert_eq!(
                gp.is_nan(),
                cp.is_nan(),
                "{name} voxel {v}: NaN on one path only"
            );
            if cp.is_nan() {
                assert_eq!((gpu[3 * n + v], cpu[3 * n + v]), (0.0, 0.0));
                continue;
            }
            compared += 1;
            // oSVD keeps the most components whose oscillation index meets its target; both
            // paths add the components in the same order with the same operations, so only a
            // candidate whose OI lies within f32 rounding of the target can flip (at most 0.1%
            // of voxels, below). The other methods keep a fixed number.
            if gpu[3 * n + v] != cpu[3 * n + v] {
                assert_eq!(name, "osvd", "voxel {v}: components differ");
                other_k += 1;
                continue;
            }
            let scale = cp.abs().max(1e-3);
            assert!(
                (gp - cp).abs() <= 1e-4 * scale,
                "{name} voxel {v}: peak gpu {gp} cpu {cp}"
            );
            assert_eq!(
                gpu[n + v],
                cpu[n + v],
                "{name} voxel {v}: Tmax frame differs"
            );
        }
        let with_flow = (0..n).filter(|&v| cpu[v] > 0.0).count();
        assert!(with_flow > n / 2, "{name}: {with_flow} voxels with flow");
        assert!(
            other_k * 1000 <= compared,
            "{name}: {other_k} of {compared} voxels chose other components"
        );
    }
}

/// Matrices past the shader's old per-thread limit (L = 512): 300 frames give L = 600 for the
/// circulant methods; the kernel holds the residue in a scratch buffer, so it takes them and
/// agrees with its twin.
#[test]
fn deconvolution_kernel_takes_long_series() {
    use paramap::gpu::dsc::{DscKernels, MAX_DECONVOLUTION_L};
    use paramap::models::deconvolution::{deconvolve_cpu, Deconvolution, Method, Tissue};
    let ctx = common::gpu();
    let kernels = DscKernels::new(&ctx);
    let (nt, n) = (300, 300);
    let s1 = random_signals(nt, n, 0.03, 23);
    let acq = acquisition(nt, Echo::Single { te: 0.03 });
    let maps = compute_cpu(&acq, &s1, &[], n);
    let aif: Vec<f64> = (0..nt)
        .map(|t| paramap::synth::dsc::aif_at(t as f64 * 0.5))
        .collect();
    let (k2, cumulative) = (vec![0.0f32; n], vec![0.0f64; nt]);
    let tissue = Tissue {
        curves: &maps.curves,
        k2: &k2,
        cumulative: &cumulative,
        first: 3,
    };
    let d = Deconvolution::new(&aif, 0.5, Method::from_name("osvd").unwrap()).unwrap();
    assert!(d.l > 512 && d.l <= MAX_DECONVOLUTION_L);
    let cpu = deconvolve_cpu(&d, &tissue);
    let gpu = kernels.deconvolution(&ctx, &d, &tissue, None).unwrap();
    let (mut valid, mut other_k) = (0, 0);
    for v in 0..n {
        assert_eq!(gpu[v].is_nan(), cpu[v].is_nan(), "voxel {v}");
        if cpu[v].is_nan() {
            continue;
        }
        valid += 1;
        if gpu[3 * n + v] != cpu[3 * n + v] {
            other_k += 1;
            continue;
        }
        assert!(
            (gpu[v] - cpu[v]).abs() <= 1e-4 * cpu[v].abs().max(1e-3),
            "voxel {v}: peak gpu {} cpu {}",
            gpu[v],
            cpu[v]
        );
        assert_eq!(gpu[n + v], cpu[n + v], "voxel {v}: Tmax frame");
    }
    // At most one voxel in 1000 (or one, of these few hundred) may choose other components.
    assert!(
        other_k * 1000 <= valid.max(1000) && valid > n / 2,
        "{other_k} of {valid} voxels chose other components"
    );
}

/// The parametric fit (shaders/residue_fit.wgsl against models::residue_fit) on random curves
/// of the model's own family plus noise and leakage, and on invalid ones. The search picks
/// the best grid point by comparing f32 or f64 projections: where two neighbours score within
/// rounding, the paths may pick differently and then differ by a refinement step. Such a voxel
/// is ill-conditioned, not mis-computed: its score is nearly flat along the ridge where a longer
/// MTT trades for an earlier arrival, so a change of 1e-7 in its projections moves the optimum
/// by a grid step (measured: 1 of 4,000 random curves, MTT 5.86 s against 6.25 s, delay
/// −1.53 s against −1.64 s); no choice of arithmetic removes that, only the same precision on
/// both paths would. At most 0.1% of voxels may do so, and the others agree to 1e-4.
#[test]
fn residue_fit_kernel_matches_its_cpu_twin_on_random_curves() {
    use paramap::models::deconvolution::Tissue;
    use paramap::models::residue_fit::{fit_cpu, ResidueModel};
    let ctx = common::gpu();
    let kernels = DscKernels::new(&ctx);
    let (nt, n, dt) = (60, 4000, 1.5);
    let aif_at = paramap::synth::dsc::aif_at;
    let ca: Vec<f64> = (0..nt).map(|t| aif_at(t as f64 * dt)).collect();
    let model = ResidueModel::new(&ca, dt).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let mut curves = vec![0f32; nt * n];
    for v in 0..n {
        let f: f64 = rng.random_range(0.002..0.015);
        let mtt: f64 = rng.random_range(1.0..12.0);
        let delay: f64 = rng.random_range(-3.0..6.0);
        let k2: f64 = rng.random_range(-3e-4..3e-4);
        for t in 0..nt {
            // Exponential residue by a 0.01 s sum (independent of the dictionary's steps).
            let time = t as f64 * dt - delay;
            let mut c = 0.0;
            let mut s = 0.005;
            while s < time {
                c += aif_at(time - s) * (-s / mtt).exp() * 0.01;
                s += 0.01;
            }
            let g = model.cumulative[t];
            let noise = rng.random_range(-0.05..0.05);
            curves[t * n + v] = (f * c - k2 * g + noise) as f32;
        }
        match v % 97 {
            0 => curves[20 * n + v] = f32::NAN,
            1 => (0..nt).for_each(|t| curves[t * n + v] = 0.0),
            _ => {}
        }
    }
    let k2 = vec![0f32; n];
    let cumulative = vec![0f64; nt];
    let tissue = Tissue {
        curves: &curves,
        k2: &k2,
        cumulative: &cumulative,
        first: 2,
    };
    // Unweighted, and as the pipeline fits: weighted by each voxel's noise in frames 2..8 (before
    // any bolus here) with the prior on MTT.
    for (what, model) in [
        ("unweighted", model.clone()),
        ("weighted", model.clone().with_noise((2, 8))),
    ] {
        let cpu = fit_cpu(&model, &tissue);
        let gpu = kernels
            .residue_fit(&ctx, &model, &tissue, Some(1333))
            .unwrap();
        let names = ["flow", "mtt", "delay", "k2", "nrmse"];
        // Floors: a quarter of a typical value (flow, MTT, K2) or a refinement step (delay).
        let floors = [1e-3f32, 1.0, 0.25, 1e-4, 0.01];
        let mut differ = 0;
        for v in 0..n {
            let close = (0..5).all(|k| {
                let (g, c) = (gpu[k * n + v], cpu[k * n + v]);
                assert_eq!(
                    g.is_nan(),
                    c.is_nan(),
                    "{} voxel {v}: NaN on one path only (gpu {g}, cpu {c})",
                    names[k]
                );
                c.is_nan() || (g - c).abs() <= 1e-4 * c.abs().max(floors[k])
            });
            if !close {
                differ += 1;
                if differ < 12 {
                    eprintln!(
                        "voxel {v}: {:?}",
                        (0..5)
                            .map(|k| (gpu[k * n + v], cpu[k * n + v]))
                            .collect::<Vec<_>>()
                    );
                }
                // A neighbouring grid point: still within a grid step of the CPU's answer.
                let (gm, cm) = (gpu[n + v], cpu[n + v]);
                assert!(
                    (gm / cm - 1.0).abs() < 0.15,
                    "voxel {v}: MTT gpu {gm} cpu {cm}"
                );
            }
        }
        assert!(
            differ <= n / 1000,
            "{what}: {differ} of {n} voxels differ beyond 1e-4"
        );
        assert!(
            cpu[..n].iter().any(|x| x.is_nan()),
            "invalid voxels exercised"
        );
        assert!(cpu[..n].contains(&0.0), "flat voxels exercised");
    }
}
