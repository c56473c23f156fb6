//! Arterial input function (METHODS §4): from a user mask, or chosen automatically in the
//! manner of Mouridsen et al. (NeuroImage 2006): arterial voxels have a large area, a smooth
//! curve, and an early, narrow bolus; clustering the area-normalised curves separates them
//! from tissue and veins.
//!
//! Automatic rule: (1) candidates are voxels whose area under ΔR2* after the baseline is in
//! the top 10%, less those that peak more than [`LATE_FRAMES`] frames after the earliest tenth of
//! them (veins: late, and in whole blood larger than a partial-volume artery); (2) the roughest
//! 25% of them (Σ(second difference)² / Σ C²) are dropped;
//! (3) k-means (k = 5) on the area-normalised curves, keeping the cluster with the smallest
//! first moment (earliest, narrowest), then once more within that cluster while it keeps at
//! least `keep` voxels; (4) the `keep`
//! voxels of the final cluster with the highest peaks form the AIF (their mean curve).

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct AifRules {
    pub area_quantile: f64,
    pub drop_roughest: f64,
    pub clusters: usize,
    pub keep: usize,
}

impl Default for AifRules {
    fn default() -> Self {
        AifRules {
            area_quantile: 0.9,
            drop_roughest: 0.25,
            clusters: 5,
            keep: 10,
        }
    }
}

/// Frames after the earliest candidates' peak past which a candidate is too late to be arterial.
pub const LATE_FRAMES: usize = 2;

/// The AIF and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct AifSelection {
    /// Indices (into the voxel list given) of the voxels averaged.
    pub voxels: Vec<usize>,
    /// Mean ΔR2* (s⁻¹) of those voxels, per frame.
    pub curve: Vec<f64>,
    /// Voxels that passed the area rule.
    pub candidates: usize,
    pub rule: String,
    /// For a venous output function that rescaled the AIF: its partial-volume scale and how it
    /// was measured (`models::vof_scale`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vof_scale: Option<crate::models::vof_scale::VofScale>,
}

/// What [`select`] and [`select_vof`] read of every voxel's curve, in one pass ([`scan`]);
/// made once, it serves both.
#[derive(Debug, Clone, Copy)]
pub struct VoxelScan {
    /// Every sample finite.
    finite: bool,
    /// Σ max(C, 0) over the frames `post..` (f64, in frame order from −0 as `Iterator::sum`).
    area: f64,
    /// The first and the last frame of `post..` where C is largest (`f32::total_cmp`); `None`
    /// where `post..` is empty.
    first_peak: Option<usize>,
    last_peak: Option<usize>,
}

