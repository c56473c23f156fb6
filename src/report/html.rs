//! One self-contained HTML file per study: the maps and curves as PNGs embedded in `data:`
//! URIs, inline CSS, no JavaScript and no external resource, so the file can be mailed,
//! archived next to the study or opened on a reading-room machine without network access.
//!
//! A Content-Security-Policy in the page itself forbids everything but `data:` images and the
//! inline style sheet: should a later change ever reference an outside file, the browser
//! refuses it and says so on its console (which the report test watches), instead of the
//! report silently depending on something that is not in it.
//!
//! Everything that comes from the study (labels, series descriptions, JSON values) is
//! HTML-escaped: DICOM text fields are free text typed at the console.

use std::fmt::Write;

use base64::Engine;
use serde::Serialize;

use super::reading::{Reading, ReadingClass, ReadingThresholds, RoiStat};
use crate::models::roi::TumourBurden;

/// A study's report.
///
/// Order on the page, for a reader who opens it first: who and when; the key numbers (per
/// lesion ROI rCBV, ADC, fractional tumour burden, response classes and the reading; the
/// white-matter reference and the AIF); the response map with its legend; each series' maps
/// with the ROI, reference and AIF outlined; the methods in words; every record, folded.
#[derive(Debug, Clone, Default)]
pub struct StudyReport {
    pub title: String,
    /// Patient's Name (0010,0010), as DICOM stores it (`^` between the name's parts).
    pub patient_name: Option<String>,
    pub patient_id: Option<String>,
    /// Study Date (0008,0020), `YYYYMMDD`.
    pub study_date: Option<String>,
    /// Accession Number (0008,0050).
    pub accession: Option<String>,
    /// Study Description (0008,1030).
    pub study_description: Option<String>,
    pub study_uid: Option<String>,
    /// The key numbers on top (None: the table is left out).
    pub key: Option<KeyNumbers>,
    /// The response map's legend: one row per class.
    pub legend: Vec<LegendRow>,
    /// Program and version (and, if the caller wishes, the time of the run).
    pub generated_by: String,
    pub series: Vec<SeriesReport>,
    /// Series of the study that were not processed, with the reason.
    pub skipped: Vec<(String, String)>,
    /// `--roi` files that lie on no processed series' grid, with why (run.json's
    /// `unmatched_rois`): listed under the key numbers, since they have none.
    pub unmatched_rois: Vec<(String, String)>,
    pub reading: Option<Reading>,
}

/// One processed series.
#[derive(Debug, Clone, Default)]
pub struct SeriesReport {
    pub label: String,
    /// "DSC" or "DWI".
    pub kind: String,
    pub maps: Vec<MapPreview>,
    /// (caption, PNG bytes), e.g. the AIF against the mean tissue curve.
    pub plots: Vec<(String, Vec<u8>)>,
    /// The JSON record the pipeline wrote beside the maps (`adc.json`, `dsc.json`).
    pub record: serde_json::Value,
    pub roi: Vec<RoiStat>,
    pub notes: Vec<String>,
}

/// The key numbers of a study: what a reader wants before any image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyNumbers {
    pub study_uid: String,
    /// One row per lesion ROI (`--roi`).
    pub rois: Vec<RoiKeyNumbers>,
    /// The white-matter reference's median corrected CBV (arbitrary units: the integral of
    /// ΔR2*; `dsc.json` normalisation.reference_cbv_corrected) that divides every rCBV.
    pub reference_cbv: Option<f64>,
    /// Its voxels (`dsc.json` normalisation.reference_voxels).
    pub reference_voxels: Option<usize>,
    /// The AIF's voxels and the rule that chose them (`dsc.json` perfusion.aif_voxels,
    /// aif_rule).
    pub aif_voxels: Option<usize>,
    pub aif_rule: Option<String>,
    pub thresholds: ReadingThresholds,
}

