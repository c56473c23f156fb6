//! The follow-up report of `paramap compare` (`report.html`, laid out by
//! [`crate::report::compare`]): side-by-side montages of each map per visit with its change
//! map and PRM, the registration, PRM share and ROI tables, the ROI change over time, and the
//! statements and methods. Here the comparison's results become the report's rows and images.

use ndarray::{Array3, Axis};

use crate::error::Result;
use crate::maps::Map;
use crate::models::change::{pct, RoiRule, RoiVisit};
use crate::report::reading::NOT_A_DIAGNOSIS;
use crate::volume::Geometry;

use super::placement::OnReference;
use super::records::{VisitRecord, DICOM_PLACEMENT};
use super::visits::{visit_date, SeriesMaps, Visit};
use super::{ChangeOnReference, CompareOptions};

/// Up to 6 slices, evenly spaced over the brain's extent, and the geometry of that sub-stack
/// (so that the montages' captions give each slice's position).
fn shown_slices(mask: &Array3<bool>, g: &Geometry) -> (Vec<usize>, Geometry) {
    let nz = mask.dim().0;
    let zs: Vec<usize> = (0..nz)
        .filter(|&z| mask.index_axis(Axis(0), z).iter().any(|&b| b))
        .collect();
    let (lo, hi) = match (zs.first(), zs.last()) {
        (Some(&a), Some(&b)) => (a, b),
        _ => (0, nz.saturating_sub(1)),
    };
    let step = ((hi - lo) / 5).max(1);
    let chosen: Vec<usize> = (lo..=hi).step_by(step).take(6).collect();
    let mut sub = g.clone();
    let origin = g.index_to_lps([0.0, 0.0, lo as f64]);
    for r in 0..3 {
        sub.affine_lps[r][2] *= step as f64;
        sub.affine_lps[r][3] = origin[r];
    }
    sub.dims[2] = chosen.len();
    (chosen, sub)
}

