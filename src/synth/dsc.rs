//! A DSC digital reference object: tissue curves from known CBV, CBF and MTT, convolved with
//! the AIF in continuous time and then sampled, with leakage of both signs, bolus delay and
//! dispersion, a partial-volume artery, and Rician noise.
//!
//! AIF: a gamma variate (α = 3, β = 1.5 s) arriving at 15 s, plus a recirculation bump (15% of
//! its area, 12 s later, β = 3 s). Tissue: C(t) = (CBV/100/MTT)·(Ca_d ⊗ e^(−t/MTT))(t − delay),
//! on a 10 ms grid, with Ca_d the AIF dispersed by e^(−t/τ)/τ where a region has dispersion τ;
//! k = 1 so ΔR2* = C (s⁻¹) and ∫C = (CBV/100)·∫Ca, so the true rCBV of a region is its CBV
//! over white matter's. The regions' MTTs differ from white matter's (the reference), as real
//! tissue's do, because a leakage correction that compares curve shapes with a reference reads
//! that difference as leakage (Bjørnerud et al., JCBFM 2011).
//!
//! Leakage, as contrast agent leaving the vessels: the measured ΔR2* is C(t) − K2·∫₀ᵗCa (K2
//! relative to the AIF, s⁻¹). K2 > 0 (T1-dominant) raises the signal by e^(TE·K2·∫Ca), the
//! same factor at every echo; K2 < 0 (T2*-dominant) is a ΔR2* of its own, seen by each echo.
//! Signal: S = S0·e^(−TE·ΔR2*), the first two frames raised as before steady state.

use ndarray::{Array3, Array4};
use rand::SeedableRng;
use serde::Serialize;

use crate::volume::{Geometry, Series4, SeriesInfo, VolumeInfo};

/// One tissue class.
#[derive(Debug, Clone, Serialize)]
pub struct DscRegion {
    pub label: u8,
    pub name: &'static str,
    /// ml/100 ml (the AIF's units: CBV = 100·∫C/∫Ca).
    pub cbv: f64,
    /// ml/100 ml/min.
    pub cbf: f64,
    /// Bolus delay relative to the AIF (s).
    pub delay_s: f64,
    /// Dispersion of the bolus on its way from the AIF's artery: the time constant τ (s) of an
    /// exponential kernel e^(−t/τ)/τ; 0 for none.
    pub dispersion_s: f64,
    /// Leakage rate relative to the AIF (s⁻¹): > 0 T1-dominant, < 0 T2*-dominant, 0 none.
    pub k2: f64,
    pub s0: f64,
    /// Arterial voxels carry the AIF times their blood fraction (CBV/100).
    pub artery: bool,
    /// Venous voxels carry the venous output: the AIF dispersed by the brain's transit
    /// (`VEIN_TRANSIT`), times their blood fraction.
    pub vein: bool,
}

impl DscRegion {
    /// Brain tissue, not a vessel.
    pub fn is_tissue(&self) -> bool {
        !self.artery && !self.vein
    }

    /// MTT = CBV/CBF (central volume theorem), in s.
    pub fn mtt_s(&self) -> f64 {
        60.0 * self.cbv / self.cbf
    }

    /// Tmax, the time from the AIF's arrival to the peak of the tissue's effective residue
    /// (s): the delay, plus, with dispersion, the peak of the dispersion kernel convolved with
    /// the exponential residue, (e^(−t/MTT) − e^(−t/τ))/(1 − τ/MTT), which lies at
    /// t* = ln(MTT/τ)·τ·MTT/(MTT − τ).
    pub fn tmax_s(&self) -> f64 {
        let (m, tau) = (self.mtt_s(), self.dispersion_s);
        if tau <= 0.0 {
            self.delay_s
        } else if (m - tau).abs() < 1e-9 {
            self.delay_s + m
        } else {
            self.delay_s + (m / tau).ln() * tau * m / (m - tau)
        }
    }
}

pub const WHITE_MATTER: u8 = 1;

