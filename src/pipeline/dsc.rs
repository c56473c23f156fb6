//! DSC perfusion I (METHODS §3): brain mask → whole-brain curve → baseline and bolus → ΔR2*
//! and first-pass metrics per voxel → BSW leakage correction → optional gamma-variate →
//! rCBV normalised to white matter. Per-voxel work runs on the chosen engine; the whole-brain
//! reductions run once on the CPU.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array3, Axis};
use rayon::prelude::*;
use serde::Serialize;

use super::adc::GeometryRecord;
use super::mask::{MaskChoice, MaskRecord};
use super::{BackendChoice, BackendSummary, Engine, VERSIONS};
use crate::error::{Error, Result};
use crate::gpu::dsc::DscKernels;
use crate::io::nifti::{self, NiftiFormat};
use crate::io::output::OutputDir;
use crate::maps::{unit_table, Map};
use crate::models::aif::{
    mean_curve as aif_mean_curve, select as select_aif, select_vof, AifRules, AifSelection,
};
use crate::models::bolus::{detect, BaselineRules, BolusTiming};
use crate::models::deconvolution::{
    deconvolve_cpu_with_progress, index_time, Deconvolution, Method, Tissue,
};
use crate::models::delta_r2star::{compute_cpu, trapezoid, DscAcquisition, DscMaps, Echo, METRICS};
use crate::models::gamma_variate::{self, GammaWindow};
use crate::models::leakage_bsw::{self, BswReference};
use crate::models::leakage_leigh::{self, LeighReference};
use crate::models::leakage_residual::{self, LeakageRegressors};
use crate::models::normalisation::{
    auto_white_matter, reference_value, sphere_mask, ReferenceValue, Statistic,
};
use crate::models::perfusion;
use crate::models::residue_fit::{self, ResidueModel};
use crate::models::response::ReadingThresholds;
use crate::volume::{Geometry, Series4, SeriesInfo};

/// A DSC acquisition ready to analyse: one or two echoes, sampling interval and echo times.
pub struct DscInput {
    pub echo1: Series4,
    pub echo2: Option<Series4>,
    pub dt_s: f64,
    pub echo: Echo,
    /// How Δt and TE were found (for the record).
    pub timing_source: String,
}

impl DscInput {
    /// The single-echo DSC digital reference object as an input (its Δt and TE).
    pub fn from_phantom(p: &crate::synth::dsc::DscPhantom) -> Self {
        let te = p.series.info.echo_time_ms.unwrap_or(30.0) / 1000.0;
        let dt = p
            .series
            .volumes
            .get(1)
            .and_then(|v| v.time_s)
            .unwrap_or(1.5);
        DscInput {
            echo1: p.series.clone(),
            echo2: None,
            dt_s: dt,
            echo: Echo::Single { te },
            timing_source: "digital reference object".into(),
        }
    }
}

/// Which part of the curve CBV integrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Integration {
    /// From the frame before arrival to the last frame (the default; leakage-corrected
    /// curves return to baseline, so recirculation is part of the blood pool integral).
    Whole,
    /// From the frame before arrival to the end of the first pass.
    FirstPass,
}

impl std::str::FromStr for Integration {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "whole" => Ok(Integration::Whole),
            "first-pass" => Ok(Integration::FirstPass),
            o => Err(format!(
                "unknown integration '{o}': use whole or first-pass"
            )),
        }
    }
}

/// Where the normal-appearing white matter reference comes from.
#[derive(Debug, Clone)]
pub enum Reference {
    /// `models::normalisation::auto_white_matter`.
    Auto,
    Mask(Array3<bool>, PathBuf),
    /// Centre (RAS mm) and radius (mm).
    Sphere([f64; 3], f64),
}

#[derive(Debug, Clone)]
pub struct DscOptions {
    pub baseline: Option<(usize, usize)>,
    pub baseline_rules: BaselineRules,
    pub integration: Integration,
    pub gamma_variate: bool,
    pub leakage: Leakage,
    pub brain_mask: MaskChoice,
    pub reference: Reference,
    pub statistic: Statistic,
    /// The reading's thresholds (docs/methods.md §1): `rcbv_class` uses rCBV low and high.
    pub thresholds: ReadingThresholds,
    pub chunk_voxels: Option<usize>,
    /// Deconvolution for CBF, MTT and Tmax (METHODS §4); None leaves them out.
    pub deconvolution: Option<Method>,
    pub aif: AifChoice,
    /// The venous output function that rescales an AIF chosen in the image (its partial
    /// volume); not used with an AIF given as a curve.
    pub vof: VofChoice,
    /// kH = (1 − Hct_large)/(1 − Hct_small) and tissue density ρ (g/ml): CBF and absolute
    /// CBV scale by kH/ρ (METHODS §3).
    pub kh: f64,
    pub rho: f64,
}

/// The leakage correction of CBV (METHODS §3 in `docs/methods.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Leakage {
    /// In the residue domain, jointly with the parametric deconvolution
    /// (`models::residue_fit`; Bjørnerud et al., JCBFM 2011): insensitive to the tissue's MTT
    /// and arrival time. The default.
    Residue,
    /// Boxerman–Schmainda–Weisskoff (AJNR 2006) against the mean curve of non-enhancing
    /// tissue: the published cut-offs were mostly measured with it, but it reads any
    /// difference in MTT or arrival from that curve as leakage.
    Bsw,
    /// BSW with an efflux rate k_ep (bidirectional exchange; Leu, Boxerman et al., AJNR 2016;
    /// `models::leakage_leigh`): ΔR2* ≈ K1·R̄ − K2·∫R̄(τ)e^(−k_ep(t−τ))dτ, k_ep on a grid.
    Leigh,
    /// No correction.
    None,
}

impl std::str::FromStr for Leakage {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "residue" => Ok(Leakage::Residue),
            "bsw" => Ok(Leakage::Bsw),
            "leigh" | "bidirectional" => Ok(Leakage::Leigh),
            "none" => Ok(Leakage::None),
            o => Err(format!(
                "unknown leakage correction '{o}': use residue, bsw, leigh or none"
            )),
        }
    }
}

/// Where the arterial input function comes from.
#[derive(Debug, Clone)]
pub enum AifChoice {
    Auto(AifRules),
    Mask(Array3<bool>, PathBuf),
    /// A curve given per frame, as tissue-equivalent ΔR2* (s⁻¹; concentration with the
    /// tissue's k), with where it came from (a file, a reference object's truth).
    Curve(Vec<f64>, String),
    /// A curve read from a file (`--aif-curve`), converted per [`AifFile`].
    File(AifFile),
}

