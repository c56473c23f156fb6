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
//! Two levels. Neighbouring coarse atoms (2 × 2 on the coarse grid) form a group with mean
//! coefficients ᾱ; with ρ ≥ |α − ᾱ| over its atoms and e the largest of their residuals,
//! |q̂·c − ᾱ·z| ≤ ρ·|z| + e·|c⊥| for each of them (Cauchy–Schwarz), so one projection bounds
//! the group. L starts as the largest of the groups' lower bounds; the atoms of a group are
//! bounded one by one (raising L) only where the group's upper bound reaches L in some lane,
//! first the groups of each lane's highest upper bound, then the others in order. L stays
//! below some atom's score (a group's lower bound, with its largest prior cost, is below each
//! of its atoms'), so the argument above holds for whatever it prunes.
//!
//! The bound alone (z = Vᵀc, α·z, ᾱ·z) may use fused multiply-adds (`coarse_pruned_fma`): each
//! is then within the same few roundings of its exact value, far inside the margin. Nothing
//! else does.
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
/// Coarse atoms per group of the first level of the bound, along MTT and along the delay
/// (neighbours on the coarse grid). Measured on the benchmark phantom (BENCHMARKS.md, tenth
/// session, helper H4).
const GROUP: (usize, usize) = (2, 2);

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
    /// The groups of neighbouring atoms (the first level of the bound).
    groups: Vec<Group>,
    /// False where the basis failed the orthonormality check: every curve is searched in full.
    usable: bool,
}

/// Neighbouring coarse atoms bounded together: with ᾱ their mean coefficients, ρ ≥ |α − ᾱ|
/// and e ≥ the residual of each, |q̂·c − ᾱ·z| ≤ ρ·|z| + e·|c⊥| for every atom q̂ of the group
/// (the triangle and Cauchy–Schwarz inequalities), so one projection ᾱ·z bounds them all.
struct Group {
    /// The atoms' indices in `CoarseBound::atoms`.
    members: Vec<usize>,
    /// ᾱ.
    centre: [f64; RANK],
    /// ρ, rounded up generously.
    radius: f64,
    /// The largest e of the members.
    resid: f64,
    /// The smallest and largest prior cost of the members.
    penalty: (f64, f64),
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
        let penalty: Vec<f64> = atoms.iter().map(|&(a, _)| m.penalty[a]).collect();
        // The groups: GROUP.0 × GROUP.1 neighbours on the coarse grid.
        let cols = m.delays().div_ceil(COARSE);
        let gcols = cols.div_ceil(GROUP.1);
        let mut members: Vec<Vec<usize>> = Vec::new();
        for q in 0..k {
            let (i, j) = (q / cols, q % cols);
            let g = (i / GROUP.0) * gcols + j / GROUP.1;
            if members.len() <= g {
                members.resize(g + 1, Vec::new());
            }
            members[g].push(q);
        }
        let groups = members
            .into_iter()
            .filter(|g| !g.is_empty())
            .map(|members| {
                let mut centre = [0.0; RANK];
                for &q in &members {
                    for (c, &x) in centre.iter_mut().zip(&coef[q * RANK..][..RANK]) {
                        *c += x;
                    }
                }
                centre.iter_mut().for_each(|c| *c /= members.len() as f64);
                let radius = members
                    .iter()
                    .map(|&q| {
                        let alpha = &coef[q * RANK..][..RANK];
                        alpha
                            .iter()
                            .zip(&centre)
                            .map(|(a, c)| (a - c) * (a - c))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .fold(0.0f64, f64::max);
                let pen = |f: fn(f64, f64) -> f64, from: f64| {
                    members.iter().map(|&q| penalty[q]).fold(from, f)
                };
                Group {
                    centre,
                    radius: radius * (1.0 + 1e-9) + 1e-12,
                    resid: members.iter().map(|&q| resid[q]).fold(0.0, f64::max),
                    penalty: (
                        pen(f64::min, f64::INFINITY),
                        pen(f64::max, f64::NEG_INFINITY),
                    ),
                    members,
                }
            })
            .collect();
        CoarseBound {
            n,
            penalty,
            atoms,
            rows,
            basis,
            coef,
            resid,
            groups,
            usable: usable && defect < 1e-10,
        }
    }
}

/// [`coarse_best`] of every lane of `c` (`c[t][lane]`, weights `w`) by branch and bound,
/// with AVX2 (and FMA in the bound) where the CPU has it (the same bits every way). Also
/// returns the number of atoms the bound kept, summed over the lanes, and the number projected
/// exactly (those kept in any lane, each projected in all of them).
pub(super) fn coarse_pruned(
    bound: &CoarseBound,
    c: &[Lanes],
    w: &Lanes,
) -> ([Best; LANES], (usize, usize)) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        if std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); the function reads only
            // through slices (no raw pointers), so this is its only requirement.
            return unsafe { coarse_pruned_fma(bound, c, w) };
        }
        // SAFETY: the CPU has AVX2 (checked just above); as above.
        return unsafe { coarse_pruned_avx2(bound, c, w) };
    }
    coarse_pruned_with(bound, c, w)
}

