//! The visits of `paramap compare`: each visit's DSC and DWI results read back from a
//! `paramap run` output folder (maps, brain mask, baseline signal, and the source series as the
//! DICOM outputs record it), study folders processed first, and the visits put in date order.

use std::path::{Path, PathBuf};

use ndarray::{Array3, Axis};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::dicom::derived;
use crate::io::nifti::{self, NiftiFormat};
use crate::io::output::OutputDir;
use crate::maps::Map;
use crate::pipeline::study::{run_study, RunOptions, Status};
use crate::volume::resample::GridRef;
use crate::volume::{DicomSource, Geometry, SeriesInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub(super) enum Kind {
    Dsc,
    Dwi,
}

/// One series' results as `paramap run` wrote them.
pub(super) struct SeriesMaps {
    pub(super) folder: PathBuf,
    pub(super) geometry: Geometry,
    pub(super) s0: Array3<f32>,
    pub(super) mask: Array3<bool>,
    /// (map, values): rCBV and CBF (DSC) or ADC (DWI), where written.
    pub(super) maps: Vec<(Map, Array3<f32>)>,
    pub(super) frame_of_reference_uid: Option<String>,
    pub(super) patient_id: Option<String>,
    pub(super) label: String,
    /// The source series as paramap's DICOM outputs of it record it (patient, study, Frame of
    /// Reference, the source instances); `dicom` is None without DICOM outputs.
    pub(super) info: SeriesInfo,
    /// StudyDate and StudyTime (DICOM DA, TM) of the source study.
    pub(super) study_date: Option<String>,
    pub(super) study_time: Option<String>,
}

impl SeriesMaps {
    pub(super) fn map(&self, m: Map) -> Option<&Array3<f32>> {
        self.maps.iter().find(|(k, _)| *k == m).map(|(_, a)| a)
    }
    pub(super) fn grid(&self) -> GridRef<'_> {
        GridRef::new(
            &self.geometry,
            self.frame_of_reference_uid.as_deref(),
            &self.label,
        )
    }
}

pub(super) struct Visit {
    pub(super) dir: PathBuf,
    /// Position among the arguments (1-based).
    pub(super) given: usize,
    pub(super) dsc: Option<SeriesMaps>,
    pub(super) dwi: Option<SeriesMaps>,
}

pub(super) fn image_path(dir: &Path, stem: &str) -> Option<PathBuf> {
    [NiftiFormat::Gz, NiftiFormat::Nii]
        .iter()
        .map(|f| dir.join(f.file(stem)))
        .find(|p| p.is_file())
}

fn read3(path: &Path) -> Result<(Array3<f32>, Geometry)> {
    let (data, g, _) = nifti::read(path)?;
    if data.shape()[0] != 1 {
        return Err(Error::Nifti {
            path: path.to_path_buf(),
            problem: format!(
                "a 3-D map was expected; this image has {} volumes",
                data.shape()[0]
            ),
        });
    }
    Ok((data.index_axis(Axis(0), 0).to_owned(), g))
}

