//! The coarse search of [`super::fit_cpu`] by branch and bound (Lawler & Wood, Operations
//! Research 14:699, 1966): a cheap bound on every atom's score from a truncated expansion of
//! the dictionary, then the exact projection of only those atoms the bound cannot rule out.
//! The winner is the one [`coarse_best`] finds, bit for bit.
//!
//! The bound. Let V be an orthonormal basis of the r leading right singular vectors of the
//! coarse atoms (the truncated SVD: Eckart & Young, Psychometrika 1:211, 1936), and for atom q̂
//! its coefficients α = Vᵀq̂ and residual d = q̂ − Vα, |d| = e. For a curve c, with z = Vᵀc and
//! c⊥ = c − VVᵀc (|c⊥|² = |c|² − |z|²),
//!
//! ```text
//! q̂·c = α·z + d·c⊥,   so   |q̂·c − α·z| ≤ e·|c⊥|.
//! ```
//!
//! The score w·p·|p| − penalty[a] rises with p (w > 0), and so does its floating-point value
//! (each rounding is monotone), so with ε ≥ e·|c⊥| plus every rounding error of both sides,
//! score(α·z − ε) ≤ score(q̂·c) ≤ score(α·z + ε). Let L be the largest lower bound over the
//! atoms: the best score is ≥ L, so an atom whose upper bound is below L scores strictly below
//! the best and can be neither the best nor tied with it. The others (the survivors) are
//! projected exactly, by the same sum as [`dot`] (in sample order from −0, no fused
//! multiply-add), and ranked in the same order (MTT-major) by the same strict comparison from
//! the same start, so the first best atom is the full search's, with the same score and
//! projection.
//!
//! The rounding margin: q̂·c and α·z are each computed within ≈ N·2⁻⁵³·|c| (N ≤ a few hundred
//! frames), V is orthonormal and d ⊥ V to ≈ 10⁻¹⁵ (checked when the bound is built: above
//! 10⁻¹⁰ the bound is not used), and |c⊥|² from |c|² − |z|² is uncertain by ≈ 10⁻¹⁵·|c|²;
//! the margin 10⁻⁹·|c| (and 10⁻¹²·|c|² inside |c⊥|²) covers these a million times over. A
//! curve whose |c|² is not finite or is below 10⁻²⁰⁰ (where products underflow and the errors
//! are no longer relative) is searched in full.

use super::*;

/// Basis vectors of the truncated expansion. Measured on the benchmark phantom (BENCHMARKS.md,
/// tenth session): fewer leave more survivors, more cost more per atom than they prune.
pub(super) const RANK: usize = 12;
/// Relative margin on each bound for rounding (see the module's documentation).
const MARGIN: f64 = 1e-9;
/// Below this |c|², or where it is not finite, a curve is searched in full.
const TINY: f64 = 1e-200;

/// The coarse grid's atoms with their truncated expansion: built once per model.
pub(super) struct CoarseBound {
    n: usize,
    /// The coarse atoms in [`coarse_best`]'s order (MTT-major).
    atoms: Vec<(usize, usize)>,
    /// Their rows of n samples, contiguous.
    rows: Vec<f64>,
    /// The basis, `RANK` rows of n (zeros past the rank when the atoms span fewer).
    basis: Vec<f64>,
    /// α of atom q at `coef[q * RANK + k]`.
    coef: Vec<f64>,
    /// e of each atom, rounded up generously.
    resid: Vec<f64>,
    /// The prior's cost of each atom's MTT.
    penalty: Vec<f64>,
    /// False where the basis failed the orthonormality check: every curve is searched in full.
    usable: bool,
}

