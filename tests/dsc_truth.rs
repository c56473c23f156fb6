//! DSC maps against the phantom's truth (continuous-time convolution, then sampled; regions
//! whose MTT differs from the white-matter reference; leakage of both signs; delay and
//! dispersion), with the true white-matter reference and the true AIF given: the default
//! leakage correction (residue domain) and deconvolution (parametric) must meet the accuracy
//! lines of README's DSC table. SVD methods and BSW are measured for that table, not held to it.

mod common;

use ndarray::Array3;
use paramap::models::deconvolution::Method;
use paramap::pipeline::dsc::{
    compute, AifChoice, DscInput, DscOptions, DscResult, Leakage, Reference, VofChoice,
};
use paramap::pipeline::Engine;
use paramap::synth::dsc::{aif_at, dsc_phantom, DscPhantom, DscPhantomSpec, WHITE_MATTER};

/// With noise, each region's median is read over 8 slices (400–450 voxels per region): at
/// SNR 50 a voxel's CBF spreads ±25% (interquartile), and over the 4 slices of the default
/// phantom (about 200 voxels) the median itself moves by ±5% from one noise draw to another.
fn phantom(snr: Option<f64>) -> DscPhantom {
    let mut spec = DscPhantomSpec {
        snr,
        ..Default::default()
    };
    if snr.is_some() {
        spec.dims[2] = 8;
    }
    dsc_phantom(&spec)
}

/// The true reference and the true AIF (shifted `aif_late_s` later, as an AIF measured
/// downstream); kH = ρ = 1 so CBF and CBV read in the phantom's units.
fn truth_options(p: &DscPhantom, aif_late_s: f64) -> DscOptions {
    let dt = p.series.volumes[1].time_s.unwrap();
    let curve = (0..p.series.n_volumes())
        .map(|t| aif_at(t as f64 * dt - aif_late_s))
        .collect();
    DscOptions {
        reference: Reference::Mask(p.labels.mapv(|l| l == WHITE_MATTER), "truth".into()),
        aif: AifChoice::Curve(curve, "the phantom's true AIF".into()),
        kh: 1.0,
        rho: 1.0,
        ..Default::default()
    }
}

fn run(p: &DscPhantom, opts: &DscOptions) -> DscResult {
    compute(&DscInput::from_phantom(p), opts, &Engine::Cpu).unwrap()
}

fn median(map: &Array3<f32>, p: &DscPhantom, label: u8) -> f64 {
    common::median_in(map, &p.labels, label)
}

fn tissue(p: &DscPhantom) -> impl Iterator<Item = &paramap::synth::dsc::DscRegion> {
    p.regions.iter().filter(|r| r.is_tissue())
}

/// rCBV (corrected) and K2 of every tissue region against truth; returns the worst relative
/// rCBV error.
fn check_rcbv(r: &DscResult, p: &DscPhantom, tol: f64, what: &str) {
    let wm = p
        .regions
        .iter()
        .find(|x| x.label == WHITE_MATTER)
        .unwrap()
        .cbv;
    for x in tissue(p) {
        let got = median(&r.rcbv, p, x.label);
        let want = x.cbv / wm;
        eprintln!("{what}: {}: corrected rCBV {got:.4} (truth {want}), uncorrected {:.4}, K2 {:.3e} (truth {:.1e})", x.name, median(&r.rcbv_uncorrected, p, x.label), median(&r.k2, p, x.label), x.k2);
        assert!(
            (got / want - 1.0).abs() < tol,
            "{what}: {}: corrected rCBV {got} against {want}",
            x.name
        );
    }
}

