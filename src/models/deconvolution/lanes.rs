//! The lane search of the SVD deconvolutions (see the module above): [`LANES`] voxels side by
//! side, the projection and oSVD's truncation search in one pass per component, portable and
//! AVX2 with the same operations in the same order.

use super::{oscillation_index, Deconvolution, Method, Residue};

/// Voxels deconvolved together, one per lane: the per-voxel loops run across lanes, so they
/// vectorise without reductions and without branches on one voxel's data.
pub const LANES: usize = 8;
pub(super) type Lanes = [f64; LANES];

/// Deconvolves one tissue curve `c(t)` (t < N; zero-padded to L). `f` (length L) receives the
/// residue. A curve with a non-finite sample is invalid (NaN); a curve with no positive flow
/// gives peak ≤ 0 (the pipeline reports CBF 0 there).
pub fn voxel(d: &Deconvolution, c: impl Fn(usize) -> f64, f: &mut [f64]) -> Residue {
    let mut scratch = Scratch::new(d);
    let r = block(d, 1, |_, t| c(t), &mut scratch)[0];
    for (x, y) in f.iter_mut().zip(&scratch.f) {
        *x = y[0];
    }
    r
}

/// Per-thread work space of [`block`], so that the per-voxel loop allocates nothing.
pub struct Scratch {
    /// Tissue curves, `c[t][lane]`.
    pub(super) c: Vec<Lanes>,
    /// Residues, `f[i][lane]`.
    pub(super) f: Vec<Lanes>,
    /// β_k = w_k·(u_k·c), `beta[k][lane]`.
    beta: Vec<Lanes>,
    /// One lane's residue, for its oscillation index.
    one: Vec<f64>,
}

impl Scratch {
    pub fn new(d: &Deconvolution) -> Self {
        Scratch {
            c: vec![[0.0; LANES]; d.n],
            f: vec![[0.0; LANES]; d.l],
            beta: vec![[0.0; LANES]; d.l],
            one: vec![0.0; d.l],
        }
    }
}

/// Deconvolves `active` ≤ [`LANES`] voxels at once: `c(lane, t)` is a voxel's tissue curve.
/// The residues are left in the scratch (`f[i][lane]`).
pub fn block(
    d: &Deconvolution,
    active: usize,
    c: impl Fn(usize, usize) -> f64,
    scratch: &mut Scratch,
) -> [Residue; LANES] {
    let mut valid = [false; LANES];
    valid[..active].fill(true);
    for (t, ct) in scratch.c.iter_mut().enumerate() {
        for (j, x) in ct.iter_mut().enumerate().take(active) {
            *x = c(j, t);
            valid[j] &= x.is_finite();
        }
    }
    // An invalid or unused lane computes on zeros and is reported invalid.
    for ct in scratch.c.iter_mut() {
        for j in 0..LANES {
            if !valid[j] {
                ct[j] = 0.0;
            }
        }
    }
    let components = search(d, scratch);
    let mut out = [Residue::INVALID; LANES];
    for j in 0..LANES {
        if !valid[j] {
            scratch.f.iter_mut().for_each(|x| x[j] = f64::NAN);
            continue;
        }
        for (x, y) in scratch.one.iter_mut().zip(&scratch.f) {
            *x = y[j];
        }
        let (mut argmax, mut peak) = (0, f64::MIN);
        for (k, &x) in scratch.one.iter().enumerate() {
            if x > peak {
                peak = x;
                argmax = k;
            }
        }
        out[j] = Residue {
            peak,
            argmax,
            oi: oscillation_index(&scratch.one),
            components: components[j],
        };
    }
    out
}

/// The projection and, for oSVD, the truncation search, for every lane; leaves the chosen
/// residues in `scratch.f` and returns the components used.
///
/// oSVD adds components from the largest σ down. After each one, a single pass over the residue
/// updates it and takes its maximum and the sum of its absolute second differences, so the
/// oscillation index costs no pass of its own; the pass keeps the last number of components
/// whose OI meets the target (the most, as raising P until OI falls below the target finds).
/// The chosen residue is then summed again with exactly the same operations, so it equals the
/// one tested bit for bit without copying a residue at every step.
pub(super) fn search(d: &Deconvolution, scratch: &mut Scratch) -> [usize; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { search_avx2(d, scratch) };
    }
    search_lanes(d, scratch)
}

