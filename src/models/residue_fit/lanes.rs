//! The CPU fit's vectorised fine pass ([`super::fit_cpu`]): the fine search of one voxel's
//! neighbourhood eight delays at a time, with an AVX2 path and a portable one, the same
//! products and sums in the same order as the per-voxel search ([`super::fit_voxel`]), so the
//! same bits. (The coarse search of [`super::LANES`] voxels side by side: `prune.rs`.)

use rayon::prelude::*;

use super::*;

/// Side of the fine neighbourhood: the full grid's points within `COARSE − 1` of the coarse
/// best along each axis.
pub(super) const SPAN: usize = 2 * COARSE - 1;
/// Delays projected side by side in the fine pass: `SPAN` rounded up to two AVX2 vectors.
pub(super) const WIDE: usize = 8;

/// Delays per tile of [`Neighbourhoods`]: one AVX2 vector, half of `WIDE`.
pub(super) const STRIDE: usize = WIDE / 2;

/// The full grid's atoms laid out for the fine pass of one voxel, in tiles: for each MTT row
/// and each `STRIDE` delays, those delays side by side for every sample, the samples one after
/// another (`data[((r · tiles + k) · n + t) · STRIDE + l]` for padded row r = a + COARSE − 1
/// and padded delay STRIDE·k + l = b + COARSE − 1), with `COARSE − 1` rows of zeros before
/// and after each axis (and `WIDE − SPAN` more after the delays). The neighbourhood of a
/// coarse best (whose delay is a multiple of `COARSE` = `STRIDE`) is then two adjacent tiles
/// of each of `SPAN` rows, each read in one sequential sweep of n·32 bytes (in the layout
/// before, each sample's eight delays were 960 bytes from the last and straddled two cache
/// lines); each of
/// its projections is summed over t in order, as [`dot`] sums it (the same bits), `WIDE`
/// atoms to a vector instruction. The points outside the grid are projected too (onto zeros)
/// and not ranked. Other centres (tests) read the same values one by one.
pub(super) struct Neighbourhoods {
    data: Vec<f64>,
    n: usize,
    /// Delays per row, padding included: `delays + WIDE − 1`.
    width: usize,
    /// Tiles per row: `width` / `STRIDE`, rounded up.
    tiles: usize,
    /// MTT rows, padding included: `MTT_STEPS + 2·(COARSE − 1)`; `data.len() =
    /// rows·tiles·n·STRIDE`.
    rows: usize,
}

/// `K` rows of [`Neighbourhoods`] from `first` (rows `plane` apart, samples `width` apart, the
/// second four delays `half` after the first four): their `WIDE` projections on `c`, in
/// order, as two vectors of four.
///
/// # Safety
/// The CPU has AVX2, and for every row i < K and sample t < `c.len()` the four values from
/// `first + i·plane + t·width` and the four from there + `half` lie in one allocation.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn sweep<const K: usize>(
    first: *const f64,
    plane: usize,
    width: usize,
    half: usize,
    c: &[f64],
) -> (
    [std::arch::x86_64::__m256d; K],
    [std::arch::x86_64::__m256d; K],
) {
    use std::arch::x86_64::*;
    let mut lo = [_mm256_set1_pd(-0.0); K];
    let mut hi = [_mm256_set1_pd(-0.0); K];
    for (t, &x) in c.iter().enumerate() {
        let x = _mm256_set1_pd(x);
        let at = first.add(t * width);
        for i in 0..K {
            let row = at.add(i * plane);
            lo[i] = _mm256_add_pd(lo[i], _mm256_mul_pd(_mm256_loadu_pd(row), x));
            hi[i] = _mm256_add_pd(hi[i], _mm256_mul_pd(_mm256_loadu_pd(row.add(half)), x));
        }
    }
    (lo, hi)
}

impl Neighbourhoods {
    pub(super) fn new(m: &ResidueModel) -> Self {
        let (n, na, nb, pad) = (m.n, m.mtt.len(), m.delays(), COARSE - 1);
        let width = nb + WIDE - 1;
        let tiles = width.div_ceil(STRIDE);
        let rows = na + 2 * pad;
        let mut data = vec![0.0; rows * tiles * n * STRIDE];
        // One padded MTT row per task (4 MB or so in all).
        data.par_chunks_mut(tiles * n * STRIDE)
            .enumerate()
            .skip(pad)
            .take(na)
            .for_each(|(r, row)| {
                let a = r - pad;
                for (k, tile) in row.chunks_exact_mut(n * STRIDE).enumerate() {
                    for l in 0..STRIDE {
                        // Padded delay STRIDE·k + l is atom delay b (or padding).
                        let Some(b) = (STRIDE * k + l).checked_sub(pad).filter(|&b| b < nb) else {
                            continue;
                        };
                        for (t, &x) in m.atom(a, b).iter().enumerate() {
                            tile[t * STRIDE + l] = x;
                        }
                    }
                }
            });
        Neighbourhoods {
            data,
            n,
            width,
            tiles,
            rows,
        }
    }

