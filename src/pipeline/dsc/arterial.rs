//! The arterial input and the venous output: the AIF chosen in the image (`models::aif`), drawn
//! as a mask, or given as a curve (a file with its own TE and κ); and its partial-volume
//! correction, the AIF's area rescaled to a vein's (the venous output function) when that is
//! larger, with a notice when it is not (docs/methods.md §4).

use std::path::{Path, PathBuf};

use ndarray::Array3;

use super::{AifChoice, Curves, DscOptions, Leakage, VofChoice};
use crate::error::{Error, Result};
use crate::models::aif::{
    mean_curve as aif_mean_curve, select as select_aif, select_vof, AifSelection,
};
use crate::models::delta_r2star::{trapezoid, Echo};
use crate::models::vof_scale::{noise_floor_frames, vof_scale};

/// An AIF from a file and how its values become tissue-equivalent ΔR2*: ΔR2*_tissue =
/// κ_tissue·C, so the AIF the tissue curves are deconvolved by is κ_tissue·C_a, with
/// C_a = ΔR2*_a/κ_artery for a ΔR2* or signal curve (ΔR2*_a = −ln(S/S0)/TE_a, S0 the mean over
/// the series' baseline frames). The OSIPI DSC reference objects use κ_artery ≈ 7 and
/// κ_tissue ≈ 107 s⁻¹/mM; with both 1 a ΔR2* curve is used as it is, as an image AIF is.
#[derive(Debug, Clone)]
pub struct AifFile {
    pub curve: crate::io::aif_curve::AifCurve,
    pub path: PathBuf,
    /// TE of the arterial signal (s), for a signal curve.
    pub te_s: f64,
    /// κ_artery and κ_tissue (s⁻¹ per mM).
    pub kappa_artery: f64,
    pub kappa_tissue: f64,
}

impl AifFile {
    /// The AIF at the series' frame times, in tissue-equivalent ΔR2* (s⁻¹).
    pub fn tissue_equivalent(
        &self,
        frame_times: &[f64],
        baseline: (usize, usize),
    ) -> std::result::Result<Vec<f64>, String> {
        use crate::io::aif_curve::AifValues;
        let v = self.curve.at(frame_times)?;
        if !(self.kappa_artery > 0.0 && self.kappa_tissue > 0.0) {
            return Err("--aif-kappa and --tissue-kappa must be positive (s⁻¹ per mM)".into());
        }
        let ratio = self.kappa_tissue / self.kappa_artery;
        Ok(match self.curve.kind {
            AifValues::ConcentrationMm => v.iter().map(|c| self.kappa_tissue * c).collect(),
            AifValues::DeltaR2StarPerS => v.iter().map(|r| ratio * r).collect(),
            AifValues::Signal => {
                let (b0, b1) = baseline;
                let s0 = v[b0..b1].iter().sum::<f64>() / (b1 - b0) as f64;
                if !(s0 > 0.0) || v.iter().any(|&x| !(x > 0.0)) || !(self.te_s > 0.0) {
                    return Err(
                        "a signal AIF needs positive values and a positive TE (--aif-te)".into(),
                    );
                }
                v.iter()
                    .map(|s| ratio * -(s / s0).ln() / self.te_s)
                    .collect()
            }
        })
    }
}

