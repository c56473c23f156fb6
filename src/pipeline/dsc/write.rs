//! Writing a DSC result: every map and mask as NIfTI (names from the registry of maps,
//! `crate::maps`), the AIF and whole-brain curves as CSV and PNG, and the record
//! (`dsc.json`, [`super::record`]), atomically.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array3;

use super::{DscInput, DscOptions, DscResult};
use crate::error::{Error, Result};
use crate::io::nifti::{self, NiftiFormat};
use crate::io::output::OutputDir;
use crate::maps::Map;
use crate::models::deconvolution::Method;
use crate::models::delta_r2star::Echo;
use crate::pipeline::BackendChoice;
use crate::volume::Geometry;

/// What `write` needs besides the result.
pub struct DscWriteContext<'a> {
    pub input: &'a DscInput,
    pub options: &'a DscOptions,
    pub requested: BackendChoice,
    pub notice: Option<String>,
    pub started: Instant,
    pub save_curves: bool,
    /// `.nii.gz` (default) or `.nii` images.
    pub format: NiftiFormat,
}

/// An image `write` puts on disk: a float32 map or a uint8 mask.
enum Image<'a> {
    Map(&'a Array3<f32>),
    Mask(&'a Array3<bool>),
}

/// Writes every map, the masks, the curves (CSV) and the record into `out`, atomically.
pub fn write(r: &DscResult, ctx: &DscWriteContext, out: &Path) -> Result<Vec<PathBuf>> {
    let g: &Geometry = &ctx.input.echo1.geometry;
    let mut dir = OutputDir::create(out)?;
    let f = ctx.format;
    // Every image as (registry entry, voxels), written in parallel below: with gzip,
    // compression is most of the writing. Names and descriptions come from the registry.
    let class = r.rcbv_class.mapv(f32::from);
    let mut images: Vec<(Map, Image)> = vec![
        (Map::Rcbv, Image::Map(&r.rcbv)),
        (Map::RcbvUncorrected, Image::Map(&r.rcbv_uncorrected)),
        (Map::RcbvClass, Image::Map(&class)),
        (Map::CbvIntegral, Image::Map(&r.cbv_integral)),
        (
            Map::CbvIntegralCorrected,
            Image::Map(&r.cbv_integral_corrected),
        ),
        (Map::K2, Image::Map(&r.k2)),
        (Map::Ttp, Image::Map(&r.ttp)),
        (Map::Peak, Image::Map(&r.peak)),
        (Map::Psr, Image::Map(&r.psr)),
        (Map::DscS0, Image::Map(&r.s0)),
        (Map::BrainMask, Image::Mask(&r.brain)),
        (Map::ReferenceMask, Image::Mask(&r.reference_mask)),
        (
            Map::LeakageReferenceMask,
            Image::Mask(&r.leakage_reference_mask),
        ),
    ];
    if let Some(k1) = &r.k1 {
        images.push((Map::K1, Image::Map(k1)));
    }
    if let Some(kep) = &r.kep {
        images.push((Map::Kep, Image::Map(kep)));
    }
    if let Some(q) = &r.leakage_nrmse {
        images.push((Map::LeakageNrmse, Image::Map(q)));
    }
    if let Some(p) = &r.perfusion {
        if let Some(q) = &p.fit_nrmse {
            let map = if p.method == Method::Parametric {
                Map::DscFitNrmse
            } else {
                Map::DeconvolutionNrmse
            };
            images.push((map, Image::Map(q)));
        }
        images.extend([
            (Map::Cbf, Image::Map(&p.cbf)),
            (Map::Rcbf, Image::Map(&p.rcbf)),
            (Map::Cbv, Image::Map(&p.cbv)),
            (Map::Mtt, Image::Map(&p.mtt)),
            (Map::Tmax, Image::Map(&p.tmax)),
        ]);
        if p.method.circular() {
            images.push((Map::Delay, Image::Map(&p.tmax)));
        }
        images.extend([
            (Map::ResiduePeak, Image::Map(&p.residue_peak)),
            (Map::AifMask, Image::Mask(&p.aif_mask)),
        ]);
        if let Some(m) = &p.vof_mask {
            images.push((Map::VofMask, Image::Mask(m)));
        }
    }
    let written: Vec<Map> = images.iter().map(|(m, _)| *m).collect();
    let jobs: Vec<(PathBuf, String, Image, String)> = images
        .into_iter()
        .map(|(m, image)| {
            let name = f.file(m.stem());
            (dir.path(&name), name, image, m.nifti_description())
        })
        .collect();
    // `--save-curves`: the 4-D ΔR2*(t), made only now.
    let curves = ctx.save_curves.then(|| {
        (
            dir.path(&f.file(Map::DeltaR2star.stem())),
            r.delta_r2star.volume(),
        )
    });
    let aif: Option<(String, Vec<u8>)>;
    {
        use rayon::prelude::*;
        // The AIF's plot and table are made meanwhile (the images are written by every
        // core; the plot is one task).
        let (images, plot) = rayon::join(
            || {
                jobs.par_iter()
                    .map(|(path, _, image, what)| match image {
                        Image::Map(m) => nifti::write_map(path, m, g, what),
                        Image::Mask(m) => nifti::write_mask(path, m, g, what),
                    })
                    .chain(curves.par_iter().map(|(path, c)| {
                        let what = Map::DeltaR2star.nifti_description();
                        nifti::write_series(path, c, g, &what, Some(ctx.input.dt_s))
                    }))
                    .collect::<Result<Vec<()>>>()
            },
            || {
                r.perfusion
                    .as_ref()
                    .map(|p| aif_plot(p, ctx.input.dt_s))
                    .transpose()
            },
        );
        images?;
        aif = plot?;
    }
    let mut outputs: Vec<String> = jobs.into_iter().map(|(_, name, _, _)| name).collect();
    let mut written = written;
    if curves.is_some() {
        outputs.push(f.file(Map::DeltaR2star.stem()));
        written.push(Map::DeltaR2star);
    }
    if let Some((csv, png)) = aif {
        dir.write_text("aif.csv", &csv)?;
        let path = dir.path("aif.png");
        std::fs::write(&path, png).map_err(|e| Error::io(&path, e))?;
        outputs.extend(["aif.csv".to_string(), "aif.png".into()]);
    }
    let mut csv = String::from("frame,time_s,whole_brain_signal,whole_brain_delta_r2star_per_s,leakage_reference_delta_r2star_per_s,leakage_reference_integral\n");
    let b = &r.timing;
    let baseline = |w: &[f64]| {
        w[b.baseline_start..b.baseline_end].iter().sum::<f64>()
            / (b.baseline_end - b.baseline_start) as f64
    };
    let s0 = baseline(&r.whole_brain_signal);
    // ΔR2* as the maps have it: from both echoes of a dual-echo series (free of T1 leakage).
    let delta_r2star = |t: usize| {
        let s = r.whole_brain_signal[t];
        match (ctx.input.echo, &r.whole_brain_signal2) {
            (Echo::Dual { te1, te2 }, Some(w2)) => {
                ((s / s0) / (w2[t] / baseline(w2))).ln() / (te2 - te1)
            }
            (Echo::Single { te }, _) => -(s / s0).ln() / te,
            (Echo::Dual { te1, .. }, None) => -(s / s0).ln() / te1,
        }
    };
    for (t, &s) in r.whole_brain_signal.iter().enumerate() {
        let (rb, cum) = r
            .leakage
            .as_ref()
            .map(|l| (l.rbar[t], l.cumulative[t]))
            .unwrap_or((f64::NAN, f64::NAN));
        csv.push_str(&format!(
            "{t},{:.4},{s:.6},{:.6},{rb:.6},{cum:.6}\n",
            t as f64 * ctx.input.dt_s,
            delta_r2star(t)
        ));
    }
    dir.write_text("curves.csv", &csv)?;
    outputs.push("curves.csv".into());
    outputs.push("dsc.json".into());
    let json = super::record::json(r, ctx, &written, outputs)?;
    dir.write_text("dsc.json", &json)?;
    dir.commit()
}

/// The AIF table (`aif.csv`: per frame the AIF and the mean brain ΔR2*) and its plot
/// (`aif.png`, PNG bytes), both curves scaled to their peaks.
fn aif_plot(p: &super::Perfusion, dt_s: f64) -> Result<(String, Vec<u8>)> {
    let mut csv =
        String::from("frame,time_s,aif_delta_r2star_per_s,mean_brain_delta_r2star_per_s\n");
    for (t, (a, b)) in p.aif.curve.iter().zip(&p.tissue_curve).enumerate() {
        csv.push_str(&format!("{t},{:.4},{a:.6},{b:.6}\n", t as f64 * dt_s));
    }
    let png = crate::report::curves_png(&crate::report::CurvePlot {
        title: "AIF and mean tissue curve (each scaled to its peak)",
        dt_s,
        unit: "1/s",
        curves: &[
            (
                "AIF",
                crate::report::Curve {
                    values: &p.aif.curve,
                    colour: [200, 30, 30],
                },
            ),
            (
                "tissue",
                crate::report::Curve {
                    values: &p.tissue_curve,
                    colour: [30, 80, 200],
                },
            ),
        ],
    })?;
    Ok((csv, png))
}
