//! One session of `paramap bids … participant`: its series computed into the work folder by
//! `paramap adc` / `paramap dsc` ([`super::SeriesCommands`]), then each map copied with a JSON
//! sidecar (Units, Description, Sources, the full paramap record) into a staging folder and
//! moved into the derivatives together.

use std::path::{Path, PathBuf};

use serde_json::{json, Map as JsonMap, Value};

use crate::error::{Error, Result};
use crate::io::bids::{self, BidsName};
use crate::maps::{Kind, Map, ADC_MAPS, DSC_MAPS};

use super::dataset::Session;
use super::SeriesCommands;

/// A number of a sidecar field in seconds, with an error naming the file and the field.
fn seconds(
    meta: &JsonMap<String, Value>,
    field: &str,
    what: &str,
    example: &str,
    largest: f64,
    file: &Path,
    from: &[PathBuf],
) -> Result<f64> {
    let whence = if from.is_empty() {
        "no sidecar applies to it".to_string()
    } else {
        format!(
            "sidecars read by BIDS inheritance: {}",
            from.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let side = bids::sibling(file, "json");
    match meta.get(field) {
        None => Err(Error::Sidecar {
            path: side,
            problem: format!(
                "has no {field} ({what} in seconds, e.g. {example}), which DSC needs: add it to this sidecar or one it inherits from ({whence})"
            ),
        }),
        Some(v) => match v.as_f64() {
            Some(x) if x > 0.0 && x <= largest => Ok(x),
            Some(x) if x > largest => Err(Error::Sidecar {
                path: side,
                problem: format!(
                    "{field} {x} is not in seconds (BIDS gives times in s): write e.g. {example} ({whence})"
                ),
            }),
            _ => Err(Error::Sidecar {
                path: side,
                problem: format!("{field} {v} is not a positive number of seconds ({whence})"),
            }),
        },
    }
}

/// Computes a session's series into the work folder as `paramap adc`/`dsc` do, then moves its
/// derivatives into place; returns them (relative to the derivatives' root).
pub(super) fn process_session(
    commands: &dyn SeriesCommands,
    root: &Path,
    deriv: &Path,
    work: &Path,
    s: &Session,
    cmd: &str,
) -> Result<Vec<String>> {
    // (source file, datatype folder, work folder, record name, maps)
    let mut made: Vec<(PathBuf, &str, PathBuf, &str, &[Map])> = vec![];
    let name_of = |p: &Path| -> Result<BidsName> {
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        BidsName::parse(&n).ok_or_else(|| Error::Invalid(format!("{}: not a BIDS name", n)))
    };
    // Every input checked before anything is computed: a session fails whole, early.
    let timing: Vec<(f64, f64)> = s
        .dsc
        .iter()
        .map(|p| {
            let (meta, from) = bids::inherited(root, p)?;
            let te = seconds(&meta, "EchoTime", "the echo time", "0.03", 1.0, p, &from)?;
            let tr = seconds(
                &meta,
                "RepetitionTime",
                "the time between two volumes",
                "1.5",
                60.0,
                p,
                &from,
            )?;
            Ok((te, tr))
        })
        .collect::<Result<_>>()?;
    for p in &s.dwi {
        for ext in ["bval", "bvec"] {
            let side = bids::sibling(p, ext);
            if !side.is_file() {
                return Err(Error::Sidecar {
                    path: side,
                    problem: format!(
                        "is missing: a BIDS DWI series has its .bval and .bvec beside {} (as dcm2niix writes them)",
                        p.display()
                    ),
                });
            }
        }
        let name = name_of(p)?;
        let dir = work.join(&s.rel).join(format!("{}_dwi", name.prefix()));
        commands.adc(p, &dir)?;
        made.push((p.clone(), "dwi", dir, "adc.json", ADC_MAPS));
    }
    for (p, (te, tr)) in s.dsc.iter().zip(timing) {
        // The sidecar beside the file is what `paramap dsc FILE` reads; what it lacks comes from
        // inheritance, given as --te/--dt.
        let beside = bids::sibling(p, "json");
        let own = if beside.is_file() {
            bids::read(&beside)?
        } else {
            bids::Sidecar::default()
        };
        let name = name_of(p)?;
        let dir = work
            .join(&s.rel)
            .join(format!("{}_{}", name.prefix(), name.suffix));
        commands.dsc(
            p,
            &dir,
            own.echo_time_s.is_none().then_some(te),
            own.repetition_time_s.is_none().then_some(tr),
        )?;
        made.push((p.clone(), "perf", dir, "dsc.json", DSC_MAPS));
    }
    // Stage every derivative of the session, then move them into place.
    let staging = deriv.join(format!(
        ".paramap-staging-{}",
        s.rel.display().to_string().replace('/', "_")
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    crate::io::output::register_staging(&staging);
    let mut moves: Vec<(PathBuf, PathBuf)> = vec![];
    for (source, datatype, dir, record_name, maps) in &made {
        let name = name_of(source)?;
        let record_path = dir.join(record_name);
        let mut record: Value = serde_json::from_str(
            &std::fs::read_to_string(&record_path).map_err(|e| Error::io(&record_path, e))?,
        )
        .map_err(|e| Error::Invalid(format!("{}: {e}", record_path.display())))?;
        // Every choice, not the clock nor the work folder's file names: the same inputs and
        // options give the same sidecars, byte for byte.
        if let Some(r) = record.as_object_mut() {
            for k in ["timing_s", "stages_s", "total_s", "outputs"] {
                r.remove(k);
            }
        }
        let rel_source = source.strip_prefix(root).unwrap_or(source);
        for m in maps.iter() {
            let spec = m.spec();
            let (Some(nii), Some(side)) = (
                m.bids_name(&name.prefix(), ".nii.gz"),
                m.bids_name(&name.prefix(), ".json"),
            ) else {
                continue;
            };
            let from = dir.join(format!("{}.nii.gz", spec.stem));
            if !from.is_file() {
                continue;
            }
            let dest = s.rel.join(datatype);
            let stage = staging.join(datatype);
            std::fs::create_dir_all(&stage).map_err(|e| Error::io(&stage, e))?;
            let staged = stage.join(&nii);
            std::fs::copy(&from, &staged).map_err(|e| Error::io(&from, e))?;
            let source_uri = format!("bids:raw:{}", rel_source.display());
            let mut meta = json!({
                "Description": spec.description,
                "Sources": [source_uri],
                // On the source's own grid (no space- entity): BIDS 1.10 "Spatial references".
                "SpatialReference": source_uri,
                "SkullStripped": false,
                "paramap": {
                    "Map": spec.stem,
                    "Title": spec.title,
                    "Command": cmd,
                    "Record": record,
                }
            });
            match spec.kind {
                Kind::Mask if matches!(m, Map::BrainMask | Map::AdcMask) => {
                    meta["Type"] = json!("Brain")
                }
                Kind::Mask => meta["Type"] = json!("ROI"),
                _ => meta["Units"] = json!(spec.unit),
            }
            let text =
                serde_json::to_string_pretty(&meta).map_err(|e| Error::Invalid(e.to_string()))?;
            std::fs::write(stage.join(&side), text + "\n")
                .map_err(|e| Error::io(stage.join(&side), e))?;
            moves.push((staged, dest.join(&nii)));
            moves.push((stage.join(&side), dest.join(&side)));
        }
    }
    let mut outputs = vec![];
    for (from, rel) in &moves {
        let to = deriv.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::rename(from, &to).map_err(|e| Error::io(&to, e))?;
        outputs.push(rel.display().to_string());
    }
    crate::io::output::unregister_staging(&staging);
    let _ = std::fs::remove_dir_all(&staging);
    outputs.sort();
    Ok(outputs)
}
