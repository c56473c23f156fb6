//! Rigid registration (Mattes MI, 3 levels, Nelder–Mead; `models::registration`) on the CPU:
//! a 128×128×25 DSC baseline (1.8 × 1.8 × 5 mm) onto another of the same head moved by 8° and
//! 12 mm, and a DWI b = 0 (112×112×32, 2 × 2 × 4 mm) onto that DSC grid. 3-D head phantom
//! (`synth::head`) with 2% noise. Run: `cargo bench --bench registration`.

use criterion::{criterion_group, criterion_main, Criterion};
use paramap::models::registration::{invert, register, RegImage, RegistrationOptions, Rigid};
use paramap::synth::head::{head_visit, HeadSpec};

fn bench(c: &mut Criterion) {
    let dsc = HeadSpec {
        dims: [128, 128, 25],
        voxel_mm: [1.8, 1.8, 5.0],
        noise: Some(0.02),
        ..HeadSpec::default()
    };
    let id = Rigid::identity([0.0; 3]).matrix_lps();
    let fixed = head_visit(&dsc, &id);
    let truth = Rigid {
        angles_rad: [5f64.to_radians(), (-4f64).to_radians(), 8f64.to_radians()],
        translation_mm: [12.0, -8.0, 6.0],
        centre_lps: [0.0; 3],
    }
    .matrix_lps();
    let later = head_visit(
        &HeadSpec {
            seed: 2,
            ..dsc.clone()
        },
        &invert(&truth).unwrap(),
    );
    let dwi = head_visit(
        &HeadSpec {
            dims: [112, 112, 32],
            voxel_mm: [2.0, 2.0, 4.0],
            seed: 3,
            ..dsc.clone()
        },
        &invert(&truth).unwrap(),
    );
    let opts = RegistrationOptions::default();
    let mut g = c.benchmark_group("registration_rigid_cpu");
    g.sample_size(10);
    g.bench_function("dsc_128x128x25_onto_dsc", |b| {
        b.iter(|| register(img(&fixed, false), img(&later, false), &opts).unwrap())
    });
    g.bench_function("dwi_b0_112x112x32_onto_dsc_128x128x25", |b| {
        b.iter(|| register(img(&fixed, false), img(&dwi, true), &opts).unwrap())
    });
    g.finish();
    // Accuracy of the benchmarked runs, for BENCHMARKS.md.
    for (name, moving, is_dwi) in [
        ("DSC onto DSC", &later, false),
        ("DWI b=0 onto DSC", &dwi, true),
    ] {
        let r = register(img(&fixed, false), img(moving, is_dwi), &opts).unwrap();
        let deg = paramap::models::registration::rotation_difference_deg(&r.matrix_lps, &truth);
        let c = paramap::models::registration::apply(&r.matrix_lps, [0.0; 3]);
        let t = paramap::models::registration::apply(&truth, [0.0; 3]);
        let mm = (0..3).map(|k| (c[k] - t[k]).powi(2)).sum::<f64>().sqrt();
        println!(
            "{name}: rotation error {deg:.3}°, error at the centre {mm:.3} mm, {} metric evaluations, {:.2} s",
            r.quality.evaluations, r.quality.seconds
        );
    }
}

fn img(v: &paramap::synth::head::HeadVisit, dwi: bool) -> RegImage<'_> {
    RegImage {
        data: if dwi { v.b0.view() } else { v.s0.view() },
        geometry: &v.geometry,
        mask: None,
        label: "phantom",
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
