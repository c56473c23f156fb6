//! The Mattes mutual information metric of a registration (Mattes et al., IEEE TMI
//! 2003;22:120–128; see [`super`]): the image pyramid (block averages), the jittered fixed
//! samples with their zero-order bins, and the joint histogram with the moving intensity binned
//! by a cubic B-spline Parzen window, so the metric is a smooth function of the transform.

use ndarray::{Array3, ArrayView3, Zip};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::volume::{Affine, Geometry};

use super::rigid::{apply, compose};
use super::RegistrationOptions;

/// An image of one pyramid level.
pub(super) struct LevelImage {
    pub(super) data: Array3<f32>,
    pub(super) geometry: Geometry,
}

/// Block average over `f` voxels per axis (partial blocks at the far edge average what they
/// have); the new voxel centre is its block's centre.
pub(super) fn shrink(data: ArrayView3<f32>, g: &Geometry, f: [usize; 3]) -> LevelImage {
    let [nx, ny, nz] = g.dims;
    let n = [nx.div_ceil(f[0]), ny.div_ceil(f[1]), nz.div_ceil(f[2])];
    let mut sum = Array3::<f64>::zeros((n[2], n[1], n[0]));
    let mut count = Array3::<f64>::zeros((n[2], n[1], n[0]));
    for ((z, y, x), &v) in data.indexed_iter() {
        let i = (z / f[2], y / f[1], x / f[0]);
        sum[i] += v as f64;
        count[i] += 1.0;
    }
    let out = Zip::from(&sum)
        .and(&count)
        .map_collect(|&s, &c| if c > 0.0 { (s / c) as f32 } else { 0.0 });
    let mut a = g.affine_lps;
    for r in 0..3 {
        a[r][3] += (0..3)
            .map(|c| g.affine_lps[r][c] * (f[c] as f64 - 1.0) / 2.0)
            .sum::<f64>();
        for c in 0..3 {
            a[r][c] *= f[c] as f64;
        }
    }
    LevelImage {
        data: out,
        geometry: Geometry {
            dims: n,
            affine_lps: a,
        },
    }
}

/// Trilinear value at continuous index (x, y, z); `None` outside the voxel centres' box.
#[inline]
fn trilinear(d: &Array3<f32>, c: [f64; 3]) -> Option<f64> {
    let (nz, ny, nx) = d.dim();
    let n = [nx, ny, nz];
    let mut i0 = [0usize; 3];
    let mut w = [0.0f64; 3];
    for a in 0..3 {
        let max = (n[a] - 1) as f64;
        if !(c[a] >= 0.0 && c[a] <= max) {
            if n[a] == 1 && c[a].abs() <= 0.5 {
                i0[a] = 0;
                w[a] = 0.0;
                continue;
            }
            return None;
        }
        let f = c[a].floor().min((n[a].saturating_sub(2)) as f64);
        i0[a] = f as usize;
        w[a] = c[a] - f;
    }
    let s = d.as_slice().expect("standard layout");
    let (sx, sy) = (1usize, nx);
    let sz = nx * ny;
    let step = |a: usize, s: usize| if n[a] > 1 { s } else { 0 };
    let base = i0[2] * sz + i0[1] * sy + i0[0] * sx;
    let (dx, dy, dz) = (step(0, sx), step(1, sy), step(2, sz));
    let v = |o: usize| s[base + o] as f64;
    let c00 = v(0) * (1.0 - w[0]) + v(dx) * w[0];
    let c10 = v(dy) * (1.0 - w[0]) + v(dy + dx) * w[0];
    let c01 = v(dz) * (1.0 - w[0]) + v(dz + dx) * w[0];
    let c11 = v(dz + dy) * (1.0 - w[0]) + v(dz + dy + dx) * w[0];
    let c0 = c00 * (1.0 - w[1]) + c10 * w[1];
    let c1 = c01 * (1.0 - w[1]) + c11 * w[1];
    Some(c0 * (1.0 - w[2]) + c1 * w[2])
}

/// The cubic B-spline kernel.
#[inline]
fn bspline3(u: f64) -> f64 {
    let a = u.abs();
    if a < 1.0 {
        (4.0 - 6.0 * a * a + 3.0 * a * a * a) / 6.0
    } else if a < 2.0 {
        let b = 2.0 - a;
        b * b * b / 6.0
    } else {
        0.0
    }
}

/// The 99.5th percentile of the finite positive values (the top of the intensity scale).
pub(super) fn top(values: impl Iterator<Item = f32>) -> f64 {
    let mut v: Vec<f32> = values.filter(|x| x.is_finite() && *x > 0.0).collect();
    if v.is_empty() {
        return 1.0;
    }
    let at = ((v.len() - 1) as f64 * 0.995) as usize;
    let t = *v.select_nth_unstable_by(at, f32::total_cmp).1 as f64;
    if t > 0.0 {
        t
    } else {
        1.0
    }
}

/// The metric of one level: fixed samples (world point, fixed bin) and the moving image.
pub(super) struct Metric {
    points: Vec<[f64; 3]>,
    fixed_bin: Vec<u16>,
    moving: Array3<f32>,
    /// Moving LPS → moving continuous index.
    moving_inv: Affine,
    bins: usize,
}

