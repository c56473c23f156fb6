//! Shells and trace-weighted images (METHODS §2): volumes are grouped by b-value, and each
//! shell's trace-weighted image is the geometric mean over its gradient directions,
//! S_b = (Π S_b,i)^(1/n), which cancels the direction dependence to first order.

use ndarray::{Array4, ArrayView4, Axis};
use serde::Serialize;

use crate::volume::Diffusion;

/// Rules for grouping volumes into shells.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ShellRules {
    /// b-values at or below this (s/mm²) are b = 0. MRtrix3's BZeroThreshold default is 10;
    /// Philips' "b = 0.001 … 0.004" volumes fall under it.
    pub b0_threshold: f64,
    /// Volumes whose b lies within this fraction of a shell's b (or within `b0_threshold`
    /// s/mm², whichever is larger) belong to it: scanners report slightly different b per
    /// direction when b is computed from the b-matrix.
    pub relative_tolerance: f64,
}

impl Default for ShellRules {
    fn default() -> Self {
        ShellRules {
            b0_threshold: 10.0,
            relative_tolerance: 0.05,
        }
    }
}

/// One b-shell: the volumes that were averaged into its trace-weighted image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shell {
    /// Nominal b (s/mm²): 0 for the b = 0 shell, else the mean of its members.
    pub b: f64,
    /// Indices of the volumes used, in series order.
    pub volumes: Vec<usize>,
    /// Scanner-made isotropic (trace) volumes at this b that were left out because
    /// directional volumes were there to average.
    pub dropped_isotropic: Vec<usize>,
}

/// Groups volumes into shells, lowest b first.
pub fn group_shells(diffusion: &[Diffusion], rules: &ShellRules) -> Vec<Shell> {
    let nominal = |d: &Diffusion| {
        if d.b <= rules.b0_threshold {
            0.0
        } else {
            d.b
        }
    };
    let mut order: Vec<usize> = (0..diffusion.len()).collect();
    order.sort_by(|&a, &b| nominal(&diffusion[a]).total_cmp(&nominal(&diffusion[b])));
    let mut shells: Vec<(f64, Vec<usize>)> = Vec::new();
    for i in order {
        let b = nominal(&diffusion[i]);
        match shells.last_mut() {
            Some((first, members))
                if (b - *first).abs()
                    <= (rules.relative_tolerance * *first).max(rules.b0_threshold) =>
            {
                members.push(i)
            }
            _ => shells.push((b, vec![i])),
        }
    }
    shells
        .into_iter()
        .map(|(_, mut members)| {
            members.sort_unstable();
            let (iso, dir): (Vec<usize>, Vec<usize>) =
                members.iter().partition(|&&i| diffusion[i].isotropic);
            let (volumes, dropped_isotropic) = if dir.is_empty() {
                (iso, vec![])
            } else {
                (dir, iso)
            };
            let b = if nominal(&diffusion[volumes[0]]) == 0.0 {
                0.0
            } else {
                volumes.iter().map(|&i| diffusion[i].b).sum::<f64>() / volumes.len() as f64
            };
            Shell {
                b,
                volumes,
                dropped_isotropic,
            }
        })
        .collect()
}

/// Trace-weighted image per shell: `out[[shell, z, y, x]]` is the geometric mean of the
/// shell's volumes. A voxel with any non-positive value in a shell gets 0 there (invalid for
/// the fit, and no log(0)).
pub fn trace_weighted(data: ArrayView4<f32>, shells: &[Shell]) -> Array4<f32> {
    use rayon::prelude::*;
    let (_, nz, ny, nx) = data.dim();
    let plane = ny * nx;
    let mut out = Array4::<f32>::zeros((shells.len(), nz, ny, nx));
    for (s, shell) in shells.iter().enumerate() {
        let mut img = out.index_axis_mut(Axis(0), s);
        let dst = img.as_slice_mut().expect("fresh arrays are contiguous");
        // One slice per task: the volumes' slices are contiguous in the standard layout.
        dst.par_chunks_mut(plane).enumerate().for_each(|(z, dst)| {
            let mut log_sum = vec![0f64; plane];
            let mut valid = vec![true; plane];
            for &v in &shell.volumes {
                let src = data.slice(ndarray::s![v, z, .., ..]);
                for ((acc, ok), &x) in log_sum.iter_mut().zip(valid.iter_mut()).zip(src.iter()) {
                    if x > 0.0 && x.is_finite() {
                        *acc += (x as f64).ln();
                    } else {
                        *ok = false;
                    }
                }
            }
            let n = shell.volumes.len() as f64;
            for ((o, l), ok) in dst.iter_mut().zip(&log_sum).zip(&valid) {
                *o = if *ok { (l / n).exp() as f32 } else { 0.0 };
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: f64, iso: bool) -> Diffusion {
        Diffusion {
            b,
            direction: None,
            isotropic: iso,
        }
    }

    #[test]
    fn philips_near_zero_b_joins_b0_and_its_isotropic_volume_is_dropped() {
        let vols = vec![
            d(0.0, false),
            d(1000.0, false),
            d(0.001, false),
            d(998.0, false),
            d(1000.0, true),
            d(0.004, false),
        ];
        let shells = group_shells(&vols, &ShellRules::default());
        assert_eq!(shells.len(), 2);
        assert_eq!(shells[0].b, 0.0);
        assert_eq!(shells[0].volumes, vec![0, 2, 5]);
        assert_eq!(shells[1].volumes, vec![1, 3]);
        assert_eq!(shells[1].dropped_isotropic, vec![4]);
        assert_eq!(shells[1].b, 999.0);
    }

    #[test]
    fn a_trace_only_series_keeps_its_isotropic_volumes() {
        let shells = group_shells(&[d(0.0, false), d(800.0, true)], &ShellRules::default());
        assert_eq!(shells[1].volumes, vec![1]);
    }

    #[test]
    fn geometric_mean_over_directions() {
        let mut data = Array4::<f32>::zeros((3, 1, 1, 2));
        data[[0, 0, 0, 0]] = 100.0;
        data[[1, 0, 0, 0]] = 20.0;
        data[[2, 0, 0, 0]] = 80.0;
        data[[0, 0, 0, 1]] = 100.0;
        data[[1, 0, 0, 1]] = 0.0; // invalid in one direction
        data[[2, 0, 0, 1]] = 80.0;
        let shells = vec![
            Shell {
                b: 0.0,
                volumes: vec![0],
                dropped_isotropic: vec![],
            },
            Shell {
                b: 1000.0,
                volumes: vec![1, 2],
                dropped_isotropic: vec![],
            },
        ];
        let tw = trace_weighted(data.view(), &shells);
        assert!((tw[[1, 0, 0, 0]] - 40.0).abs() < 1e-4);
        assert_eq!(tw[[1, 0, 0, 1]], 0.0);
    }
}
