//! rCBV normalisation (METHODS §3): CBV divided by its value in normal-appearing white matter
//! (NAWM), from a user mask, a sphere given in world coordinates, or an automatic estimate.

use ndarray::Array3;
use serde::Serialize;

use crate::volume::Geometry;

/// How the reference value is summarised over its voxels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    Mean,
    Median,
}

impl std::str::FromStr for Statistic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mean" => Ok(Statistic::Mean),
            "median" => Ok(Statistic::Median),
            o => Err(format!("unknown statistic '{o}': use mean or median")),
        }
    }
}

/// The reference value and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceValue {
    pub value: f64,
    pub statistic: Statistic,
    /// Voxels of the reference inside the brain with a finite value.
    pub voxels: usize,
}

/// The reference value of `map` over `reference ∧ brain`. Errors when the reference is empty,
/// lies mostly (over half) outside the brain mask, or has no finite value there.
pub fn reference_value(
    map: &[f32],
    reference: &[bool],
    brain: &[bool],
    statistic: Statistic,
) -> Result<ReferenceValue, String> {
    let total = reference.iter().filter(|&&r| r).count();
    if total == 0 {
        return Err("the reference region is empty (no voxel selected)".into());
    }
    let inside = reference
        .iter()
        .zip(brain)
        .filter(|(&r, &b)| r && b)
        .count();
    if 2 * inside < total {
        return Err(format!(
            "the reference region lies outside the brain: only {inside} of its {total} voxels are inside the brain mask; check that it is on the same grid and in the white matter"
        ));
    }
    let mut values: Vec<f64> = map
        .iter()
        .zip(reference.iter().zip(brain))
        .filter(|(x, (&r, &b))| r && b && x.is_finite())
        .map(|(x, _)| *x as f64)
        .collect();
    if values.is_empty() {
        return Err("the reference region holds no voxel with a valid CBV".into());
    }
    let value = match statistic {
        Statistic::Mean => values.iter().sum::<f64>() / values.len() as f64,
        Statistic::Median => {
            // The middle rank(s) a sort would give (the same values), by selection.
            let n = values.len();
            let (left, &mut mid, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
            if n % 2 == 1 {
                mid
            } else {
                let below = *left.iter().max_by(|a, b| a.total_cmp(b)).expect("n ≥ 2");
                0.5 * (below + mid)
            }
        }
    };
    if !(value > 0.0) {
        return Err(format!(
            "the reference CBV is {value}, not positive: the region holds no perfused tissue"
        ));
    }
    Ok(ReferenceValue {
        value,
        statistic,
        voxels: values.len(),
    })
}

/// The automatic NAWM estimate: brain voxels whose CBV lies within ±¼ of the interquartile
/// range of the mode of the brain's CBV histogram (100 bins over the 1st to 99th percentile,
/// smoothed over 5 bins). White matter is the largest tissue class of the slices a DSC study
/// covers, so it forms the mode; a window centred on it is unbiased by noise, where a fixed
/// percentile window would not be. Always check the mask it writes; give a mask or a sphere
/// where it does not sit in white matter.
pub fn auto_white_matter(cbv: &[f32], brain: &[bool]) -> Vec<bool> {
    let mut values: Vec<f32> = cbv
        .iter()
        .zip(brain)
        .filter(|(x, &b)| b && x.is_finite())
        .map(|(x, _)| *x)
        .collect();
    if values.len() < 10 {
        return vec![false; cbv.len()];
    }
    // Only the quantiles are needed: each rank's value as a sort would place it (the same
    // value, `total_cmp` being a total order), found by selection in O(n), not a sort.
    let last = (values.len() - 1) as f64;
    let rank = |q: f64| (last * q).round() as usize;
    let [q01, q25, q75, q99] = ranked(
        &mut values,
        [rank(0.01), rank(0.25), rank(0.75), rank(0.99)],
    )
    .map(f64::from);
    let (lo, hi) = (q01, q99);
    let iqr = q75 - q25;
    if !(hi > lo) {
        return vec![false; cbv.len()];
    }
    const BINS: usize = 100;
    let width = (hi - lo) / BINS as f64;
    let mut hist = [0f64; BINS];
    for &x in &values {
        let x = x as f64;
        if x >= lo && x <= hi {
            hist[(((x - lo) / width) as usize).min(BINS - 1)] += 1.0;
        }
    }
    let smooth: Vec<f64> = (0..BINS)
        .map(|i| {
            (i.saturating_sub(2)..(i + 3).min(BINS))
                .map(|k| hist[k])
                .sum()
        })
        .collect();
    let mode_bin = (0..BINS)
        .max_by(|&a, &b| smooth[a].total_cmp(&smooth[b]))
        .unwrap_or(0);
    let mode = lo + (mode_bin as f64 + 0.5) * width;
    let half = 0.25 * iqr;
    let window = |centre: f64| -> Vec<bool> {
        cbv.iter()
            .zip(brain)
            .map(|(x, &b)| b && x.is_finite() && ((*x as f64) - centre).abs() <= half)
            .collect()
    };
    let selected = window(mode);
    if selected.iter().any(|&s| s) {
        return selected;
    }
    // The window is narrower than a histogram bin: over half of the brain shares (nearly) one
    // value, as in noise-free data, and the bin centre misses it. That value is the median.
    let median = ranked(&mut values, [rank(0.5)])[0];
    window(f64::from(median))
}

/// The values at ascending `ranks` of `values` in `f32::total_cmp` order: what indexing the
/// sorted values gives (the same bits), by selection on what is left right of each rank.
/// `values` is reordered.
fn ranked<const K: usize>(values: &mut [f32], ranks: [usize; K]) -> [f32; K] {
    let mut from = 0;
    ranks.map(|r| {
        if r >= from {
            values[from..].select_nth_unstable_by(r - from, f32::total_cmp);
            from = r + 1;
        }
        values[r]
    })
}

/// Voxels whose centres lie within `radius_mm` of `centre_ras` (NIfTI world, RAS mm: what
/// FSLeyes, MRtrix and nibabel show). Shape `[z, y, x]`.
pub fn sphere_mask(g: &Geometry, centre_ras: [f64; 3], radius_mm: f64) -> Array3<bool> {
    let centre_lps = [-centre_ras[0], -centre_ras[1], centre_ras[2]];
    let [nx, ny, nz] = g.dims;
    Array3::from_shape_fn((nz, ny, nx), |(z, y, x)| {
        let p = g.index_to_lps([x as f64, y as f64, z as f64]);
        (0..3).map(|k| (p[k] - centre_lps[k]).powi(2)).sum::<f64>() <= radius_mm * radius_mm
    })
}

/// The rCBV class of each voxel (docs/methods.md §1): 1 below `low`, 3 above `high`, 2
/// between (both inclusive), 0 outside the brain or where rCBV is not finite.
pub fn rcbv_class(rcbv: &Array3<f32>, brain: &Array3<bool>, low: f64, high: f64) -> Array3<u8> {
    let mut class = Array3::<u8>::zeros(rcbv.dim());
    for ((c, &r), &b) in class.iter_mut().zip(rcbv.iter()).zip(brain.iter()) {
        if b && r.is_finite() {
            *c = if (r as f64) < low {
                1
            } else if (r as f64) > high {
                3
            } else {
                2
            };
        }
    }
    class
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcbv_classes_split_at_the_thresholds_and_leave_the_outside_at_0() {
        let r = Array3::from_shape_vec((1, 1, 6), vec![1.0, 1.5, 1.8, 2.0, 2.5, f32::NAN]).unwrap();
        let mut brain = Array3::from_elem((1, 1, 6), true);
        let got = rcbv_class(&r, &brain, 1.5, 2.0);
        assert_eq!(got.as_slice().unwrap(), &[1, 2, 2, 2, 3, 0]);
        brain[[0, 0, 0]] = false;
        assert_eq!(rcbv_class(&r, &brain, 1.5, 2.0)[[0, 0, 0]], 0);
    }

    #[test]
    fn empty_and_outside_references_are_refused() {
        let map = [1.0f32; 6];
        let brain = [true, true, true, false, false, false];
        assert!(reference_value(&map, &[false; 6], &brain, Statistic::Mean)
            .unwrap_err()
            .contains("empty"));
        let outside = [false, false, true, true, true, false];
        assert!(reference_value(&map, &outside, &brain, Statistic::Mean)
            .unwrap_err()
            .contains("outside the brain"));
    }

    #[test]
    fn median_and_mean() {
        let map = [1.0f32, 2.0, 10.0, 4.0];
        let all = [true; 4];
        assert_eq!(
            reference_value(&map, &all, &all, Statistic::Median)
                .unwrap()
                .value,
            3.0
        );
        assert_eq!(
            reference_value(&map, &all, &all, Statistic::Mean)
                .unwrap()
                .value,
            4.25
        );
    }

    #[test]
    fn sphere_in_ras_world() {
        let g = Geometry {
            dims: [10, 10, 10],
            affine_lps: [
                [-1.0, 0.0, 0.0, 0.0],
                [0.0, -1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        };
        // voxel (i, j, k) sits at RAS (i, j, k)
        let m = sphere_mask(&g, [5.0, 5.0, 5.0], 1.0);
        assert_eq!(m.iter().filter(|&&b| b).count(), 7);
        assert!(m[[5, 5, 5]] && m[[5, 5, 6]] && !m[[5, 6, 6]]);
    }

    #[test]
    fn selected_ranks_are_the_sorted_values_bit_for_bit() {
        // Irregular values with repeats and both zeros (−0 sorts before +0 in total order).
        let values: Vec<f32> = (0..1001)
            .map(|i| match i % 97 {
                0 => -0.0,
                1 => 0.0,
                _ => ((i * 7919) % 613) as f32 * 0.37 - 50.0,
            })
            .collect();
        let mut sorted = values.clone();
        sorted.sort_by(f32::total_cmp);
        let ranks = [0, 10, 10, 250, 500, 750, 990, 1000];
        let mut work = values.clone();
        let got = ranked(&mut work, ranks);
        for (r, g) in ranks.iter().zip(got) {
            assert_eq!(g.to_bits(), sorted[*r].to_bits(), "rank {r}");
        }
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_two_middle_values() {
        // Reference voxels 5, 1, 4, 2 (unsorted): median (2 + 4) / 2 = 3; odd: 5, 1, 4 → 4.
        let map = [5.0f32, 1.0, 4.0, 2.0, 100.0];
        let reference = [true, true, true, true, false];
        let brain = [true; 5];
        let even = reference_value(&map, &reference, &brain, Statistic::Median).unwrap();
        assert_eq!((even.value, even.voxels), (3.0, 4));
        let odd = [true, true, true, false, false];
        let odd = reference_value(&map, &odd, &brain, Statistic::Median).unwrap();
        assert_eq!((odd.value, odd.voxels), (4.0, 3));
    }
}