#[test]
fn noise_free_corrected_rcbv_within_3_percent_and_k2_within_15_percent_in_every_region() {
    let p = phantom(None);
    let r = run(&p, &truth_options(&p, 0.0));
    assert_eq!(r.leakage_model, Leakage::Residue);
    check_rcbv(&r, &p, 0.03, "noise-free");
    let leaky = p.regions.iter().map(|x| x.k2.abs()).fold(0.0, f64::max);
    for x in tissue(&p) {
        let k2 = median(&r.k2, &p, x.label);
        if x.k2 != 0.0 {
            assert!(
                (k2 / x.k2 - 1.0).abs() < 0.15,
                "{}: K2 {k2} against {}",
                x.name,
                x.k2
            );
        } else {
            assert!(
                k2.abs() < 0.1 * leaky,
                "{}: K2 {k2} where there is no leakage",
                x.name
            );
        }
    }
    // Uncorrected, the leaky lesions are far off: the correction is doing the work.
    let wm = 2.0;
    for x in tissue(&p).filter(|x| x.k2 != 0.0) {
        let off = median(&r.rcbv_uncorrected, &p, x.label) / (x.cbv / wm) - 1.0;
        assert!(off.abs() > 0.2, "{}: uncorrected only {off} off", x.name);
    }
}

#[test]
fn at_snr_50_corrected_rcbv_median_within_5_percent_in_every_region() {
    let p = phantom(Some(50.0));
    check_rcbv(&run(&p, &truth_options(&p, 0.0)), &p, 0.05, "SNR 50");
}

/// CBF and MTT of every tissue region against truth, within `tol`.
fn check_flow(r: &DscResult, p: &DscPhantom, tol: f64, what: &str) {
    let perf = r.perfusion.as_ref().unwrap();
    for x in tissue(p) {
        let (cbf, mtt) = (median(&perf.cbf, p, x.label), median(&perf.mtt, p, x.label));
        eprintln!(
            "{what}: {}: CBF {cbf:.2} (truth {}), MTT {mtt:.2} (truth {:.2}), Tmax {:.2} (delay {})",
            x.name,
            x.cbf,
            x.mtt_s(),
            median(&perf.tmax, p, x.label),
            x.delay_s
        );
        assert!(
            (cbf / x.cbf - 1.0).abs() < tol,
            "{what}: {}: CBF {cbf} against {}",
            x.name,
            x.cbf
        );
        assert!(
            (mtt / x.mtt_s() - 1.0).abs() < tol,
            "{what}: {}: MTT {mtt} against {}",
            x.name,
            x.mtt_s()
        );
    }
}

#[test]
fn default_deconvolution_recovers_cbf_and_mtt_within_10_percent_noise_free() {
    let p = phantom(None);
    let r = run(&p, &truth_options(&p, 0.0));
    assert_eq!(r.perfusion.as_ref().unwrap().method, Method::Parametric);
    check_flow(&r, &p, 0.10, "noise-free");
    // Tmax is the bolus delay, counted from the AIF's arrival, not from frame 0.
    let perf = r.perfusion.as_ref().unwrap();
    // rCBF: CBF over white matter's, within 10% of the true ratio.
    for x in tissue(&p) {
        let rcbf = median(&perf.rcbf, &p, x.label);
        let want = x.cbf / 25.0;
        assert!(
            (rcbf / want - 1.0).abs() < 0.10,
            "{}: rCBF {rcbf} against {want}",
            x.name
        );
    }
    for x in tissue(&p).filter(|x| x.dispersion_s == 0.0) {
        let tmax = median(&perf.tmax, &p, x.label);
        assert!(
            (tmax - x.delay_s).abs() < 0.3,
            "{}: Tmax {tmax} against delay {}",
            x.name,
            x.delay_s
        );
    }
}

#[test]
fn default_deconvolution_at_snr_50_median_cbf_and_mtt_within_15_percent() {
    let p = phantom(Some(50.0));
    check_flow(&run(&p, &truth_options(&p, 0.0)), &p, 0.15, "SNR 50");
}