/// [`VoxelScan`] of each of the `n` voxels of the planar `curves[t * n + v]`. The curves are
/// read frame by frame over blocks of voxels on all cores: one voxel's samples lie `n` apart,
/// so reading them voxel by voxel (as before) touched a cache line per sample; here each frame's
/// row of a block is contiguous. Every sum and comparison is the per-voxel one, in frame order:
/// the same values.
pub fn scan(curves: &[f32], n: usize, nt: usize, post: usize) -> Vec<VoxelScan> {
    use rayon::prelude::*;
    const BLOCK: usize = 1024;
    let mut out = vec![
        VoxelScan {
            finite: true,
            area: -0.0,
            first_peak: None,
            last_peak: None,
        };
        n
    ];
    // `f32::total_cmp`'s order as integers (its own key): comparisons without branches, so
    // that a block's voxels are compared side by side in vector lanes.
    let key = |x: f32| {
        let b = x.to_bits() as i32;
        b ^ (((b >> 31) as u32) >> 1) as i32
    };
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(b, out)| {
        let v0 = b * BLOCK;
        let len = out.len();
        let mut finite = [true; BLOCK];
        let mut area = [-0.0f64; BLOCK];
        let (mut best, mut first, mut last) = ([0i32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        for t in 0..nt {
            let row = &curves[t * n + v0..][..len];
            for (f, &x) in finite[..len].iter_mut().zip(row) {
                *f &= x.is_finite();
            }
            if t < post {
                continue;
            }
            for (a, &x) in area[..len].iter_mut().zip(row) {
                *a += (x as f64).max(0.0);
            }
            let tt = t as u32;
            if t == post {
                for (((k, f), l), &x) in best.iter_mut().zip(&mut first).zip(&mut last).zip(row) {
                    (*k, *f, *l) = (key(x), tt, tt);
                }
                continue;
            }
            for (((k, f), l), &x) in best.iter_mut().zip(&mut first).zip(&mut last).zip(row) {
                let x = key(x);
                let (gt, eq) = (x > *k, x == *k);
                *k = if gt { x } else { *k };
                *f = if gt { tt } else { *f };
                *l = if gt || eq { tt } else { *l };
            }
        }
        for (j, s) in out.iter_mut().enumerate() {
            s.finite = finite[j];
            s.area = area[j];
            if post < nt {
                (s.first_peak, s.last_peak) = (Some(first[j] as usize), Some(last[j] as usize));
            }
        }
    });
    out
}

/// The curves of `voxels` (ascending), as f64, one after another (`[j * nt + t]`): read frame
/// by frame over blocks of voxels on all cores.
fn gather(curves: &[f32], n: usize, nt: usize, voxels: &[usize]) -> Vec<f64> {
    use rayon::prelude::*;
    const BLOCK: usize = 256;
    let mut out = vec![0.0; voxels.len() * nt];
    if nt == 0 {
        return out;
    }
    out.par_chunks_mut(BLOCK * nt)
        .zip(voxels.par_chunks(BLOCK))
        .for_each(|(out, voxels)| {
            for t in 0..nt {
                let row = &curves[t * n..(t + 1) * n];
                for (j, &v) in voxels.iter().enumerate() {
                    out[j * nt + t] = row[v] as f64;
                }
            }
        });
    out
}

/// Mean of the given voxels' curves; an error if it shows no bolus.
pub fn mean_curve(
    curves: &[f32],
    n: usize,
    nt: usize,
    voxels: &[usize],
    baseline: (usize, usize),
) -> Result<Vec<f64>, String> {
    if voxels.is_empty() {
        return Err("no AIF voxel".into());
    }
    let mut mean = vec![0.0; nt];
    for &v in voxels {
        for (t, m) in mean.iter_mut().enumerate() {
            *m += curves[t * n + v] as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= voxels.len() as f64);
    if mean.iter().any(|x| !x.is_finite()) {
        return Err("the AIF voxels hold invalid (non-positive) signal".into());
    }
    let base = &mean[baseline.0..baseline.1];
    let mu = base.iter().sum::<f64>() / base.len() as f64;
    let sd = (base.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / base.len() as f64).sqrt();
    let peak = mean[baseline.1..].iter().cloned().fold(f64::MIN, f64::max);
    if !(peak - mu > 5.0 * sd.max(1e-9) && peak > 0.0) {
        return Err(format!(
            "the AIF shows no bolus: its peak ΔR2* ({peak:.3} s⁻¹) does not rise above 5 SD of its baseline ({sd:.3} s⁻¹); choose voxels inside an artery"
        ));
    }
    Ok(mean)
}

fn first_moment(c: &[f64]) -> f64 {
    let s: f64 = c.iter().sum();
    c.iter().enumerate().map(|(t, x)| t as f64 * x).sum::<f64>() / s
}

/// Deterministic k-means on rows; returns the label of each row.
fn kmeans(rows: &[Vec<f64>], k: usize) -> Vec<usize> {
    use rayon::prelude::*;
    let k = k.min(rows.len()).max(1);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let moments: Vec<f64> = rows.iter().map(|r| first_moment(r)).collect();
    order.sort_by(|&a, &b| moments[a].total_cmp(&moments[b]));
    let mut centres: Vec<Vec<f64>> = (0..k)
        .map(|i| rows[order[i * (rows.len() - 1) / (k.max(2) - 1).max(1)]].clone())
        .collect();
    let mut labels = vec![0; rows.len()];
    for _ in 0..30 {
        // Each row's nearest centre (the first of equals), rows on all cores: each distance
        // computed once, the same sum in the same order as before.
        let changed = labels
            .par_iter_mut()
            .zip(rows.par_iter())
            .map(|(label, row)| {
                let d: Vec<f64> = centres
                    .iter()
                    .map(|c| row.iter().zip(c).map(|(x, y)| (x - y).powi(2)).sum())
                    .collect();
                let best = (0..k).min_by(|&a, &b| d[a].total_cmp(&d[b])).unwrap_or(0);
                let moved = *label != best;
                *label = best;
                moved
            })
            .reduce(|| false, |a, b| a | b);
        // Each centre the mean of its members, centres on all cores: each frame's sum taken
        // member after member from `Iterator::sum`'s start, as `sum` does (the same values),
        // reading each member's row once instead of once per frame.
        let zero = std::iter::empty::<f64>().sum::<f64>();
        let labels = &labels;
        centres.par_iter_mut().enumerate().for_each(|(c, centre)| {
            let mut sums = vec![zero; centre.len()];
            let mut count = 0usize;
            for row in rows
                .iter()
                .zip(labels)
                .filter(|(_, &l)| l == c)
                .map(|(r, _)| r)
            {
                for (s, x) in sums.iter_mut().zip(row) {
                    *s += x;
                }
                count += 1;
            }
            if count > 0 {
                for (x, s) in centre.iter_mut().zip(sums) {
                    *x = s / count as f64;
                }
            }
        });
        if !changed {
            break;
        }
    }
    labels
}

/// Chooses the AIF voxels among `n` voxels with planar ΔR2* `curves[t * n + v]`, `scans`
/// their [`scan`] from frame `baseline.1` (made once for this and [`select_vof`]).
pub fn select(
    curves: &[f32],
    n: usize,
    nt: usize,
    baseline: (usize, usize),
    rules: &AifRules,
    scans: &[VoxelScan],
) -> Result<AifSelection, String> {
    use rayon::prelude::*;
    let post = baseline.1;
    // Each voxel's area and peak frame once, in one pass on all cores (`scans`); a curve with
    // an invalid sample takes no part.
    let mut areas: Vec<f64> = scans.iter().filter(|s| s.finite).map(|s| s.area).collect();
    let none = |why: &str| {
        format!(
            "no voxel qualifies as arterial ({why}); give the arterial voxels with --aif-mask FILE (a NIfTI mask on the same grid, e.g. drawn on the middle cerebral artery)"
        )
    };
    if areas.len() < 10 {
        return Err(none(&format!(
            "only {} voxels with valid curves",
            areas.len()
        )));
    }
    // Only the quantile is needed: the element a sort would put at its rank (the same value,
    // `total_cmp` being a total order), without sorting all of them.
    let rank = ((areas.len() - 1) as f64 * rules.area_quantile) as usize;
    let threshold = *areas.select_nth_unstable_by(rank, f64::total_cmp).1;
    let candidates: Vec<usize> = (0..n)
        .filter(|&v| scans[v].finite && scans[v].area >= threshold && scans[v].area > 0.0)
        .collect();
    let n_candidates = candidates.len();
    // The AIF peaks first: candidates that peak more than `LATE_FRAMES` after the earliest
    // tenth of them are veins (late, broad; whole blood in a large vein outweighs a
    // partial-volume artery in area and in peak) or late tissue.
    // Time to peak: the first frame of the largest value (from the scan).
    let ttp = |v: usize| scans[v].first_peak.unwrap_or(post);
    let mut peaks: Vec<usize> = candidates.iter().map(|&v| ttp(v)).collect();
    // The earliest tenth's frame: only that rank is needed (the value a sort would put there).
    let tenth = peaks.len() / 10;
    let early = if tenth < peaks.len() {
        *peaks.select_nth_unstable(tenth).1
    } else {
        post
    };
    let candidates: Vec<usize> = candidates
        .into_iter()
        .filter(|&v| ttp(v) <= early + LATE_FRAMES)
        .collect();
    // Roughness: second differences against first differences, about 3 for white noise and
    // well below 1 for a smooth bolus however narrow.
    // The candidates' curves, gathered once frame by frame (the candidates ascend, so each
    // frame's reads go forward through its row) instead of voxel by voxel, `n` apart.
    let gathered = gather(curves, n, nt, &candidates);
    let curve = |v: usize| {
        let j = candidates.binary_search(&v).expect("a candidate");
        &gathered[j * nt..(j + 1) * nt]
    };
    let roughness = |v: usize| {
        let c = curve(v);
        let d1: f64 = (post.max(1)..nt).map(|t| (c[t] - c[t - 1]).powi(2)).sum();
        let d2: f64 = (post.max(2)..nt)
            .map(|t| (c[t] - 2.0 * c[t - 1] + c[t - 2]).powi(2))
            .sum();
        d2 / d1.max(f64::MIN_POSITIVE)
    };
    // Noise-like curves go: roughness above 1 (a bolus sampled over at least 1.5 frames stays
    // below 0.7), then at most the roughest quarter of what is left, but never a curve smoother
    // than 0.7: a narrow arterial bolus is rougher than tissue, not noisy.
    let mut rough: Vec<(usize, f64)> = candidates
        .par_iter()
        .map(|&v| (v, roughness(v)))
        .filter(|&(_, r)| r <= 1.0)
        .collect();
    rough.sort_by(|a, b| a.1.total_cmp(&b.1));
    let keep = ((rough.len() as f64) * (1.0 - rules.drop_roughest)).ceil() as usize;
    let mut i = keep;
    while i < rough.len() && rough[i].1 <= 0.7 {
        i += 1;
    }
    rough.truncate(i);
    let kept: Vec<usize> = rough.into_iter().map(|(v, _)| v).collect();
    if kept.len() < 3 {
        return Err(none(&format!(
            "{} candidates after the area and roughness rules",
            kept.len()
        )));
    }
    let normalised = |v: usize| {
        let c = curve(v);
        let a = scans[v].area;
        c[post..]
            .iter()
            .map(|x| x.max(0.0) / a)
            .collect::<Vec<f64>>()
    };
    let mut cluster = kept;
    for _ in 0..2 {
        if cluster.len() < 2 * rules.clusters {
            break;
        }
        let rows: Vec<Vec<f64>> = cluster.iter().map(|&v| normalised(v)).collect();
        let labels = kmeans(&rows, rules.clusters);
        let best = (0..rules.clusters)
            .filter(|c| labels.contains(c))
            .min_by(|&a, &b| {
                let fm = |c: usize| {
                    let members: Vec<f64> = rows
                        .iter()
                        .zip(&labels)
                        .filter(|(_, &l)| l == c)
                        .map(|(r, _)| first_moment(r))
                        .collect();
                    members.iter().sum::<f64>() / members.len() as f64
                };
                fm(a).total_cmp(&fm(b))
            })
            .unwrap_or(0);
        let chosen: Vec<usize> = cluster
            .iter()
            .zip(&labels)
            .filter(|(_, &l)| l == best)
            .map(|(&v, _)| v)
            .collect();
        // A cluster smaller than the voxels to keep would make a noisy AIF: stop refining.
        if chosen.len() < rules.keep.min(cluster.len()) {
            break;
        }
        cluster = chosen;
    }
    let peak = |v: usize| {
        (post..nt)
            .map(|t| curves[t * n + v])
            .fold(f32::MIN, f32::max)
    };
    cluster.sort_by(|&a, &b| peak(b).total_cmp(&peak(a)));
    cluster.truncate(rules.keep);
    let curve = mean_curve(curves, n, nt, &cluster, baseline)?;
    Ok(AifSelection {
        voxels: cluster,
        curve,
        candidates: n_candidates,
        vof_scale: None,
        rule: format!(
            "automatic (Mouridsen 2006 style): area in the top {:.0}%, peaks more than {LATE_FRAMES} frames after the earliest tenth's dropped, roughest {:.0}% dropped, k-means (k = {}) twice keeping the earliest cluster, its {} highest peaks",
            100.0 * (1.0 - rules.area_quantile),
            100.0 * rules.drop_roughest,
            rules.clusters,
            rules.keep
        ),
    })
}

/// How many voxels the automatic venous output function averages.
pub const VOF_VOXELS: usize = 5;

/// The venous output function, chosen automatically (after the practice of rescaling a
/// partial-volume AIF to a large vein such as the superior sagittal sinus; Bjørnerud & Emblem,
/// JCBFM 2010): among voxels with valid curves, outside `exclude`
/// (the AIF's), whose peak comes at least one frame after the AIF's peak frame, the
/// [`VOF_VOXELS`] with the largest area under ΔR2* after the baseline — a vein of whole blood
/// holds more agent than any voxel of tissue or of a partial-volume artery. Their mean curve.
/// `scans`: the curves' [`scan`] from frame `baseline.1`.
pub fn select_vof(
    curves: &[f32],
    n: usize,
    nt: usize,
    baseline: (usize, usize),
    aif_peak_frame: usize,
    exclude: &[usize],
    scans: &[VoxelScan],
) -> Result<AifSelection, String> {
    // Peak: the last frame of the largest value (`max_by`'s choice among equals).
    let mut scored: Vec<(usize, f64)> = scans
        .iter()
        .enumerate()
        .filter_map(|(v, s)| {
            let peak = s.last_peak.filter(|_| s.finite)?;
            (peak > aif_peak_frame && s.area > 0.0).then_some((v, s.area))
        })
        .collect();
    scored.retain(|(v, _)| !exclude.contains(v));
    // The largest areas first (ties: the lower index). Only the first VOF_VOXELS are kept:
    // they are put in front (a total order, so the same ones) and only they are sorted.
    let order = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if scored.len() > VOF_VOXELS {
        scored.select_nth_unstable_by(VOF_VOXELS, order);
    }
    scored.truncate(VOF_VOXELS);
    scored.sort_by(order);
    if scored.len() < VOF_VOXELS {
        return Err(format!(
            "only {} voxels peak after the AIF: no venous output function",
            scored.len()
        ));
    }
    let mut voxels: Vec<usize> = scored.iter().map(|(v, _)| *v).collect();
    voxels.sort_unstable();
    let curve = mean_curve(curves, n, nt, &voxels, baseline)?;
    Ok(AifSelection {
        voxels,
        curve,
        candidates: n,
        vof_scale: None,
        rule: format!("automatic: the {VOF_VOXELS} voxels with the largest ΔR2* area among those peaking after the AIF"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_narrow_high_curves_are_chosen_over_tissue() {
        let (nt, n) = (40, 400);
        let mut curves = vec![0f32; nt * n];
        for v in 0..n {
            let artery = v % 40 == 0; // 10 arteries
            let (t0, width, height) = if artery {
                (10.0, 2.0, 50.0)
            } else {
                (12.0 + (v % 3) as f64, 5.0, 5.0 + (v % 7) as f64)
            };
            for t in 0..nt {
                let tau = (t as f64 - t0).max(0.0);
                curves[t * n + v] =
                    (height * (tau / width).powi(2) * (2.0 - tau / width).exp() * 0.25) as f32;
            }
        }
        let s = select(
            &curves,
            n,
            nt,
            (2, 9),
            &AifRules::default(),
            &scan(&curves, n, nt, 9),
        )
        .unwrap();
        assert!(!s.voxels.is_empty());
        assert!(s.voxels.iter().all(|v| v % 40 == 0), "{:?}", s.voxels);
    }

    /// The one-pass scan against each voxel's own definitions (as `select` and `select_vof`
    /// computed them voxel by voxel): ties for the peak, a NaN, more voxels than one block.
    /// One voxel's curve, read sample by sample.
    fn curve_of(curves: &[f32], n: usize, nt: usize, v: usize) -> Vec<f64> {
        (0..nt).map(|t| curves[t * n + v] as f64).collect()
    }

    #[test]
    fn gathered_curves_are_each_voxels_own_read_one_by_one() {
        // More voxels than one block, some skipped, the first and the last included.
        let (nt, n) = (7, 1300);
        let curves: Vec<f32> = (0..nt * n)
            .map(|i| (i * 7919 % 997) as f32 * 0.13)
            .collect();
        let voxels: Vec<usize> = (0..n).filter(|v| v % 3 != 1 || *v == n - 1).collect();
        let g = gather(&curves, n, nt, &voxels);
        assert_eq!(g.len(), voxels.len() * nt);
        for (j, &v) in voxels.iter().enumerate() {
            assert_eq!(
                g[j * nt..(j + 1) * nt],
                curve_of(&curves, n, nt, v)[..],
                "voxel {v}"
            );
        }
        assert!(gather(&curves, n, nt, &[]).is_empty());
    }

    #[test]
    fn the_block_scan_gives_each_voxels_area_and_peaks_as_read_one_by_one() {
        let (nt, n, post) = (12, 2500, 3);
        let mut curves: Vec<f32> = (0..nt * n)
            .map(|i| ((i * 7919 % 101) as f32 - 30.0) * 0.37)
            .collect();
        curves[5 * n + 17] = f32::NAN;
        for t in [4, 8, 10] {
            curves[t * n + 40] = 1e3; // three equal peaks
        }
        let scans = scan(&curves, n, nt, post);
        for (v, s) in scans.iter().enumerate() {
            let c = curve_of(&curves, n, nt, v);
            assert_eq!(s.finite, c.iter().all(|x| x.is_finite()), "voxel {v}");
            if !s.finite {
                continue;
            }
            let area: f64 = c[post..].iter().map(|x| x.max(0.0)).sum();
            assert_eq!(s.area.to_bits(), area.to_bits(), "voxel {v}");
            let first = (post..nt).max_by(|&a, &b| c[a].total_cmp(&c[b]).then(b.cmp(&a)));
            let last = (post..nt).max_by(|&a, &b| c[a].total_cmp(&c[b]));
            assert_eq!((s.first_peak, s.last_peak), (first, last), "voxel {v}");
        }
        assert_eq!(
            (scans[40].first_peak, scans[40].last_peak),
            (Some(4), Some(10))
        );
        assert!(!scans[17].finite);
    }

    #[test]
    fn a_flat_aif_is_refused() {
        let (nt, n) = (30, 4);
        let curves = vec![0.01f32; nt * n];
        let err = mean_curve(&curves, n, nt, &[0, 1], (2, 8)).unwrap_err();
        assert!(err.contains("no bolus"), "{err}");
    }
}
