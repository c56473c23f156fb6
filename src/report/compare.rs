//! The follow-up report of `paramap compare` (docs/methods.md §7): the visits side by side at
//! the same slice positions, the change maps and parametric response maps with their legends,
//! the ROI table over time with a plot (inline SVG, no script), the registration quality and
//! the visit dates. Built from the study report's pieces ([`super::html`], [`super::montage`]).

use serde::Serialize;

use super::html::{escape, number, png_data_uri, STYLE};

/// One visit's header line.
#[derive(Debug, Clone, Serialize)]
pub struct VisitHeader {
    pub visit: usize,
    /// "2026-01-05 09:00" or "date unknown".
    pub date: String,
    pub folder: String,
    pub study_uid: Option<String>,
}

/// One column of a side-by-side row: a montage of the same slices as its neighbours.
#[derive(Debug, Clone, Serialize)]
pub struct Panel {
    pub caption: String,
    #[serde(skip)]
    pub png: Vec<u8>,
}

/// One map (rCBV, CBF, ADC): every visit on visit 1's grid, then each later visit's change map
/// and PRM, all at the same slice positions.
#[derive(Debug, Clone, Serialize)]
pub struct SideBySide {
    pub map: String,
    pub slices: String,
    pub panels: Vec<Panel>,
}

/// One line of the plot: a map's ROI median at each visit, as % change from visit 1.
#[derive(Debug, Clone, Serialize)]
pub struct TimeSeries {
    pub label: String,
    /// One per visit; None where that visit has no value.
    pub change_pct: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CompareReport {
    pub title: String,
    pub generated_by: String,
    pub visits: Vec<VisitHeader>,
    pub notices: Vec<String>,
    /// The change threshold (%) of the PRM, the ROI rule and the plot's band.
    pub change_pct: f64,
    pub registration_header: Vec<String>,
    pub registration: Vec<Vec<String>>,
    pub side_by_side: Vec<SideBySide>,
    /// PRM legend: (code, name, colour).
    pub prm_legend: Vec<(u8, String, [u8; 3])>,
    pub prm_header: Vec<String>,
    pub prm_shares: Vec<Vec<String>>,
    pub roi_header: Vec<String>,
    pub roi_rows: Vec<Vec<String>>,
    /// Visit labels on the plot's x axis, and its lines.
    pub plot_visits: Vec<String>,
    pub plot: Vec<TimeSeries>,
    pub statements: Vec<String>,
    pub methods: Vec<String>,
    pub caution: String,
}

/// Okabe & Ito's palette (2008), for the plot's lines.
const LINE_COLOURS: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];

/// The plot over time as inline SVG: x the visits, y the change from visit 1 (%), the band
/// ±`band_pct` shaded, one line with markers per series, and a legend. Empty when no series has
/// two values.
pub fn change_plot_svg(visits: &[String], series: &[TimeSeries], band_pct: f64) -> String {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.change_pct.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .collect();
    if visits.len() < 2 || values.len() < 2 {
        return String::new();
    }
    let top = values
        .iter()
        .fold(band_pct * 1.5, |a, &v| a.max(v.abs()))
        .min(1000.0);
    let step = [5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 200.0, 250.0, 500.0]
        .into_iter()
        .find(|s| top / s <= 5.0)
        .unwrap_or(1000.0);
    let top = (top / step).ceil() * step;
    let (w, h, left, right, up, down) = (640.0, 300.0, 60.0, 200.0, 16.0, 40.0);
    let pw = w - left - right;
    let ph = h - up - down;
    let x = |i: usize| left + pw * i as f64 / (visits.len() - 1) as f64;
    let y = |v: f64| up + ph * (top - v.clamp(-top, top)) / (2.0 * top);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\">"
    );
    s += &format!(
        "<rect class=\"band\" x=\"{left}\" y=\"{:.1}\" width=\"{pw}\" height=\"{:.1}\" fill=\"#e6e6e6\"><title>±{band_pct}%: within the change threshold</title></rect>",
        y(band_pct),
        y(-band_pct) - y(band_pct)
    );
    let mut t = -top;
    while t <= top + 1e-9 {
        s += &format!(
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{t:+}%</text>",
            left + pw,
            y(t),
            y(t),
            if t == 0.0 { "#555" } else { "#ccc" },
            left - 6.0,
            y(t) + 4.0
        );
        t += step;
    }
    for (i, v) in visits.iter().enumerate() {
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(i),
            h - down + 18.0,
            escape(v)
        );
    }
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">grey band: ±{band_pct}% (the change threshold)</text>",
        left + pw / 2.0,
        h - 4.0
    );
    for (k, line) in series.iter().enumerate() {
        let c = LINE_COLOURS[k % LINE_COLOURS.len()];
        let pts: Vec<(f64, f64, f64)> = line
            .change_pct
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (x(i), y(v), v)))
            .collect();
        if pts.len() >= 2 {
            let p: Vec<String> = pts
                .iter()
                .map(|(a, b, _)| format!("{a:.1},{b:.1}"))
                .collect();
            s += &format!(
                "<polyline class=\"series\" data-label=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>",
                escape(&line.label),
                p.join(" ")
            );
        }
        for (a, b, v) in &pts {
            s += &format!(
                "<circle cx=\"{a:.1}\" cy=\"{b:.1}\" r=\"4\" fill=\"{c}\" data-value=\"{v:.3}\"><title>{}: {v:+.1}%</title></circle>",
                escape(&line.label)
            );
        }
        let ly = up + 16.0 * k as f64 + 6.0;
        s += &format!(
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{c}\" stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            left + pw + 12.0,
            left + pw + 36.0,
            left + pw + 42.0,
            ly + 4.0,
            escape(&line.label)
        );
    }
    s += "</svg>";
    s
}