/// The regions: white matter (the reference, MTT 4.8 s), grey matter (MTT 4 s), a non-leaky
/// lesion with a long MTT (6 s), lesions leaking both ways with MTTs other than white
/// matter's, delayed grey matter, delayed and dispersed grey matter, and a partial-volume
/// artery. Leakage rates are chosen so that uncorrected rCBV is 30–60% off.
pub fn dsc_regions() -> Vec<DscRegion> {
    all_regions().into_iter().filter(|r| !r.vein).collect()
}

/// Every region the phantom can hold, the vein included.
pub fn all_regions() -> Vec<DscRegion> {
    let tissue = |label, name, cbv, cbf, delay_s, dispersion_s, k2, s0| DscRegion {
        label,
        name,
        cbv,
        cbf,
        delay_s,
        dispersion_s,
        k2,
        s0,
        artery: false,
        vein: false,
    };
    vec![
        tissue(1, "white matter", 2.0, 25.0, 0.0, 0.0, 0.0, 600.0),
        tissue(2, "grey matter", 4.0, 60.0, 0.0, 0.0, 0.0, 700.0),
        tissue(
            3,
            "low-rCBV lesion, T2* leakage, MTT 3 s",
            2.4,
            48.0,
            0.0,
            0.0,
            -1.5e-4,
            650.0,
        ),
        tissue(
            4,
            "high-rCBV lesion, T1 leakage, MTT 6 s",
            6.0,
            60.0,
            0.0,
            0.0,
            3e-4,
            650.0,
        ),
        tissue(
            5,
            "grey matter, delayed 2 s",
            4.0,
            60.0,
            2.0,
            0.0,
            0.0,
            700.0,
        ),
        DscRegion {
            label: 6,
            name: "artery (20% partial volume)",
            cbv: 20.0,
            cbf: 1200.0,
            delay_s: 0.0,
            dispersion_s: 0.0,
            k2: 0.0,
            s0: 500.0,
            artery: true,
            vein: false,
        },
        tissue(
            7,
            "lesion, no leakage, MTT 6 s",
            3.0,
            30.0,
            0.0,
            0.0,
            0.0,
            650.0,
        ),
        tissue(
            8,
            "grey matter, delayed 1 s and dispersed (1 s)",
            4.0,
            60.0,
            1.0,
            1.0,
            0.0,
            700.0,
        ),
        // Whole blood: the venous output function that rescales a partial-volume AIF. Its
        // "CBF" only sets the transit: MTT = 60·100/857 = 7 s (`VEIN_TRANSIT`'s mean).
        DscRegion {
            label: 9,
            name: "vein (superior sagittal sinus, whole blood)",
            cbv: 100.0,
            cbf: 857.0,
            delay_s: 0.0,
            dispersion_s: 0.0,
            k2: 0.0,
            s0: 900.0,
            artery: false,
            vein: true,
        },
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct DscPhantomSpec {
    pub dims: [usize; 3],
    pub voxel_mm: [f64; 3],
    pub n_t: usize,
    pub dt_s: f64,
    pub te_s: f64,
    /// A second echo (s): a dual-echo acquisition.
    pub te2_s: Option<f64>,
    /// Baseline SNR of white matter; None for noise-free.
    pub snr: Option<f64>,
    pub seed: u64,
    /// Include the vein (region 9, whole blood), for the venous output function (on by
    /// default). At TE 30 ms whole blood's signal falls to the noise floor at the bolus peak, as
    /// a real sinus's does.
    pub vein: bool,
    /// The grid, overriding `dims` and `voxel_mm` (its own dims are used): any position and
    /// orientation, stored rows bottom-up as paramap stores DICOM rows (see
    /// [`Geometry::flipped_y`]). With [`layout`](Self::layout) it places the phantom in the world,
    /// so that two phantoms of one study (DSC and DWI on different grids) show the same anatomy.
    #[serde(skip)]
    pub geometry: Option<Geometry>,
    /// The region label at a voxel centre given in patient LPS mm, overriding the built-in
    /// in-plane layout (labels without a region are background).
    #[serde(skip)]
    pub layout: Option<fn([f64; 3]) -> u8>,
}

impl Default for DscPhantomSpec {
    fn default() -> Self {
        DscPhantomSpec {
            dims: [48, 48, 4],
            voxel_mm: [2.0, 2.0, 5.0],
            n_t: 60,
            dt_s: 1.5,
            te_s: 0.03,
            te2_s: None,
            snr: None,
            seed: 1,
            vein: true,
            geometry: None,
            layout: None,
        }
    }
}

pub struct DscPhantom {
    pub series: Series4,
    /// The second echo of a dual-echo phantom.
    pub echo2: Option<Series4>,
    pub labels: Array3<u8>,
    pub regions: Vec<DscRegion>,
    /// The AIF concentration per frame (ΔR2*, s⁻¹).
    pub aif: Vec<f64>,
    /// True ΔR2* (before leakage) of each region per frame, by label.
    pub tissue: Vec<(u8, Vec<f64>)>,
}

fn label_at(x: f64, y: f64) -> u8 {
    let inside = |cx: f64, cy: f64, r: f64| (x - cx).powi(2) + (y - cy).powi(2) <= r * r;
    if x * x / 0.85f64.powi(2) + y * y / 0.75f64.powi(2) > 1.0 {
        0
    } else if inside(0.0, -0.05, 0.07) {
        6
    } else if inside(-0.45, -0.25, 0.18) {
        2
    } else if inside(0.45, -0.25, 0.18) {
        5
    } else if inside(-0.3, 0.4, 0.17) {
        3
    } else if inside(0.3, 0.4, 0.17) {
        4
    } else if inside(0.0, 0.3, 0.1) {
        7
    } else if inside(0.0, -0.55, 0.12) {
        8
    } else if inside(0.0, 0.64, 0.07) {
        9
    } else {
        1
    }
}

/// Gamma-variate bolus of unit area arriving at `t0` (s).
fn bolus(t: f64, t0: f64, alpha: f64, beta: f64) -> f64 {
    let tau = t - t0;
    if tau <= 0.0 {
        return 0.0;
    }
    let norm = beta.powf(alpha + 1.0) * (crate::models::gamma_variate::ln_gamma(alpha + 1.0)).exp();
    tau.powf(alpha) * (-tau / beta).exp() / norm
}

/// The venous transit of the phantom's vein: (delay in s, area), a gamma variate (α 3,
/// β 1 s) after the delay: mean transit 7 s.
pub const VEIN_TRANSIT: (f64, f64) = (3.0, 1.0);

/// Area of the AIF's ΔR2* curve (s⁻¹·s): its peak (about 250 s⁻¹) saturates the arterial
/// signal at TE 30 ms, as real AIFs do, while grey matter peaks near 10 s⁻¹.
pub const AIF_AREA: f64 = 2000.0;

/// The AIF (s⁻¹): first pass plus 15% recirculation 12 s later.
pub fn aif_at(t: f64) -> f64 {
    AIF_AREA * (0.85 * bolus(t, 15.0, 3.0, 1.5) + 0.15 * bolus(t, 27.0, 3.0, 3.0))
}

pub fn dsc_phantom(spec: &DscPhantomSpec) -> DscPhantom {
    let geometry = phantom_geometry(spec);
    let [nx, ny, nz] = geometry.dims;
    let nt = spec.n_t;
    let regions = if spec.vein {
        all_regions()
    } else {
        dsc_regions()
    };
    let labels = Array3::from_shape_fn((nz, ny, nx), |(z, y, x)| {
        let label = match spec.layout {
            Some(f) => f(geometry.index_to_lps([x as f64, y as f64, z as f64])),
            None => label_at(
                2.0 * (x as f64 + 0.5) / nx as f64 - 1.0,
                2.0 * (y as f64 + 0.5) / ny as f64 - 1.0,
            ),
        };
        match label {
            9 if !spec.vein => WHITE_MATTER,
            l => l,
        }
    });
    // Fine grid for the convolution; sampled at the frames.
    let fine = 0.01;
    let horizon = nt as f64 * spec.dt_s + 1.0;
    let nf = (horizon / fine) as usize;
    let ca: Vec<f64> = (0..nf).map(|i| aif_at(i as f64 * fine)).collect();
    let sample = |f: &dyn Fn(f64) -> f64| {
        (0..nt)
            .map(|i| f(i as f64 * spec.dt_s))
            .collect::<Vec<f64>>()
    };
    // G(t) = ∫₀ᵗCa, the regressor of the leakage.
    let mut g_fine = vec![0.0; nf];
    for i in 1..nf {
        g_fine[i] = g_fine[i - 1] + 0.5 * (ca[i - 1] + ca[i]) * fine;
    }
    let at = |v: &[f64], t: f64| {
        let idx = (t / fine).round();
        if idx < 0.0 {
            0.0
        } else {
            v[(idx as usize).min(nf - 1)]
        }
    };
    let tissue_curve = |r: &DscRegion| -> Vec<f64> {
        if r.artery {
            // A partial-volume artery: its blood fraction times the AIF.
            return sample(&|t| r.cbv / 100.0 * aif_at(t - r.delay_s));
        }
        if r.vein {
            // All the agent the arteries brought leaves through the veins: the AIF convolved
            // with a unit-area transit (3 s delay, then a gamma variate, α 3, β 1 s).
            let kernel: Vec<f64> = (0..nf)
                .map(|i| VEIN_TRANSIT.1 * bolus(i as f64 * fine, VEIN_TRANSIT.0, 3.0, 1.0))
                .collect();
            let last = kernel.iter().rposition(|&k| k > 1e-12).unwrap_or(0);
            let out: Vec<f64> = (0..nf)
                .map(|i| {
                    (0..=i.min(last))
                        .map(|j| kernel[j] * ca[i - j])
                        .sum::<f64>()
                        * fine
                        * r.cbv
                        / 100.0
                })
                .collect();
            return sample(&|t| at(&out, t));
        }
        // The AIF as it reaches the tissue: dispersed by e^(−t/τ)/τ where τ > 0.
        let supply: Vec<f64> = if r.dispersion_s > 0.0 {
            let e = (-fine / r.dispersion_s).exp();
            let mut acc = 0.0;
            ca.iter()
                .map(|&x| {
                    // Weights (1 − e)·e^k sum to 1: the dispersion keeps the AIF's area.
                    acc = acc * e + x * (1.0 - e);
                    acc
                })
                .collect()
        } else {
            ca.clone()
        };
        let mtt = r.mtt_s();
        let scale = r.cbv / 100.0 / mtt;
        // C(t_i) = scale · ∫ Ca(τ) e^{−(t−τ)/MTT} dτ, delayed.
        let mut conv = vec![0.0; nf];
        let decay = (-fine / mtt).exp();
        let mut acc = 0.0;
        for i in 0..nf {
            acc = acc * decay + supply[i] * fine;
            conv[i] = scale * acc;
        }
        sample(&|t| at(&conv, t - r.delay_s))
    };
    let tissue: Vec<(u8, Vec<f64>)> = regions.iter().map(|r| (r.label, tissue_curve(r))).collect();
    let curve_of = |l: u8| &tissue.iter().find(|(k, _)| *k == l).expect("region").1;
    let cum = sample(&|t| at(&g_fine, t));
    let steady = |t: usize| match t {
        0 => 1.5,
        1 => 1.15,
        _ => 1.0,
    };
    let sigma = spec.snr.map(|snr| regions[0].s0 / snr);
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    // T1 leakage (K2 > 0) raises the signal by a factor common to every echo, exactly the
    // leakage term −K2·∫Ca at the first echo; T2* leakage (K2 < 0) is a ΔR2* of its own, seen
    // by each echo.
    let mut make_echo = |te: f64, s0_scale: f64| {
        let mut data = Array4::<f32>::zeros((nt, nz, ny, nx));
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let l = labels[[z, y, x]];
                    let region = regions.iter().find(|r| r.label == l);
                    for t in 0..nt {
                        let clean = region.map_or(0.0, |r| {
                            let (t1_factor, dr2) = if r.k2 > 0.0 {
                                ((spec.te_s * r.k2 * cum[t]).exp(), curve_of(l)[t])
                            } else {
                                (1.0, curve_of(l)[t] - r.k2 * cum[t])
                            };
                            r.s0 * s0_scale * steady(t) * t1_factor * (-te * dr2).exp()
                        });
                        let value = super::rician(clean, sigma, &mut rng);
                        data[[t, z, y, x]] = value as f32;
                    }
                }
            }
        }
        data
    };
    let data = make_echo(spec.te_s, 1.0);
    let data2 = spec.te2_s.map(|te2| make_echo(te2, 0.6));
    let volumes = (0..nt)
        .map(|t| VolumeInfo {
            diffusion: None,
            time_s: Some(t as f64 * spec.dt_s),
        })
        .collect();
    let info = |te: f64| SeriesInfo {
        source: "paramap synth dsc".into(),
        description: Some("paramap DSC phantom".into()),
        manufacturer: Some("paramap".into()),
        echo_time_s: Some(te),
        repetition_time_s: Some(spec.dt_s),
        ..Default::default()
    };
    let times = ndarray::Array2::from_shape_fn((nt, nz), |(t, _)| t as f64 * spec.dt_s);
    let echo2 = data2.map(|d| Series4 {
        data: d,
        geometry: geometry.clone(),
        volumes: (0..nt)
            .map(|t| VolumeInfo {
                diffusion: None,
                time_s: Some(t as f64 * spec.dt_s),
            })
            .collect(),
        info: info(spec.te2_s.unwrap_or(spec.te_s)),
        frame_times_s: Some(times.clone()),
    });
    DscPhantom {
        echo2,
        series: Series4 {
            data,
            geometry,
            volumes,
            info: SeriesInfo {
                source: "paramap synth dsc".into(),
                description: Some("paramap DSC phantom".into()),
                manufacturer: Some("paramap".into()),
                echo_time_s: Some(spec.te_s),
                repetition_time_s: Some(spec.dt_s),
                ..Default::default()
            },
            frame_times_s: Some(ndarray::Array2::from_shape_fn((nt, nz), |(t, _)| {
                t as f64 * spec.dt_s
            })),
        },
        labels,
        regions,
        aif: sample(&aif_at),
        tissue,
    }
}

