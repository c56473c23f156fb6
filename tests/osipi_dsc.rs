//! The OSIPI DSC reference curves (tests/data/osipi_dsc, Apache-2.0): 14 tissue/AIF pairs with
//! true CBV and CBF. Convention (OSIPI's): CBV = 100·∫C/∫Ca, CBF = 6000·max f, kH/ρ = 1.
//!
//! What holds, and is asserted: every method's estimate is within OSIPI's own acceptance
//! (CBV: 10% + 1 ml/100ml; CBF: 10% + 15 ml/100ml/min). What does not (see README): CBF within 10% at high flow (truncated SVD smooths
//! the residue's step at t = 0: −22% at 70 ml/100ml/min), and CBV within 5% from ∫C/∫Ca at
//! short MTT (OSIPI's curves come from a discrete convolution whose area exceeds CBF·MTT by up
//! to 19%).

use paramap::models::deconvolution::{voxel, Deconvolution, Method};

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
    let d = Deconvolution::new(&c.aif, c.dt, method).unwrap();
    let mut f = vec![0.0; d.l];
    let r = voxel(&d, |t| c.tissue[t], &mut f);
    (
        100.0 * trapezoid(&c.tissue, c.dt) / trapezoid(&c.aif, c.dt),
        6000.0 * r.peak,
    )
}

const METHODS: [&str; 4] = ["osvd", "csvd", "ssvd", "tikhonov"];

#[test]
fn every_method_meets_osipis_acceptance_on_all_14_curves() {
    let cases = cases();
    assert_eq!(cases.len(), 14);
    let mut table = String::from("| case | CBV true | CBV est | CBF true | oSVD | cSVD | sSVD | Tikhonov |\n|---|---|---|---|---|---|---|---|\n");
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
            if name == "osvd" {
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
