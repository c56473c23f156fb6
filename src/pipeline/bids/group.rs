//! `paramap bids … group`: every session's maps summarised per region (the maps' own brain
//! and white-matter masks, and the ROIs of `--roi-dir`) in `group_stats.tsv` with its JSON
//! column description (BIDS 1.10 "Tabular files").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{Error, Result};
use crate::io::bids::BidsName;
use crate::maps::{Kind, Map, ADC_MAPS, DSC_MAPS};

use super::dataset::{check_dataset, strip};
use super::{deriv_root, BidsOptions};

/// A statistic as the table writes it: 7 significant digits, `n/a` (BIDS' missing value) when
/// not finite.
fn fmt(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6e}")
    } else {
        "n/a".into()
    }
}

/// The ROI masks of `--roi-dir` for a session's maps of `datatype`: (desc label, file).
fn rois(dir: &Path, sub: &str, ses: &str, datatype: &str) -> Vec<(String, PathBuf)> {
    let mut base = dir.join(format!("sub-{sub}"));
    if !ses.is_empty() {
        base = base.join(format!("ses-{ses}"));
    }
    let mut out = vec![];
    for e in walkdir::WalkDir::new(&base)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(n) = BidsName::parse(&name) else {
            continue;
        };
        let folder = e
            .path()
            .parent()
            .and_then(|p| p.file_name())
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let applies = folder == datatype || !["dwi", "perf"].contains(&folder.as_str());
        if n.suffix == "mask"
            && (n.extension == ".nii.gz" || n.extension == ".nii")
            && n.get("sub") == Some(sub)
            && n.get("ses").unwrap_or("") == ses
            && applies
        {
            if let Some(label) = n.get("desc") {
                out.push((label.to_string(), e.path().to_path_buf()));
            }
        }
    }
    out
}

/// (subject, session, datatype, source entities) of a series' derivatives.
type SeriesKey = (String, String, String, String);