/// The follow-up report (src/report/compare.rs) from the maps on the reference grid.
#[allow(clippy::too_many_arguments)]
pub(super) fn compare_report(
    loaded: &[Visit],
    records: &[VisitRecord],
    on_ref: &[Vec<OnReference>],
    changes: &[ChangeOnReference],
    roi: Option<&Array3<bool>>,
    reference: &SeriesMaps,
    opts: &CompareOptions,
    roi_table: &[RoiVisit],
    roi_rules: &[RoiRule],
    notices: &[String],
) -> Result<String> {
    use crate::report::colormap::CLASS_COLOURS;
    use crate::report::compare::{CompareReport, Panel, SideBySide, TimeSeries, VisitHeader};
    use crate::report::montage::{percentile, Outline, PreviewSpec, ROI_OUTLINE};
    use crate::report::{montage_png, Colormap};
    let (zs, sub_g) = shown_slices(&reference.mask, &reference.geometry);
    let pick = |a: &Array3<f32>| a.select(Axis(0), &zs);
    let pick_b = |a: &Array3<bool>| a.select(Axis(0), &zs);
    let roi_sub = roi.map(pick_b);
    let positions: Vec<String> = zs
        .iter()
        .map(|&z| crate::report::montage::slice_position(&reference.geometry, z))
        .collect();
    let classes = ["not classified", "decreased", "unchanged", "increased"];
    let mut side = Vec::new();
    for map in [Map::Rcbv, Map::Cbf, Map::Adc] {
        let Some((_, first, first_mask)) = on_ref[0].iter().find(|(m, _, _)| *m == map) else {
            continue;
        };
        let spec = map.spec();
        let mut vals: Vec<f32> = first
            .iter()
            .zip(first_mask)
            .filter(|(v, &b)| b && v.is_finite())
            .map(|(v, _)| *v)
            .collect();
        vals.sort_by(f32::total_cmp);
        let range = (!vals.is_empty())
            .then(|| (percentile(&vals, 0.02), percentile(&vals, 0.98)))
            .filter(|(a, b)| b > a);
        let mut panels = Vec::new();
        fn outline<'a>(spec: &mut PreviewSpec<'a>, roi: Option<&'a Array3<bool>>) {
            if let Some(r) = roi {
                spec.outlines.push(Outline {
                    mask: r.view(),
                    colour: ROI_OUTLINE,
                    label: "lesion ROI (visit 1)",
                });
            }
        }
        for (k, maps) in on_ref.iter().enumerate() {
            let Some((_, data, mask)) = maps.iter().find(|(m, _, _)| *m == map) else {
                continue;
            };
            let caption = format!(
                "visit {} ({}): {} ({})",
                k + 1,
                visit_date(&loaded[k]),
                spec.title,
                spec.unit
            );
            let d = pick(data);
            let m = pick_b(mask);
            let mut p = PreviewSpec::new(&caption, spec.unit, spec.colormap);
            p.range = range;
            p.mask = Some(m.view());
            p.geometry = Some(&sub_g);
            outline(&mut p, roi_sub.as_ref());
            panels.push(Panel {
                png: montage_png(d.view(), &p)?,
                caption: caption.clone(),
            });
        }
        for ChangeOnReference {
            visit: k,
            change,
            prm,
            ..
        } in changes.iter().filter(|c| c.map == map)
        {
            let c = opts.change_pct as f32;
            let caption = format!("visit {} − visit 1: {} change (%)", k + 1, spec.title);
            let d = pick(change);
            let mut p = PreviewSpec::new(&caption, "%", Colormap::Viridis);
            p.range = Some((-2.5 * c, 2.5 * c));
            p.geometry = Some(&sub_g);
            outline(&mut p, roi_sub.as_ref());
            panels.push(Panel {
                png: montage_png(d.view(), &p)?,
                caption,
            });
            let caption = format!(
                "visit {} vs visit 1: {} PRM (±{}%)",
                k + 1,
                spec.title,
                opts.change_pct
            );
            let d = pick(&prm.mapv(f32::from));
            let mut p = PreviewSpec::new(&caption, "class", Colormap::Classes);
            p.range = Some((0.0, 3.0));
            p.class_names = Some(&classes);
            p.geometry = Some(&sub_g);
            outline(&mut p, roi_sub.as_ref());
            panels.push(Panel {
                png: montage_png(d.view(), &p)?,
                caption,
            });
        }
        side.push(SideBySide {
            map: spec.title.to_string(),
            slices: format!("slices {}", positions.join(", ")),
            panels,
        });
    }
    let f = |v: Option<f64>| v.map(crate::report::html::number).unwrap_or("–".into());
    let mut registration = Vec::new();
    for v in records {
        for p in &v.placements {
            let q = p.registered.as_ref().map(|x| &x.result.quality);
            registration.push(vec![
                v.visit.to_string(),
                p.series.clone(),
                p.how.clone(),
                q.map(|q| format!("{:.3} → {:.3}", q.mattes_mi_start, q.mattes_mi_final))
                    .unwrap_or("–".into()),
                q.map(|q| format!("{:.3} → {:.3}", q.dice_identity, q.dice))
                    .unwrap_or("–".into()),
                q.map(|q| format!("{:.0}%", q.overlap * 100.0))
                    .unwrap_or("–".into()),
                p.itk_file.clone().unwrap_or("–".into()),
            ]);
        }
    }
    let mut prm_shares = Vec::new();
    for v in records {
        for c in &v.changes {
            for s in &c.shares {
                prm_shares.push(vec![
                    v.visit.to_string(),
                    c.map.clone(),
                    s.region.clone(),
                    s.n.to_string(),
                    format!("{:.1}%", s.increased * 100.0),
                    format!("{:.1}%", s.unchanged * 100.0),
                    format!("{:.1}%", s.decreased * 100.0),
                    format!("{:+.1}%", s.median_change_pct),
                ]);
            }
        }
    }
    let first_row = roi_table.first();
    let change = |a: Option<f64>, b: Option<f64>| a.zip(b).and_then(|(a, b)| pct(a, b));
    let roi_rows = roi_table
        .iter()
        .map(|r| {
            let rc = first_row.and_then(|fr| change(fr.rcbv_median, r.rcbv_median));
            let dc = first_row.and_then(|fr| change(fr.adc_median_mm2_s, r.adc_median_mm2_s));
            vec![
                r.visit.to_string(),
                visit_date(&loaded[r.visit - 1]),
                r.roi
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                format!("{:.2}", r.volume_ml),
                f(r.rcbv_median),
                rc.map(|x| format!("{x:+.1}%")).unwrap_or("–".into()),
                f(r.cbf_median),
                f(r.adc_median_mm2_s.map(|x| x * 1e3)),
                dc.map(|x| format!("{x:+.1}%")).unwrap_or("–".into()),
            ]
        })
        .collect();
    let series_of = |label: &str, get: &dyn Fn(&RoiVisit) -> Option<f64>| TimeSeries {
        label: label.to_string(),
        change_pct: roi_table
            .iter()
            .map(|r| first_row.and_then(|fr| change(get(fr), get(r))))
            .collect(),
    };
    let roi_name = opts
        .rois
        .first()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let plot = if roi_table.is_empty() {
        vec![]
    } else {
        vec![
            series_of(&format!("{roi_name} rCBV"), &|r| r.rcbv_median),
            series_of(&format!("{roi_name} CBF"), &|r| r.cbf_median),
            series_of(&format!("{roi_name} ADC"), &|r| r.adc_median_mm2_s),
        ]
    };
    let report = CompareReport {
        title: "paramap compare: follow-up visits".into(),
        generated_by: format!("paramap {}", env!("CARGO_PKG_VERSION")),
        visits: loaded
            .iter()
            .zip(records)
            .map(|(v, r)| VisitHeader {
                visit: r.visit,
                date: visit_date(v),
                folder: v.dir.display().to_string(),
                study_uid: r.study_uid.clone(),
            })
            .collect(),
        notices: notices.to_vec(),
        change_pct: opts.change_pct,
        registration_header: [
            "visit", "series", "placement", "Mattes MI (nats) start → final",
            "Dice of brain masks identity → final", "overlap", "transform",
        ]
        .map(String::from)
        .to_vec(),
        registration,
        side_by_side: side,
        prm_legend: (0..4u8)
            .map(|c| (c, classes[c as usize].to_string(), CLASS_COLOURS[c as usize]))
            .collect(),
        prm_header: [
            "visit", "map", "region", "voxels", "increased", "unchanged", "decreased",
            "median change",
        ]
        .map(String::from)
        .to_vec(),
        prm_shares,
        roi_header: [
            "visit", "date", "ROI", "volume (mL)", "median rCBV", "rCBV change from visit 1",
            "median CBF (ml/100g/min)", "median ADC (10⁻³ mm²/s)", "ADC change from visit 1",
        ]
        .map(String::from)
        .to_vec(),
        roi_rows,
        plot_visits: roi_table
            .iter()
            .map(|r| format!("visit {} {}", r.visit, visit_date(&loaded[r.visit - 1])))
            .collect(),
        plot,
        statements: roi_rules.iter().map(|r| r.statement.clone()).collect(),
        methods: vec![
            format!("Every later visit is placed on visit 1's grid: series in visit 1's Frame of Reference by scanner coordinates, others by rigid registration (6 degrees of freedom, Mattes mutual information, 3 resolution levels; docs/methods.md §7). The registration table gives the mutual information and the Dice overlap of the brain masks before and after."),
            format!("Change maps: 100 × (later − visit 1) / visit 1, in %. Parametric response map (Galbán et al., Nat Med 2009; the functional diffusion map of Moffat et al., PNAS 2005): each voxel valid in both visits is increased or decreased when it changed by more than {}%, else unchanged.", opts.change_pct),
            format!("The ROI rule (docs/methods.md §1): each visit's own ROI on its own maps; an ROI median rCBV rising, or ADC falling, by more than {}% between consecutive visits supports true progression; growth with rCBV below {} over 8–12 weeks is typical of pseudoprogression.", opts.change_pct, opts.thresholds.rcbv_low),
            DICOM_PLACEMENT.to_string(),
        ],
        caution: NOT_A_DIAGNOSIS.to_string(),
    };
    Ok(crate::report::compare::render_compare(&report))
}