/// Built as a DICOM stack and stored rows bottom-up, like the DWI phantom's grid.
fn phantom_geometry(spec: &DscPhantomSpec) -> Geometry {
    if let Some(g) = &spec.geometry {
        return g.clone();
    }
    let [dx, dy, dz] = spec.voxel_mm;
    let [nx, ny, nz] = spec.dims;
    Geometry {
        dims: spec.dims,
        affine_lps: [
            [dx, 0.0, 0.0, -(nx as f64) * dx / 2.0],
            [0.0, dy, 0.0, -(ny as f64) * dy / 2.0],
            [0.0, 0.0, dz, -(nz as f64) * dz / 2.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    }
    .flipped_y()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tissue_area_is_cbv_times_aif_area() {
        let p = dsc_phantom(&DscPhantomSpec::default());
        let area = |c: &[f64]| c.iter().sum::<f64>() * 1.5;
        let aif_area = area(&p.aif);
        assert!(
            (aif_area / AIF_AREA - 1.0).abs() < 0.005,
            "AIF area {aif_area}"
        );
        for r in p.regions.iter().filter(|r| !r.artery) {
            let c = &p.tissue.iter().find(|(l, _)| *l == r.label).unwrap().1;
            let rel = area(c) / aif_area * 100.0 / r.cbv;
            assert!((rel - 1.0).abs() < 0.005, "{}: {rel}", r.name);
        }
    }

    #[test]
    fn trapezoid_of_the_sampled_curves_gives_cbv_ratios() {
        let p = dsc_phantom(&DscPhantomSpec::default());
        let trap = |c: &[f64]| c.windows(2).map(|w| 0.5 * (w[0] + w[1])).sum::<f64>() * 1.5;
        let wm = trap(&p.tissue[0].1);
        for r in &p.regions {
            let c = &p.tissue.iter().find(|(l, _)| *l == r.label).unwrap().1;
            let ratio = trap(c) / wm / (r.cbv / 2.0);
            eprintln!("{}: sampled-area ratio / true rCBV = {ratio:.5}", r.name);
        }
    }

    #[test]
    fn every_region_is_present() {
        let p = dsc_phantom(&DscPhantomSpec {
            vein: true,
            ..Default::default()
        });
        assert_eq!(p.regions.len(), all_regions().len());
        for r in &p.regions {
            let n = p.labels.iter().filter(|&&l| l == r.label).count();
            assert!(n >= 20, "{} has {n} voxels", r.name);
        }
    }
}
