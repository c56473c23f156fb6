//! Shells and trace-weighted images (docs/methods.md §2): volumes are grouped by b-value, and each
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

/// Volumes multiplied together in f64 before one logarithm: any four positive finite f32
/// values (subnormals included, 2^-149..2^128) multiply to within f64's normal range, so the
/// product neither overflows nor underflows and costs one `ln` instead of four.
const PRODUCT_GROUP: usize = 4;

/// Trace-weighted image per shell: `out[[shell, z, y, x]]` is the geometric mean of the
/// shell's volumes. A voxel with any non-positive or non-finite value in a shell gets 0 there
/// (invalid for the fit, and no log(0)). A one-volume shell is that volume, with its invalid
/// voxels set to 0.
pub fn trace_weighted(data: ArrayView4<f32>, shells: &[Shell]) -> Array4<f32> {
    use rayon::prelude::*;
    let (_, nz, ny, nx) = data.dim();
    let plane = ny * nx;
    let data = data.as_standard_layout();
    let all = data.as_slice().expect("standard layout is contiguous");
    let mut out = Array4::<f32>::zeros((shells.len(), nz, ny, nx));
    for (s, shell) in shells.iter().enumerate() {
        let mut img = out.index_axis_mut(Axis(0), s);
        let dst = img.as_slice_mut().expect("fresh arrays are contiguous");
        // One slice per task.
        dst.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(z, dst)| trace_weighted_slice(all, nz, shell, z, dst));
    }
    out
}

/// Slice `z` of one shell's trace-weighted image (as [`trace_weighted`]) into `dst` (one
/// plane, `ny·nx` values). `all` is the series in standard layout `[volume, z, y, x]` with `nz`
/// slices per volume. Callers that also fit the slice's voxels call this per slice, so that the
/// slice's data is read while it is in cache.
pub fn trace_weighted_slice(all: &[f32], nz: usize, shell: &Shell, z: usize, dst: &mut [f32]) {
    let plane = dst.len();
    // Slice z of volume v: contiguous in the standard layout.
    let slice = |v: usize| &all[(v * nz + z) * plane..][..plane];
    let valid = |x: f32| x > 0.0 && x.is_finite();
    let n = shell.volumes.len();
    if let [v] = shell.volumes[..] {
        for (o, &x) in dst.iter_mut().zip(slice(v)) {
            *o = if valid(x) { x } else { 0.0 };
        }
        return;
    }
    // Voxel by voxel, in one pass over the shell's slices: the product of each group of
    // volumes (in volume order, from 1.0, as before), then its square root(s) or logarithm.
    let slices: Vec<&[f32]> = shell.volumes.iter().map(|&v| slice(v)).collect();
    if n == 2 || n == 4 {
        // Square roots are exact to the last bit and cheaper than ln and exp.
        for (p, o) in dst.iter_mut().enumerate() {
            let mut product = 1f64;
            let mut ok = true;
            for s in &slices {
                let x = s[p];
                ok &= valid(x);
                product *= x as f64;
            }
            let root = if n == 2 {
                product.sqrt()
            } else {
                product.sqrt().sqrt()
            };
            *o = if ok { root as f32 } else { 0.0 };
        }
        return;
    }
    // exp(Σ ln(group product) / n).
    for (p, o) in dst.iter_mut().enumerate() {
        let mut log_sum = 0f64;
        let mut ok = true;
        for group in slices.chunks(PRODUCT_GROUP) {
            let mut product = 1f64;
            for s in group {
                let x = s[p];
                ok &= valid(x);
                product *= x as f64;
            }
            if !ok {
                break;
            }
            log_sum += product.ln();
        }
        *o = if ok {
            (log_sum / n as f64).exp() as f32
        } else {
            0.0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell of `volumes` at `b`, none dropped.
    fn shell(b: f64, volumes: Vec<usize>) -> Shell {
        Shell {
            b,
            volumes,
            dropped_isotropic: vec![],
        }
    }

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
        let shells = vec![shell(0.0, vec![0]), shell(1000.0, vec![1, 2])];
        let tw = trace_weighted(data.view(), &shells);
        assert!((tw[[1, 0, 0, 0]] - 40.0).abs() < 1e-4);
        assert_eq!(tw[[1, 0, 0, 1]], 0.0);
    }

    #[test]
    fn grouped_products_give_the_geometric_mean_over_the_whole_f32_range() {
        // Nine directions (three product groups) holding the extremes of f32, and a shell of
        // one volume, against the mean of logarithms taken one value at a time.
        let values: [[f32; 9]; 3] = [
            [
                f32::MAX,
                f32::MAX,
                f32::MAX,
                f32::MAX,
                3.0e38,
                1.0,
                2.0,
                1.0e38,
                f32::MAX,
            ],
            [
                1.0e-45, 1.0e-45, 1.0e-45, 1.0e-45, 1.4e-45, 1.0e-40, 1.0e-38, 2.0, 5.0,
            ],
            [
                812.5, 640.25, 1033.0, 97.5, 1.0e-3, 4.0e4, 700.0, 655.5, 720.0,
            ],
        ];
        let mut data = Array4::<f32>::zeros((10, 1, 1, 4));
        for (x, row) in values.iter().enumerate() {
            data[[0, 0, 0, x]] = 1000.0;
            for (v, &value) in row.iter().enumerate() {
                data[[v + 1, 0, 0, x]] = value;
            }
        }
        data[[0, 0, 0, 3]] = -1.0; // invalid in the one-volume shell
        data[[5, 0, 0, 3]] = f32::NAN; // and in the nine-volume shell
        let shells = vec![shell(0.0, vec![0]), shell(1000.0, (1..10).collect())];
        let tw = trace_weighted(data.view(), &shells);
        for (x, row) in values.iter().enumerate() {
            let mean_log = row.iter().map(|&v| (v as f64).ln()).sum::<f64>() / 9.0;
            let expected = mean_log.exp() as f32;
            let got = tw[[1, 0, 0, x]];
            assert!(
                ((got - expected) / expected).abs() < 1e-6,
                "voxel {x}: {got} against {expected}"
            );
            assert_eq!(
                tw[[0, 0, 0, x]],
                1000.0,
                "a one-volume shell is that volume"
            );
        }
        assert_eq!(tw[[0, 0, 0, 3]], 0.0);
        assert_eq!(tw[[1, 0, 0, 3]], 0.0);
    }
}
