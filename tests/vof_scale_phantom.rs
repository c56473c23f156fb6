//! The VOF partial-volume scale (`models::vof_scale`) on the DSC phantom's own curves: an
//! integration test, because the phantom (`synth`) is a layer above `models` (tests/layers.rs).

use paramap::models::vof_scale::{vof_scale, NOISE_FLOOR_K};
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec};

/// The phantom's own curves (continuous-time convolution, then sampled; noise-free): the
/// artery of 20% blood and the vein of whole blood, the vein's frames where its signal at
/// SNR 50 falls below 3σ marked at the floor. Filled, the scale comes within 3% of the whole
/// curve's area ratio and of the truth, 5.
#[test]
fn on_the_phantoms_curves_the_filled_scale_is_the_whole_curves() {
    let spec = DscPhantomSpec::default();
    let p = dsc_phantom(&spec);
    let curve = |vein: bool| {
        let r = p
            .regions
            .iter()
            .find(|r| if vein { r.vein } else { r.artery })
            .unwrap();
        (
            r,
            p.tissue
                .iter()
                .find(|(l, _)| *l == r.label)
                .unwrap()
                .1
                .clone(),
        )
    };
    let ((_, ca), (vein, v)) = (curve(false), curve(true));
    let (nt, dt) = (spec.n_t, spec.dt_s);
    let sigma = p.regions[0].s0 / 50.0;
    let floor: Vec<bool> = v
        .iter()
        .map(|x| vein.s0 * (-spec.te_s * x).exp() < NOISE_FLOOR_K * sigma)
        .collect();
    let whole = vof_scale(&ca, &v, dt, (0, nt), &vec![false; nt], (0, 0))
        .unwrap()
        .scale;
    let got = vof_scale(&ca, &v, dt, (0, nt), &floor, (0, 0)).unwrap();
    eprintln!(
        "whole {whole}, filled {} from frames {:?}, fit {:?}",
        got.scale,
        got.filled_frames,
        got.fit
            .as_ref()
            .map(|f| (f.scale, f.stages, f.tau_s, f.delay_s))
    );
    assert!(got.filled_frames.len() >= 4, "{:?}", got.filled_frames);
    assert!(
        (got.scale / whole - 1.0).abs() < 0.03,
        "filled {} against {whole}",
        got.scale
    );
    assert!(
        (got.scale / 5.0 - 1.0).abs() < 0.03,
        "filled {} against 5",
        got.scale
    );
}
