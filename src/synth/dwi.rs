//! A multi-region DWI phantom with known ADC per region.
//!
//! Each region has a diffusion tensor, diagonal in the patient LPS axes, and the phantom is
//! sampled along those axes: ln S_i = ln S0 − b·D_ii, so the geometric mean over the three
//! directions decays with the mean diffusivity, which is the region's true ADC exactly. The
//! "white matter" region is strongly anisotropic to prove the trace weighting. Rician noise is
//! optional (magnitude of complex Gaussian noise, σ = S0_WM / SNR).

use ndarray::{Array3, Array4};
use rand::SeedableRng;
use serde::Serialize;

use crate::volume::{Diffusion, Geometry, Series4, SeriesInfo, VolumeInfo};

/// One tissue class of the phantom.
#[derive(Debug, Clone, Serialize)]
pub struct Region {
    pub label: u8,
    pub name: &'static str,
    /// Diagonal of the diffusion tensor along LPS x, y, z (mm²/s).
    pub tensor_diag: [f64; 3],
    /// Signal at b = 0.
    pub s0: f64,
}

impl Region {
    /// Mean diffusivity = the true ADC of the trace-weighted image (mm²/s).
    pub fn adc(&self) -> f64 {
        self.tensor_diag.iter().sum::<f64>() / 3.0
    }
}

/// The regions, background (label 0) excluded. Values from docs/methods.md §2's ranges.
pub fn regions() -> Vec<Region> {
    vec![
        Region {
            label: 1,
            name: "white matter (anisotropic)",
            tensor_diag: [1.5e-3, 0.3e-3, 0.3e-3],
            s0: 800.0,
        },
        Region {
            label: 2,
            name: "grey matter",
            tensor_diag: [0.85e-3; 3],
            s0: 1000.0,
        },
        Region {
            label: 3,
            name: "CSF",
            tensor_diag: [3.0e-3; 3],
            s0: 2000.0,
        },
        Region {
            label: 4,
            name: "treatment-effect lesion",
            tensor_diag: [1.4e-3; 3],
            s0: 1200.0,
        },
        Region {
            label: 5,
            name: "restricted lesion",
            tensor_diag: [0.5e-3; 3],
            s0: 900.0,
        },
    ]
}