#[test]
fn with_the_aif_2_s_late_cbf_and_mtt_stay_within_10_percent_of_the_undelayed_result() {
    let p = phantom(None);
    let (on_time, late) = (
        run(&p, &truth_options(&p, 0.0)),
        run(&p, &truth_options(&p, 2.0)),
    );
    let (a, b) = (
        on_time.perfusion.as_ref().unwrap(),
        late.perfusion.as_ref().unwrap(),
    );
    for x in tissue(&p) {
        for (what, m0, m1) in [("CBF", &a.cbf, &b.cbf), ("MTT", &a.mtt, &b.mtt)] {
            let (v0, v1) = (median(m0, &p, x.label), median(m1, &p, x.label));
            assert!(
                (v1 / v0 - 1.0).abs() < 0.10,
                "{}: {what} {v1} with the AIF late against {v0}",
                x.name
            );
        }
        // The tissue now leads the AIF by 2 s.
        let shift = median(&b.tmax, &p, x.label) - median(&a.tmax, &p, x.label);
        assert!(
            (shift + 2.0).abs() < 0.3,
            "{}: Tmax moved {shift} s",
            x.name
        );
    }
}

/// Corrected rCBV error per region of the bidirectional correction (`--leakage leigh`) beside
/// BSW's and the residue-domain one's, noise-free and at SNR 50: (region, relative error,
/// median K2, median k_ep).
fn rcbv_errors(p: &DscPhantom, leakage: Leakage) -> Vec<(String, f64, f64, f64)> {
    let opts = DscOptions {
        leakage,
        deconvolution: if leakage == Leakage::Residue {
            Some(Method::Parametric)
        } else {
            None
        },
        ..truth_options(p, 0.0)
    };
    let r = run(p, &opts);
    assert_eq!(r.leakage_model, leakage);
    let wm = p
        .regions
        .iter()
        .find(|x| x.label == WHITE_MATTER)
        .unwrap()
        .cbv;
    tissue(p)
        .map(|x| {
            let got = median(&r.rcbv, p, x.label) / (x.cbv / wm) - 1.0;
            let kep = r.kep.as_ref().map_or(f64::NAN, |k| median(k, p, x.label));
            (x.name.to_string(), got, median(&r.k2, p, x.label), kep)
        })
        .collect()
}

#[test]
fn leigh_corrected_rcbv_against_truth_beside_bsw_and_residue() {
    for snr in [None, Some(50.0)] {
        let p = phantom(snr);
        let leigh = rcbv_errors(&p, Leakage::Leigh);
        let bsw = rcbv_errors(&p, Leakage::Bsw);
        let residue = rcbv_errors(&p, Leakage::Residue);
        eprintln!("SNR {snr:?}: corrected rCBV error per region (leigh / bsw / residue), Leigh's K2 and k_ep");
        for ((l, b), r) in leigh.iter().zip(&bsw).zip(&residue) {
            eprintln!(
                "  {}: {:+.1}% / {:+.1}% / {:+.1}%   K2 {:.2e} s^-1, k_ep {:.1e} s^-1",
                l.0,
                100.0 * l.1,
                100.0 * b.1,
                100.0 * r.1,
                l.2,
                l.3
            );
        }
        // What it achieves: within 30% of truth in every region (it reads MTT and arrival
        // differences from the reference as leakage even more than BSW does: its extra
        // parameter lets −K2·E_k take the shape of R̄'s early part), and the sign of the
        // leakage where there is some.
        for (name, err, ..) in &leigh {
            assert!(
                err.abs() < 0.30,
                "SNR {snr:?}: {name}: Leigh's corrected rCBV {:+.1}%",
                100.0 * err
            );
        }
        let k2_of = |label: &str| leigh.iter().find(|x| x.0.contains(label)).unwrap().2;
        assert!(k2_of("T1 leakage") > 0.0 && k2_of("T2* leakage") < 0.0);
        // The default (residue domain) is the better correction here, on every region (white
        // matter, the reference, is 1 by construction for both).
        for (l, r) in leigh.iter().zip(&residue) {
            assert!(
                r.1.abs() <= l.1.abs() + 1e-3,
                "SNR {snr:?}: {}: residue {:+.3} Leigh {:+.3}",
                l.0,
                r.1,
                l.1
            );
        }
    }
}

