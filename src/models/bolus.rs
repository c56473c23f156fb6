//! Timing of a DSC series (METHODS §3): the sampling interval from the images' acquisition
//! times, and the baseline, bolus arrival, peak and end of the first pass from the whole-brain
//! curve.

use ndarray::Array2;
use serde::Serialize;

/// Sampling interval (s) from `[volume, slice]` acquisition times: the median interval between
/// consecutive time points of a slice. Every interval must lie within 5% (and 50 ms) of it,
/// else the error says where sampling is not uniform.
pub fn sampling_interval(times: &Array2<f64>) -> Result<f64, String> {
    let (nv, nz) = times.dim();
    if nv < 2 {
        return Err("a dynamic series needs at least two time points".into());
    }
    let mut steps = Vec::with_capacity((nv - 1) * nz);
    for z in 0..nz {
        for v in 1..nv {
            steps.push((v, z, times[[v, z]] - times[[v - 1, z]]));
        }
    }
    let mut sorted: Vec<f64> = steps.iter().map(|s| s.2).collect();
    sorted.sort_by(f64::total_cmp);
    let dt = sorted[sorted.len() / 2];
    if dt <= 0.0 {
        return Err(format!(
            "the acquisition times do not increase (median step {dt:.3} s): the time points cannot be ordered from them"
        ));
    }
    let tolerance = (0.05 * dt).max(0.05);
    if let Some(&(v, z, step)) = steps.iter().find(|s| (s.2 - dt).abs() > tolerance) {
        return Err(format!(
            "sampling is not uniform: time point {} of slice {} comes {step:.3} s after the one before, where the series samples every {dt:.3} s; paramap needs uniform sampling (re-export the series, or give --dt if the times are wrong)",
            v + 1,
            z + 1
        ));
    }
    Ok(dt)
}

/// Rules of the automatic baseline and arrival detection.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BaselineRules {
    /// Frames skipped at the start while the signal reaches steady state.
    pub skip: usize,
    /// A frame leaves the baseline when it drops below the running mean by more than
    /// `k_sigma` running standard deviations and by more than `min_drop` of the mean...
    pub k_sigma: f64,
    pub min_drop: f64,
    /// ...and the next frame does too. A baseline needs at least this many frames.
    pub min_frames: usize,
}

impl Default for BaselineRules {
    fn default() -> Self {
        BaselineRules {
            skip: 2,
            k_sigma: 3.0,
            min_drop: 0.02,
            min_frames: 3,
        }
    }
}

/// Frame indices (from 0) that time the bolus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BolusTiming {
    /// Baseline frames `[start, end)`. Detected automatically, the baseline stops one frame
    /// before the arrival: the bolus reaches arteries and fast tissue before the whole-brain
    /// curve shows it.
    pub baseline_start: usize,
    pub baseline_end: usize,
    /// First frame where the whole-brain signal clearly drops (with a user baseline too; its end
    /// where the signal shows none).
    pub arrival: usize,
    /// Frame of the largest whole-brain ΔR2*.
    pub peak: usize,
    /// Last frame of the first pass: the first local minimum of the whole-brain ΔR2* after its
    /// peak, or the first frame below 10% of the peak, whichever comes first.
    pub first_pass_end: usize,
}

/// Detects the baseline and bolus from the whole-brain mean signal `curve` (METHODS §3).
/// `user_baseline` overrides the automatic baseline with frames `[start, end)`.
pub fn detect(
    curve: &[f64],
    rules: &BaselineRules,
    user_baseline: Option<(usize, usize)>,
) -> Result<BolusTiming, String> {
    let n = curve.len();
    let need = rules.skip + rules.min_frames + 2;
    if n < need {
        return Err(format!(
            "the series has {n} time points; a baseline needs at least {need} ({} skipped for steady state, {} baseline frames, and the bolus)",
            rules.skip, rules.min_frames
        ));
    }
    let (start, end) = match user_baseline {
        Some((s, e)) => {
            if !(s < e && e < n && e - s >= 2) {
                return Err(format!(
                    "baseline frames {s}..{e} do not fit a series of {n} time points (give START:END with END − START ≥ 2 and END < {n}, frames counted from 0)"
                ));
            }
            (s, e)
        }
        None => {
            let a = automatic_arrival(curve, rules).ok_or_else(|| {
                "no bolus found: the whole-brain signal never drops clearly below its baseline; check that this is a DSC series, or give the baseline frames with --baseline START:END".to_string()
            })?;
            (rules.skip, a)
        }
    };
    // A user baseline's arrival is still the signal's (the baseline's end where none is seen).
    let arrival = match user_baseline {
        Some(_) => automatic_arrival(curve, rules).unwrap_or(end),
        None => end,
    };
    let end = if user_baseline.is_none() && end - start > rules.min_frames {
        end - 1
    } else {
        end
    };
    let base = &curve[start..end];
    let s0 = base.iter().sum::<f64>() / base.len() as f64;
    let dr2: Vec<f64> = curve
        .iter()
        .map(|&s| {
            if s > 0.0 && s0 > 0.0 {
                -(s / s0).ln()
            } else {
                0.0
            }
        })
        .collect();
    let peak = (end..n)
        .max_by(|&a, &b| dr2[a].total_cmp(&dr2[b]))
        .unwrap_or(end);
    let mut fp_end = n - 1;
    for i in peak + 1..n {
        let local_min = i + 1 < n && dr2[i + 1] > dr2[i];
        if dr2[i] < 0.1 * dr2[peak] || local_min {
            fp_end = i;
            break;
        }
    }
    Ok(BolusTiming {
        baseline_start: start,
        baseline_end: end,
        arrival,
        peak,
        first_pass_end: fp_end,
    })
}