/// `paramap bids … group`: one row per session, source series, region and map (n, mean,
/// median, SD, 10th and 90th percentiles by [`crate::models::roi::roi_summary`]) in
/// `OUTPUT_DIR/paramap/group_stats.tsv`, with a JSON sidecar describing its columns (BIDS 1.10
/// "Tabular files"). Regions are the masks the session's maps were computed in: `brain` (the
/// fitted voxels) and, for DSC, `whitematter` (the normalisation reference).
pub fn group(opts: &BidsOptions) -> Result<GroupSummary> {
    check_dataset(&opts.bids_dir)?;
    let deriv = deriv_root(&opts.output_dir);
    if !deriv.join("dataset_description.json").is_file() {
        return Err(Error::Invalid(format!(
            "{} holds no paramap derivatives: run `paramap bids {} {} participant` first",
            deriv.display(),
            opts.bids_dir.display(),
            opts.output_dir.display()
        )));
    }
    let mut rows: Vec<String> = vec![[
        "participant_id",
        "session_id",
        "source",
        "datatype",
        "region",
        "map",
        "units",
        "voxels",
        "nan_voxels",
        "mean",
        "median",
        "sd",
        "p10",
        "p90",
    ]
    .join("\t")];
    // Files by (subject, session, datatype, source prefix).
    let mut groups: BTreeMap<SeriesKey, Vec<(BidsName, PathBuf)>> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&deriv).sort_by_file_name() {
        let entry = entry.map_err(|e| Error::Invalid(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(n) = BidsName::parse(&name) else {
            continue;
        };
        if n.extension != ".nii.gz" {
            continue;
        }
        let datatype = entry
            .path()
            .parent()
            .and_then(|p| p.file_name())
            .map(|d| d.to_string_lossy().to_string())
            .unwrap_or_default();
        let sub = n.get("sub").unwrap_or("").to_string();
        if !opts.participant_label.is_empty()
            && !opts
                .participant_label
                .iter()
                .any(|l| strip(l, "sub-") == sub)
        {
            continue;
        }
        let ses = n.get("ses").unwrap_or("").to_string();
        let source: Vec<String> = n
            .entities
            .iter()
            .filter(|(k, _)| k != "desc")
            .map(|(k, v)| format!("{k}-{v}"))
            .collect();
        groups
            .entry((sub, ses, datatype, source.join("_")))
            .or_default()
            .push((n, entry.path().to_path_buf()));
    }
    let find = |maps: &[Map], n: &BidsName| -> Option<Map> {
        maps.iter().copied().find(|m| {
            m.spec()
                .bids
                .is_some_and(|(d, s)| s == n.suffix && n.get("desc").unwrap_or("") == d)
        })
    };
    let read3 = |p: &Path| -> Result<ndarray::Array3<f32>> {
        let (a, _, _) = crate::io::nifti::read(p)?;
        Ok(a.index_axis(ndarray::Axis(0), 0).to_owned())
    };
    let mut sessions = 0;
    for ((sub, ses, datatype, source), files) in &groups {
        let (maps, regions): (&[Map], Vec<(&str, Map)>) = match datatype.as_str() {
            "dwi" => (ADC_MAPS, vec![("brain", Map::AdcMask)]),
            "perf" => (
                DSC_MAPS,
                vec![
                    ("brain", Map::BrainMask),
                    ("whitematter", Map::ReferenceMask),
                ],
            ),
            _ => continue,
        };
        sessions += 1;
        // (region, mask file, whether it is one of the maps' own masks)
        let mut regions_files: Vec<(String, PathBuf, bool)> = vec![];
        for (label, m) in &regions {
            if let Some((_, p)) = files.iter().find(|(n, _)| find(maps, n) == Some(*m)) {
                regions_files.push((label.to_string(), p.clone(), true));
            }
        }
        if let Some(dir) = &opts.roi_dir {
            for (label, p) in rois(dir, sub, ses, datatype) {
                regions_files.push((label, p, false));
            }
        }
        for (n, p) in files {
            let Some(m) = find(maps, n) else { continue };
            if m.spec().kind != Kind::Map {
                continue;
            }
            let (data, g, _) = crate::io::nifti::read(p)?;
            let map = data.index_axis(ndarray::Axis(0), 0).to_owned();
            let label = p.display().to_string();
            for (region, mask_path, own) in &regions_files {
                let mask = if *own {
                    read3(mask_path)?.mapv(|x| x != 0.0)
                } else {
                    crate::report::reading::load_roi_on_grid(
                        mask_path,
                        crate::volume::resample::GridRef::new(&g, None, &label),
                    )?
                    .mask
                };
                let r = crate::models::roi::roi_summary(map.view(), mask.view())?;
                rows.push(
                    [
                        format!("sub-{sub}"),
                        if ses.is_empty() {
                            "n/a".into()
                        } else {
                            format!("ses-{ses}")
                        },
                        source.clone(),
                        datatype.clone(),
                        region.clone(),
                        m.bids_name("", "")
                            .unwrap_or_default()
                            .trim_start_matches('_')
                            .to_string(),
                        m.spec().unit.to_string(),
                        r.n.to_string(),
                        r.excluded.to_string(),
                        fmt(r.mean),
                        fmt(r.median),
                        fmt(r.sd),
                        fmt(r.p10),
                        fmt(r.p90),
                    ]
                    .join("\t"),
                );
            }
        }
    }
    let tsv = deriv.join("group_stats.tsv");
    crate::io::output::write_file_atomic(&tsv, &(rows.join("\n") + "\n"))?;
    let columns = json!({
        "participant_id": {"Description": "subject"},
        "session_id": {"Description": "session (n/a without sessions)"},
        "source": {"Description": "entities of the source series (its file name without suffix)"},
        "datatype": {"Description": "dwi (ADC) or perf (DSC)"},
        "region": {"Description": "brain: the voxels the maps were computed in (desc-brain_mask); whitematter: the DSC normalisation reference (desc-whitematter_mask); any other: the desc- label of an ROI of --roi-dir"},
        "map": {"Description": "the map, as [desc-<desc>_]<suffix> of its file name"},
        "units": {"Description": "units of the map (paramap's registry of maps, docs/methods.md §6)"},
        "voxels": {"Description": "voxels of the region with a finite value (the statistics are over these)"},
        "nan_voxels": {"Description": "voxels of the region left out: NaN where a voxel could not be fitted"},
        "mean": {"Description": "mean over those voxels"},
        "median": {"Description": "median over those voxels"},
        "sd": {"Description": "sample standard deviation (n - 1)"},
        "p10": {"Description": "10th percentile (linear interpolation between order statistics, Hyndman and Fan 1996 definition 7)"},
        "p90": {"Description": "90th percentile (as p10)"},
    });
    crate::io::output::write_file_atomic(
        &deriv.join("group_stats.json"),
        &(serde_json::to_string_pretty(&columns).map_err(|e| Error::Invalid(e.to_string()))?
            + "\n"),
    )?;
    Ok(GroupSummary {
        table: tsv,
        rows: rows.len() - 1,
        series: sessions,
    })
}

/// What [`group`] wrote.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// `OUTPUT_DIR/paramap/group_stats.tsv`.
    pub table: PathBuf,
    /// Data rows (the header not counted).
    pub rows: usize,
    /// Source series summarised.
    pub series: usize,
}