/// The table in README ("DSC against truth"): every method and leakage correction, noise-free
/// and at SNR 50, rCBV (corrected) / CBF / MTT per region. Printed with `--nocapture`; the
/// claims are asserted by the tests above.
#[test]
fn table_of_every_method_against_truth() {
    for snr in [None, Some(50.0)] {
        let p = phantom(snr);
        let mut header = String::from("| leakage, deconvolution |");
        for x in tissue(&p) {
            header.push_str(&format!(
                " {} ({:.1} / {:.0} / {:.1}) |",
                x.name,
                x.cbv / 2.0,
                x.cbf,
                x.mtt_s()
            ));
        }
        println!("{snr:?}\n{header}");
        for (leakage, method) in [
            (Leakage::Residue, "parametric"),
            (Leakage::Bsw, "parametric"),
            (Leakage::Leigh, "parametric"),
            (Leakage::None, "parametric"),
            (Leakage::Residue, "osvd"),
            (Leakage::Residue, "csvd"),
            (Leakage::Residue, "ssvd"),
            (Leakage::Residue, "tikhonov"),
        ] {
            let opts = DscOptions {
                leakage,
                deconvolution: Some(Method::from_name(method).unwrap()),
                ..truth_options(&p, 0.0)
            };
            let r = run(&p, &opts);
            let perf = r.perfusion.as_ref().unwrap();
            let mut row = format!("| {leakage:?}, {method} |");
            for x in tissue(&p) {
                row.push_str(&format!(
                    " {:.2} / {:.1} / {:.2} |",
                    median(&r.rcbv, &p, x.label),
                    median(&perf.cbf, &p, x.label),
                    median(&perf.mtt, &p, x.label)
                ));
            }
            println!("{row}");
        }
    }
}

/// The partial-volume artery (20% blood) with the automatic AIF: rescaled to the automatic
/// venous output function (the phantom's vein of whole blood), absolute CBF and CBV of white and
/// grey matter within 15% of truth; without it, they are about 5× too high and the result says
/// why.
#[test]
fn the_venous_output_function_corrects_the_partial_volume_aif() {
    let p = dsc_phantom(&DscPhantomSpec {
        vein: true,
        ..Default::default()
    });
    let opts = DscOptions {
        reference: Reference::Mask(p.labels.mapv(|l| l == WHITE_MATTER), "truth".into()),
        kh: 1.0,
        rho: 1.0,
        ..Default::default()
    };
    let r = run(&p, &opts);
    let perf = r.perfusion.as_ref().unwrap();
    let (vof, scale) = perf.vof.as_ref().expect("a venous output function");
    let vein = p.regions.iter().find(|x| x.vein).unwrap().label;
    let flat: Vec<u8> = p.labels.iter().copied().collect();
    let brain: Vec<usize> = r
        .brain
        .iter()
        .enumerate()
        .filter(|(_, &b)| b)
        .map(|(i, _)| i)
        .collect();
    assert!(
        vof.voxels.iter().all(|&k| flat[brain[k]] == vein),
        "the VOF lies in the vein"
    );
    assert!(
        (scale / 5.0 - 1.0).abs() < 0.1,
        "AIF area scaled ×{scale}, truth 5"
    );
    assert!(perf.absolute_notice.is_none());
    for x in tissue(&p).filter(|x| x.label <= 2) {
        let (cbf, cbv) = (
            median(&perf.cbf, &p, x.label),
            median(&perf.cbv, &p, x.label),
        );
        assert!(
            (cbf / x.cbf - 1.0).abs() < 0.15,
            "{}: CBF {cbf} against {}",
            x.name,
            x.cbf
        );
        assert!(
            (cbv / x.cbv - 1.0).abs() < 0.15,
            "{}: CBV {cbv} against {}",
            x.name,
            x.cbv
        );
    }
    // The partial volume is the artery's: a first-pass CBV window does not move the factor,
    // which is taken over every frame after the baseline.
    let first_pass = run(
        &p,
        &DscOptions {
            integration: paramap::models::dsc::Integration::FirstPass,
            ..opts.clone()
        },
    );
    let first_pass_scale = first_pass
        .perfusion
        .as_ref()
        .unwrap()
        .vof
        .as_ref()
        .unwrap()
        .1;
    assert_eq!(
        first_pass_scale, *scale,
        "the VOF factor with a first-pass CBV window"
    );
    let without = run(
        &p,
        &DscOptions {
            vof: VofChoice::None,
            ..opts
        },
    );
    let perf = without.perfusion.as_ref().unwrap();
    assert!(perf.vof.is_none());
    let notice = perf.absolute_notice.as_deref().unwrap();
    assert!(
        notice.contains("partial volume") && notice.contains("--no-vof"),
        "{notice}"
    );
    let wm = median(&perf.cbf, &p, WHITE_MATTER);
    assert!(
        wm > 3.0 * 25.0,
        "without the VOF white-matter CBF reads {wm}"
    );
}