/// The portable form of [`coarse_pruned`] (no fused multiply-add anywhere).
pub(super) fn coarse_pruned_with(
    bound: &CoarseBound,
    c: &[Lanes],
    w: &Lanes,
) -> ([Best; LANES], (usize, usize)) {
    pruned::<false>(bound, c, w)
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
    pruned::<false>(bound, c, w)
}

/// [`coarse_pruned_avx2`] with fused multiply-adds in the bound (z = Vᵀc and α·z) only: the
/// bound's value changes by far less than its margin, and the exact projections and the
/// ranking are the same operations as everywhere else (no fused multiply-add), so the same
/// bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn coarse_pruned_fma(
    bound: &CoarseBound,
    c: &[Lanes],
    w: &Lanes,
) -> ([Best; LANES], (usize, usize)) {
    pruned::<true>(bound, c, w)
}

/// `if yes { a } else { b }`, bit for bit, by masks (so that it vectorises across the lanes,
/// where a `select` becomes a branch per lane).
#[inline(always)]
fn pick(yes: bool, a: f64, b: f64) -> f64 {
    let mask = (yes as u64).wrapping_neg();
    f64::from_bits((a.to_bits() & mask) | (b.to_bits() & !mask))
}

/// acc + x·y, fused (one rounding) when `FMA`: for the bound only.
#[inline(always)]
fn madd<const FMA: bool>(x: f64, y: f64, acc: f64) -> f64 {
    if FMA {
        x.mul_add(y, acc)
    } else {
        acc + x * y
    }
}