/// One ROI's key numbers.
#[derive(Debug, Clone, Serialize)]
pub struct RoiKeyNumbers {
    /// The ROI file as given.
    pub roi: String,
    /// Leakage-corrected rCBV inside the ROI on the DSC grid.
    pub rcbv: Option<RoiStat>,
    /// ADC (mm²/s) inside the ROI on the DWI grid.
    pub adc: Option<RoiStat>,
    /// Fractional tumour burden of the corrected rCBV (shares 0–1; Hu et al., Neuro-Oncology
    /// 2012; [`crate::models::roi::fractional_tumour_burden`]).
    pub ftb: Option<TumourBurden>,
    /// Share of the ROI's voxels (DSC grid) in each response class, class 0–3.
    pub response_classes: Option<[f64; 4]>,
    pub reading: Reading,
}

/// One class of the response map's legend.
#[derive(Debug, Clone, Serialize)]
pub struct LegendRow {
    pub value: u8,
    pub name: String,
    pub rule: String,
    pub colour: [u8; 3],
    /// Voxels and share of the brain in this class.
    pub voxels: usize,
    pub share_of_brain: f64,
}

/// A map's montage (see `montage_png`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MapPreview {
    pub name: String,
    pub unit: String,
    #[serde(skip)]
    pub png: Vec<u8>,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A PNG as a `data:` URI.