/// At SNR 20 the automatic AIF finds no artery (the arterial curves are as rough as noise):
/// rCBV is still made, corrected by BSW (which needs no AIF), without CBF, and the result says
/// why and what to do.
#[test]
fn without_an_automatic_aif_rcbv_falls_back_to_bsw_and_says_so() {
    let p = phantom(Some(20.0));
    let r = run(
        &p,
        &DscOptions {
            reference: Reference::Mask(p.labels.mapv(|l| l == WHITE_MATTER), "truth".into()),
            ..Default::default()
        },
    );
    assert!(
        r.perfusion.is_none(),
        "an AIF was found: the test needs a phantom without one"
    );
    assert_eq!(r.leakage_model, Leakage::Bsw);
    let notice = r.notices.join(" ");
    assert!(
        notice.contains("--aif-mask") && notice.contains("BSW"),
        "{notice}"
    );
    let gm = median(&r.rcbv, &p, 2);
    assert!((gm / 2.0 - 1.0).abs() < 0.15, "grey matter rCBV {gm}");
}

#[test]
fn an_empty_vof_mask_is_refused_naming_the_vof() {
    let p = phantom(None);
    let e = compute(
        &DscInput::from_phantom(&p),
        &DscOptions {
            vof: VofChoice::Mask(p.labels.mapv(|_| false), "vof.nii.gz".into()),
            ..Default::default()
        },
        &Engine::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("vof.nii.gz") && e.contains("VOF mask is empty"),
        "{e}"
    );
}

/// At SNR 20 the prior on MTT keeps the fit from drifting to the shortest transit times (without
/// it white matter's CBF read about 40% high): CBF and MTT within 25% in every region.
#[test]
fn at_snr_20_the_prior_on_mtt_keeps_cbf_and_mtt_within_25_percent() {
    let p = phantom(Some(20.0));
    check_flow(&run(&p, &truth_options(&p, 0.0)), &p, 0.25, "SNR 20");
}

