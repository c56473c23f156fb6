//! Placing every series of every visit on the reference grid (visit 1's DSC grid, or its DWI
//! grid without DSC; docs/methods.md §7): by scanner coordinates within one Frame of Reference,
//! else by rigid registration of the baseline signal ([`crate::models::registration`]); then
//! the maps, baseline signal and brain mask resampled there and written as `vN_*` images, with
//! the transform files of each registration.

use ndarray::Array3;

use crate::error::Result;
use crate::io::nifti::{self, NiftiFormat};
use crate::io::output::OutputDir;
use crate::io::transform::{itk_text, ras_text};
use crate::maps::Map;
use crate::models::registration::{compose, register, RegImage, RegistrationOptions};
use crate::volume::resample::{resample_linear_through, resample_mask_through};
use crate::volume::Affine;

use super::records::{Placement, RegisteredPair, VisitRecord};
use super::visits::{Kind, SeriesMaps, Visit};
use super::RegistrationMode;

/// A map of one visit on the reference grid, and where that visit's brain mask lies there.
pub(super) type OnReference = (Map, Array3<f32>, Array3<bool>);

/// One series placed: its kind, reference world → series world (LPS mm), and the record of it.
pub(super) type Placed = (Kind, Affine, Placement);

const IDENTITY: Affine = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// Places `s` relative to `onto` (fixed): `onto` world → `s` world.
fn place(
    s: &SeriesMaps,
    onto: &SeriesMaps,
    mode: RegistrationMode,
    opts: &RegistrationOptions,
) -> Result<(Affine, String, Option<RegisteredPair>)> {
    let same = match (&s.frame_of_reference_uid, &onto.frame_of_reference_uid) {
        (Some(a), Some(b)) => a.trim() == b.trim() && !a.trim().is_empty(),
        _ => false,
    };
    if same && mode == RegistrationMode::Auto {
        return Ok((IDENTITY, "same Frame of Reference".into(), None));
    }
    let fixed_label = format!("{} S0", onto.label);
    let moving_label = format!("{} S0", s.label);
    let r = register(
        RegImage {
            data: onto.s0.view(),
            geometry: &onto.geometry,
            mask: Some(onto.mask.view()),
            label: &fixed_label,
        },
        RegImage {
            data: s.s0.view(),
            geometry: &s.geometry,
            mask: Some(s.mask.view()),
            label: &moving_label,
        },
        opts,
    )?;
    Ok((
        r.matrix_lps,
        "registered".into(),
        Some(RegisteredPair {
            fixed: fixed_label,
            moving: moving_label,
            result: r,
        }),
    ))
}

/// Every series of every visit placed relative to `reference` (visit 1's DSC, or its DWI):
/// a later DSC onto visit 1's DSC; a later DWI's b = 0 onto visit 1's b = 0, composed with
/// visit 1's DWI placement onto the reference (or onto the reference directly when visit 1 has
/// no DWI). Per visit, DSC first.
///
/// Errors: a registration refused ([`crate::models::registration::register`]).
pub(super) fn place_series(
    loaded: &[Visit],
    reference: &SeriesMaps,
    mode: RegistrationMode,
    opts: &RegistrationOptions,
) -> Result<Vec<Vec<Placed>>> {
    let first = &loaded[0];
    let mut placements: Vec<Vec<Placed>> = Vec::new();
    // The first visit's DWI relative to the reference (same visit).
    let first_dwi = match (&first.dsc, &first.dwi) {
        (Some(d), Some(w)) => Some(place(w, d, RegistrationMode::Auto, opts)?),
        (None, Some(_)) => Some((IDENTITY, "reference".into(), None)),
        _ => None,
    };
    for (k, v) in loaded.iter().enumerate() {
        let mut list = Vec::new();
        if let Some(s) = &v.dsc {
            let (m, how, reg) = if k == 0 {
                (IDENTITY, "reference".to_string(), None)
            } else {
                let onto = first.dsc.as_ref().unwrap_or(reference);
                place(s, onto, mode, opts)?
            };
            list.push((Kind::Dsc, m, how, reg, s));
        }
        if let Some(s) = &v.dwi {
            let (m, how, reg) = if k == 0 {
                first_dwi.clone().expect("the first visit's DWI was placed")
            } else if let (Some(fw), Some((to_fw, _, _))) = (&first.dwi, &first_dwi) {
                // b = 0 onto the first visit's b = 0, then that visit's DWI onto the reference.
                let (m, how, reg) = place(s, fw, mode, opts)?;
                (compose(&m, to_fw), how, reg)
            } else {
                place(s, reference, mode, opts)?
            };
            list.push((Kind::Dwi, m, how, reg, s));
        }
        placements.push(
            list.into_iter()
                .map(|(kind, m, how, reg, s)| {
                    (
                        kind,
                        m,
                        Placement {
                            series: format!("{kind:?}").to_uppercase(),
                            folder: s.folder.clone(),
                            how,
                            matrix_lps: m,
                            itk_file: None,
                            ras_file: None,
                            registered: reg,
                        },
                    )
                })
                .collect(),
        );
    }
    Ok(placements)
}