impl Metric {
    pub(super) fn new(
        fixed: &LevelImage,
        moving: &LevelImage,
        opts: &RegistrationOptions,
        fixed_top: f64,
        moving_top: f64,
    ) -> Result<Self> {
        let [nx, ny, nz] = fixed.geometry.dims;
        let total = nx * ny * nz;
        let stride = total.div_ceil(opts.max_samples.max(1)).max(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let bins = opts.bins.max(4);
        let (mut points, mut fixed_bin) = (Vec::new(), Vec::new());
        let jitter = |n: usize, rng: &mut rand::rngs::StdRng| {
            if n > 1 {
                rng.random_range(-0.5..0.5)
            } else {
                0.0
            }
        };
        for idx in (0..total).step_by(stride) {
            let (x, y, z) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
            let c = [
                (x as f64 + jitter(nx, &mut rng)).clamp(0.0, (nx - 1) as f64),
                (y as f64 + jitter(ny, &mut rng)).clamp(0.0, (ny - 1) as f64),
                (z as f64 + jitter(nz, &mut rng)).clamp(0.0, (nz - 1) as f64),
            ];
            let Some(v) = trilinear(&fixed.data, c) else {
                continue;
            };
            let b = ((v / fixed_top).clamp(0.0, 1.0) * (bins - 1) as f64).round() as u16;
            points.push(fixed.geometry.index_to_lps(c));
            fixed_bin.push(b);
        }
        let moving_inv = moving.geometry.inverse_affine_lps().ok_or_else(|| {
            Error::Invalid("registration: the moving image's affine is singular".into())
        })?;
        let scale = (bins - 1) as f64 / moving_top;
        Ok(Metric {
            points,
            fixed_bin,
            moving: moving
                .data
                .mapv(|v| ((v as f64 * scale).clamp(0.0, (bins - 1) as f64)) as f32),
            moving_inv,
            bins,
        })
    }

    /// Mattes MI (nats) and the share of samples inside the moving image, for `m` (fixed →
    /// moving LPS).
    pub(super) fn evaluate(&self, m: &Affine) -> (f64, f64) {
        let idx = compose(&self.moving_inv, m);
        let b = self.bins;
        let w = b + 4;
        let chunk = 4096;
        let (hist, inside) = self
            .points
            .par_chunks(chunk)
            .zip(self.fixed_bin.par_chunks(chunk))
            .fold(
                || (vec![0.0f64; b * w], 0usize),
                |(mut h, mut n), (pts, fb)| {
                    for (p, &f) in pts.iter().zip(fb) {
                        let c = apply(&idx, *p);
                        if let Some(v) = trilinear(&self.moving, c) {
                            n += 1;
                            let lo = v.floor() as isize - 1;
                            let row = f as usize * w;
                            for k in lo..lo + 4 {
                                let wt = bspline3(k as f64 - v);
                                // Bins −2 … b+1 are stored at 0 … b+3.
                                let col = (k + 2) as usize;
                                h[row + col] += wt;
                            }
                        }
                    }
                    (h, n)
                },
            )
            .reduce(
                || (vec![0.0f64; b * w], 0usize),
                |(mut a, na), (c, nc)| {
                    for (x, y) in a.iter_mut().zip(c) {
                        *x += y;
                    }
                    (a, na + nc)
                },
            );
        let share = inside as f64 / self.points.len().max(1) as f64;
        let total: f64 = hist.iter().sum();
        if total <= 0.0 {
            return (0.0, share);
        }
        let mut pf = vec![0.0; b];
        let mut pm = vec![0.0; w];
        for f in 0..b {
            for m in 0..w {
                let p = hist[f * w + m] / total;
                pf[f] += p;
                pm[m] += p;
            }
        }
        let mut mi = 0.0;
        for f in 0..b {
            for m in 0..w {
                let p = hist[f * w + m] / total;
                if p > 0.0 {
                    mi += p * (p / (pf[f] * pm[m])).ln();
                }
            }
        }
        (mi, share)
    }

    /// The cost minimised: −MI, or (too little overlap to judge) a value above any −MI.
    pub(super) fn cost(&self, m: &Affine) -> f64 {
        let (mi, share) = self.evaluate(m);
        if share < 0.25 {
            1.0 - share
        } else {
            -mi
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_keeps_the_world_position_of_a_block() {
        let g = Geometry {
            dims: [4, 4, 2],
            affine_lps: [
                [2.0, 0.0, 0.0, -3.0],
                [0.0, 2.0, 0.0, 5.0],
                [0.0, 0.0, 5.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        };
        let d = Array3::from_shape_fn((2, 4, 4), |(_, _, x)| x as f32);
        let s = shrink(d.view(), &g, [2, 2, 1]);
        assert_eq!(s.geometry.dims, [2, 2, 2]);
        // Block (0, 0) averages x = 0, 1: value 0.5, centre at x index 0.5 → −3 + 1.
        assert_eq!(s.data[[0, 0, 0]], 0.5);
        assert_eq!(s.geometry.index_to_lps([0.0, 0.0, 0.0]), [-2.0, 6.0, 0.0]);
        assert_eq!(s.geometry.voxel_size(), [4.0, 4.0, 5.0]);
    }
}
