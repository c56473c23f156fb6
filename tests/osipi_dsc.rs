//! The OSIPI DSC reference curves (tests/data/osipi_dsc, Apache-2.0): 14 tissue/AIF pairs with
//! true CBV and CBF. Convention (OSIPI's): CBV = 100·∫C/∫Ca, CBF = 6000·max f, kH/ρ = 1.
//!
//! What holds, and is asserted: every method's estimate is within OSIPI's own acceptance
//! (CBV: 10% + 1 ml/100ml; CBF: 10% + 15 ml/100ml/min). What does not (see README): CBF within
//! 10% at high flow. OSIPI's curves come from a discrete (rectangular) convolution whose area
//! exceeds CBF·MTT by up to 19% at short MTT: so ∫C/∫Ca reads CBV high, and the parametric
//! method, which convolves in continuous time, reads high flow up to 25% high; truncated SVD
//! smooths the residue's step at t = 0 and reads it up to 30% low.

mod common;

use paramap::models::deconvolution::{voxel, Deconvolution, Method};
use paramap::models::residue_fit::{fit_voxel, ResidueModel};

struct Case {
    label: String,
    tissue: Vec<f64>,
    aif: Vec<f64>,
    cbv: f64,
    cbf: f64,
    dt: f64,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/osipi_dsc/dsc_data.csv"
    ))
    .unwrap();
    let numbers = |s: &str| {
        s.split_whitespace()
            .map(|x| x.parse::<f64>().unwrap())
            .collect::<Vec<f64>>()
    };
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Case {
                label: f[0].to_string(),
                tissue: numbers(f[1]),
                aif: numbers(f[2]),
                cbv: f[3].parse().unwrap(),
                cbf: f[4].parse().unwrap(),
                dt: f[5].parse().unwrap(),
            }
        })
        .collect()
}

fn trapezoid(y: &[f64], dt: f64) -> f64 {
    y.windows(2).map(|w| 0.5 * (w[0] + w[1])).sum::<f64>() * dt
}

/// (CBV, CBF) estimated with `method`.
fn estimate(c: &Case, method: Method) -> (f64, f64) {
    if method == Method::Parametric {
        let m = ResidueModel::new(&c.aif, c.dt).unwrap();
        let r = fit_voxel(&m, &c.tissue);
        return (
            100.0 * trapezoid(&c.tissue, c.dt) / trapezoid(&c.aif, c.dt),
            6000.0 * r.flow,
        );
    }
    let d = Deconvolution::new(&c.aif, c.dt, method).unwrap();
    let mut f = vec![0.0; d.l];
    let r = voxel(&d, |t| c.tissue[t], &mut f);
    (
        100.0 * trapezoid(&c.tissue, c.dt) / trapezoid(&c.aif, c.dt),
        6000.0 * r.peak,
    )
}

const METHODS: [&str; 5] = ["parametric", "osvd", "csvd", "ssvd", "tikhonov"];

#[test]
fn every_method_meets_osipis_acceptance_on_all_14_curves() {
    let cases = cases();
    assert_eq!(cases.len(), 14);
    let mut table = String::from("| case | CBV true | CBV est | CBF true | parametric | oSVD | cSVD | sSVD | Tikhonov |\n|---|---|---|---|---|---|---|---|---|\n");
    for c in &cases {
        let mut row = format!(
            "| {} | {} | ",
            c.label
                .trim_start_matches("test_CNR200_")
                .trim_end_matches("_delay0_dispersion0"),
            c.cbv
        );
        let mut cbfs = Vec::new();
        for name in METHODS {
            let (cbv, cbf) = estimate(c, Method::from_name(name).unwrap());
            assert!(
                (cbv - c.cbv).abs() <= 0.1 * c.cbv + 1.0,
                "{}: CBV {cbv:.3} vs {}",
                c.label,
                c.cbv
            );
            assert!(
                (cbf - c.cbf).abs() <= 0.1 * c.cbf + 15.0,
                "{} {name}: CBF {cbf:.2} vs {}",
                c.label,
                c.cbf
            );
            if name == "parametric" {
                row.push_str(&format!("{cbv:.2} | {} | ", c.cbf));
            }
            cbfs.push(format!("{cbf:.1}"));
        }
        table.push_str(&format!("{row}{} |\n", cbfs.join(" | ")));
    }
    println!("{table}");
}

#[test]
fn osvd_keeps_each_residue_at_or_below_its_oscillation_target() {
    for c in cases() {
        let d = Deconvolution::new(&c.aif, c.dt, Method::from_name("osvd").unwrap()).unwrap();
        let mut f = vec![0.0; d.l];
        let r = voxel(&d, |t| c.tissue[t], &mut f);
        assert!(r.oi <= 0.035 + 1e-12, "{}: OI {}", c.label, r.oi);
        assert!(
            r.components > 1 && r.components < d.l,
            "{}: {} components",
            c.label,
            r.components
        );
    }
}