/// [`search_lanes`] compiled for AVX2 and FMA, with its inner pass written in intrinsics
/// ([`pass_avx2`]): four f64 lanes per instruction instead of two, and the fused multiply-adds
/// in hardware. The arithmetic is the same operations in the same
/// order, and a fused multiply-add rounds once wherever it runs, so the maps are the same bit
/// for bit on every CPU (one without FMA computes it in software, slowly).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn search_avx2(d: &Deconvolution, scratch: &mut Scratch) -> [usize; LANES] {
    search_with(d, scratch, |f, b, v| pass_avx2(f, b, v))
}

/// One step of the oSVD search: adds component `b·v` to the residue `f` and returns its
/// maximum and the sum of its absolute second differences, per lane, in one pass.
/// The first two samples have no second difference; after them, each second difference is
/// the change of the first difference.
#[inline(always)]
pub(super) fn pass(f: &mut [Lanes], b: &Lanes, vk: &[f64]) -> (Lanes, Lanes) {
    let b = *b;
    let mut max = [f64::MIN; LANES];
    let mut sum = [0.0; LANES];
    let f0 = axpy(&mut f[0], b, vk[0]);
    let mut prev = axpy(&mut f[1], b, vk[1]);
    let mut d1 = [0.0; LANES];
    for j in 0..LANES {
        max[j] = if f0[j] > prev[j] { f0[j] } else { prev[j] };
        d1[j] = prev[j] - f0[j];
    }
    for (fi, &vi) in f[2..].iter_mut().zip(&vk[2..]) {
        let x = axpy(fi, b, vi);
        for j in 0..LANES {
            max[j] = if x[j] > max[j] { x[j] } else { max[j] };
            let step = x[j] - prev[j];
            sum[j] += (step - d1[j]).abs();
            d1[j] = step;
        }
        prev = x;
    }
    (max, sum)
}

/// [`pass`] written with AVX2 and FMA intrinsics: the same operations in the same order (so the
/// same bits), two samples per turn so that no register is copied between turns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) fn pass_avx2(f: &mut [Lanes], b: &Lanes, vk: &[f64]) -> (Lanes, Lanes) {
    use std::arch::x86_64::*;
    const _: () = assert!(LANES == 8);
    let l = f.len().min(vk.len());
    assert!(l >= 2);
    let p = f.as_mut_ptr() as *mut f64;
    // SAFETY: every pointer below is within `f` (l rows of 8 f64) or `b`; unaligned loads.
    unsafe {
        let (ba, bb) = (
            _mm256_loadu_pd(b.as_ptr()),
            _mm256_loadu_pd(b.as_ptr().add(4)),
        );
        let sign = _mm256_set1_pd(-0.0);
        let step = |i: usize| -> (__m256d, __m256d) {
            let v = _mm256_set1_pd(*vk.get_unchecked(i));
            let (pa, pb) = (p.add(8 * i), p.add(8 * i + 4));
            let xa = _mm256_fmadd_pd(ba, v, _mm256_loadu_pd(pa));
            let xb = _mm256_fmadd_pd(bb, v, _mm256_loadu_pd(pb));
            _mm256_storeu_pd(pa, xa);
            _mm256_storeu_pd(pb, xb);
            (xa, xb)
        };
        let (f0a, f0b) = step(0);
        let (mut pa, mut pb) = step(1);
        let (mut ma, mut mb) = (_mm256_max_pd(f0a, pa), _mm256_max_pd(f0b, pb));
        let (mut da, mut db) = (_mm256_sub_pd(pa, f0a), _mm256_sub_pd(pb, f0b));
        let (mut sa, mut sb) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        // One sample's share of the OI: the maximum, and |change of the first difference|
        // added to the sum; returns the sample's first difference.
        let oi = |x: __m256d, prev: __m256d, d1: __m256d, m: &mut __m256d, s: &mut __m256d| {
            *m = _mm256_max_pd(x, *m);
            let t = _mm256_sub_pd(x, prev);
            *s = _mm256_add_pd(*s, _mm256_andnot_pd(sign, _mm256_sub_pd(t, d1)));
            t
        };
        let mut i = 2;
        while i + 1 < l {
            let (xa, xb) = step(i);
            let (ta, tb) = (
                oi(xa, pa, da, &mut ma, &mut sa),
                oi(xb, pb, db, &mut mb, &mut sb),
            );
            let (ya, yb) = step(i + 1);
            (da, db) = (
                oi(ya, xa, ta, &mut ma, &mut sa),
                oi(yb, xb, tb, &mut mb, &mut sb),
            );
            (pa, pb) = (ya, yb);
            i += 2;
        }
        if i < l {
            let (xa, xb) = step(i);
            oi(xa, pa, da, &mut ma, &mut sa);
            oi(xb, pb, db, &mut mb, &mut sb);
        }
        let (mut max, mut sum) = ([0.0; LANES], [0.0; LANES]);
        _mm256_storeu_pd(max.as_mut_ptr(), ma);
        _mm256_storeu_pd(max.as_mut_ptr().add(4), mb);
        _mm256_storeu_pd(sum.as_mut_ptr(), sa);
        _mm256_storeu_pd(sum.as_mut_ptr().add(4), sb);
        (max, sum)
    }
}