/// Phantom parameters.
#[derive(Debug, Clone, Serialize)]
pub struct DwiPhantomSpec {
    pub dims: [usize; 3],
    pub voxel_mm: [f64; 3],
    /// b > 0 shells (s/mm²); each is sampled along LPS x, y and z. One b = 0 volume first.
    pub bvalues: Vec<f64>,
    /// Baseline SNR of white matter at b = 0; None for noise-free.
    pub snr: Option<f64>,
    pub seed: u64,
    /// Append the scanner's own isotropic (trace) image per shell, as Philips does.
    pub append_isotropic: bool,
    /// b = 0 volumes at the start (1 or more).
    pub b0_volumes: usize,
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

impl Default for DwiPhantomSpec {
    fn default() -> Self {
        DwiPhantomSpec {
            dims: [48, 48, 6],
            voxel_mm: [2.0, 2.0, 3.0],
            bvalues: vec![500.0, 1000.0],
            snr: None,
            seed: 1,
            append_isotropic: false,
            b0_volumes: 1,
            geometry: None,
            layout: None,
        }
    }
}

/// The phantom and its truth.
pub struct DwiPhantom {
    pub series: Series4,
    /// Region label per voxel (`[z, y, x]`), 0 = background.
    pub labels: Array3<u8>,
    /// True ADC per voxel (mm²/s), 0 in background.
    pub adc_truth: Array3<f32>,
    pub regions: Vec<Region>,
}

/// A slightly oblique grid (5° about LPS z) so that geometry handling is exercised. It is
/// built as a DICOM stack (slice axis along row × column) and stored rows bottom-up, as every
/// series read from DICOM is, so a DICOM round trip gives back the very same grid.
fn phantom_geometry(spec: &DwiPhantomSpec) -> Geometry {
    if let Some(g) = &spec.geometry {
        return g.clone();
    }
    let (c, s) = (5f64.to_radians().cos(), 5f64.to_radians().sin());
    let [dx, dy, dz] = spec.voxel_mm;
    let [nx, ny, nz] = spec.dims;
    let centre = [
        nx as f64 / 2.0 * dx,
        ny as f64 / 2.0 * dy,
        nz as f64 / 2.0 * dz,
    ];
    Geometry {
        dims: spec.dims,
        affine_lps: [
            [c * dx, -s * dy, 0.0, -centre[0]],
            [s * dx, c * dy, 0.0, -centre[1]],
            [0.0, 0.0, dz, -centre[2]],
            [0.0, 0.0, 0.0, 1.0],
        ],
    }
    .flipped_y()
}

fn label_at(x: f64, y: f64) -> u8 {
    // x, y in [-1, 1] across the slice.
    let inside = |cx: f64, cy: f64, r: f64| (x - cx).powi(2) + (y - cy).powi(2) <= r * r;
    if x * x / 0.85f64.powi(2) + y * y / 0.75f64.powi(2) > 1.0 {
        0
    } else if inside(0.0, 0.0, 0.15) {
        3
    } else if inside(-0.42, -0.3, 0.2) {
        2
    } else if inside(0.42, -0.3, 0.2) {
        4
    } else if inside(0.0, 0.45, 0.2) {
        5
    } else {
        1
    }
}

/// Builds the phantom.
pub fn dwi_phantom(spec: &DwiPhantomSpec) -> DwiPhantom {
    let geometry = phantom_geometry(spec);
    let [nx, ny, nz] = geometry.dims;
    let regions = regions();
    let labels = Array3::from_shape_fn((nz, ny, nx), |(z, y, x)| match spec.layout {
        Some(f) => {
            let l = f(geometry.index_to_lps([x as f64, y as f64, z as f64]));
            if regions.iter().any(|r| r.label == l) {
                l
            } else {
                0
            }
        }
        None => label_at(
            2.0 * (x as f64 + 0.5) / nx as f64 - 1.0,
            2.0 * (y as f64 + 0.5) / ny as f64 - 1.0,
        ),
    });
    let adc_truth = labels.mapv(|l| {
        regions
            .iter()
            .find(|r| r.label == l)
            .map(|r| r.adc() as f32)
            .unwrap_or(0.0)
    });
    let axes = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let mut volumes = vec![VolumeInfo {
        diffusion: Some(Diffusion {
            b: 0.0,
            direction: None,
            isotropic: false,
        }),
        time_s: Some(0.0),
    }];
    // (b, axis or None for the scanner's isotropic image)
    let mut encodings: Vec<(f64, Option<usize>)> = vec![(0.0, None)];
    for &b in &spec.bvalues {
        for (k, axis) in axes.iter().enumerate() {
            volumes.push(VolumeInfo {
                diffusion: Some(Diffusion {
                    b,
                    direction: Some(*axis),
                    isotropic: false,
                }),
                time_s: Some(volumes.len() as f64),
            });
            encodings.push((b, Some(k)));
        }
    }
    if spec.append_isotropic {
        for &b in &spec.bvalues {
            volumes.push(VolumeInfo {
                diffusion: Some(Diffusion {
                    b,
                    direction: None,
                    isotropic: true,
                }),
                time_s: Some(volumes.len() as f64),
            });
            encodings.push((b, None));
        }
    }
    let wm_s0 = regions[0].s0;
    let sigma = spec.snr.map(|snr| wm_s0 / snr);
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let mut data = Array4::<f32>::zeros((encodings.len(), nz, ny, nx));
    for (v, &(b, axis)) in encodings.iter().enumerate() {
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let l = labels[[z, y, x]];
                    let clean = regions.iter().find(|r| r.label == l).map_or(0.0, |r| {
                        let d = match axis {
                            Some(k) => r.tensor_diag[k],
                            None => r.adc(),
                        };
                        r.s0 * (-b * d).exp()
                    });
                    let value = super::rician(clean, sigma, &mut rng);
                    data[[v, z, y, x]] = value as f32;
                }
            }
        }
    }
    DwiPhantom {
        series: Series4 {
            data,
            geometry,
            volumes,
            frame_times_s: None,
            info: SeriesInfo {
                source: "paramap synth dwi".into(),
                description: Some("paramap DWI phantom".into()),
                manufacturer: Some("paramap".into()),
                echo_time_s: Some(0.080),
                repetition_time_s: Some(4.0),
                n_files: 0,
                ..Default::default()
            },
        },
        labels,
        adc_truth,
        regions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_is_present_in_every_slice() {
        let p = dwi_phantom(&DwiPhantomSpec::default());
        for z in 0..6 {
            for r in &p.regions {
                let n = p
                    .labels
                    .index_axis(ndarray::Axis(0), z)
                    .iter()
                    .filter(|&&l| l == r.label)
                    .count();
                assert!(n >= 10, "region {} has {n} voxels in slice {z}", r.name);
            }
        }
    }

    #[test]
    fn white_matter_is_anisotropic_but_its_mean_diffusivity_is_physiological() {
        let wm = &regions()[0];
        assert!(wm.tensor_diag[0] / wm.tensor_diag[1] > 3.0);
        assert!((wm.adc() - 0.7e-3).abs() < 1e-12);
    }
}