/// The OSIPI curves as a DSC series from signal (S = 1000·e^(−κ·C·TE), κ = 107 s⁻¹/mM, TE
/// 30 ms; one series has one AIF, so the cases that share the first case's AIF run together),
/// the AIF as a CSV of concentration through `paramap dsc --aif-curve`: the CBF map equals the
/// same pipeline's with the AIF given in memory, to 1e-6, and OSIPI's truth within its
/// acceptance.
#[test]
fn an_aif_from_a_csv_file_gives_the_cbf_of_the_same_aif_in_memory() {
    use ndarray::{Array3, Array4};
    use paramap::models::delta_r2star::Echo;
    use paramap::pipeline::adc::MaskChoice;
    use paramap::pipeline::dsc::{compute, AifChoice, DscInput, DscOptions, Reference};
    use paramap::volume::{Geometry, Series4, SeriesInfo, VolumeInfo};
    let cases = cases();
    let aif = &cases[0].aif;
    let same: Vec<&Case> = cases.iter().filter(|c| &c.aif == aif).collect();
    assert!(
        same.len() >= 2,
        "cases sharing the first AIF: {}",
        same.len()
    );
    let (nt, nv, dt, te, kappa) = (aif.len(), same.len(), cases[0].dt, 0.03, 107.0);
    let data = Array4::from_shape_fn((nt, 1, 1, nv), |(t, _, _, v)| {
        (1000.0 * (-kappa * same[v].tissue[t] * te).exp()) as f32
    });
    let geometry = Geometry {
        dims: [nv, 1, 1],
        affine_lps: [
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    };
    let series = Series4 {
        data: data.clone(),
        geometry: geometry.clone(),
        volumes: (0..nt)
            .map(|t| VolumeInfo {
                diffusion: None,
                time_s: Some(t as f64 * dt),
            })
            .collect(),
        info: SeriesInfo {
            echo_time_s: Some(te),
            ..Default::default()
        },
        frame_times_s: None,
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let all = Array3::from_elem((1, 1, nv), true);
    let mut reference = Array3::from_elem((1, 1, nv), false);
    reference[[0, 0, 0]] = true;
    paramap::io::nifti::write_series(
        &dir.join("osipi.nii.gz"),
        &data,
        &geometry,
        "OSIPI",
        Some(dt),
    )
    .unwrap();
    paramap::io::nifti::write_mask(&dir.join("brain.nii.gz"), &all, &geometry, "all").unwrap();
    paramap::io::nifti::write_mask(&dir.join("ref.nii.gz"), &reference, &geometry, "ref").unwrap();
    let mut csv = String::from("time_s,concentration_mM\n");
    for (t, c) in aif.iter().enumerate() {
        csv.push_str(&format!("{},{c:e}\n", t as f64 * dt));
    }
    std::fs::write(dir.join("aif.csv"), csv).unwrap();
    let out = dir.join("out");
    let output = common::run(
        "dsc",
        &dir.join("osipi.nii.gz"),
        &out,
        &[
            "--te",
            "30",
            "--dt",
            &dt.to_string(),
            "--brain-mask",
            dir.join("brain.nii.gz").to_str().unwrap(),
            "--ref-mask",
            dir.join("ref.nii.gz").to_str().unwrap(),
            "--aif-curve",
            dir.join("aif.csv").to_str().unwrap(),
            "--tissue-kappa",
            "107",
            "--kh",
            "1",
            "--rho",
            "1",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (from_file, _, _) = paramap::io::nifti::read(&out.join("cbf.nii.gz")).unwrap();
    let opts = DscOptions {
        brain_mask: MaskChoice::User(all.clone(), "all".into()),
        reference: Reference::Mask(reference, "ref".into()),
        aif: AifChoice::Curve(aif.iter().map(|c| kappa * c).collect(), "memory".into()),
        kh: 1.0,
        rho: 1.0,
        ..Default::default()
    };
    let input = DscInput {
        echo1: series,
        echo2: None,
        dt_s: dt,
        echo: Echo::Single { te },
        timing_source: "test".into(),
        mapped: [None, None],
    };
    let r = compute(&input, &opts, &paramap::pipeline::Engine::Cpu).unwrap();
    let in_memory = r.perfusion.unwrap().cbf;
    for v in 0..nv {
        let (a, b) = (from_file[[0, 0, 0, v]] as f64, in_memory[[0, 0, v]] as f64);
        assert!(
            (a / b - 1.0).abs() < 1e-6,
            "{}: CBF {a} from the file, {b} in memory",
            same[v].label
        );
        // And the pipeline from signal reads OSIPI's truth within its acceptance.
        assert!(
            (b - same[v].cbf).abs() <= 0.1 * same[v].cbf + 15.0,
            "{}: CBF {b} against {}",
            same[v].label,
            same[v].cbf
        );
    }
}