/// Where the venous output function comes from (docs/methods.md §4: the AIF's area is rescaled
/// to the VOF's when the VOF's is larger).
#[derive(Debug, Clone)]
pub enum VofChoice {
    /// `models::aif::select_vof`.
    Auto,
    Mask(Array3<bool>, PathBuf),
    /// No rescaling.
    None,
}

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

impl Default for DscOptions {
    fn default() -> Self {
        DscOptions {
            baseline: None,
            baseline_rules: BaselineRules::default(),
            integration: Integration::Whole,
            gamma_variate: false,
            leakage: Leakage::Residue,
            brain_mask: MaskChoice::Auto,
            reference: Reference::Auto,
            statistic: Statistic::Median,
            thresholds: ReadingThresholds::default(),
            chunk_voxels: None,
            deconvolution: Some(Method::Parametric),
            aif: AifChoice::Auto(AifRules::default()),
            vof: VofChoice::Auto,
            kh: 0.733,
            rho: 1.04,
        }
    }
}

/// Seconds per stage, for the record and the benchmark.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageTimes {
    pub mask_and_whole_brain_curve: f64,
    pub delta_r2star: f64,
    pub leakage_reference: f64,
    pub leakage_fit: f64,
    pub gamma_variate: f64,
    pub normalisation: f64,
    pub aif: f64,
    pub deconvolution: f64,
}

/// Every map on the series' grid (`[z, y, x]`): 0 outside the brain mask, NaN inside where a
/// voxel cannot be computed.
pub struct DscResult {
    /// ∫ΔR2* dt over the CBV window (s⁻¹·s, ∝ CBV), uncorrected ([`Map::CbvIntegral`]).
    pub cbv_integral: Array3<f32>,
    /// The same, leakage corrected ([`Map::CbvIntegralCorrected`]).
    pub cbv_integral_corrected: Array3<f32>,
    /// Uncorrected CBV over the white-matter reference's ([`Map::RcbvUncorrected`]).
    pub rcbv_uncorrected: Array3<f32>,
    /// Leakage-corrected CBV over the reference's: the clinical rCBV ([`Map::Rcbv`]).
    pub rcbv: Array3<f32>,
    /// BSW's K1 (only with `Leakage::Bsw` and `Leakage::Leigh`).
    pub k1: Option<Array3<f32>>,
    /// The efflux rate k_ep, s⁻¹ (only with `Leakage::Leigh`; [`Map::Kep`]).
    pub kep: Option<Array3<f32>>,
    /// The leakage fit's RMS residual over the curve's peak ([`Map::LeakageNrmse`],
    /// `models::leakage_residual`); `--leakage bsw` and `leigh` only.
    pub leakage_nrmse: Option<Array3<f32>>,
    /// Leakage rate (s⁻¹): relative to the reference curve R̄ with BSW, to the AIF with the
    /// residue-domain correction; > 0 T1-dominant, < 0 T2*-dominant; 0 without correction.
    pub k2: Array3<f32>,
    /// The leakage correction in force (BSW when the residue-domain one was asked for but no
    /// AIF could be found automatically).
    pub leakage_model: Leakage,
    /// What the user should know about how the maps were made (printed and recorded).
    pub notices: Vec<String>,
    pub ttp: Array3<f32>,
    pub peak: Array3<f32>,
    pub psr: Array3<f32>,
    pub s0: Array3<f32>,
    /// 1: rCBV_corrected < low threshold; 2: between; 3: > high threshold; 0 outside/invalid.
    pub rcbv_class: Array3<u8>,
    pub brain: Array3<bool>,
    pub reference_mask: Array3<bool>,
    pub leakage_reference_mask: Array3<bool>,
    /// ΔR2*(t) of the brain voxels.
    pub delta_r2star: BrainCurves,
    pub timing: BolusTiming,
    pub acquisition: DscAcquisition,
    pub whole_brain_signal: Vec<f64>,
    /// The second echo's, for a dual-echo series.
    pub whole_brain_signal2: Option<Vec<f64>>,
    pub leakage: Option<BswReference>,
    pub reference_uncorrected: ReferenceValue,
    pub reference_corrected: ReferenceValue,
    pub brain_record: MaskRecord,
    pub reference_rule: String,
    pub backend: BackendSummary,
    pub stages: StageTimes,
    pub invalid_voxels: usize,
    pub perfusion: Option<Perfusion>,
}

/// The deconvolution maps (`[z, y, x]`, 0 outside the brain).
pub struct Perfusion {
    pub method: Method,
    /// ml/100 g/min (kH/ρ applied). 0 where the residue shows no flow.
    pub cbf: Array3<f32>,
    /// CBF over the median CBF of the white-matter reference: independent of the AIF's scale
    /// (its partial volume), as rCBV is.
    pub rcbf: Array3<f32>,
    /// Why absolute CBF and CBV may be off: set when the AIF's scale is not known to be
    /// that of whole blood (voxels chosen in the image, no venous rescaling).
    pub absolute_notice: Option<String>,
    /// Absolute CBV, (kH/ρ)·100·∫C/∫Ca, ml/100 g ([`Map::Cbv`]).
    pub cbv: Array3<f32>,
    /// CBV/CBF (s); NaN where CBF is 0.
    pub mtt: Array3<f32>,
    /// Time of the residue's peak (s); for cSVD/oSVD it is the bolus delay.
    pub tmax: Array3<f32>,
    /// max f (s⁻¹).
    pub residue_peak: Array3<f32>,
    pub aif_mask: Array3<bool>,
    pub aif: AifSelection,
    /// The fit's quality, RMS residual over the curve's peak: the parametric fit's
    /// ([`Map::DscFitNrmse`]) or the SVD deconvolution's ([`Map::DeconvolutionNrmse`],
    /// `models::deconvolution_residual`).
    pub fit_nrmse: Option<Array3<f32>>,
    /// The venous output function that rescaled the AIF, and the factor (VOF area ÷ AIF area).
    pub vof: Option<(AifSelection, f64)>,
    pub vof_mask: Option<Array3<bool>>,
    /// The mean tissue ΔR2* of the brain, for the AIF plot.
    pub tissue_curve: Vec<f64>,
    pub kh: f64,
    pub rho: f64,
}

/// Curves of the brain voxels only, planar: `values[t * n + k]` for the voxel at flat index
/// `voxels[k]` of the (z, y, x) grid. Half the memory of the 4-D grid, which
/// [`BrainCurves::volume`] makes only when it is written out.
#[derive(Debug, Clone)]
pub struct BrainCurves {
    pub values: Vec<f32>,
    pub voxels: Vec<usize>,
    /// (t, z, y, x) of the grid.
    pub shape: (usize, usize, usize, usize),
}