fn load_series(folder: &Path, kind: Kind) -> Result<SeriesMaps> {
    let (record, maps, mask_stem) = match kind {
        Kind::Dsc => ("dsc.json", vec![Map::Rcbv, Map::Cbf], Map::BrainMask.stem()),
        Kind::Dwi => ("adc.json", vec![Map::Adc], Map::AdcMask.stem()),
    };
    let need = |stem: &str| {
        image_path(folder, stem).ok_or_else(|| Error::NotFound {
            path: folder.join(NiftiFormat::Gz.file(stem)),
        })
    };
    let (s0, geometry) = read3(&need(Map::DscS0.stem())?)?;
    let fits = |g: &Geometry, p: &Path| -> Result<()> {
        if g.dims != geometry.dims || g.max_corner_distance(&geometry) > 0.1 {
            return Err(Error::Nifti {
                path: p.to_path_buf(),
                problem: format!(
                    "its grid differs from {}'s s0 image; the folder mixes results of different series",
                    folder.display()
                ),
            });
        }
        Ok(())
    };
    let mask_path = need(mask_stem)?;
    let (mask, g) = read3(&mask_path)?;
    fits(&g, &mask_path)?;
    let mut out = Vec::new();
    for m in maps {
        if let Some(p) = image_path(folder, m.stem()) {
            let (a, g) = read3(&p)?;
            fits(&g, &p)?;
            out.push((m, a));
        }
    }
    let input = std::fs::read_to_string(folder.join(record))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| v["input"].clone());
    let text = |k: &str| {
        input
            .as_ref()
            .and_then(|i| i[k].as_str())
            .map(str::to_string)
    };
    let record = dicom_record(folder);
    let (info, study_date, study_time) = match record {
        Some(r) => r,
        None => (
            SeriesInfo {
                source: folder.display().to_string(),
                frame_of_reference_uid: text("frame_of_reference_uid"),
                patient_id: text("patient_id"),
                study_uid: text("study_uid"),
                ..Default::default()
            },
            None,
            None,
        ),
    };
    Ok(SeriesMaps {
        info,
        study_date,
        study_time,
        label: format!("{} ({kind:?})", folder.display()),
        folder: folder.to_path_buf(),
        geometry,
        s0: s0.mapv(|v| if v.is_finite() { v } else { 0.0 }),
        mask: mask.mapv(|v| v != 0.0),
        maps: out,
        frame_of_reference_uid: text("frame_of_reference_uid"),
        patient_id: text("patient_id"),
    })
}

/// The source series of a result folder as paramap's DICOM outputs of it record it: the first
/// file of `dicom/<map>/` carries the source's patient, study and Frame of Reference attributes
/// verbatim (they are inherited, docs/methods.md §6) and references every source instance
/// (Referenced Series Sequence). Returns the series, StudyDate and StudyTime; None without
/// DICOM outputs (NIfTI input, `--dicom none`) or when they can't be read.
fn dicom_record(folder: &Path) -> Option<(SeriesInfo, Option<String>, Option<String>)> {
    use dicom_dictionary_std::tags;
    let sorted = |d: &Path, dirs: bool| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| {
            if dirs {
                p.is_dir()
            } else {
                p.extension().is_some_and(|e| e == "dcm")
            }
        });
        v.sort();
        v
    };
    let file = sorted(&folder.join("dicom"), true)
        .iter()
        .find_map(|d| sorted(d, false).into_iter().next())?;
    let obj = dicom_object::open_file(&file).ok()?;
    let text = |o: &dicom_object::InMemDicomObject, t| {
        o.element(t)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
    };
    let mut inherited = Vec::new();
    for (tag, _) in derived::INHERITED {
        if let Ok(e) = obj.element(*tag) {
            if let Ok(v) = e.to_str() {
                inherited.push((
                    (tag.group(), tag.element()),
                    e.vr().to_string().to_string(),
                    v.trim_end_matches(['\0', ' ']).to_string(),
                ));
            }
        }
    }
    let series = obj
        .element(tags::REFERENCED_SERIES_SEQUENCE)
        .ok()?
        .items()?
        .first()?;
    let mut sop_class_uid = String::new();
    let mut sop_instance_uids = Vec::new();
    for r in series
        .element(tags::REFERENCED_INSTANCE_SEQUENCE)
        .ok()?
        .items()?
    {
        sop_class_uid = text(r, tags::REFERENCED_SOP_CLASS_UID)?;
        sop_instance_uids.push(text(r, tags::REFERENCED_SOP_INSTANCE_UID)?);
    }
    let o: &dicom_object::InMemDicomObject = &obj;
    let info = SeriesInfo {
        source: folder.display().to_string(),
        series_uid: text(series, tags::SERIES_INSTANCE_UID),
        study_uid: text(o, tags::STUDY_INSTANCE_UID),
        frame_of_reference_uid: text(o, tags::FRAME_OF_REFERENCE_UID),
        patient_id: text(o, tags::PATIENT_ID),
        n_files: sop_instance_uids.len(),
        dicom: Some(DicomSource {
            inherited,
            sop_class_uid,
            sop_instance_uids,
        }),
        ..Default::default()
    };
    let date = text(o, tags::STUDY_DATE).filter(|d| !d.is_empty());
    let time = text(o, tags::STUDY_TIME).filter(|d| !d.is_empty());
    Some((info, date, time))
}

