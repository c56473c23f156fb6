//! The DICOM output of `paramap compare` (docs/methods.md §7, [`super::DICOM_PLACEMENT`]):
//! each later visit's change maps and PRMs as derived series in that visit's own study, on its
//! grid (DSC, else DWI) and in its Frame of Reference, resampled there from the reference grid
//! through the inverse placement, referencing the source series of both visits.

use ndarray::{Array3, Zip};

use crate::error::{Error, Result};
use crate::io::dicom::derived::{self, DerivedMap, DerivedOptions, Encoding};
use crate::io::output::OutputDir;
use crate::maps::Map;
use crate::models::change::{PRM_DECREASED, PRM_INCREASED, PRM_UNCHANGED};
use crate::models::registration;
use crate::volume::resample::{resample_linear_through, resample_mask_through};
use crate::volume::SeriesInfo;

use super::placement::Placed;
use super::records::VisitRecord;
use super::visits::{visit_date, Kind, SeriesMaps, Visit};
use super::{ChangeOnReference, CompareOptions};

/// Writes each later visit's change maps and PRMs (from `changes`) as derived series under
/// `o`'s `dicom/` folder, and names their folders in `records[k].changes`. A later visit
/// without DICOM records (NIfTI input, `--dicom none`) gets a notice instead.
///
/// Errors: a placement that is not invertible; resampling or writing fails.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_changes(
    loaded: &[Visit],
    placements: &[Vec<Placed>],
    changes: &[ChangeOnReference],
    reference: &SeriesMaps,
    opts: &CompareOptions,
    encoding: Encoding,
    records: &mut [VisitRecord],
    notices: &mut Vec<String>,
    o: &mut OutputDir,
) -> Result<()> {
    let ref_grid = reference.grid();
    for k in 1..loaded.len() {
        let v = &loaded[k];
        let (target, m) = match (
            &v.dsc,
            placements[k].iter().find(|(kd, _, _)| *kd == Kind::Dsc),
        ) {
            (Some(s), Some((_, m, _))) => (s, *m),
            _ => match (
                &v.dwi,
                placements[k].iter().find(|(kd, _, _)| *kd == Kind::Dwi),
            ) {
                (Some(s), Some((_, m, _))) => (s, *m),
                _ => continue,
            },
        };
        if target.info.dicom.is_none() {
            notices.push(format!(
                "visit {}: {} has no DICOM records (a NIfTI input, or run with --dicom none): its change maps are written as NIfTI only",
                k + 1,
                target.folder.display()
            ));
            continue;
        }
        let back = registration::invert(&m).ok_or_else(|| {
            Error::Invalid(format!("visit {}: the placement is not invertible", k + 1))
        })?;
        let to = target.grid();
        for (n, c) in changes.iter().filter(|c| c.visit == k).enumerate() {
            let (map, change, prm) = (&c.map, &c.change, &c.prm);
            let kind = if *map == Map::Adc {
                Kind::Dwi
            } else {
                Kind::Dsc
            };
            fn series_of(v: &Visit, kind: Kind) -> Option<&SeriesInfo> {
                match kind {
                    Kind::Dsc => v.dsc.as_ref().map(|s| &s.info),
                    Kind::Dwi => v.dwi.as_ref().map(|s| &s.info),
                }
            }
            let refs: Vec<&SeriesInfo> = [series_of(v, kind), series_of(&loaded[0], kind)]
                .into_iter()
                .flatten()
                .collect();
            let change_on = resample_linear_through(change.view(), ref_grid, to, &back)?;
            let mut prm_on = Array3::<f32>::zeros(change_on.dim());
            for c in [PRM_DECREASED, PRM_UNCHANGED, PRM_INCREASED] {
                let is = prm.mapv(|p| p == c);
                let on = resample_mask_through(is.view(), ref_grid, to, &back)?;
                Zip::from(&mut prm_on).and(&on).for_each(|p, &b| {
                    if b {
                        *p = f32::from(c)
                    }
                });
            }
            let from_date = visit_date(&loaded[0]);
            let title = map.spec().title;
            let stem = map.stem();
            let common = format!(
                "between visit 1 (study {}, {from_date}) and this study (visit {}, {}); computed on visit 1's {} grid after rigid registration (Mattes mutual information, docs/methods.md §7), then resampled onto this study's grid (trilinear; PRM nearest neighbour) through the inverse transform. Support for a reader, not a diagnosis",
                loaded[0].dsc.as_ref().or(loaded[0].dwi.as_ref()).and_then(|s| s.info.study_uid.clone()).unwrap_or_else(|| "unknown".into()),
                k + 1,
                visit_date(v),
                if reference.label.ends_with("(Dsc)") { "DSC" } else { "DWI" },
            );
            let base = 7000 + 100 * (k as i64 + 1) + 10 * n as i64;
            let mut folders = Vec::new();
            for (quantity, data, name, descr, derivation, num) in [
                (
                    derived::Quantity::Change,
                    &change_on,
                    format!("v{}_delta_{stem}_pct", k + 1),
                    format!("paramap {title} change % from visit 1"),
                    format!("change of {title} in % of visit 1's value {common}"),
                    base,
                ),
                (
                    derived::Quantity::Prm,
                    &prm_on,
                    format!("v{}_prm_{stem}", k + 1),
                    format!("paramap {title} PRM vs visit 1"),
                    format!(
                        "parametric response map of {title} (Galban et al. Nat Med 2009): 1 decreased, 2 unchanged, 3 increased by more than {}%, 0 not classified; {common}",
                        opts.change_pct
                    ),
                    base + 1,
                ),
            ] {
                let folder = format!("dicom/{name}");
                let dir = o.path("dicom").join(&name);
                derived::write_derived_referencing(
                    &DerivedMap {
                        data: data.view(),
                        geometry: &target.geometry,
                        quantity,
                        series_description: descr,
                        series_number: num,
                        derivation,
                    },
                    &target.info,
                    &refs,
                    &DerivedOptions {
                        encoding,
                        uid_root: opts.uid_root.clone(),
                    },
                    &dir,
                )?;
                folders.push(folder);
            }
            if let Some(c) = records[k].changes.iter_mut().find(|c| c.map == stem) {
                c.dicom = folders;
            }
        }
    }
    Ok(())
}