/// The AIF, when the leakage correction or the deconvolution needs one. When the automatic
/// choice finds no artery, rCBV is still made: leakage-corrected by BSW, which needs no AIF,
/// without the deconvolution maps; `leakage` becomes BSW and `notices` says so.
pub(super) fn find_aif(
    opts: &DscOptions,
    c: &Curves,
    leakage: &mut Leakage,
    notices: &mut Vec<String>,
    err: &impl Fn(String) -> Error,
) -> Result<Option<AifSelection>> {
    if !(*leakage == Leakage::Residue || opts.deconvolution.is_some()) {
        return Ok(None);
    }
    match arterial_input(&opts.aif, c, err) {
        Ok(a) => Ok(Some(a)),
        Err(e) if matches!(opts.aif, AifChoice::Auto(_)) => {
            if *leakage == Leakage::Residue {
                *leakage = Leakage::Bsw;
            }
            notices.push(format!("{e}. Without an AIF: no CBF, MTT or Tmax, and the leakage correction is BSW's (it needs no AIF) instead of the residue-domain one"));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The AIF as the deconvolution reads it ([`bolus_curve`]), rescaled for partial volume.
pub(super) struct ArterialCurve {
    /// Ca(t), tissue-equivalent ΔR2* (s⁻¹): 0 before the baseline, baseline subtracted.
    pub ca: Vec<f64>,
    /// The venous output function that rescaled the AIF, and the factor (VOF area ÷ AIF area).
    pub vof: Option<(AifSelection, f64)>,
    /// Why the AIF was not rescaled, when it was chosen in the image and was not.
    pub vof_notice: Option<String>,
}

/// Partial volume: an AIF chosen in the image is rescaled to the area (over every frame after
/// the baseline) of a vein's curve when that is larger (whole blood carries all the agent, a
/// partial-volume artery less). Frames where the vein's signal is at the noise floor (found
/// with the echo times `echo`) take the value of a transit model fitted to its other frames
/// (`models::vof_scale`). An AIF given as a curve is used as it is.
pub(super) fn rescale_to_vof(
    opts: &DscOptions,
    aif: Option<&AifSelection>,
    c: &Curves,
    echo: Echo,
) -> Result<ArterialCurve> {
    let (b0, b1) = c.baseline;
    let (nt, shape) = (c.nt, c.shape);
    let mut ca: Vec<f64> = aif.map_or_else(Vec::new, |aif| bolus_curve(&aif.curve, (b0, b1)));
    let mut vof: Option<(AifSelection, f64)> = None;
    let mut vof_notice: Option<String> = None;
    let image_aif = matches!(opts.aif, AifChoice::Auto(_) | AifChoice::Mask(..));
    if let (Some(a), true) = (aif, image_aif) {
        let selection = match &opts.vof {
            VofChoice::None => {
                vof_notice = Some("no venous output function was asked for (--no-vof)".into());
                None
            }
            VofChoice::Auto => {
                let peak = (b1..nt)
                    .max_by(|&x, &y| a.curve[x].total_cmp(&a.curve[y]))
                    .unwrap_or(b1);
                match select_vof(c.values, c.n, nt, (b0, b1), peak, &a.voxels, c.scans()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        vof_notice = Some(e);
                        None
                    }
                }
            }
            VofChoice::Mask(m, path) => {
                if m.dim() != shape {
                    return Err(Error::Nifti {
                        path: path.clone(),
                        problem: format!("VOF mask grid {:?} (z, y, x) differs from the series' {:?}: it must be on the same grid", m.dim(), shape),
                    });
                }
                let sel = vessel_mask_curve(
                    m,
                    path,
                    "VOF",
                    "a large vein (the superior sagittal sinus)",
                    (c.values, c.n, nt, (b0, b1)),
                    c.voxels,
                )?;
                Some(AifSelection {
                    rule: format!("user VOF mask {}", path.display()),
                    ..sel
                })
            }
        };
        if let Some(mut sel) = selection {
            let vca = bolus_curve(&sel.curve, (b0, b1));
            let at_floor = noise_floor_frames(c.values, c.n, nt, &sel.voxels, (b0, b1), echo);
            // Over every frame after the baseline, whatever the CBV window: the vein's bolus
            // is later and broader than the tissue's first pass, and the partial volume is the
            // artery's, not the window's (a first-pass window gave 5.016 on the demo against
            // 5.034 over the whole series; truth 5).
            let window = (c.integration.0, nt);
            let area = |x: &[f64]| trapezoid(|t| x[t], window.0, window.1, c.dt);
            let (venous, arterial) = (area(&vca), area(&ca));
            if !(venous > 0.0 && arterial > 0.0) {
                vof_notice = Some(format!("the AIF's area ({arterial:.3}) or the venous output function's ({venous:.3}) is not a positive number: the AIF is not rescaled"));
            } else {
                match vof_scale(&ca, &vca, c.dt, window, &at_floor, (b0, b1)) {
                    Err(e) => vof_notice = Some(format!("{e}: the AIF is not rescaled")),
                    Ok(measured) if measured.scale > 1.0 => {
                        let scale = measured.scale;
                        ca.iter_mut().for_each(|x| *x *= scale);
                        sel.vof_scale = Some(measured);
                        vof = Some((sel, scale));
                    }
                    Ok(measured) => {
                        vof_notice = Some(format!("the venous output function's area is {:.2}× the AIF's, not more: no vein of whole blood was found, and the AIF is not rescaled", measured.scale));
                    }
                }
            }
        }
    }
    Ok(ArterialCurve {
        ca,
        vof,
        vof_notice,
    })
}

/// A vessel's curve as the deconvolution reads it: its baseline mean subtracted, and the frames
/// before the baseline (steady state, not part of the bolus) zero.
fn bolus_curve(curve: &[f64], (b0, b1): (usize, usize)) -> Vec<f64> {
    let base = curve[b0..b1].iter().sum::<f64>() / (b1 - b0) as f64;
    curve
        .iter()
        .enumerate()
        .map(|(t, x)| if t < b0 { 0.0 } else { x - base })
        .collect()
}

/// The AIF: chosen automatically among the brain voxels' ΔR2* curves (`models::aif`), or the
/// mean curve of a user mask on the series' grid (refused when empty, outside the brain, or
/// without a bolus, naming the file).
fn arterial_input(
    choice: &AifChoice,
    c: &Curves,
    err: &impl Fn(String) -> Error,
) -> Result<AifSelection> {
    let (curves, n, nt, dt, baseline) = (c.values, c.n, c.nt, c.dt, c.baseline);
    let (flat_mask, shape) = (c.voxels, c.shape);
    match choice {
        AifChoice::Auto(rules) => {
            select_aif(curves, n, nt, baseline, rules, c.scans()).map_err(err)
        }
        AifChoice::File(f) => {
            let times: Vec<f64> = (0..nt).map(|t| t as f64 * dt).collect();
            let curve =
                f.tissue_equivalent(&times, baseline)
                    .map_err(|problem| Error::Sidecar {
                        path: f.path.clone(),
                        problem,
                    })?;
            arterial_input(
                &AifChoice::Curve(curve, format!("file {}", f.path.display())),
                c,
                err,
            )
        }
        AifChoice::Curve(curve, source) => {
            if curve.len() != nt {
                return Err(err(format!(
                    "the AIF curve ({source}) has {} samples and the series {nt} frames: give one value per frame",
                    curve.len()
                )));
            }
            if !curve.iter().all(|x| x.is_finite())
                || !(curve.iter().cloned().fold(f64::MIN, f64::max) > 0.0)
            {
                return Err(err(format!(
                    "the AIF curve ({source}) has a non-finite value or no positive one (no bolus)"
                )));
            }
            Ok(AifSelection {
                voxels: Vec::new(),
                curve: curve.clone(),
                candidates: 0,
                rule: format!("curve: {source}"),
                vof_scale: None,
            })
        }
        AifChoice::Mask(m, path) if m.dim() != shape => Err(Error::Nifti {
            path: path.clone(),
            problem: format!(
                "AIF mask grid {:?} (z, y, x) differs from the series' {:?}: it must be on the same grid",
                m.dim(),
                shape
            ),
        }),
        AifChoice::Mask(m, path) => vessel_mask_curve(
            m,
            path,
            "AIF",
            "an artery",
            (curves, n, nt, baseline),
            flat_mask,
        ),
    }
}

/// The mean curve of a vessel mask on the series' grid (`what`: "AIF" or "VOF", drawn on
/// `vessel`), refused when empty, outside the brain, or without a bolus, naming the file.
fn vessel_mask_curve(
    m: &Array3<bool>,
    path: &Path,
    what: &str,
    vessel: &str,
    (curves, n, nt, baseline): (&[f32], usize, usize, (usize, usize)),
    flat_mask: &[usize],
) -> Result<AifSelection> {
    let refuse = |problem: String| Error::Nifti {
        path: path.to_path_buf(),
        problem,
    };
    let total = m.iter().filter(|&&b| b).count();
    let mflat = m.as_slice().expect("contiguous");
    let voxels: Vec<usize> = flat_mask
        .iter()
        .enumerate()
        .filter(|(_, &i)| mflat[i])
        .map(|(k, _)| k)
        .collect();
    if total == 0 {
        return Err(refuse(format!("{what} mask is empty (no non-zero voxel)")));
    }
    if voxels.is_empty() {
        return Err(refuse(format!("none of the {what} mask's {total} voxels lies inside the brain mask: it is outside the imaged brain; draw it on {vessel} inside the slices")));
    }
    let curve = aif_mean_curve(curves, n, nt, &voxels, baseline)
        .map_err(|e| refuse(e.replace("AIF", what)))?;
    Ok(AifSelection {
        voxels,
        curve,
        candidates: total,
        rule: format!("user mask {}", path.display()),
        vof_scale: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aif_file(header: &str, values: &[f64], kappa: (f64, f64)) -> AifFile {
        let mut csv = format!("{header}\n");
        for (t, v) in values.iter().enumerate() {
            csv.push_str(&format!("{},{v}\n", t as f64 * 2.0));
        }
        AifFile {
            curve: crate::io::aif_curve::parse(&csv).unwrap(),
            path: "aif.csv".into(),
            te_s: 0.02,
            kappa_artery: kappa.0,
            kappa_tissue: kappa.1,
        }
    }

    /// Each kind of AIF file in tissue-equivalent ΔR2*, against values worked by hand: the
    /// curve is sampled every 2 s and the frames every 1 s (interpolated halfway).
    #[test]
    fn aif_files_convert_concentration_delta_r2star_and_signal_to_tissue_units() {
        let times = [0.0, 1.0, 2.0, 3.0, 4.0];
        // Concentration (mM) × κ_tissue 107.
        let c = aif_file(
            "time_s,concentration_mM",
            &[0.0, 0.0, 2.0, 1.0, 0.5],
            (7.0, 107.0),
        );
        let got = c.tissue_equivalent(&times, (0, 2)).unwrap();
        assert_eq!(got, vec![0.0, 0.0, 0.0, 107.0, 214.0]);
        // Arterial ΔR2* (s⁻¹) × κ_tissue/κ_artery.
        let r = aif_file(
            "time_s,delta_r2star_per_s",
            &[0.0, 0.0, 14.0, 7.0],
            (7.0, 107.0),
        );
        let got = r.tissue_equivalent(&times, (0, 2)).unwrap();
        for (g, w) in got.iter().zip([0.0, 0.0, 0.0, 107.0, 214.0]) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
        // Signal: −ln(S/S0)/TE with S0 the mean over the baseline frames 0..2 (both 100).
        let s = aif_file("time_s,signal", &[100.0, 100.0, 50.0, 80.0], (1.0, 1.0));
        let got = s.tissue_equivalent(&times, (0, 2)).unwrap();
        let want = [0.0, 0.0, 0.0, -(0.75f64).ln() / 0.02, -(0.5f64).ln() / 0.02];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
        // A frame past the curve's end, a zero κ, a non-positive signal: refused.
        assert!(c
            .tissue_equivalent(&[0.0, 9.0], (0, 1))
            .unwrap_err()
            .contains("covers 0–8 s"));
        let zero = aif_file(
            "time_s,concentration_mM",
            &[0.0, 1.0, 2.0, 3.0],
            (0.0, 107.0),
        );
        assert!(zero
            .tissue_equivalent(&times[..2], (0, 1))
            .unwrap_err()
            .contains("positive"));
        let dark = aif_file("time_s,signal", &[100.0, 100.0, 0.0, 50.0], (1.0, 1.0));
        assert!(dark
            .tissue_equivalent(&times, (0, 2))
            .unwrap_err()
            .contains("positive values"));
    }
}