pub fn png_data_uri(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

pub(crate) const STYLE: &str = "
body { font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; margin: 16px 24px; color: #111; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
h2 { font-size: 18px; margin: 24px 0 8px 0; border-bottom: 1px solid #999; }
h3 { font-size: 15px; margin: 16px 0 6px 0; }
.meta { color: #444; font-size: 13px; }
.reading { border: 2px solid #555; padding: 8px 12px; margin: 12px 0; background: #f2f2f2; }
.reading .class { font-weight: bold; }
.caveat { font-size: 13px; color: #333; }
figure { display: inline-block; margin: 4px 12px 12px 0; vertical-align: top; }
figure img { display: block; max-width: 1150px; }
figcaption { font-size: 13px; color: #333; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0 8px 0; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-family: 'DejaVu Sans Mono', monospace; }
td.key { font-family: 'DejaVu Sans Mono', monospace; white-space: nowrap; }
pre { font-size: 12px; background: #f6f6f6; padding: 6px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
body { max-width: 1232px; }
figure img { max-width: 100%; height: auto; }
table.keynumbers { font-size: 14px; }
table.keynumbers th { background: #d9e6f2; }
span.swatch { display: inline-block; width: 40px; height: 16px; border: 1px solid #000; vertical-align: middle; }
.methods p { font-size: 13px; max-width: 1100px; }
details td { overflow-wrap: anywhere; }
";

/// The report as one HTML document.
pub fn render(report: &StudyReport) -> String {
    let mut h = String::new();
    let title = escape(&report.title);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n");
    let _ = writeln!(
        h,
        "<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>"
    );
    let _ = writeln!(h, "<h1>{title}</h1>\n<div class=\"meta\">");
    let patient = match (&report.patient_name, &report.patient_id) {
        (Some(n), Some(id)) if !n.is_empty() => Some(format!("{} (ID {id})", person_name(n))),
        (Some(n), _) if !n.is_empty() => Some(person_name(n)),
        (_, Some(id)) => Some(format!("ID {id}")),
        _ => None,
    };
    for (what, value) in [
        ("Patient", patient),
        ("Study date", report.study_date.as_deref().map(dicom_date)),
        ("Accession", report.accession.clone()),
        ("Study", report.study_description.clone()),
        ("Study Instance UID", report.study_uid.clone()),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            let _ = writeln!(h, "{what}: <b>{}</b><br>", escape(&v));
        }
    }
    let _ = writeln!(
        h,
        "Generated by {}<br>\n</div>",
        escape(&report.generated_by)
    );

    match &report.key {
        Some(k) => key_section(
            &mut h,
            k,
            report.legend.is_empty(),
            !report.unmatched_rois.is_empty(),
        ),
        None => {
            if let Some(r) = &report.reading {
                reading_section(&mut h, r);
            }
        }
    }
    if !report.unmatched_rois.is_empty() {
        h.push_str("<h3>ROIs without statistics</h3>\n<p class=\"caveat\">These ROIs lie on no processed series' grid, so no number above comes from them (run.json <code>unmatched_rois</code>):</p>\n<table>\n<tr><th>ROI</th><th>why</th></tr>\n");
        for (roi, why) in &report.unmatched_rois {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(roi),
                escape(why)
            );
        }
        h.push_str(
            "</table>
",
        );
    }
    // The response map first, with its legend; then every series.
    let (reading_sections, others): (Vec<&SeriesReport>, Vec<&SeriesReport>) =
        report.series.iter().partition(|s| s.kind == "reading");
    for s in reading_sections {
        series_section(&mut h, s);
        if !report.legend.is_empty() {
            legend_section(&mut h, &report.legend);
        }
    }
    for s in others {
        series_section(&mut h, s);
    }
    if !report.skipped.is_empty() {
        h.push_str(
            "<h2>Series not processed</h2>\n<table>\n<tr><th>series</th><th>reason</th></tr>\n",
        );
        for (series, why) in &report.skipped {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(series),
                escape(why)
            );
        }
        h.push_str("</table>\n");
    }
    methods_section(&mut h, report.key.as_ref().map(|k| &k.thresholds));
    records_section(&mut h, report);
    let _ = writeln!(
        h,
        "<p class=\"caveat\">The maps are quantitative measurements computed by software; they support a reader and do not diagnose (see Methods above).</p>\n</body>\n</html>"
    );
    h
}

/// A DICOM Person Name (`Family^Given^Middle^Prefix^Suffix`) as "Family, Given Middle".
fn person_name(pn: &str) -> String {
    let parts: Vec<&str> = pn.split('^').map(str::trim).collect();
    let given: Vec<&str> = parts
        .iter()
        .skip(1)
        .take(2)
        .copied()
        .filter(|p| !p.is_empty())
        .collect();
    match (parts.first().copied().unwrap_or(""), given.is_empty()) {
        (family, true) => family.to_string(),
        (family, false) => format!("{family}, {}", given.join(" ")),
    }
}

/// A DICOM date `YYYYMMDD` as `YYYY-MM-DD` (ISO 8601); anything else as it is.
fn dicom_date(d: &str) -> String {
    if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])
    } else {
        d.to_string()
    }
}

/// A share 0–1 as a percentage with one decimal, "–" for NaN.
fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", 100.0 * v)
    } else {
        "–".into()
    }
}

/// A table cell holding a number, marked with the record path it comes from (`data-key`), so
/// the report can be checked against run.json.
fn num_cell(key: &str, text: &str) -> String {
    format!(
        "<td class=\"num\" data-key=\"{}\">{}</td>",
        escape(key),
        escape(text)
    )
}

fn key_section(h: &mut String, k: &KeyNumbers, no_response_map: bool, rois_unmatched: bool) {
    let t = &k.thresholds;
    h.push_str("<h2 id=\"key-numbers\">Key numbers</h2>\n");
    if k.rois.is_empty() && rois_unmatched {
        h.push_str("<p class=\"caveat\">No ROI given lies on this study's maps (see \"ROIs without statistics\" below): the per-lesion numbers and the reading need one drawn on a series of this study.</p>\n");
    } else if k.rois.is_empty() {
        h.push_str("<p class=\"caveat\">No lesion ROI was given (<code>paramap run … --roi lesion.nii.gz</code>, drawn on any series of the study): the per-lesion numbers and the reading need one.</p>\n");
    } else {
        let _ = writeln!(
            h,
            "<table class=\"keynumbers\">\n<tr><th rowspan=\"2\">ROI</th><th rowspan=\"2\">rCBV median<br>(10th–90th pct)</th><th rowspan=\"2\">ADC median ×10⁻³ mm²/s<br>(10th–90th pct)</th><th colspan=\"3\">Fractional tumour burden (rCBV)</th><th colspan=\"3\">Response classes in the ROI</th><th rowspan=\"2\">Reading</th></tr>\n<tr><th>&gt; {hi}</th><th>{lo}–{hi}</th><th>&lt; {lo}</th><th>treatment-effect-like</th><th>indeterminate</th><th>progression-like</th></tr>",
            hi = t.rcbv_high,
            lo = t.rcbv_low
        );
        for (i, r) in k.rois.iter().enumerate() {
            let key = |what: &str| format!("key_numbers.rois[{i}].{what}");
            let _ = write!(h, "<tr><td>{}</td>", escape(&r.roi));
            match &r.rcbv {
                Some(s) => {
                    let _ = write!(
                        h,
                        "{}",
                        num_cell(
                            &key("rcbv.median"),
                            &format!("{} ({}–{})", number(s.median), number(s.p10), number(s.p90))
                        )
                    );
                }
                None => h.push_str("<td>no DSC</td>"),
            }
            match &r.adc {
                Some(s) => {
                    let _ = write!(
                        h,
                        "{}",
                        num_cell(
                            &key("adc.median"),
                            &format!(
                                "{} ({}–{})",
                                number(s.median * 1e3),
                                number(s.p10 * 1e3),
                                number(s.p90 * 1e3)
                            )
                        )
                    );
                }
                None => h.push_str("<td>no DWI</td>"),
            }
            match &r.ftb {
                Some(f) => {
                    for (what, v) in [
                        ("ftb.above_high", f.above_high),
                        ("ftb.between", f.between),
                        ("ftb.below_low", f.below_low),
                    ] {
                        h.push_str(&num_cell(&key(what), &percent(v)));
                    }
                }
                None => h.push_str("<td colspan=\"3\">no DSC</td>"),
            }
            match &r.response_classes {
                Some(c) => {
                    for code in [1usize, 2, 3] {
                        h.push_str(&num_cell(
                            &key(&format!("response_classes[{code}]")),
                            &percent(c[code]),
                        ));
                    }
                }
                None => h.push_str("<td colspan=\"3\">no response map (needs DSC and DWI)</td>"),
            }
            let _ = writeln!(
                h,
                "<td><b>{}</b></td></tr>",
                escape(reading_words(r.reading.class))
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<table class=\"keynumbers\">\n");
    match (k.reference_cbv, k.reference_voxels) {
        (Some(cbv), Some(n)) => {
            let _ = writeln!(
                h,
                "<tr><th>White-matter reference (divides every rCBV)</th>{}{}<td>median corrected CBV integral (s⁻¹·s, ∝ CBV) in voxels (outlined magenta on the DSC maps)</td></tr>",
                num_cell("key_numbers.reference_cbv", &number(cbv)),
                num_cell("key_numbers.reference_voxels", &n.to_string())
            );
        }
        _ => h.push_str(
            "<tr><th>White-matter reference</th><td colspan=\"3\">no DSC series</td></tr>\n",
        ),
    }
    match k.aif_voxels {
        Some(n) => {
            let _ = writeln!(
                h,
                "<tr><th>Arterial input function</th>{}<td>voxels (outlined green)</td><td>{}</td></tr>",
                num_cell("key_numbers.aif_voxels", &n.to_string()),
                escape(k.aif_rule.as_deref().unwrap_or("")),
            );
        }
        None => h.push_str("<tr><th>Arterial input function</th><td colspan=\"3\">none (no DSC series, or no perfusion fit)</td></tr>\n"),
    }
    let _ = writeln!(
        h,
        "<tr><th>Thresholds in force</th><td colspan=\"3\">rCBV low {}, rCBV high {}, ADC {}×10⁻³ mm²/s{}</td></tr>\n</table>",
        t.rcbv_low,
        t.rcbv_high,
        t.adc_high_mm2_s * 1e3,
        if no_response_map { "" } else { " (response map legend below)" }
    );
    for r in &k.rois {
        let _ = writeln!(
            h,
            "<p class=\"reading\"><b>{}:</b> {}</p>",
            escape(&r.roi),
            escape(&r.reading.statement)
        );
    }
}

fn reading_words(class: ReadingClass) -> &'static str {
    match class {
        ReadingClass::SupportsTreatmentEffect => "supports treatment effect",
        ReadingClass::SupportsProgression => "supports progression",
        ReadingClass::Indeterminate => "neither criterion met",
        ReadingClass::InsufficientData => "no reading (data missing)",
    }
}

fn legend_section(h: &mut String, legend: &[LegendRow]) {
    h.push_str("<h3>Legend of the response map</h3>\n<table class=\"legend\">\n<tr><th>colour</th><th>value</th><th>class</th><th>rule</th><th>share of the brain</th></tr>\n");
    for r in legend {
        let [cr, cg, cb] = r.colour;
        let _ = writeln!(
            h,
            "<tr><td><span class=\"swatch\" style=\"background: rgb({cr}, {cg}, {cb})\"></span></td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{} ({} voxels)</td></tr>",
            r.value,
            escape(&r.name),
            escape(&r.rule),
            percent(r.share_of_brain),
            r.voxels
        );
    }
    h.push_str("</table>\n");
}

/// The methods, in words, shipped with the program (a fuller account with every reference is
/// paramap's docs/methods.md).
fn methods_section(h: &mut String, thresholds: Option<&ReadingThresholds>) {
    let t = thresholds.copied().unwrap_or_default();
    h.push_str("<h2 id=\"methods\">Methods</h2>\n<div class=\"methods\">\n");
    for p in methods_text(&t) {
        let _ = writeln!(h, "<p>{}</p>", escape(&p));
    }
    h.push_str("</div>\n");
}

/// The methods paragraphs with the thresholds in force.
pub fn methods_text(t: &ReadingThresholds) -> Vec<String> {
    vec![
        "DSC perfusion. The T2*-weighted signal is converted to the change in relaxation rate, ΔR2*(t) = −ln(S(t)/S0)/TE, with S0 the mean of the pre-bolus baseline. An arterial input function (AIF) is selected automatically (after Mouridsen et al., MRM 2006: early, high, narrow first-pass curves; its voxels are outlined on the maps). Contrast leaking through a disrupted blood–brain barrier is corrected in the residue domain (after Bjørnerud et al., JCBFM 2011): the leakage term −K2·∫Ca is fitted jointly with the deconvolution of the tissue curve by the AIF, which also gives CBF, MTT and Tmax (the run's record says which correction and deconvolution were used; Boxerman et al., AJNR 2006, is the alternative). The corrected cerebral blood volume is the integral of the corrected ΔR2*, and rCBV is that volume divided by the median of normal-appearing white matter, found automatically as the voxels near the mode of the brain's CBV histogram (the reference region, outlined on the maps). Absolute CBF and CBV take kH/ρ = 0.733/1.04 g/ml, and the AIF's area is rescaled, where a vein larger than it is found, to that of a venous output function to undo the artery's partial volume (after Bjørnerud and Emblem, JCBFM 2010; frames where the vein's signal reaches the noise floor are taken from a transit model fitted to its other frames); rCBV and rCBF do not depend on it.".to_string(),
        "Diffusion. The apparent diffusion coefficient is fitted per voxel, ln S(b) = ln S0 − b·ADC, by ordinary least squares over every volume of the series with its own b-value (as MRtrix3 dwi2adc), in mm²/s; the fit's residual is kept as a quality map.".to_string(),
        "One grid. ADC is resampled onto the DSC grid by world geometry (the scanner's patient coordinates of both series, one Frame of Reference), trilinearly over finite neighbours; lesion ROIs drawn on any series are placed on each map's grid by nearest neighbour. Different Frames of Reference are refused: registration is not done.".to_string(),
        format!("Response map and reading. Per voxel inside the brain: class 1, treatment-effect-like, where corrected rCBV < {} and ADC > {}×10⁻³ mm²/s; class 3, progression-like, where rCBV > {}; class 2, indeterminate, otherwise or where either fit is poor; 0 outside or where a map is invalid. For each ROI the same rule is applied to the ROI medians (a published reading: rCBV below 1.5 with ADC above 1.0×10⁻³ mm²/s supported treatment effect with a positive predictive value of 93%; rCBV above 2.0 supports progression). The fractional tumour burden (after Hu et al., Neuro-Oncology 2012) is the share of the ROI's voxels with rCBV above {}, between the thresholds, and below {}. Thresholds are parameters (cut-offs differ between software packages) and are the same for the map, the table and the reading.", t.rcbv_low, t.adc_high_mm2_s * 1e3, t.rcbv_high, t.rcbv_high, t.rcbv_low),
        "Limits. These are measurements that support a reader; they are not a diagnosis. Read them with the images, the history and the course over time: the follow-up criteria (change over 20% between studies, growth with low rCBV over 8–12 weeks) need earlier studies and are not applied here.".to_string(),
    ]
}

/// Every record, folded, last: the key numbers and each series' JSON record (with its choices
/// as a table of dotted paths).
fn records_section(h: &mut String, report: &StudyReport) {
    h.push_str("<h2 id=\"record\">Full record</h2>\n");
    let mut all = serde_json::Map::new();
    if let Some(k) = &report.key {
        all.insert(
            "key_numbers".into(),
            serde_json::to_value(k).unwrap_or_default(),
        );
    }
    let mut series = Vec::new();
    for s in &report.series {
        if !s.record.is_null() {
            series.push(serde_json::json!({"series": s.label, "kind": s.kind, "record": s.record}));
        }
    }
    all.insert("series".into(), serde_json::Value::Array(series));
    for s in report.series.iter().filter(|s| !s.record.is_null()) {
        let _ = writeln!(
            h,
            "<details><summary>Choices of this run: {} ({})</summary>\n<table>\n<tr><th>setting</th><th>value</th></tr>",
            escape(&s.label),
            escape(&s.kind)
        );
        let mut rows = Vec::new();
        flatten("", &s.record, &mut rows);
        for (k, v) in rows {
            let _ = writeln!(
                h,
                "<tr><td class=\"key\">{}</td><td>{}</td></tr>",
                escape(&k),
                escape(&v)
            );
        }
        h.push_str("</table></details>\n");
    }
    let raw = serde_json::to_string_pretty(&serde_json::Value::Object(all)).unwrap_or_default();
    let _ = writeln!(
        h,
        "<details><summary>Full JSON record</summary><pre>{}</pre></details>",
        escape(&raw)
    );
}

fn reading_section(h: &mut String, r: &Reading) {
    let class = match r.class {
        ReadingClass::SupportsTreatmentEffect => "Supports treatment effect (pseudoprogression)",
        ReadingClass::SupportsProgression => "Supports true progression",
        ReadingClass::Indeterminate => "Neither criterion met",
        ReadingClass::InsufficientData => "No reading (data missing)",
    };
    let t = &r.thresholds;
    let _ = writeln!(
        h,
        "<div class=\"reading\"><div class=\"class\">Threshold reading (see Methods): {}</div>\n<p>{}</p>\n<p class=\"caveat\">Thresholds in force: rCBV low {}, rCBV high {}, ADC {} mm²/s. Criteria: rCBV &lt; low and ADC &gt; ADC threshold supports treatment effect (reported PPV 93.2%); rCBV &gt; high supports true progression. Follow-up criteria (change &gt; 20% between 4-weekly studies; growth with low rCBV over 8–12 weeks) need earlier studies and are not read here.</p></div>",
        escape(class),
        escape(&r.statement),
        t.rcbv_low,
        t.rcbv_high,
        escape(&format!("{:e}", t.adc_high_mm2_s)),
    );
}

fn series_section(h: &mut String, s: &SeriesReport) {
    let _ = writeln!(
        h,
        "<h2>{} <span class=\"meta\">({})</span></h2>",
        escape(&s.label),
        escape(&s.kind)
    );
    for m in &s.maps {
        let _ = writeln!(
            h,
            "<figure><img src=\"{}\" alt=\"{} map\"><figcaption>{} ({})</figcaption></figure>",
            png_data_uri(&m.png),
            escape(&m.name),
            escape(&m.name),
            escape(&m.unit)
        );
    }
    for (caption, png) in &s.plots {
        let _ = writeln!(
            h,
            "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
            png_data_uri(png),
            escape(caption),
            escape(caption)
        );
    }
    if !s.roi.is_empty() {
        h.push_str("<h3>ROI statistics</h3>\n<table>\n<tr><th>map</th><th>unit</th><th>n</th><th>excluded (NaN)</th><th>mean</th><th>median</th><th>SD</th><th>10th pct</th><th>90th pct</th></tr>\n");
        for r in &s.roi {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&r.map),
                escape(&r.unit),
                r.n,
                r.excluded,
                number(r.mean),
                number(r.median),
                number(r.sd),
                number(r.p10),
                number(r.p90)
            );
        }
        h.push_str("</table>\n");
    }
    if !s.notes.is_empty() {
        h.push_str("<ul>\n");
        for n in &s.notes {
            let _ = writeln!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul>\n");
    }
}

/// A number for a table: 4 significant figures, "–" for NaN.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    if !(1e-2..1e5).contains(&v.abs()) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.decimals$}")
}

/// Longest value shown in the table; the raw JSON below it holds everything.
const MAX_VALUE: usize = 240;

/// Leaf values of a JSON record as (dotted path, value): objects are walked, arrays of
/// objects are walked with their index, other arrays are shown compactly in one cell.
fn flatten(prefix: &str, v: &serde_json::Value, rows: &mut Vec<(String, String)>) {
    use serde_json::Value;
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&key(k), v, rows);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, rows);
            }
        }
        other => {
            let mut text = match other {
                Value::String(s) => s.clone(),
                Value::Null => "none".into(),
                v => v.to_string(),
            };
            if text.chars().count() > MAX_VALUE {
                text = text.chars().take(MAX_VALUE).collect::<String>() + " …";
            }
            rows.push((prefix.to_string(), text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_text_is_escaped() {
        let report = StudyReport {
            title: "<script>alert(1)</script>".into(),
            series: vec![SeriesReport {
                label: "T2* \"DSC\" & more".into(),
                kind: "DSC".into(),
                record: serde_json::json!({"input": {"series_description": "<b>x</b>"}}),
                ..Default::default()
            }],
            ..Default::default()
        };
        let html = render(&report);
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>x</b>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("T2* &quot;DSC&quot; &amp; more"));
        assert!(html.contains("input.series_description"));
    }

    #[test]
    fn record_is_flattened_to_dotted_paths() {
        let mut rows = Vec::new();
        let v = serde_json::json!({"fit_method": "wls", "shells": [{"b": 0.0}, {"b": 1000.0}],
            "geometry": {"dims_xyz": [48, 48, 6]}, "notice": null});
        flatten("", &v, &mut rows);
        let get = |k: &str| rows.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
        assert_eq!(get("fit_method").as_deref(), Some("wls"));
        assert_eq!(get("shells[1].b").as_deref(), Some("1000.0"));
        assert_eq!(get("geometry.dims_xyz").as_deref(), Some("[48,48,6]"));
        assert_eq!(get("notice").as_deref(), Some("none"));
    }

    #[test]
    fn table_numbers() {
        assert_eq!(number(1.23456), "1.235");
        assert_eq!(number(0.00123), "1.230e-3");
        assert_eq!(number(f64::NAN), "–");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(123.456), "123.5");
    }
}