impl BrainCurves {
    /// The curves on the whole grid, `[t, z, y, x]`, 0 outside the brain.
    pub fn volume(&self) -> ndarray::Array4<f32> {
        let n = self.voxels.len();
        let mut out = ndarray::Array4::<f32>::zeros(self.shape);
        for (t, mut vol) in out.axis_iter_mut(Axis(0)).enumerate() {
            let flat = vol.as_slice_mut().expect("contiguous");
            for (k, &i) in self.voxels.iter().enumerate() {
                flat[i] = self.values[t * n + k];
            }
        }
        out
    }
}

fn planar(series: &Series4, flat_mask: &[usize]) -> Vec<f32> {
    use rayon::prelude::*;
    let nt = series.n_volumes();
    let n = flat_mask.len();
    let mut out = vec![0f32; nt * n];
    if n == 0 {
        return out;
    }
    // One frame per task.
    out.par_chunks_mut(n)
        .zip(series.data.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(row, vol)| {
            let flat = vol.as_standard_layout();
            let flat = flat.as_slice().expect("standard layout");
            for (o, &i) in row.iter_mut().zip(flat_mask) {
                *o = flat[i];
            }
        });
    out
}

/// The mean over frames `skip..` of each voxel (`[z, y, x]`), summed frame after frame in f32
/// as ndarray's `mean_axis` does (the same values), on all cores.
fn mean_after(data: &ndarray::Array4<f32>, skip: usize) -> Option<Array3<f32>> {
    use rayon::prelude::*;
    let (nt, nz, ny, nx) = data.dim();
    if skip >= nt {
        return None;
    }
    let data = data.as_standard_layout();
    let all = data.as_slice().expect("standard layout");
    let volume = nz * ny * nx;
    let mut mean = Array3::<f32>::zeros((nz, ny, nx));
    let out = mean.as_slice_mut().expect("fresh arrays are contiguous");
    let count = (nt - skip) as f32;
    out.par_chunks_mut(4096).enumerate().for_each(|(c, out)| {
        let start = c * 4096;
        for t in skip..nt {
            let frame = &all[t * volume + start..][..out.len()];
            for (o, &x) in out.iter_mut().zip(frame) {
                *o += x;
            }
        }
        for o in out.iter_mut() {
            *o /= count;
        }
    });
    Some(mean)
}

