//! Automatic background mask.
//!
//! Rule (documented in README and recorded in every JSON record): Otsu's threshold
//! (Otsu, IEEE SMC 1979) on the histogram (256 bins between 0 and the 99.9th percentile) of
//! the lowest-b trace-weighted image (all finite, non-negative voxels, zeros included); a voxel
//! is foreground when its lowest-b signal is above the threshold. Background noise in magnitude images sits far
//! below tissue at b = 0, which is what makes a global threshold sufficient.

use ndarray::{Array3, ArrayView3};

/// Otsu's threshold of the finite, non-negative values. `None` when they are all equal.
pub fn otsu_threshold(values: &[f32]) -> Option<f64> {
    let mut v: Vec<f32> = values
        .iter()
        .copied()
        .filter(|x| *x >= 0.0 && x.is_finite())
        .collect();
    if v.len() < 2 {
        return None;
    }
    let at = ((v.len() - 1) as f64 * 0.999) as usize;
    let lo = 0.0f64;
    let hi = *v.select_nth_unstable_by(at, f32::total_cmp).1 as f64;
    if hi <= lo {
        return None;
    }
    const BINS: usize = 256;
    let width = (hi - lo) / BINS as f64;
    let mut hist = [0u64; BINS];
    for &x in &v {
        let bin = (((x as f64 - lo) / width) as usize).min(BINS - 1);
        hist[bin] += 1;
    }
    let total = v.len() as f64;
    let sum_all: f64 = (0..BINS).map(|i| i as f64 * hist[i] as f64).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0.0, 0.0, -1.0, 0usize);
    for (t, &h) in hist.iter().enumerate() {
        w0 += h as f64;
        sum0 += t as f64 * h as f64;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum_all - sum0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    Some(lo + (best_t as f64 + 1.0) * width)
}

/// Foreground mask of a b = 0 (lowest-b) image, and the threshold used.
pub fn background_mask(lowest_b: ArrayView3<f32>) -> (Array3<bool>, f64) {
    let values: Vec<f32> = lowest_b.iter().copied().collect();
    let threshold = otsu_threshold(&values).unwrap_or(0.0);
    (lowest_b.mapv(|x| x as f64 > threshold), threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_separates_noise_from_tissue() {
        let mut v = vec![];
        for i in 0..1000 {
            v.push(5.0 + (i % 10) as f32); // background 5..14
        }
        for i in 0..500 {
            v.push(400.0 + (i % 50) as f32); // tissue 400..449
        }
        let t = otsu_threshold(&v).unwrap();
        assert!(t > 14.0 && t < 400.0, "threshold {t}");
    }

    #[test]
    fn an_all_zero_image_gives_no_threshold() {
        assert_eq!(otsu_threshold(&[0.0; 10]), None);
    }
}
