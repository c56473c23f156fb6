//! Display windows of a map: what a viewer shows first (DICOM Window Center/Width, PS3.3
//! C.11.2). Arithmetic on voxel values, so it lives here rather than in `io`, which only
//! encodes the window it is given.

/// Window (center, width) from the 1st to the 99th percentile of the finite non-zero values:
/// a few extreme voxels (vessels, edges) do not wash the map out on first display.
pub fn robust_window(values: &[f64]) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (at(0.01), at(0.99));
    let width = (hi - lo).max(hi.abs() * 1e-3).max(1e-12);
    ((lo + hi) / 2.0, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_spans_the_1st_to_99th_percentile() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        v.push(1e9); // one hot voxel does not move the window
        let (c, w) = robust_window(&v);
        let (lo, hi) = (c - w / 2.0, c + w / 2.0);
        assert!(
            (lo - 11.0).abs() <= 1.0 && (hi - 991.0).abs() <= 1.0,
            "{lo} {hi}"
        );
    }
}