/// Computes every DSC map of `input`.
pub fn compute(input: &DscInput, opts: &DscOptions, engine: &Engine) -> Result<DscResult> {
    let series = &input.echo1;
    let label = series.info.label();
    let err = |problem: String| Error::series(label.clone(), problem);
    let nt = series.n_volumes();
    let mut stages = StageTimes::default();
    let clock = Instant::now();
    // A reference mask on another grid is refused before any work is done.
    if let Reference::Mask(m, path) = &opts.reference {
        let [nx, ny, nz] = series.geometry.dims;
        if m.dim() != (nz, ny, nx) {
            return Err(Error::Nifti {
                path: path.clone(),
                problem: format!(
                    "reference mask grid {:?} (z, y, x) differs from the series' {:?}: it must be on the same grid",
                    m.dim(),
                    (nz, ny, nx)
                ),
            });
        }
    }
    // Brain mask: Otsu on the mean image after the steady-state frames.
    let skip = opts.baseline_rules.skip.min(nt.saturating_sub(1));
    let mean_img =
        mean_after(&series.data, skip).ok_or_else(|| err("holds no time points".into()))?;
    let (brain, brain_record) = super::mask::resolve(
        &opts.brain_mask,
        mean_img.view(),
        "the mean image after the steady-state frames",
        "brain mask",
    )?;
    let flat_mask = super::mask::indices(&brain);
    let n = flat_mask.len();
    if n == 0 {
        return Err(err("the brain mask is empty: no voxel to analyse".into()));
    }
    let s1 = planar(series, &flat_mask);
    let s2 = input
        .echo2
        .as_ref()
        .map(|e| planar(e, &flat_mask))
        .unwrap_or_default();
    let whole_brain_signal: Vec<f64> = (0..nt)
        .into_par_iter()
        .map(|t| {
            s1[t * n..(t + 1) * n]
                .iter()
                .map(|&x| x as f64)
                .sum::<f64>()
                / n as f64
        })
        .collect();
    let whole_brain_signal2: Option<Vec<f64>> = (!s2.is_empty()).then(|| {
        (0..nt)
            .map(|t| {
                s2[t * n..(t + 1) * n]
                    .iter()
                    .map(|&x| x as f64)
                    .sum::<f64>()
                    / n as f64
            })
            .collect()
    });
    let timing = detect(&whole_brain_signal, &opts.baseline_rules, opts.baseline).map_err(&err)?;
    stages.mask_and_whole_brain_curve = clock.elapsed().as_secs_f64();

    let late_len = (nt / 10).max(3);
    // Integrate from the first frame after the baseline: ΔR2* is zero before the bolus, and
    // early voxels (arteries, short delays) rise before the whole-brain curve does.
    let start = timing.baseline_end;
    let integration = match opts.integration {
        Integration::Whole => (start, nt),
        Integration::FirstPass => (start, (timing.first_pass_end + 1).min(nt)),
    };
    let acq = DscAcquisition {
        n_t: nt,
        dt: input.dt_s,
        echo: input.echo,
        baseline: (timing.baseline_start, timing.baseline_end),
        bolus: (timing.baseline_end, nt),
        integration,
        late: (nt - late_len, nt),
    };

    let kernels = match engine {
        Engine::Gpu(ctx) => Some((ctx.as_ref(), DscKernels::new(ctx))),
        Engine::Cpu => None,
    };
    let clock = Instant::now();
    let maps: DscMaps = match &kernels {
        None => compute_cpu(&acq, &s1, &s2, n),
        Some((ctx, k)) => k.delta_r2star(ctx, &acq, &s1, &s2, n, opts.chunk_voxels)?,
    };
    stages.delta_r2star = clock.elapsed().as_secs_f64();
    // The signals are not read again: their memory goes back before the next stages.
    drop((s1, s2));
    let metric = |name: &str| {
        let k = METRICS.iter().position(|m| *m == name).expect("a metric");
        &maps.metrics[k * n..(k + 1) * n]
    };
    let cbv = metric("cbv").to_vec();

    let (b0, b1) = (timing.baseline_start, timing.baseline_end);
    let shape = brain.dim();
    let scatter = |values: &[f32]| {
        let mut out = Array3::<f32>::zeros(shape);
        let flat = out.as_slice_mut().expect("contiguous");
        for (k, &i) in flat_mask.iter().enumerate() {
            flat[i] = values[k];
        }
        out
    };
    // BSW's reference voxels: non-enhancing tissue (also reported with the other corrections).
    let (peak, sd, late) = (metric("peak"), metric("baseline_sd"), metric("late_mean"));
    let reference_voxels = leakage_bsw::reference_voxels(peak, sd, late);

    // The AIF, needed by the residue-domain leakage correction and by every deconvolution.
    let clock = Instant::now();
    // When the automatic choice finds no artery, rCBV is still made: leakage-corrected by BSW,
    // which needs no AIF, without the deconvolution maps, and the result says so.
    let mut leakage = opts.leakage;
    let mut notices = Vec::new();
    if timing.first_pass_end + 1 >= nt {
        notices.push(format!("the series ends ({nt} frames) before the bolus's first pass does: CBF, MTT, Tmax and the leakage estimates rest on a truncated curve and are unreliable; acquire at least 60 s after arrival"));
    }
    let aif = if leakage == Leakage::Residue || opts.deconvolution.is_some() {
        match arterial_input(
            &opts.aif,
            &maps.curves,
            n,
            nt,
            input.dt_s,
            (b0, b1),
            &flat_mask,
            shape,
            &err,
        ) {
            Ok(a) => Some(a),
            Err(e) if matches!(opts.aif, AifChoice::Auto(_)) => {
                if leakage == Leakage::Residue {
                    leakage = Leakage::Bsw;
                }
                notices.push(format!("{e}. Without an AIF: no CBF, MTT or Tmax, and the leakage correction is BSW's (it needs no AIF) instead of the residue-domain one"));
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let mut ca: Vec<f64> = aif
        .as_ref()
        .map_or_else(Vec::new, |aif| bolus_curve(&aif.curve, (b0, b1)));
    // Partial volume: an AIF chosen in the image is rescaled to the area of a vein's curve
    // when that is larger (whole blood carries all the agent, a partial-volume artery less).
    let mut vof: Option<(AifSelection, f64)> = None;
    let mut vof_notice: Option<String> = None;
    let image_aif = matches!(opts.aif, AifChoice::Auto(_) | AifChoice::Mask(..));
    if let (Some(a), true) = (&aif, image_aif) {
        let selection = match &opts.vof {
            VofChoice::None => {
                vof_notice = Some("no venous output function was asked for (--no-vof)".into());
                None
            }
            VofChoice::Auto => {
                let peak = (b1..nt)
                    .max_by(|&x, &y| a.curve[x].total_cmp(&a.curve[y]))
                    .unwrap_or(b1);
                match select_vof(&maps.curves, n, nt, (b0, b1), peak, &a.voxels) {
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
                    (&maps.curves, n, nt, (b0, b1)),
                    &flat_mask,
                )?;
                Some(AifSelection {
                    rule: format!("user VOF mask {}", path.display()),
                    ..sel
                })
            }
        };
        if let Some(sel) = selection {
            let vca = bolus_curve(&sel.curve, (b0, b1));
            let area = |c: &[f64]| trapezoid(|t| c[t], integration.0, integration.1, input.dt_s);
            let (venous, arterial) = (area(&vca), area(&ca));
            let scale = venous / arterial;
            if !(venous > 0.0 && arterial > 0.0) {
                vof_notice = Some(format!("the AIF's area ({arterial:.3}) or the venous output function's ({venous:.3}) is not positive: the AIF is not rescaled"));
            } else if scale > 1.0 {
                ca.iter_mut().for_each(|x| *x *= scale);
                vof = Some((sel, scale));
            } else {
                vof_notice = Some(format!("the venous output function's area is {scale:.2}× the AIF's, not more: no vein of whole blood was found, and the AIF is not rescaled"));
            }
        }
    }
    stages.aif = clock.elapsed().as_secs_f64();

    // The parametric model: fitted once to the uncorrected curves when it corrects the
    // leakage (its K2 is the correction) or computes the flow.
    let residue_model = if aif.is_some()
        && (leakage == Leakage::Residue || opts.deconvolution == Some(Method::Parametric))
    {
        // Weighted by each voxel's baseline noise, with the prior on MTT.
        Some(
            ResidueModel::new(&ca, input.dt_s)
                .map_err(&err)?
                .with_noise((b0, b1)),
        )
    } else {
        None
    };
    let zeros32 = vec![0f32; n];
    let zeros64 = vec![0f64; nt];
    let fit_residue = |m: &ResidueModel, tissue: &Tissue| -> Result<Vec<f32>> {
        let bar = crate::progress::bar("parametric fit (voxels)", tissue.voxels() as u64);
        Ok(match &kernels {
            Some((ctx, k)) if m.n <= crate::gpu::dsc::MAX_RESIDUE_FIT_T => {
                k.residue_fit_with_progress(ctx, m, tissue, opts.chunk_voxels, &|d| bar.inc_by(d))?
            }
            _ => residue_fit::fit_cpu_with_progress(m, tissue, &|d| bar.inc_by(d)),
        })
    };

    let clock = Instant::now();
    let bsw = if matches!(leakage, Leakage::Bsw | Leakage::Leigh) {
        if reference_voxels.is_empty() {
            return Err(err("no non-enhancing reference voxels for the BSW leakage correction (none returns to baseline after the bolus); check the baseline frames, or use --leakage residue or none".into()));
        }
        let mut rbar = vec![0.0; nt];
        for &v in &reference_voxels {
            for t in 0..nt {
                rbar[t] += maps.curves[t * n + v] as f64;
            }
        }
        rbar.iter_mut()
            .for_each(|x| *x /= reference_voxels.len() as f64);
        Some(
            BswReference::new(
                rbar,
                input.dt_s,
                (b0, nt),
                integration,
                reference_voxels.len(),
            )
            .map_err(&err)?,
        )
    } else {
        None
    };
    stages.leakage_reference = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    // K1 (BSW only), K2, the corrected CBV, the correction's regressor (the tissue curve is
    // corrected as ΔR2* + K2·cumulative) and, for the residue correction, the fit itself.
    let mut residue_fits: Option<Vec<f32>> = None;
    // Leigh: k_ep and the corrected curves (each voxel's regressor is its own k_ep's).
    let mut leigh: Option<(Vec<f32>, Vec<f32>)> = None;
    // The leakage fit's residual (models::leakage_residual), BSW and Leigh.
    let mut leakage_nrmse: Option<Vec<f32>> = None;
    let leakage_residual = |reg: &LeakageRegressors, fits: &[f32], which: &[u32]| match &kernels {
        None => Ok(leakage_residual::residual_cpu(
            reg,
            &maps.curves,
            &fits[..n],
            &fits[n..2 * n],
            which,
        )),
        Some((ctx, k)) => k.leakage_residual(
            ctx,
            reg,
            &maps.curves,
            &fits[..n],
            &fits[n..2 * n],
            which,
            opts.chunk_voxels,
        ),
    };
    let (k1, k2, cumulative, mut cbv_c): (Option<Vec<f32>>, Vec<f32>, Vec<f64>, Vec<f32>) =
        match leakage {
            Leakage::Bsw => {
                let r = bsw.as_ref().expect("made above");
                let fits = match &kernels {
                    None => leakage_bsw::fit_cpu(r, &maps.curves, &cbv, n),
                    Some((ctx, k)) => {
                        k.leakage_bsw(ctx, r, &maps.curves, &cbv, n, opts.chunk_voxels)?
                    }
                };
                leakage_nrmse = Some(leakage_residual(
                    &LeakageRegressors::bsw(r),
                    &fits,
                    &vec![0; n],
                )?);
                (
                    Some(fits[..n].to_vec()),
                    fits[n..2 * n].to_vec(),
                    r.cumulative.clone(),
                    fits[2 * n..].to_vec(),
                )
            }
            Leakage::Leigh => {
                let b = bsw.as_ref().expect("made above");
                let r = LeighReference::new(b, input.dt_s, integration).map_err(&err)?;
                let fits = match &kernels {
                    None => leakage_leigh::fit_cpu(&r, &maps.curves, &cbv, n),
                    Some((ctx, k)) => {
                        k.leakage_leigh(ctx, &r, &maps.curves, &cbv, n, opts.chunk_voxels)?
                    }
                };
                let corrected = leakage_leigh::corrected_curves(&r, &maps.curves, &fits, n);
                let which = leakage_residual::leigh_indices(&r, &fits[2 * n..3 * n]);
                leakage_nrmse = Some(leakage_residual(
                    &LeakageRegressors::leigh(&r),
                    &fits,
                    &which,
                )?);
                leigh = Some((fits[2 * n..3 * n].to_vec(), corrected));
                (
                    Some(fits[..n].to_vec()),
                    fits[n..2 * n].to_vec(),
                    zeros64.clone(),
                    fits[3 * n..].to_vec(),
                )
            }
            Leakage::Residue => {
                let m = residue_model.as_ref().expect("made above");
                let fits = fit_residue(
                    m,
                    &Tissue {
                        curves: &maps.curves,
                        k2: &zeros32,
                        cumulative: &zeros64,
                        first: b0,
                    },
                )?;
                let k2 = fits[3 * n..4 * n].to_vec();
                // CBV + K2·∫G over the CBV window: the area of the corrected curve.
                let g_area = trapezoid(
                    |t| m.cumulative[t],
                    integration.0,
                    integration.1,
                    input.dt_s,
                );
                let cbv_c = cbv
                    .iter()
                    .zip(&k2)
                    .map(|(&c, &k)| {
                        if k.is_finite() {
                            (c as f64 + k as f64 * g_area) as f32
                        } else {
                            f32::NAN
                        }
                    })
                    .collect();
                let cumulative = m.cumulative.clone();
                residue_fits = Some(fits);
                (None, k2, cumulative, cbv_c)
            }
            Leakage::None => (None, zeros32.clone(), zeros64.clone(), cbv.clone()),
        };
    stages.leakage_fit = clock.elapsed().as_secs_f64();
    let mut cbv_u = cbv.clone();
    // The curves later stages correct as curves + k2_c·cumulative: Leigh's are corrected
    // already (per-voxel k_ep), every other correction's by K2 and its shared regressor.
    let (curves_c, k2_c): (&[f32], &[f32]) = match &leigh {
        Some((_, c)) => (c, &zeros32),
        None => (&maps.curves, &k2),
    };

    let clock = Instant::now();
    if opts.gamma_variate {
        let window = GammaWindow {
            start: timing.baseline_end,
            end: (timing.first_pass_end + 1).min(nt),
            t0_frame: timing.baseline_end.saturating_sub(1),
            dt: input.dt_s,
        };
        let (unc, cor) = match &kernels {
            None => (
                gamma_variate::fit_cpu(&window, &maps.curves, &zeros32, &cumulative, n),
                gamma_variate::fit_cpu(&window, curves_c, k2_c, &cumulative, n),
            ),
            Some((ctx, k)) => (
                k.gamma_variate(
                    ctx,
                    &window,
                    &maps.curves,
                    &zeros32,
                    &cumulative,
                    opts.chunk_voxels,
                )?,
                k.gamma_variate(ctx, &window, curves_c, k2_c, &cumulative, opts.chunk_voxels)?,
            ),
        };
        cbv_u = unc[3 * n..].to_vec();
        cbv_c = cor[3 * n..].to_vec();
    }
    stages.gamma_variate = clock.elapsed().as_secs_f64();

    // Normalisation.
    let clock = Instant::now();
    let brain_flat: Vec<bool> = brain.iter().copied().collect();
    let cbv_c_map = scatter(&cbv_c);
    let (reference_mask, reference_rule) = match &opts.reference {
        Reference::Auto => {
            let values: Vec<f32> = cbv_c_map.iter().copied().collect();
            let m = auto_white_matter(&values, &brain_flat);
            (Array3::from_shape_vec(shape, m).expect("same shape"), "automatic: brain voxels whose corrected CBV lies within 1/4 IQR of the mode of the brain's CBV histogram (white matter, the largest tissue class); check the reference_mask image".to_string())
        }
        Reference::Mask(m, path) => (m.clone(), format!("user mask {}", path.display())),
        Reference::Sphere(c, r) => (
            sphere_mask(&series.geometry, *c, *r),
            format!(
                "sphere of radius {r} mm at RAS ({}, {}, {}) mm",
                c[0], c[1], c[2]
            ),
        ),
    };
    let ref_flat: Vec<bool> = reference_mask.iter().copied().collect();
    let ref_err = |e: String| {
        err(format!(
            "normal-appearing white matter reference ({reference_rule}): {e}"
        ))
    };
    let cbv_u_map = scatter(&cbv_u);
    let reference_corrected = reference_value(
        cbv_c_map.as_slice().expect("contiguous"),
        &ref_flat,
        &brain_flat,
        opts.statistic,
    )
    .map_err(&ref_err)?;
    let reference_uncorrected = reference_value(
        cbv_u_map.as_slice().expect("contiguous"),
        &ref_flat,
        &brain_flat,
        opts.statistic,
    )
    .map_err(&ref_err)?;
    let rcbv = cbv_u_map.mapv(|x| x / reference_uncorrected.value as f32);
    let rcbv_corrected = cbv_c_map.mapv(|x| x / reference_corrected.value as f32);
    let mut rcbv_class = Array3::<u8>::zeros(shape);
    for ((c, &r), &b) in rcbv_class
        .iter_mut()
        .zip(rcbv_corrected.iter())
        .zip(brain.iter())
    {
        if b && r.is_finite() {
            *c = if (r as f64) < opts.thresholds.rcbv_low {
                1
            } else if (r as f64) > opts.thresholds.rcbv_high {
                3
            } else {
                2
            };
        }
    }
    stages.normalisation = clock.elapsed().as_secs_f64();

    let mut leakage_reference_mask = Array3::<bool>::from_elem(shape, false);
    {
        let flat = leakage_reference_mask.as_slice_mut().expect("contiguous");
        for &v in &reference_voxels {
            flat[flat_mask[v]] = true;
        }
    }
    let perfusion = match (opts.deconvolution, aif) {
        (Some(method), Some(aif)) => {
            let clock = Instant::now();
            let tissue = Tissue {
                curves: curves_c,
                k2: k2_c,
                cumulative: &cumulative,
                first: b0,
            };
            let scale = opts.kh / opts.rho;
            let ca_area = trapezoid(|t| ca[t], integration.0, integration.1, input.dt_s);
            // (kH/ρ)·100·∫C/∫Ca: the same for every deconvolution.
            let cbv_abs = perfusion::absolute_cbv(&cbv_c, ca_area, scale);
            let (flow, residue_peak, fit_nrmse) = if method == Method::Parametric {
                // With the residue-domain correction the model was fitted already, to the
                // uncorrected curves with its own leakage term; otherwise it fits the curves
                // as corrected by the chosen correction.
                let fits = match residue_fits.take() {
                    Some(f) => f,
                    None => fit_residue(residue_model.as_ref().expect("made above"), &tissue)?,
                };
                (
                    perfusion::from_parametric(&fits, n, scale),
                    fits[..n].to_vec(),
                    Some(fits[4 * n..5 * n].to_vec()),
                )
            } else {
                let d = Deconvolution::new(&ca, input.dt_s, method).map_err(&err)?;
                let out = match &kernels {
                    Some((ctx, k)) if d.l <= crate::gpu::dsc::MAX_DECONVOLUTION_L => {
                        k.deconvolution(ctx, &d, &tissue, opts.chunk_voxels)?
                    }
                    _ => {
                        let bar = crate::progress::bar("deconvolution (voxels)", n as u64);
                        deconvolve_cpu_with_progress(&d, &tissue, &|k| bar.inc_by(k))
                    }
                };
                let peak_time = |v: usize| index_time(&d, out[n + v] as usize);
                // The fit's residual with the components each voxel used
                // (models::deconvolution_residual), for the reading's quality floor.
                let components = &out[3 * n..4 * n];
                let nrmse = match &kernels {
                    Some((ctx, k)) if d.l <= crate::gpu::dsc::MAX_DECONVOLUTION_L => {
                        k.deconvolution_residual(ctx, &d, &tissue, components, opts.chunk_voxels)?
                    }
                    _ => {
                        crate::models::deconvolution_residual::residual_cpu(&d, &tissue, components)
                    }
                };
                (
                    perfusion::from_residue(&out[..n], peak_time, &cbv_abs, scale),
                    out[..n].to_vec(),
                    Some(nrmse),
                )
            };
            stages.deconvolution = clock.elapsed().as_secs_f64();
            let mut aif_mask = Array3::<bool>::from_elem(shape, false);
            {
                let flat = aif_mask.as_slice_mut().expect("contiguous");
                for &k in &aif.voxels {
                    flat[flat_mask[k]] = true;
                }
            }
            let tissue_curve = (0..nt)
                .map(|t| {
                    maps.curves[t * n..(t + 1) * n]
                        .iter()
                        .filter(|x| x.is_finite())
                        .map(|&x| x as f64)
                        .sum::<f64>()
                        / n as f64
                })
                .collect();
            let cbf = scatter(&flow.cbf);
            // The reference's median CBF over its brain voxels with flow (as rCBV's reference
            // is taken over brain voxels).
            let with_flow = Array3::from_shape_fn(shape, |i| {
                reference_mask[i] && brain[i] && cbf[i].is_finite() && cbf[i] > 0.0
            });
            let reference_cbf = super::median_in(&cbf, &with_flow) as f32;
            let rcbf = cbf.mapv(|x| x / reference_cbf);
            let absolute_notice = match (&opts.aif, &vof) {
                (AifChoice::Curve(..) | AifChoice::File(..), _) | (_, Some(_)) => None,
                _ => Some(format!("absolute CBF and CBV assume the AIF voxels hold whole blood; arterial voxels usually hold less (partial volume), which makes both too high, and the AIF was not rescaled to a venous output function ({}): read rCBV and rCBF, give a vein with --vof-mask, or give the AIF as a curve", vof_notice.as_deref().unwrap_or("none"))),
            };
            let vof_mask = vof.as_ref().map(|(sel, _)| {
                let mut m = Array3::<bool>::from_elem(shape, false);
                let flat = m.as_slice_mut().expect("contiguous");
                for &k in &sel.voxels {
                    flat[flat_mask[k]] = true;
                }
                m
            });
            Some(Perfusion {
                method,
                cbf,
                rcbf,
                absolute_notice,
                cbv: scatter(&cbv_abs),
                mtt: scatter(&flow.mtt),
                tmax: scatter(&flow.tmax),
                residue_peak: scatter(&residue_peak),
                aif_mask,
                aif,
                fit_nrmse: fit_nrmse.map(|x| scatter(&x)),
                vof,
                vof_mask,
                tissue_curve,
                kh: opts.kh,
                rho: opts.rho,
            })
        }
        _ => None,
    };
    let invalid_voxels = cbv.iter().filter(|x| x.is_nan()).count();
    Ok(DscResult {
        cbv_integral: cbv_u_map,
        cbv_integral_corrected: cbv_c_map,
        rcbv_uncorrected: rcbv,
        rcbv: rcbv_corrected,
        k1: k1.map(|k| scatter(&k)),
        kep: leigh.as_ref().map(|(k, _)| scatter(k)),
        leakage_nrmse: leakage_nrmse.map(|x| scatter(&x)),
        k2: scatter(&k2),
        leakage_model: leakage,
        notices,
        ttp: scatter(metric("ttp_s")),
        peak: scatter(peak),
        psr: scatter(metric("psr")),
        s0: scatter(metric("s0")),
        rcbv_class,
        brain,
        reference_mask,
        leakage_reference_mask,
        timing,
        acquisition: acq,
        whole_brain_signal,
        whole_brain_signal2,
        leakage: bsw,
        reference_uncorrected,
        reference_corrected,
        brain_record,
        reference_rule,
        backend: engine.summary(),
        stages,
        invalid_voxels,
        perfusion,
        // Last: the curves and the voxel list move in, no longer borrowed above.
        delta_r2star: BrainCurves {
            values: maps.curves,
            voxels: flat_mask,
            shape: (nt, shape.0, shape.1, shape.2),
        },
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
#[allow(clippy::too_many_arguments)]
fn arterial_input(
    choice: &AifChoice,
    curves: &[f32],
    n: usize,
    nt: usize,
    dt: f64,
    baseline: (usize, usize),
    flat_mask: &[usize],
    shape: (usize, usize, usize),
    err: &impl Fn(String) -> Error,
) -> Result<AifSelection> {
    match choice {
        AifChoice::Auto(rules) => select_aif(curves, n, nt, baseline, rules).map_err(err),
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
                curves,
                n,
                nt,
                dt,
                baseline,
                flat_mask,
                shape,
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
    })
}

/// The JSON record of a DSC run.
#[derive(Serialize)]
struct DscRecord<'a> {
    command: &'static str,
    notices: &'a [String],
    versions: super::Versions,
    input: &'a SeriesInfo,
    second_echo: Option<&'a SeriesInfo>,
    geometry: GeometryRecord,
    timing_source: &'a str,
    sampling_interval_s: f64,
    echo: Echo,
    frames: usize,
    baseline_rules: BaselineRules,
    bolus_timing_frames_from_0: BolusTiming,
    acquisition_windows: &'a DscAcquisition,
    concentration: &'static str,
    cbv_integration: Integration,
    gamma_variate: bool,
    brain_mask: &'a MaskRecord,
    leakage_correction: LeakageRecord,
    normalisation: NormalisationRecord<'a>,
    thresholds: Thresholds,
    backend_requested: BackendChoice,
    backend: &'a BackendSummary,
    backend_notice: Option<String>,
    /// Stem → unit of every image written (from the registry of maps).
    units: std::collections::BTreeMap<&'static str, &'static str>,
    outside_brain_value: f32,
    invalid_voxels_nan: usize,
    perfusion: Option<PerfusionRecord<'a>>,
    stages_s: &'a StageTimes,
    total_s: f64,
    outputs: Vec<String>,
}

#[derive(Serialize)]
struct PerfusionRecord<'a> {
    deconvolution: Method,
    absolute_values: &'a str,
    vof_rule: Option<&'a str>,
    vof_voxels: usize,
    aif_area_scale: f64,
    matrix: &'static str,
    oscillation_index: Option<&'static str>,
    aif_rule: &'a str,
    aif_voxels: usize,
    aif_candidates: usize,
    tissue_curve: &'static str,
    kh: f64,
    rho: f64,
    cbf: &'static str,
    cbv: &'static str,
    mtt: &'static str,
    tmax: &'static str,
}

#[derive(Serialize)]
struct LeakageRecord {
    model: &'static str,
    enabled: bool,
    reference_rule: &'static str,
    reference_voxels: usize,
    fit_frames: Option<(usize, usize)>,
}

#[derive(Serialize)]
struct NormalisationRecord<'a> {
    rule: &'a str,
    statistic: Statistic,
    reference_cbv_uncorrected: f64,
    reference_cbv_corrected: f64,
    reference_voxels: usize,
}

#[derive(Serialize)]
struct Thresholds {
    low: f64,
    high: f64,
    rcbv_class: &'static str,
}

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
    {
        use rayon::prelude::*;
        jobs.par_iter()
            .map(|(path, _, image, what)| match image {
                Image::Map(m) => nifti::write_map(path, m, g, what),
                Image::Mask(m) => nifti::write_mask(path, m, g, what),
            })
            .chain(curves.par_iter().map(|(path, c)| {
                let what = Map::DeltaR2star.nifti_description();
                nifti::write_series(path, c, g, &what, Some(ctx.input.dt_s))
            }))
            .collect::<Result<Vec<()>>>()?;
    }
    let mut outputs: Vec<String> = jobs.into_iter().map(|(_, name, _, _)| name).collect();
    let mut written = written;
    if curves.is_some() {
        outputs.push(f.file(Map::DeltaR2star.stem()));
        written.push(Map::DeltaR2star);
    }
    if let Some(p) = &r.perfusion {
        let mut csv =
            String::from("frame,time_s,aif_delta_r2star_per_s,mean_brain_delta_r2star_per_s\n");
        for (t, (a, b)) in p.aif.curve.iter().zip(&p.tissue_curve).enumerate() {
            csv.push_str(&format!(
                "{t},{:.4},{a:.6},{b:.6}\n",
                t as f64 * ctx.input.dt_s
            ));
        }
        dir.write_text("aif.csv", &csv)?;
        let png = crate::report::curves_png(&crate::report::CurvePlot {
            title: "AIF and mean tissue curve (each scaled to its peak)",
            dt_s: ctx.input.dt_s,
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
    let record = DscRecord {
        command: "dsc",
        notices: &r.notices,
        versions: VERSIONS,
        input: &ctx.input.echo1.info,
        second_echo: ctx.input.echo2.as_ref().map(|e| &e.info),
        geometry: GeometryRecord::of(g),
        timing_source: &ctx.input.timing_source,
        sampling_interval_s: ctx.input.dt_s,
        echo: ctx.input.echo,
        frames: r.acquisition.n_t,
        baseline_rules: ctx.options.baseline_rules,
        bolus_timing_frames_from_0: r.timing,
        acquisition_windows: &r.acquisition,
        concentration: "C(t) = dR2*(t)/k with k = 1 (rCBV does not depend on k)",
        cbv_integration: ctx.options.integration,
        gamma_variate: ctx.options.gamma_variate,
        brain_mask: &r.brain_record,
        leakage_correction: LeakageRecord {
            model: match r.leakage_model {
                Leakage::Residue => "residue domain (Bjornerud et al. 2011), jointly with the parametric fit: dR2*(t) = F*(Ca conv exp(-t/MTT))(t - delay) - K2*int_0^t Ca; K2 relative to the AIF (s^-1); corrected CBV = CBV + K2*int(int Ca) over the CBV window",
                Leakage::Bsw => "Boxerman-Schmainda-Weisskoff 2006: dR2*(t) = K1*Rbar(t) - K2*int_0^t Rbar, least squares per voxel; K2 relative to Rbar (s^-1); corrected CBV = CBV + K2*int(int Rbar)",
                Leakage::Leigh => "bidirectional BSW (Leu, Boxerman et al., AJNR 2016; 'Leigh' in paramap's options): dR2*(t) = K1*Rbar(t) - K2*int_0^t Rbar(tau)*exp(-kep*(t - tau)) dtau, kep (s^-1) on the grid 0 and 1e-4..0.1 log-spaced (10 per decade), K1 and K2 by least squares per kep, the kep of least residual kept; K2 relative to Rbar (s^-1); corrected CBV = CBV + K2*int(int Rbar*exp(-kep*(t - tau)))",
                Leakage::None => "none",
            },
            enabled: r.leakage_model != Leakage::None,
            reference_rule: "brain voxels with |late mean dR2*| <= 2 SD(baseline dR2*) + 2% of their peak and peak > 5 SD(baseline), vessels (peak > 3x the median peak of those) left out (BSW only)",
            reference_voxels: r.leakage.as_ref().map_or(0, |l| l.voxels),
            fit_frames: r.leakage.as_ref().map(|l| l.fit),
        },
        normalisation: NormalisationRecord {
            rule: &r.reference_rule,
            statistic: r.reference_corrected.statistic,
            reference_cbv_uncorrected: r.reference_uncorrected.value,
            reference_cbv_corrected: r.reference_corrected.value,
            reference_voxels: r.reference_corrected.voxels,
        },
        thresholds: Thresholds {
            low: ctx.options.thresholds.rcbv_low,
            high: ctx.options.thresholds.rcbv_high,
            rcbv_class: "1: corrected rCBV below low (supports treatment effect); 2: between; 3: above high (supports progression). Support for a reader, not a diagnosis (paramap docs/methods.md §1).",
        },
        backend_requested: ctx.requested,
        backend: &r.backend,
        backend_notice: ctx.notice.clone(),
        units: unit_table(&written),
        outside_brain_value: 0.0,
        invalid_voxels_nan: r.invalid_voxels,
        perfusion: r.perfusion.as_ref().map(|p| PerfusionRecord {
            deconvolution: p.method,
            absolute_values: p.absolute_notice.as_deref().unwrap_or(if p.vof.is_some() { "the AIF's area was rescaled to the venous output function's (aif_area_scale)" } else { "the AIF was given as a curve: absolute values take its scale" }),
            vof_rule: p.vof.as_ref().map(|(s, _)| s.rule.as_str()),
            vof_voxels: p.vof.as_ref().map_or(0, |(s, _)| s.voxels.len()),
            aif_area_scale: p.vof.as_ref().map_or(1.0, |(_, k)| *k),
            matrix: match p.method {
                Method::Parametric => "none: a dictionary of (Ca conv exp(-t/MTT))(t - delay) on a grid of MTT (0.5-40 s, log-spaced) and delay (-8 to 20 s, 0.25 s), Ca linear between samples, convolved in continuous time; refined between grid points",
                m if m.circular() => "block-circulant, zero-padded to 2N (Wu 2003), linear interpolation of Ca between samples (Sourbron 2007)",
                _ => "Toeplitz, linear interpolation of Ca between samples (Sourbron 2007): A_ij = dt*(Ca_i-j-1 + 4 Ca_i-j + Ca_i-j+1)/6",
            },
            oscillation_index: matches!(p.method, Method::Osvd { .. }).then_some("(1/L)(1/max f) sum |f_k - 2f_k-1 + f_k-2| (second differences, Wu 2003); oSVD searches every number of components"),
            aif_rule: &p.aif.rule,
            aif_voxels: p.aif.voxels.len(),
            aif_candidates: p.aif.candidates,
            tissue_curve: match (p.method, r.leakage_model) {
                (Method::Parametric, Leakage::Residue) => "dR2* (k = 1) as measured: the fit's own term -K2*int Ca is the leakage",
                (_, Leakage::None) => "dR2* (k = 1), not corrected",
                _ => "leakage-corrected dR2* (k = 1)",
            },
            kh: p.kh,
            rho: p.rho,
            cbf: if p.method == Method::Parametric { "(kH/rho)*6000*F (the fitted flow), ml/100g/min; 0 where the fit shows no flow" } else { "(kH/rho)*6000*max f, ml/100g/min; 0 where the residue shows no flow" },
            cbv: "(kH/rho)*100*int C / int Ca over the CBV window, leakage corrected, ml/100g",
            mtt: if p.method == Method::Parametric { "the fitted residue's mean transit time, s; NaN where CBF is 0" } else { "60*CBV/CBF, s (central volume theorem); NaN where CBF is 0" },
            tmax: if p.method == Method::Parametric { "the fitted bolus delay relative to the AIF, s (the exponential residue peaks at its start); the delay map equals it" } else { "time of max f, s; the delay map equals it for circular methods" },
        }),
        stages_s: &r.stages,
        total_s: ctx.started.elapsed().as_secs_f64(),
        outputs,
    };
    let json = serde_json::to_string_pretty(&record).map_err(|e| Error::Invalid(e.to_string()))?;
    dir.write_text("dsc.json", &json)?;
    dir.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parallel_mean_equals_ndarrays_mean_axis_bit_for_bit() {
        // 5 frames of a grid larger than one 4096-voxel task, irregular values.
        let data = ndarray::Array4::from_shape_fn((5, 3, 41, 47), |(t, z, y, x)| {
            ((t * 7919 + z * 104_729 + y * 31 + x * 17) % 1000) as f32 * 0.731 + 0.1
        });
        for skip in [0, 2, 4] {
            let ours = mean_after(&data, skip).unwrap();
            let theirs = data
                .slice(ndarray::s![skip.., .., .., ..])
                .mean_axis(ndarray::Axis(0))
                .unwrap();
            assert!(
                ours.iter()
                    .zip(&theirs)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "skip {skip}"
            );
        }
        assert!(mean_after(&data, 5).is_none());
    }

    use super::BrainCurves;

    #[test]
    fn brain_curves_land_on_their_voxels_and_the_rest_of_the_grid_is_zero() {
        // 2 frames on a (z, y, x) = (1, 2, 3) grid; brain voxels at flat indices 1 and 4.
        let c = BrainCurves {
            values: vec![10.0, 40.0, 11.0, 41.0],
            voxels: vec![1, 4],
            shape: (2, 1, 2, 3),
        };
        let v = c.volume();
        assert_eq!(v.dim(), (2, 1, 2, 3));
        for t in 0..2 {
            let flat: Vec<f32> = v.index_axis(ndarray::Axis(0), t).iter().copied().collect();
            let f = t as f32;
            assert_eq!(flat, vec![0.0, 10.0 + f, 0.0, 0.0, 40.0 + f, 0.0]);
        }
    }

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
