//! The DSC curve plot of the report: the arterial input function against the mean tissue
//! curve, with a time axis in seconds, a legend and each curve's peak written out.
//!
//! `paramap dsc` writes it as `aif.png`. Each curve is scaled to its own peak: an AIF peaks an order of magnitude above tissue (about 250 s⁻¹ against 10 s⁻¹
//! in grey matter), and on one scale the tissue curve would be a flat line. What matters to a
//! reader is timing and shape (arrival, a clean first pass, recirculation, a tissue curve that
//! follows the AIF rather than preceding it), so the scale is given up, and the peaks, the only
//! numbers lost, are printed in the legend.

use super::raster::{text_width, Canvas, GLYPH};
use crate::error::{Error, Result};

/// One curve: samples (equally spaced in time) and an RGB colour.
pub struct Curve<'a> {
    pub values: &'a [f64],
    pub colour: [u8; 3],
}

/// A labelled plot of curves sampled every `dt_s` seconds.
pub struct CurvePlot<'a> {
    pub title: &'a str,
    pub dt_s: f64,
    /// Unit of the curves' values, for the peaks in the legend (e.g. "s^-1" for ΔR2*).
    pub unit: &'a str,
    /// (legend label, curve).
    pub curves: &'a [(&'a str, Curve<'a>)],
}

const W: usize = 720;
const H: usize = 400;
const LEFT: usize = 56;
const RIGHT: usize = 20;
const TOP: usize = 40;
const BOTTOM: usize = 44;
const BLACK: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [225, 225, 225];

/// The plot as PNG bytes.
pub fn curves_png(plot: &CurvePlot) -> Result<Vec<u8>> {
    let bad = |problem: String| Error::Invalid(format!("curve plot \"{}\": {problem}", plot.title));
    if !(plot.dt_s > 0.0 && plot.dt_s.is_finite()) {
        return Err(bad(format!(
            "the sampling interval {} s must be a positive number",
            plot.dt_s
        )));
    }
    let n = plot
        .curves
        .iter()
        .map(|(_, c)| c.values.len())
        .max()
        .unwrap_or(0);
    if n < 2 {
        return Err(bad("no curve has two or more samples".into()));
    }
    let duration = (n - 1) as f64 * plot.dt_s;
    let (x0, x1) = (LEFT as f64, (W - RIGHT) as f64);
    let (y0, y1) = ((H - BOTTOM) as f64, TOP as f64 + 12.0);
    let px = |t: f64| (x0 + (x1 - x0) * t / duration).round() as i64;
    let py = |f: f64| (y0 + (y1 - y0) * f.clamp(-0.1, 1.1)).round() as i64;

    let mut c = Canvas::new(W, H, [255, 255, 255]);
    c.text(LEFT, 10, plot.title, BLACK, 2);

    // Time ticks: the first step among these that gives at most 12 of them.
    let tick = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]
        .into_iter()
        .find(|s| duration / s <= 12.0)
        .unwrap_or(600.0);
    let mut k = 0.0;
    while k * tick <= duration + 1e-9 {
        let t = k * tick;
        let x = px(t);
        c.line((x, y1 as i64), (x, y0 as i64), GRID, 1);
        let label = format!("{t:.0}");
        let lx = (x as usize).saturating_sub(text_width(&label, 1) / 2);
        c.text(lx, H - BOTTOM + 6, &label, BLACK, 1);
        k += 1.0;
    }
    let xlabel = "time (s)";
    c.text(
        (LEFT + W - RIGHT - text_width(xlabel, 1)) / 2,
        H - BOTTOM + 22,
        xlabel,
        BLACK,
        1,
    );
    for (f, label) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
        let y = py(f);
        c.line((x0 as i64, y), (x1 as i64, y), GRID, 1);
        c.text(
            LEFT - 6 - text_width(label, 1),
            (y as usize).saturating_sub(GLYPH / 2),
            label,
            BLACK,
            1,
        );
    }
    c.text(4, TOP - 2, "fraction of peak", BLACK, 1);

    let mut legend_y = TOP + 16;
    for (label, curve) in plot.curves {
        let peak = curve
            .values
            .iter()
            .cloned()
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        let text = if peak > 0.0 {
            for i in 1..curve.values.len() {
                let (a, b) = (curve.values[i - 1], curve.values[i]);
                if a.is_finite() && b.is_finite() {
                    c.line(
                        (px((i - 1) as f64 * plot.dt_s), py(a / peak)),
                        (px(i as f64 * plot.dt_s), py(b / peak)),
                        curve.colour,
                        2,
                    );
                }
            }
            format!("{label} (peak {} {})", significant(peak), plot.unit)
        } else {
            format!("{label} (no positive peak: not drawn)")
        };
        let lx = (W - RIGHT - 8)
            .saturating_sub(text_width(&text, 1) + 22)
            .max(LEFT + 4);
        c.fill_rect(lx, legend_y + 3, 16, 3, curve.colour);
        c.text(lx + 22, legend_y, &text, BLACK, 1);
        legend_y += GLYPH + 6;
    }
    // Axes last: a curve at zero (the baseline before the bolus) lies on the time axis.
    c.line((x0 as i64, y0 as i64), (x1 as i64, y0 as i64), BLACK, 1);
    c.line((x0 as i64, y0 as i64), (x0 as i64, y1 as i64), BLACK, 1);
    c.to_png()
}

/// Three significant figures, without exponent notation for everyday magnitudes.
fn significant(v: f64) -> String {
    if !(1e-3..1e6).contains(&v.abs()) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_written_with_three_significant_figures() {
        assert_eq!(significant(251.234), "251");
        assert_eq!(significant(9.8765), "9.88");
        assert_eq!(significant(0.012345), "0.0123");
    }

    #[test]
    fn a_plot_without_samples_or_time_step_is_refused() {
        let v = [1.0, 2.0];
        let curves = [(
            "AIF",
            Curve {
                values: &v,
                colour: [200, 30, 30],
            },
        )];
        let mut p = CurvePlot {
            title: "t",
            dt_s: 0.0,
            unit: "s^-1",
            curves: &curves,
        };
        assert!(curves_png(&p)
            .unwrap_err()
            .to_string()
            .contains("sampling interval"));
        p.dt_s = 1.5;
        assert!(curves_png(&p).is_ok());
        let empty: [(&str, Curve); 0] = [];
        p.curves = &empty;
        assert!(curves_png(&p)
            .unwrap_err()
            .to_string()
            .contains("two or more"));
    }
}