/// Every placed series resampled onto the reference grid and written into `o`: per visit
/// `vN_<map>`, `vN_<series>_s0`, `vN_<series>_mask`, and for a registered series its
/// `vN_<series>_itk.txt` / `_ras.txt` transform files (named in its placement). Returns the
/// maps on the reference grid per visit, and each visit's record (changes still empty).
///
/// Errors: resampling or writing fails.
pub(super) fn onto_reference(
    loaded: &[Visit],
    placements: &mut [Vec<Placed>],
    reference: &SeriesMaps,
    fmt: NiftiFormat,
    o: &mut OutputDir,
) -> Result<(Vec<Vec<OnReference>>, Vec<VisitRecord>)> {
    let ref_grid = reference.grid();
    let mut on_ref: Vec<Vec<OnReference>> = Vec::new();
    let mut visit_records = Vec::new();
    for (k, v) in loaded.iter().enumerate() {
        let tag = format!("v{}", k + 1);
        let mut maps = Vec::new();
        for (kind, m, placement) in placements[k].iter_mut() {
            let s = match kind {
                Kind::Dsc => v.dsc.as_ref(),
                Kind::Dwi => v.dwi.as_ref(),
            }
            .expect("placed");
            let from = s.grid();
            let mask = resample_mask_through(s.mask.view(), from, ref_grid, m)?;
            for (map, data) in &s.maps {
                let r = resample_linear_through(data.view(), from, ref_grid, m)?;
                let name = fmt.file(&format!("{tag}_{}", map.stem()));
                nifti::write_map(
                    &o.path(&name),
                    &r,
                    &reference.geometry,
                    &format!("{} on visit 1's grid", map.nifti_description()),
                )?;
                maps.push((*map, r, mask.clone()));
            }
            let series = placement.series.to_lowercase();
            let s0 = resample_linear_through(s.s0.view(), from, ref_grid, m)?;
            nifti::write_map(
                &o.path(&fmt.file(&format!("{tag}_{series}_s0"))),
                &s0,
                &reference.geometry,
                "paramap baseline signal on visit 1's grid",
            )?;
            nifti::write_mask(
                &o.path(&fmt.file(&format!("{tag}_{series}_mask"))),
                &mask,
                &reference.geometry,
                "paramap brain mask on visit 1's grid",
            )?;
            if placement.how == "registered" {
                let base = format!("{tag}_{series}");
                let itk = format!("{base}_itk.txt");
                let ras = format!("{base}_ras.txt");
                o.write_text(&itk, &itk_text(m))?;
                o.write_text(&ras, &ras_text(m))?;
                placement.itk_file = Some(itk);
                placement.ras_file = Some(ras);
            }
        }
        on_ref.push(maps);
        let main = v.dsc.as_ref().or(v.dwi.as_ref()).expect("loaded");
        visit_records.push(VisitRecord {
            visit: k + 1,
            given_position: v.given,
            study_date: main.study_date.clone(),
            study_time: main.study_time.clone(),
            study_uid: main.info.study_uid.clone(),
            folder: v.dir.clone(),
            dsc: v.dsc.as_ref().map(|s| s.folder.clone()),
            dwi: v.dwi.as_ref().map(|s| s.folder.clone()),
            patient_id: v
                .dsc
                .as_ref()
                .or(v.dwi.as_ref())
                .and_then(|s| s.patient_id.clone()),
            placements: placements[k].iter().map(|(_, _, p)| p.clone()).collect(),
            changes: vec![],
        });
    }
    Ok((on_ref, visit_records))
}