/// `f += b·v` in every lane, as one fused multiply-add (one rounding); returns the new `f`.
#[inline(always)]
fn axpy(f: &mut Lanes, b: Lanes, v: f64) -> Lanes {
    for j in 0..LANES {
        f[j] = b[j].mul_add(v, f[j]);
    }
    *f
}

pub(super) fn search_lanes(d: &Deconvolution, scratch: &mut Scratch) -> [usize; LANES] {
    search_with(d, scratch, pass)
}

#[inline(always)]
fn search_with(
    d: &Deconvolution,
    scratch: &mut Scratch,
    pass: impl Fn(&mut [Lanes], &Lanes, &[f64]) -> (Lanes, Lanes),
) -> [usize; LANES] {
    let l = d.l;
    let Scratch { c, f, beta, .. } = scratch;
    // The tissue curve is zero past its N samples: the projection stops there. Four components
    // at a time: four independent chains of fused multiply-adds instead of one, each summed in
    // the same order as alone.
    let mut k = 0;
    while k < d.k_max {
        let m = CHAINS.min(d.k_max - k);
        let mut acc = [[0.0; LANES]; CHAINS];
        if m == CHAINS {
            for (t, ct) in c.iter().enumerate() {
                for (q, a) in acc.iter_mut().enumerate() {
                    axpy(a, *ct, d.u[(k + q) * l + t]);
                }
            }
        } else {
            for (t, ct) in c.iter().enumerate() {
                for (q, a) in acc.iter_mut().enumerate().take(m) {
                    axpy(a, *ct, d.u[(k + q) * l + t]);
                }
            }
        }
        for (q, a) in acc.iter().enumerate().take(m) {
            for j in 0..LANES {
                beta[k + q][j] = d.weights[k + q] * a[j];
            }
        }
        k += m;
    }
    let mut used = [d.k_max; LANES];
    if let Method::Osvd { oi_target } = d.method {
        used = [1; LANES];
        f.fill([0.0; LANES]);
        for k in 0..d.k_max {
            let (max, sum) = pass(f, &beta[k], &d.v[k * l..(k + 1) * l]);
            for j in 0..LANES {
                let oi = if max[j] > 0.0 {
                    sum[j] / l as f64 / max[j]
                } else {
                    f32::MAX as f64
                };
                if k > 0 && oi <= oi_target {
                    used[j] = k + 1;
                }
            }
        }
    }
    // The residue with each lane's components, in the order the search added them.
    // Sample by sample, with the sum over components in registers (a lane's unused components
    // weigh 0, which adds exactly nothing).
    let upto = used.iter().copied().max().unwrap_or(0);
    for (k, b) in beta.iter_mut().enumerate().take(upto) {
        for j in 0..LANES {
            if k >= used[j] {
                b[j] = 0.0;
            }
        }
    }
    // Four samples at a time, for four independent chains.
    let mut i = 0;
    while i < l {
        let m = CHAINS.min(l - i);
        let mut acc = [[0.0; LANES]; CHAINS];
        if m == CHAINS {
            for (k, b) in beta.iter().enumerate().take(upto) {
                for (q, a) in acc.iter_mut().enumerate() {
                    axpy(a, *b, d.v[k * l + i + q]);
                }
            }
        } else {
            for (k, b) in beta.iter().enumerate().take(upto) {
                for (q, a) in acc.iter_mut().enumerate().take(m) {
                    axpy(a, *b, d.v[k * l + i + q]);
                }
            }
        }
        f[i..i + m].copy_from_slice(&acc[..m]);
        i += m;
    }
    used
}

/// Independent sums interleaved by the projection and the final residue (a fused multiply-add
/// waits four cycles for its result; four chains keep the units busy).
pub(super) const CHAINS: usize = 4;