/// `z = Vᵀc` of each lane, |z|, and per lane the margin ε's parts: (|c⊥|, 10⁻⁹·|c|), and
/// whether the lane is searched in full.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn expand<const FMA: bool>(
    b: &CoarseBound,
    c: &[Lanes],
) -> ([Lanes; RANK], Lanes, Lanes, Lanes, [bool; LANES]) {
    let n = b.n;
    assert_eq!(c.len(), n, "one curve sample per frame");
    let mut z = [[0.0; LANES]; RANK];
    for (k, zk) in z.iter_mut().enumerate() {
        let v = &b.basis[k * n..][..n];
        for (ct, &x) in c.iter().zip(v) {
            for j in 0..LANES {
                zk[j] = madd::<FMA>(x, ct[j], zk[j]);
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
    let norm = std::array::from_fn(|j| zz[j].sqrt() * (1.0 + 1e-9));
    let margin = std::array::from_fn(|j| MARGIN * cc[j].sqrt() + 1e-290);
    (z, norm, perp, margin, full)
}

/// `coef·z` for each lane (α·z or ᾱ·z), in four partial sums (any order will do for a bound;
/// this one keeps the additions' chain short).
#[inline(always)]
fn project<const FMA: bool>(coef: &[f64], z: &[Lanes; RANK]) -> Lanes {
    let mut part = [[-0.0; LANES]; 4];
    for (i, (zk, &x)) in z.iter().zip(&coef[..RANK]).enumerate() {
        for j in 0..LANES {
            part[i % 4][j] = madd::<FMA>(x, zk[j], part[i % 4][j]);
        }
    }
    std::array::from_fn(|j| (part[0][j] + part[1][j]) + (part[2][j] + part[3][j]))
}

/// For each lane, the scores' bounds of a projection within `p ± eps` (weights `w`, prior
/// costs between `pen.0` and `pen.1`): (lower, upper).
#[inline(always)]
fn scores(p: &Lanes, eps: &Lanes, w: &Lanes, pen: (f64, f64)) -> (Lanes, Lanes) {
    let mut lower = [0.0; LANES];
    let mut upper = [0.0; LANES];
    for j in 0..LANES {
        let (lo, hi) = (p[j] - eps[j], p[j] + eps[j]);
        lower[j] = w[j] * lo * lo.abs() - pen.1;
        upper[j] = w[j] * hi * hi.abs() - pen.0;
    }
    (lower, upper)
}

#[inline(always)]
fn pruned<const FMA: bool>(
    b: &CoarseBound,
    c: &[Lanes],
    w: &Lanes,
) -> ([Best; LANES], (usize, usize)) {
    let n = b.n;
    let (z, norm, perp, margin, full) = expand::<FMA>(b, c);
    // Pass 1, first level: each group's bounds; L of each lane, the largest lower bound (a
    // group's lower bound is below each of its atoms' scores).
    let mut low = [f64::NEG_INFINITY; LANES];
    let mut group_upper = Vec::with_capacity(b.groups.len());
    // Per lane, the group of the highest upper bound (as f64, so that it vectorises).
    let (mut top, mut seed) = ([f64::NEG_INFINITY; LANES], [0.0; LANES]);
    for (i, g) in b.groups.iter().enumerate() {
        let p = project::<FMA>(&g.centre, &z);
        let eps: Lanes = std::array::from_fn(|j| {
            madd::<FMA>(g.radius, norm[j], madd::<FMA>(g.resid, perp[j], margin[j]))
        });
        let (lower, upper) = scores(&p, &eps, w, g.penalty);
        for j in 0..LANES {
            // (`max`, not a comparison: that compiles to a masked store to memory.)
            low[j] = low[j].max(lower[j]);
            let better = upper[j] > top[j];
            top[j] = pick(better, upper[j], top[j]);
            seed[j] = pick(better, i as f64, seed[j]);
        }
        group_upper.push(upper);
    }
    // Second level: the atoms of each group whose upper bound reaches L in some lane (a group
    // below L in every lane holds no atom that can be the best or tie with it), their bounds
    // raising L further; first the groups of the highest upper bounds (where the best atoms
    // most likely are, so that L is high before the others are tested).
    let mut upper = Vec::with_capacity(b.atoms.len());
    let mut done = vec![false; b.groups.len()];
    let order = seed.iter().map(|&i| i as usize).chain(0..b.groups.len());
    for i in order {
        let (g, gu) = (&b.groups[i], &group_upper[i]);
        // (`!(u < L)`: a NaN bound keeps its group; all the lanes tested, without a branch
        // per lane, so that the test vectorises.)
        let reaches = (0..LANES).fold(false, |any, j| any | !(gu[j] < low[j]));
        if done[i] || !reaches {
            continue;
        }
        done[i] = true;
        for &q in &g.members {
            let p = project::<FMA>(&b.coef[q * RANK..], &z);
            let e = b.resid[q];
            let eps: Lanes = std::array::from_fn(|j| madd::<FMA>(e, perp[j], margin[j]));
            let pen = b.penalty[q];
            let (lower, up) = scores(&p, &eps, w, (pen, pen));
            for j in 0..LANES {
                low[j] = low[j].max(lower[j]);
            }
            upper.push((q, up));
        }
    }
    // Pass 2: the atoms that survive in any lane (all of them where a lane is searched in
    // full), in `coarse_best`'s order, projected exactly in every lane side by side and ranked
    // as `coarse_best` ranks. An atom ruled out in a lane scores there strictly below that
    // lane's best, so ranking it changes nothing.
    let any_full = full.iter().any(|&f| f);
    let mut kept = 0;
    let mut survivors: Vec<usize> = if any_full {
        (0..b.atoms.len()).collect()
    } else {
        upper
            .iter()
            .filter(|(_, up)| {
                let lanes = (0..LANES).fold(0, |s, j| s + (up[j] >= low[j]) as usize);
                kept += lanes;
                lanes > 0
            })
            .map(|&(q, _)| q)
            .collect()
    };
    survivors.sort_unstable();
    // The best so far of each lane as three vectors (score, projection, atom), so that the
    // ranking runs across the lanes without branches: the same strict comparisons in the same
    // order as `coarse_best`'s, from the same start ((0, 0) is the first atom).
    let (mut top, mut proj, mut at) = ([f64::MIN; LANES], [0.0; LANES], [0.0; LANES]);
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
                let better = s > top[j];
                top[j] = pick(better, s, top[j]);
                proj[j] = pick(better, p[j], proj[j]);
                at[j] = pick(better, q as f64, at[j]);
            }
        }
    }
    let best = std::array::from_fn(|j| {
        let (a, bb) = b.atoms[at[j] as usize];
        (a, bb, top[j], proj[j])
    });
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
                    #[cfg(target_arch = "x86_64")]
                    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                    {
                        // SAFETY: the CPU has AVX2 and FMA (checked just above).
                        got.push(("FMA", unsafe { coarse_pruned_fma(&bound, &lanes, &w) }));
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