impl CoarseBound {
    pub(super) fn new(m: &ResidueModel) -> Self {
        let n = m.n;
        let atoms: Vec<(usize, usize)> = (0..m.mtt.len())
            .step_by(COARSE)
            .flat_map(|a| (0..m.delays()).step_by(COARSE).map(move |b| (a, b)))
            .collect();
        let rows: Vec<f64> = atoms
            .iter()
            .flat_map(|&(a, b)| m.atom(a, b).to_vec())
            .collect();
        let k = atoms.len();
        let svd = nalgebra::DMatrix::from_row_slice(k, n, &rows).svd(false, true);
        let mut basis = vec![0.0; RANK * n];
        let mut usable = false;
        if let Some(vt) = svd.v_t {
            let r = RANK.min(vt.nrows());
            for i in 0..r {
                for t in 0..n {
                    basis[i * n + t] = vt[(i, t)];
                }
            }
            usable = vt.iter().all(|x| x.is_finite());
        }
        let mut coef = vec![0.0; k * RANK];
        let mut resid = vec![0.0; k];
        let mut defect = 0.0f64;
        for i in 0..RANK {
            for j in 0..RANK {
                let g = dot(&basis[i * n..][..n], &basis[j * n..][..n]);
                let want = if i == j && basis[i * n..][..n].iter().any(|&x| x != 0.0) {
                    1.0
                } else {
                    0.0
                };
                defect = defect.max((g - want).abs());
            }
        }
        let mut d = vec![0.0; n];
        for q in 0..k {
            let row = &rows[q * n..][..n];
            let alpha = &mut coef[q * RANK..][..RANK];
            for (i, x) in alpha.iter_mut().enumerate() {
                *x = dot(&basis[i * n..][..n], row);
            }
            d.copy_from_slice(row);
            for (i, &x) in alpha.iter().enumerate() {
                for (dt, &v) in d.iter_mut().zip(&basis[i * n..][..n]) {
                    *dt -= x * v;
                }
            }
            // d ⊥ V (to rounding), checked; e rounded up well past its own rounding.
            for i in 0..RANK {
                defect = defect.max(dot(&basis[i * n..][..n], &d).abs());
            }
            resid[q] = dot(&d, &d).sqrt() * (1.0 + 1e-9) + 1e-12;
        }
        CoarseBound {
            n,
            penalty: atoms.iter().map(|&(a, _)| m.penalty[a]).collect(),
            atoms,
            rows,
            basis,
            coef,
            resid,
            usable: usable && defect < 1e-10,
        }
    }
}

/// [`coarse_best`] of every lane of `c` (`c[t][lane]`, weights `w`) by branch and bound,
/// with AVX2 where the CPU has it (the same bits either way). Also returns the number of
/// atoms the bound kept, summed over the lanes, and the number projected exactly (those kept in
/// any lane, each projected in all of them).
pub(super) fn coarse_pruned(
    bound: &CoarseBound,
    c: &[Lanes],
    w: &Lanes,
) -> ([Best; LANES], (usize, usize)) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); the function reads only through
        // slices (no raw pointers), so this is its only requirement.
        return unsafe { coarse_pruned_avx2(bound, c, w) };
    }
    coarse_pruned_with(bound, c, w)
}

/// [`coarse_pruned_with`] compiled for AVX2 (the bound's arithmetic across the lanes then
/// vectorises four to an instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn coarse_pruned_avx2(
    bound: &CoarseBound,
    c: &[Lanes],
    w: &Lanes,
) -> ([Best; LANES], (usize, usize)) {
    coarse_pruned_with(bound, c, w)
}

/// `z = Vᵀc` of each lane, its |c|², and per lane the margin ε's parts: (|c⊥|, 10⁻⁹·|c|), and
/// whether the lane is searched in full.
#[inline(always)]
fn expand(b: &CoarseBound, c: &[Lanes]) -> ([Lanes; RANK], Lanes, Lanes, [bool; LANES]) {
    let n = b.n;
    assert_eq!(c.len(), n, "one curve sample per frame");
    let mut z = [[0.0; LANES]; RANK];
    for (k, zk) in z.iter_mut().enumerate() {
        let v = &b.basis[k * n..][..n];
        for (ct, &x) in c.iter().zip(v) {
            for j in 0..LANES {
                zk[j] += x * ct[j];
            }
        }
    }
    let mut cc = [0.0; LANES];
    for ct in c {
        for j in 0..LANES {
            cc[j] += ct[j] * ct[j];
        }
    }
    let mut zz = [0.0; LANES];
    for zk in &z {
        for j in 0..LANES {
            zz[j] += zk[j] * zk[j];
        }
    }
    let full: [bool; LANES] =
        std::array::from_fn(|j| !(b.usable && cc[j] >= TINY && cc[j] <= f64::MAX));
    let perp = std::array::from_fn(|j| ((cc[j] - zz[j]).max(0.0) + 1e-12 * cc[j]).sqrt());
    let margin = std::array::from_fn(|j| MARGIN * cc[j].sqrt() + 1e-290);
    (z, perp, margin, full)
}