/// The first frame where the whole-brain signal `curve` clearly drops, with the next one: below
/// the mean of the frames since `rules.skip` by `k_sigma` of their SD (or `min_drop` of the
/// mean, if larger), after at least `min_frames` of them (METHODS §3). None where it never does.
fn automatic_arrival(curve: &[f64], rules: &BaselineRules) -> Option<usize> {
    let s = rules.skip;
    (s + rules.min_frames..curve.len().saturating_sub(1)).find(|&i| {
        let base = &curve[s..i];
        let mean = base.iter().sum::<f64>() / base.len() as f64;
        let sd = (base.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / base.len() as f64).sqrt();
        let threshold = mean - (rules.k_sigma * sd).max(rules.min_drop * mean);
        curve[i] < threshold && curve[i + 1] < threshold
    })
}

/// With a user baseline `[start, end)` (`--baseline`), a notice when the whole-brain signal
/// `curve` shows the bolus arriving before `end` (by [`detect`]'s automatic rule): baseline
/// frames that hold contrast make S0 too low and every ΔR2* too small, and the arterial curves
/// lose their shape (the automatic AIF may find none). None without a user baseline, or where
/// the automatic rule finds no bolus or a later one.
pub fn user_baseline_notice(
    curve: &[f64],
    rules: &BaselineRules,
    user_baseline: Option<(usize, usize)>,
) -> Option<String> {
    let (start, end) = user_baseline?;
    let auto = detect(curve, rules, None).ok()?;
    (end > auto.arrival).then(|| {
        format!(
            "the given baseline (frames {start}–{}, counted from 0) reaches past the bolus's arrival, which the whole-brain signal shows at frame {}: frames with contrast in the baseline make ΔR2* too small and can cost the automatic AIF; give --baseline {start}:{} or leave the baseline to the automatic detection",
            end - 1,
            auto.arrival,
            auto.baseline_end.max(start + 2),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bolus_curve() -> Vec<f64> {
        // steady-state overshoot, flat baseline, a dip from frame 12, recovery
        (0..50)
            .map(|i| match i {
                0 => 1400.0,
                1 => 1100.0,
                2..=11 => 1000.0 + if i % 2 == 0 { 3.0 } else { -3.0 },
                _ => {
                    let t = (i - 12) as f64;
                    1000.0
                        * (1.0
                            - 0.4
                                * (t / 3.0).powi(2)
                                * (-(t - 3.0) / 1.5).exp().min(1.0)
                                * (-t / 6.0).exp())
                }
            })
            .collect()
    }

    #[test]
    fn baseline_skips_steady_state_and_ends_at_the_bolus() {
        let t = detect(&bolus_curve(), &BaselineRules::default(), None).unwrap();
        assert_eq!(t.baseline_start, 2);
        assert!((12..=13).contains(&t.arrival), "{t:?}");
        assert!(t.peak > t.arrival && t.first_pass_end > t.peak);
    }

    #[test]
    fn a_flat_curve_has_no_bolus() {
        let err = detect(&[1000.0; 40], &BaselineRules::default(), None).unwrap_err();
        assert!(err.contains("no bolus"), "{err}");
    }

    #[test]
    fn too_few_frames_for_a_baseline() {
        let err = detect(
            &[1000.0, 900.0, 500.0, 600.0, 800.0],
            &BaselineRules::default(),
            None,
        )
        .unwrap_err();
        assert!(err.contains("a baseline needs at least"), "{err}");
    }

    #[test]
    fn uniform_and_non_uniform_sampling() {
        let times = Array2::from_shape_fn((10, 3), |(v, z)| v as f64 * 1.5 + z as f64 * 0.4);
        assert!((sampling_interval(&times).unwrap() - 1.5).abs() < 1e-12);
        let mut bad = times.clone();
        for z in 0..3 {
            for v in 6..10 {
                bad[[v, z]] += 1.0; // a 2.5 s gap before time point 7
            }
        }
        let err = sampling_interval(&bad).unwrap_err();
        assert!(
            err.contains("not uniform") && err.contains("time point 7"),
            "{err}"
        );
    }

    #[test]
    fn a_user_baseline_past_the_arrival_is_named_and_one_before_it_is_not() {
        let (c, rules) = (bolus_curve(), BaselineRules::default());
        // The dip starts at frame 12; the automatic baseline ends at frame 11 (exclusive).
        let notice = user_baseline_notice(&c, &rules, Some((3, 14))).unwrap();
        assert!(notice.contains("frames 3–13"), "{notice}");
        assert!(
            notice.contains("at frame 13") || notice.contains("at frame 12"),
            "{notice}"
        );
        assert!(notice.contains("--baseline 3:"), "{notice}");
        assert_eq!(user_baseline_notice(&c, &rules, Some((3, 11))), None);
        assert_eq!(user_baseline_notice(&c, &rules, None), None);
        // The timing's arrival is the signal's, whatever baseline was given.
        let auto = detect(&c, &rules, None).unwrap().arrival;
        for user in [(3, 8), (3, 14)] {
            assert_eq!(detect(&c, &rules, Some(user)).unwrap().arrival, auto);
        }
    }
}