fn table(header: &[String], rows: &[Vec<String>], class: &str) -> String {
    let mut h = format!("<table class=\"{class}\"><tr>");
    for c in header {
        h += &format!("<th>{}</th>", escape(c));
    }
    h += "</tr>";
    for r in rows {
        h += "<tr>";
        for c in r {
            let num = c
                .trim_start_matches(['+', '-', '−'])
                .starts_with(|ch: char| ch.is_ascii_digit());
            h += &format!(
                "<td{}>{}</td>",
                if num { " class=\"num\"" } else { "" },
                escape(c)
            );
        }
        h += "</tr>";
    }
    h + "</table>"
}

/// The follow-up report as one self-contained HTML document.
pub fn render_compare(r: &CompareReport) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}\n.sbs {{ display: flex; flex-wrap: wrap; gap: 8px; }}\n</style></head><body>",
        escape(&r.title)
    );
    h += &format!(
        "<h1>{}</h1><p class=\"meta\">{}</p>",
        escape(&r.title),
        escape(&r.generated_by)
    );
    h += "<h2>Visits</h2><table class=\"visits\"><tr><th>visit</th><th>date</th><th>folder</th><th>study UID</th></tr>";
    for v in &r.visits {
        h += &format!(
            "<tr><td class=\"num\">{}</td><td class=\"key\">{}</td><td>{}</td><td class=\"key\">{}</td></tr>",
            v.visit,
            escape(&v.date),
            escape(&v.folder),
            escape(v.study_uid.as_deref().unwrap_or("–"))
        );
    }
    h += "</table>";
    for n in &r.notices {
        h += &format!(
            "<p class=\"reading notice\"><b>Notice:</b> {}</p>",
            escape(n)
        );
    }
    if !r.statements.is_empty() {
        h += "<h2>ROI over time</h2>";
        for st in &r.statements {
            h += &format!("<p class=\"reading\">{}</p>", escape(st));
        }
        h += &table(&r.roi_header, &r.roi_rows, "roi-table");
        let svg = change_plot_svg(&r.plot_visits, &r.plot, r.change_pct);
        if !svg.is_empty() {
            h += &format!(
                "<figure>{svg}<figcaption>ROI medians, change from visit 1 (%); the grey band is ±{}%.</figcaption></figure>",
                number(r.change_pct)
            );
        }
    }
    h += "<h2>Registration</h2>";
    h += &table(&r.registration_header, &r.registration, "registration");
    h += "<h2>Maps side by side</h2><p class=\"caveat\">Every panel is on visit 1's grid, at the same slice positions; the later visits are moved onto it by the registration above.</p>";
    if !r.prm_legend.is_empty() {
        h += "<table class=\"legend\"><tr><th>PRM</th><th>class</th></tr>";
        for (code, name, c) in &r.prm_legend {
            h += &format!(
                "<tr><td><span class=\"swatch\" style=\"background: rgb({}, {}, {})\"></span> {code}</td><td>{}</td></tr>",
                c[0],
                c[1],
                c[2],
                escape(name)
            );
        }
        h += "</table>";
    }
    for s in &r.side_by_side {
        h += &format!(
            "<h3>{}</h3><p class=\"meta\">{}</p><div class=\"sbs\">",
            escape(&s.map),
            escape(&s.slices)
        );
        for p in &s.panels {
            h += &format!(
                "<figure><img alt=\"{}\" src=\"{}\"><figcaption>{}</figcaption></figure>",
                escape(&p.caption),
                png_data_uri(&p.png),
                escape(&p.caption)
            );
        }
        h += "</div>";
    }
    if !r.prm_shares.is_empty() {
        h += "<h2>Parametric response maps</h2>";
        h += &table(&r.prm_header, &r.prm_shares, "prm");
    }
    h += "<h2>Methods</h2><div class=\"methods\">";
    for m in &r.methods {
        h += &format!("<p>{}</p>", escape(m));
    }
    h += &format!(
        "</div><p class=\"caveat\"><i>{}</i></p></body></html>\n",
        escape(&r.caution)
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plot puts each value at its place on the axis, the band at ±threshold, and leaves a
    /// missing visit out of the line.
    #[test]
    fn the_plot_places_values_and_band_on_the_axis() {
        let visits = vec!["V1".to_string(), "V2".into(), "V3".into()];
        let series = vec![
            TimeSeries {
                label: "rCBV".into(),
                change_pct: vec![Some(0.0), Some(30.0), Some(-10.0)],
            },
            TimeSeries {
                label: "ADC".into(),
                change_pct: vec![Some(0.0), None, Some(5.0)],
            },
        ];
        let svg = change_plot_svg(&visits, &series, 20.0);
        // top = 30 → step 10 → axis ±30; plot 244 px tall from y = 16.
        let y = |v: f64| 16.0 + 244.0 * (30.0 - v) / 60.0;
        assert!(svg.contains(&format!("y=\"{:.1}\"", y(20.0))), "{svg}");
        assert!(svg.contains(&format!("height=\"{:.1}\"", y(-20.0) - y(20.0))));
        assert!(svg.contains(&format!(
            "cy=\"{:.1}\" r=\"4\" fill=\"#0072B2\" data-value=\"30.000\"",
            y(30.0)
        )));
        assert_eq!(svg.matches("<circle").count(), 5);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(change_plot_svg(&visits[..1], &series, 20.0).is_empty());
    }
}