    /// The padded atom (row `r`, delay `d`) at sample `t`.
    fn at(&self, r: usize, d: usize, t: usize) -> f64 {
        self.data[((r * self.tiles + d / STRIDE) * self.n + t) * STRIDE + d % STRIDE]
    }

    /// `atom(ca − COARSE + 1 + i, cb − COARSE + 1 + j)·c` at `[i][j]`.
    pub(super) fn dots(&self, ca: usize, cb: usize, c: &[f64]) -> [[f64; WIDE]; SPAN] {
        #[cfg(target_arch = "x86_64")]
        if cb % STRIDE == 0 && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { self.dots_avx2(ca, cb, c) };
        }
        self.dots_portable(ca, cb, c)
    }

    pub(super) fn dots_portable(&self, ca: usize, cb: usize, c: &[f64]) -> [[f64; WIDE]; SPAN] {
        // As `dots_avx2` refuses: a centre off the grid would read the next row's delays.
        assert!(ca <= self.rows - SPAN && cb <= self.width - WIDE);
        let mut acc = [[-0.0; WIDE]; SPAN];
        for (t, &x) in c[..self.n].iter().enumerate() {
            for (i, q) in acc.iter_mut().enumerate() {
                for (j, s) in q.iter_mut().enumerate() {
                    *s += self.at(ca + i, cb + j, t) * x;
                }
            }
        }
        acc
    }

    /// [`Neighbourhoods::dots_portable`] with the sums in AVX2 registers, for a centre whose
    /// delay is a multiple of `STRIDE` (the coarse grid's): the same products and additions
    /// (no fused multiply-add), so the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dots_avx2(&self, ca: usize, cb: usize, c: &[f64]) -> [[f64; WIDE]; SPAN] {
        use std::arch::x86_64::*;
        let (n, tiles) = (self.n, self.tiles);
        // In bounds: with ca ≤ rows − SPAN, cb ≤ width − WIDE and cb a multiple of STRIDE
        // (comparisons only, so no overflow can pass them; rows ≥ SPAN and width ≥ WIDE by
        // construction), tile k = cb/STRIDE ≤ (width − WIDE)/STRIDE, so k + 1 < tiles, and the
        // last value `sweep` reads, row ca + SPAN − 1, tile k + 1, sample n − 1, lane
        // STRIDE − 1, is at (((ca + SPAN − 1)·tiles + k + 1)·n + n − 1)·STRIDE + STRIDE − 1 ≤
        // rows·tiles·n·STRIDE − 1 = data.len() − 1; and `sweep` reads n samples of `c`.
        assert!(
            c.len() >= n && ca <= self.rows - SPAN && cb <= self.width - WIDE && cb % STRIDE == 0
        );
        debug_assert_eq!(self.data.len(), self.rows * tiles * n * STRIDE);
        let plane = tiles * n * STRIDE;
        let base = self
            .data
            .as_ptr()
            .add(ca * plane + cb / STRIDE * n * STRIDE);
        let mut acc = [[0.0; WIDE]; SPAN];
        // Two sweeps over the samples (rows 0–3, then 4–6), so that each sweep's sums stay in
        // registers (16 AVX2 registers: 8 or 6 sums, the sample, the product).
        // SAFETY (both sweeps): AVX2 is enabled here, and rows 0–3 and 4–6 from `base` are
        // in bounds (the assertion above).
        let (lo, hi) = sweep::<4>(base, plane, STRIDE, n * STRIDE, &c[..n]);
        for i in 0..4 {
            _mm256_storeu_pd(acc[i].as_mut_ptr(), lo[i]);
            _mm256_storeu_pd(acc[i].as_mut_ptr().add(4), hi[i]);
        }
        let (lo, hi) =
            sweep::<{ SPAN - 4 }>(base.add(4 * plane), plane, STRIDE, n * STRIDE, &c[..n]);
        for i in 0..SPAN - 4 {
            _mm256_storeu_pd(acc[4 + i].as_mut_ptr(), lo[i]);
            _mm256_storeu_pd(acc[4 + i].as_mut_ptr().add(4), hi[i]);
        }
        acc
    }

    /// [`window_best`] from these projections: the same candidates ranked in the same order.
    pub(super) fn best(&self, m: &ResidueModel, c: &[f64], w: f64, coarse: Best) -> Best {
        let (na, nb) = (m.mtt.len(), m.delays());
        let (ca, cb) = (coarse.0, coarse.1);
        let acc = self.dots(ca, cb, c);
        let mut best = coarse;
        for (i, q) in acc.iter().enumerate() {
            let a = (ca + i).wrapping_sub(COARSE - 1);
            if a >= na {
                continue;
            }
            for (j, &p) in q[..SPAN].iter().enumerate() {
                let b = (cb + j).wrapping_sub(COARSE - 1);
                if b >= nb {
                    continue;
                }
                let s = score(m, w, a, p);
                if s > best.2 {
                    best = (a, b, s, p);
                }
            }
        }
        best
    }
}