#[inline(always)]
pub(super) fn coarse_pruned_with(
    b: &CoarseBound,
    c: &[Lanes],
    w: &Lanes,
) -> ([Best; LANES], (usize, usize)) {
    let (n, k) = (b.n, b.atoms.len());
    let (z, perp, margin, full) = expand(b, c);
    // Pass 1: every atom's bounds; the largest lower bound L of each lane, and the upper
    // bounds kept for pass 2.
    let mut upper = vec![[0.0; LANES]; k];
    let mut low = [f64::NEG_INFINITY; LANES];
    for (q, up) in upper.iter_mut().enumerate() {
        let alpha = &b.coef[q * RANK..][..RANK];
        // α·z in four partial sums (any order will do for a bound; this one keeps the
        // additions' chain short).
        let mut part = [[-0.0; LANES]; 4];
        for (i, (zk, &x)) in z.iter().zip(alpha).enumerate() {
            for j in 0..LANES {
                part[i % 4][j] += x * zk[j];
            }
        }
        let p: Lanes =
            std::array::from_fn(|j| (part[0][j] + part[1][j]) + (part[2][j] + part[3][j]));
        let (e, pen) = (b.resid[q], b.penalty[q]);
        for j in 0..LANES {
            let eps = e * perp[j] + margin[j];
            let (lo, hi) = (p[j] - eps, p[j] + eps);
            let s_lo = w[j] * lo * lo.abs() - pen;
            up[j] = w[j] * hi * hi.abs() - pen;
            // (`max`, not a comparison: that compiles to a masked store to memory.)
            low[j] = low[j].max(s_lo);
        }
    }
    // Pass 2: the atoms that survive in any lane (all of them where a lane is searched in
    // full), projected exactly in every lane side by side and ranked as `coarse_best` ranks.
    // An atom ruled out in a lane scores there strictly below that lane's best, so ranking it
    // changes nothing.
    let any_full = full.iter().any(|&f| f);
    let mut kept = 0;
    let survivors: Vec<usize> = (0..k)
        .filter(|&q| {
            let lanes = (0..LANES).fold(0, |s, j| s + (upper[q][j] >= low[j]) as usize);
            kept += lanes;
            any_full || lanes > 0
        })
        .collect();
    let mut best = [(0, 0, f64::MIN, 0.0); LANES];
    for group in survivors.chunks(CHAINS) {
        // A short last group repeats its last atom: a copy scores what the atom scored, and
        // ties keep the first.
        let rows: [&[f64]; CHAINS] = std::array::from_fn(|i| {
            let q = group[i.min(group.len() - 1)];
            &b.rows[q * n..][..n]
        });
        // From −0, in sample order, as `dot` sums (the same bits).
        let mut acc = [[-0.0; LANES]; CHAINS];
        for (t, ct) in c.iter().enumerate() {
            for (q, row) in acc.iter_mut().zip(&rows) {
                let x = row[t];
                for j in 0..LANES {
                    q[j] += x * ct[j];
                }
            }
        }
        for (&q, p) in group.iter().zip(&acc) {
            let pen = b.penalty[q];
            for j in 0..LANES {
                let s = w[j] * p[j] * p[j].abs() - pen;
                if s > best[j].2 {
                    let (a, bb) = b.atoms[q];
                    best[j] = (a, bb, s, p[j]);
                }
            }
        }
    }
    (best, (kept, survivors.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random number in [−1, 1) (a 64-bit LCG).
    fn noise(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// A gamma-variate AIF (α = 3, β = 1.5 s, arrival 10 s) sampled every `dt` s.
    fn model(n: usize, dt: f64) -> ResidueModel {
        let ca: Vec<f64> = (0..n)
            .map(|i| {
                let tau = i as f64 * dt - 10.0;
                if tau <= 0.0 {
                    0.0
                } else {
                    100.0 * tau.powi(3) * (-tau / 1.5).exp()
                }
            })
            .collect();
        ResidueModel::new(&ca, dt).unwrap()
    }

    /// Curves that test the bound: noisy atoms (flows, MTTs and delays across the grid, with
    /// leakage), near-ties (the mean of two neighbouring atoms, where the two scores agree to
    /// rounding), noise alone, a zero curve and one of −0, and scales from 10⁻¹²⁰ (below the
    /// bound's range: searched in full) through 10⁻⁹⁰ and 10⁹⁰ to 10¹⁶⁰ (|c|² overflows: in
    /// full).
    fn curves(m: &ResidueModel, seed: u64) -> Vec<Vec<f64>> {
        let (n, na, nb) = (m.n, m.mtt.len(), m.delays());
        let mut state = seed;
        let mut list = Vec::new();
        for k in 0..40 {
            let (a, b) = ((k * 13 + 5) % na, (k * 29 + 3) % nb);
            let (q, level) = (m.atom(a, b), [0.0, 1e-6, 0.005, 0.02, 0.1][k % 5]);
            let k2 = (k as f64 - 20.0) * 1e-5;
            list.push(
                (0..n)
                    .map(|t| q[t] - k2 * m.cumulative[t] + level * noise(&mut state))
                    .collect(),
            );
            if a + 1 < na && b + 1 < nb {
                let (r, s) = (m.atom(a + 1, b), m.atom(a, b + 1));
                list.push((0..n).map(|t| 0.5 * (q[t] + r[t])).collect());
                list.push((0..n).map(|t| 0.5 * (q[t] + s[t])).collect());
            }
        }
        for _ in 0..6 {
            list.push((0..n).map(|_| noise(&mut state)).collect());
        }
        list.push(vec![0.0; n]);
        list.push(vec![-0.0; n]);
        let base = list[3].clone();
        for scale in [1e-120, 1e-90, 1e-30, 1e30, 1e90, 1e160] {
            list.push(base.iter().map(|x| x * scale).collect());
        }
        list
    }

    /// The pruned coarse search (portable, dispatched and AVX2) returns the full search's
    /// best (`coarse_best`, the oracle) bit for bit, on curves built to find a hole in the bound,
    /// unweighted and weighted by the noise (with the prior on MTT); and on curves the fit meets
    /// (noisy atoms) it projects only a few of the 464 atoms exactly.
    #[test]
    fn the_pruned_coarse_search_equals_the_full_search() {
        for (n, dt) in [(60, 1.5), (25, 2.0), (120, 0.8)] {
            let base = model(n, dt);
            for m in [base.clone(), base.with_noise((0, 6))] {
                let bound = CoarseBound::new(&m);
                assert!(bound.usable, "n {n}");
                let all = curves(&m, n as u64);
                let bits = |b: &Best| (b.0, b.1, b.2.to_bits(), b.3.to_bits());
                for (i, block) in all.chunks(LANES).enumerate() {
                    let curve = |j: usize| block.get(j).cloned().unwrap_or_else(|| vec![0.0; n]);
                    let lanes: Vec<Lanes> = (0..n)
                        .map(|t| std::array::from_fn(|j| curve(j)[t]))
                        .collect();
                    let w: Lanes = std::array::from_fn(|j| weight(&m, &curve(j)));
                    let mut got = vec![("portable", coarse_pruned_with(&bound, &lanes, &w))];
                    got.push(("dispatched", coarse_pruned(&bound, &lanes, &w)));
                    #[cfg(target_arch = "x86_64")]
                    if std::is_x86_feature_detected!("avx2") {
                        // SAFETY: the CPU has AVX2 (checked just above).
                        got.push(("AVX2", unsafe { coarse_pruned_avx2(&bound, &lanes, &w) }));
                    }
                    for (what, (g, _)) in &got {
                        for j in 0..LANES {
                            let want = coarse_best(&m, &curve(j), w[j]);
                            assert_eq!(
                                bits(&g[j]),
                                bits(&want),
                                "n {n}, {what}, block {i} lane {j}"
                            );
                        }
                    }
                }
                // The first 40-odd curves are noisy atoms (and their near-ties): pruned well.
                let lanes: Vec<Lanes> = (0..n)
                    .map(|t| std::array::from_fn(|j| all[3 * j][t]))
                    .collect();
                let w: Lanes = std::array::from_fn(|j| weight(&m, &all[3 * j]));
                let (_, (kept, _)) = coarse_pruned(&bound, &lanes, &w);
                assert!(
                    kept < LANES * 464 / 4,
                    "n {n}: {kept} atoms kept in {LANES} lanes"
                );
            }
        }
    }
}