/// curves.csv of a dual-echo series: its whole-brain ΔR2* is ln[(S1/S1,0)/(S2/S2,0)]/(TE2 − TE1)
/// of the two echoes' brain means, recomputed here from the raw signals (T1 leakage cancels in
/// it; the first echo alone would not).
#[test]
fn curves_csv_of_a_dual_echo_series_uses_both_echoes() {
    use paramap::models::delta_r2star::Echo;
    use paramap::pipeline::dsc::{write, DscWriteContext};
    let p = dsc_phantom(&DscPhantomSpec {
        te_s: 0.015,
        te2_s: Some(0.045),
        ..Default::default()
    });
    let input = DscInput {
        echo1: p.series.clone(),
        echo2: p.echo2.clone(),
        dt_s: 1.5,
        echo: Echo::Dual {
            te1: 0.015,
            te2: 0.045,
        },
        timing_source: "test".into(),
        mapped: [None, None],
    };
    let opts = DscOptions::default();
    let r = compute(&input, &opts, &Engine::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    write(
        &r,
        &DscWriteContext {
            input: &input,
            options: &opts,
            requested: paramap::pipeline::BackendChoice::Cpu,
            notice: None,
            started: std::time::Instant::now(),
            save_curves: false,
            format: paramap::io::nifti::NiftiFormat::uncompressed(true),
        },
        &tmp.path().join("out"),
    )
    .unwrap();
    let csv = std::fs::read_to_string(tmp.path().join("out/curves.csv")).unwrap();
    let written: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    let brain_mean = |s: &ndarray::Array4<f32>, t: usize| {
        let (sum, n) = s
            .index_axis(ndarray::Axis(0), t)
            .iter()
            .zip(r.brain.iter())
            .filter(|(_, &b)| b)
            .fold((0.0, 0usize), |(a, n), (&x, _)| (a + x as f64, n + 1));
        sum / n as f64
    };
    let e2 = p.echo2.as_ref().unwrap();
    let nt = p.series.n_volumes();
    let m1: Vec<f64> = (0..nt).map(|t| brain_mean(&p.series.data, t)).collect();
    let m2: Vec<f64> = (0..nt).map(|t| brain_mean(&e2.data, t)).collect();
    let (b0, b1) = (r.timing.baseline_start, r.timing.baseline_end);
    let base = |m: &[f64]| m[b0..b1].iter().sum::<f64>() / (b1 - b0) as f64;
    let (s1, s2) = (base(&m1), base(&m2));
    let mut first_echo_differs = false;
    for t in 0..nt {
        let dual = ((m1[t] / s1) / (m2[t] / s2)).ln() / 0.03;
        assert!(
            (written[t] - dual).abs() < 1e-5,
            "frame {t}: {} against {dual}",
            written[t]
        );
        first_echo_differs |= (-(m1[t] / s1).ln() / 0.015 - dual).abs() > 1e-3;
    }
    assert!(
        first_echo_differs,
        "the first echo alone gives another curve"
    );
}

/// A series that ends before the bolus has passed gives maps, and a notice that says why the
/// flow and leakage numbers are not to be trusted.
#[test]
fn a_series_that_ends_during_the_first_pass_says_so() {
    let p = dsc_phantom(&DscPhantomSpec {
        n_t: 14,
        ..Default::default()
    });
    let r = run(&p, &DscOptions::default());
    let notices = r.notices.join(" ");
    assert!(
        notices.contains("before the bolus's first pass"),
        "{notices}"
    );
}

/// The phantom as `paramap synth dsc` writes it, through `paramap dsc` on its NIfTI, against
/// the truth maps it writes beside it (truth/*_truth.nii.gz): per tissue region, the median
/// of every output against the median of its truth map, noise-free, with kH = ρ = 1 (the
/// truth's convention). Tmax: the exponential residue has no dispersion term, so in the
/// dispersed region the fitted delay stands for the dispersed residue's later peak (truth
/// 2.85 s; the fit gives about 1.8 s); elsewhere it is the delay within 0.25 s.
#[test]
fn synth_writes_truth_maps_and_paramap_dsc_meets_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (ph, out) = (tmp.path().join("ph"), tmp.path().join("out"));
    let o = common::paramap()
        .args(["synth", "dsc", "-o", ph.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::run(
        "dsc",
        &ph.join("nifti/dsc.nii.gz"),
        &out,
        &["--kh", "1", "--rho", "1", "-q"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: std::path::PathBuf| {
        let (v, _, _) = paramap::io::nifti::read(&p).unwrap();
        v.index_axis(ndarray::Axis(0), 0).to_owned()
    };
    let labels = read(ph.join("truth/labels.nii.gz"));
    let spec = DscPhantomSpec::default();
    let p = dsc_phantom(&spec);
    for (map, tol, floor) in [
        ("rcbv", 0.03, 0.0),
        ("cbv", 0.10, 0.0),
        ("cbf", 0.10, 0.0),
        ("mtt", 0.10, 0.0),
        ("tmax", 0.0, 0.25),
        ("k2", 0.15, 3e-5),
    ] {
        let (est, truth) = (
            read(out.join(format!("{map}.nii.gz"))),
            read(ph.join(format!("truth/{map}_truth.nii.gz"))),
        );
        for r in tissue(&p) {
            if map == "tmax" && r.dispersion_s > 0.0 {
                continue;
            }
            let med = |a: &ndarray::Array3<f32>| {
                let mut v: Vec<f64> = a
                    .iter()
                    .zip(&labels)
                    .filter(|(x, &l)| l as u8 == r.label && x.is_finite())
                    .map(|(&x, _)| x as f64)
                    .collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (e, t) = (med(&est), med(&truth));
            assert!(
                (e - t).abs() <= tol * t.abs() + floor,
                "{map} in {}: {e} against the truth map's {t}",
                r.name
            );
        }
    }
}

/// The README's demo as a new user runs it (`paramap run sample_data`: the bundled DSC
/// phantom at SNR 50, its automatic AIF in the artery of 20% blood rescaled to the automatic
/// venous output function, whose signal reaches the noise floor at the bolus peak), against
/// the truth maps beside it: white and grey matter's absolute CBF and CBV (medians over the
/// truth labels) within 15% of truth (per 100 ml; times the default kH/ρ, as the demo reports),
/// and the record gives the partial-volume scale (truth 1/0.2 = 5, within 10%) and its source:
/// the area, with the frames at the noise floor taken from the vein's transit fit.
#[test]
fn the_bundled_demo_meets_its_truth_maps() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = common::run("run", &root, &out, &["--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dsc = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && p.to_string_lossy().contains("_dsc_"))
        .expect("a DSC output folder");
    let read = |p: std::path::PathBuf| {
        let (v, _, _) = paramap::io::nifti::read(&p).unwrap();
        v.index_axis(ndarray::Axis(0), 0).to_owned()
    };
    let truth = root.join("dsc_phantom/truth");
    let labels = read(truth.join("labels.nii.gz")).mapv(|l| l as u8);
    let defaults = DscOptions::default();
    let k = defaults.kh / defaults.rho;
    for map in ["cbf", "cbv"] {
        let (est, want) = (
            read(dsc.join(format!("{map}.nii.gz"))),
            read(truth.join(format!("{map}_truth.nii.gz"))),
        );
        for (label, name) in [(WHITE_MATTER, "white matter"), (2, "grey matter")] {
            let (e, t) = (
                common::median_in(&est, &labels, label),
                k * common::median_in(&want, &labels, label),
            );
            eprintln!(
                "demo {map} in {name}: {e:.2} against truth {t:.2} ({:+.1}%)",
                100.0 * (e / t - 1.0)
            );
            assert!(
                (e / t - 1.0).abs() < 0.15,
                "demo {map} in {name}: {e} against the truth map's {t}"
            );
        }
    }
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dsc.join("dsc.json")).unwrap()).unwrap();
    let perf = &record["perfusion"];
    let scale = perf["aif_area_scale"].as_f64().unwrap();
    assert!(
        (scale / 5.0 - 1.0).abs() < 0.1,
        "AIF area scaled ×{scale}, truth 5"
    );
    assert_eq!(
        perf["aif_area_scale_source"],
        paramap::models::vof_scale::SOURCE_FILLED,
        "{perf}"
    );
    assert!(!perf["vof_noise_floor_frames"]
        .as_array()
        .unwrap()
        .is_empty());
}