/// Whether `dir` holds paramap results (itself or an immediate subfolder): a `run.json`, or a
/// DSC/DWI map with its record. Anything else is taken for a study folder to process first.
pub(super) fn holds_results(dir: &Path) -> bool {
    let has = |d: &Path| {
        d.join("run.json").is_file()
            || (image_path(d, Map::Rcbv.stem()).is_some() && d.join("dsc.json").is_file())
            || (image_path(d, Map::Adc.stem()).is_some() && d.join("adc.json").is_file())
    };
    has(dir)
        || std::fs::read_dir(dir)
            .map(|r| r.filter_map(|e| e.ok()).any(|e| has(&e.path())))
            .unwrap_or(false)
}

/// The DSC and DWI results of one visit folder: the folder itself or its immediate
/// subfolders holding `rcbv.nii.gz` with `dsc.json` (DSC) / `adc.nii.gz` with `adc.json`
/// (DWI). The study's `response/` folder (ADC resampled to the DSC grid, with
/// `response.json`) is not a series result.
pub(super) fn load_visit(dir: &Path) -> Result<Visit> {
    if !dir.is_dir() {
        return Err(Error::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let mut folders = vec![dir.to_path_buf()];
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subs.sort();
    folders.extend(subs);
    let pick = |stem: &str, record: &str| -> Result<Option<PathBuf>> {
        let found: Vec<&PathBuf> = folders
            .iter()
            .filter(|f| image_path(f, stem).is_some() && f.join(record).is_file())
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found[0].clone())),
            _ => Err(Error::Invalid(format!(
                "{} holds {} results with {stem}: {}; give the series folder you mean as the visit",
                dir.display(),
                found.len(),
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    };
    let dsc = pick(Map::Rcbv.stem(), "dsc.json")?
        .map(|f| load_series(&f, Kind::Dsc))
        .transpose()?;
    let dwi = pick(Map::Adc.stem(), "adc.json")?
        .map(|f| load_series(&f, Kind::Dwi))
        .transpose()?;
    if dsc.is_none() && dwi.is_none() {
        return Err(Error::Invalid(format!(
            "{} holds no paramap results (no rcbv.nii.gz or adc.nii.gz in it or in its subfolders); give a `paramap run` output folder",
            dir.display()
        )));
    }
    Ok(Visit {
        dir: dir.to_path_buf(),
        given: 0,
        dsc,
        dwi,
    })
}

/// "2026-01-05 09:00:00" from a visit's StudyDate/StudyTime, or "date unknown".
pub(super) fn visit_date(v: &Visit) -> String {
    let Some(s) = v.dsc.as_ref().or(v.dwi.as_ref()) else {
        return "date unknown".into();
    };
    match &s.study_date {
        Some(d) if d.len() == 8 => {
            let mut t = format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]);
            if let Some(tm) = s.study_time.as_deref().filter(|t| t.len() >= 4) {
                t += &format!(" {}:{}", &tm[..2], &tm[2..4]);
            }
            t
        }
        Some(d) => d.clone(),
        None => "date unknown".into(),
    }
}

/// The visits as given (`given` is each one's 1-based position): a results folder is read
/// back; a study folder is processed first, as `paramap run` would, into `OUT/visits/<position>/`
/// (staged in `o`; the record names the folders where they will be after the commit).
///
/// Errors: a study folder with no series paramap could process; those of [`load_visit`].
pub(super) fn load_visits(
    visits: &[PathBuf],
    out: &Path,
    o: &mut OutputDir,
    run: &RunOptions,
    progress: &dyn Fn(&str),
) -> Result<Vec<Visit>> {
    let mut loaded: Vec<Visit> = Vec::new();
    for (k, v) in visits.iter().enumerate() {
        let mut visit = if v.is_dir() && !holds_results(v) {
            process_study(k + 1, v, out, o, run, progress)?
        } else {
            load_visit(v)?
        };
        visit.given = k + 1;
        loaded.push(visit);
    }
    Ok(loaded)
}

/// Visit `position`'s study folder `v` processed as `paramap run` would, into
/// `OUT/visits/<position>/`, and read back.
fn process_study(
    position: usize,
    v: &Path,
    out: &Path,
    o: &mut OutputDir,
    run: &RunOptions,
    progress: &dyn Fn(&str),
) -> Result<Visit> {
    let name = format!("visits/{position}");
    let staged = o.path("visits").join(position.to_string());
    progress(&format!(
        "visit {position}: {} is a study folder: processing it as `paramap run` would, into {}",
        v.display(),
        out.join(&name).display()
    ));
    let summary = run_study(v, &staged, run, progress)?;
    if summary.count(Status::Processed) == 0 {
        return Err(Error::Invalid(format!(
            "visit {position}: {} is neither a `paramap run` output nor a study with a DWI or DSC series paramap could process ({}); `paramap info {}` lists its series",
            v.display(),
            summary.line(),
            v.display()
        )));
    }
    let mut visit = load_visit(&staged)?;
    // The record names the folders where they will be, not the staging ones.
    let fin = out.join(&name);
    let rebase = |p: &mut PathBuf| {
        if let Ok(rest) = p.strip_prefix(&staged) {
            *p = fin.join(rest);
        }
    };
    rebase(&mut visit.dir);
    for s in [&mut visit.dsc, &mut visit.dwi].into_iter().flatten() {
        rebase(&mut s.folder);
        s.label = format!(
            "{} ({})",
            s.folder.display(),
            s.label
                .rsplit('(')
                .next()
                .map(|t| t.trim_end_matches(')'))
                .unwrap_or("")
        );
    }
    Ok(visit)
}

/// The visits in date order (StudyDate/StudyTime of each visit's source study), with the ROIs
/// (one per visit, or none) in the same order. A given order that disagrees is said (a warning
/// and a notice); when any date is unknown the given order stands, and a notice says so.
pub(super) fn in_date_order(
    mut loaded: Vec<Visit>,
    rois: &[PathBuf],
    notices: &mut Vec<String>,
) -> (Vec<Visit>, Vec<PathBuf>) {
    let date_of = |v: &Visit| -> Option<String> {
        let s = v.dsc.as_ref().or(v.dwi.as_ref())?;
        Some(format!(
            "{}{}",
            s.study_date.clone()?,
            s.study_time.clone().unwrap_or_default()
        ))
    };
    let mut ordered_rois = rois.to_vec();
    let dates: Vec<Option<String>> = loaded.iter().map(date_of).collect();
    if dates.iter().all(Option::is_some) {
        let mut order: Vec<usize> = (0..loaded.len()).collect();
        order.sort_by_key(|&i| dates[i].clone());
        if order.iter().enumerate().any(|(i, &j)| i != j) {
            let given: Vec<String> = loaded
                .iter()
                .map(|v| format!("{} ({})", v.dir.display(), visit_date(v)))
                .collect();
            let line = format!(
                "the visits were not given in date order ({}): they are taken in date order, so visit 1 (the reference) is the earliest, {}",
                given.join(", "),
                loaded[order[0]].dir.display()
            );
            crate::log::warn(&line);
            notices.push(line);
            let mut taken: Vec<Option<Visit>> = loaded.into_iter().map(Some).collect();
            loaded = order
                .iter()
                .map(|&i| taken[i].take().expect("once"))
                .collect();
            if !ordered_rois.is_empty() {
                ordered_rois = order.iter().map(|&i| rois[i].clone()).collect();
            }
        }
    } else {
        notices.push(format!(
            "visit dates unknown for {} (no DICOM records in the results): the visits are taken in the order given",
            loaded
                .iter()
                .zip(&dates)
                .filter(|(_, d)| d.is_none())
                .map(|(v, _)| v.dir.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    (loaded, ordered_rois)
}

/// A notice when the visits carry different Patient IDs.
pub(super) fn patient_notice(loaded: &[Visit]) -> Option<String> {
    let ids: Vec<&str> = loaded
        .iter()
        .flat_map(|v| [&v.dsc, &v.dwi])
        .flatten()
        .filter_map(|s| s.patient_id.as_deref())
        .collect();
    ids.windows(2).any(|w| w[0] != w[1]).then(|| {
        format!(
            "the visits carry different Patient IDs ({}): check that they are one patient's",
            ids.join(", ")
        )
    })
}
