//! DSC perfusion (docs/methods.md §3–4), built like the ADC path: the pipeline reads, selects
//! and writes; the model (`models::dsc::DscModel`, built once) fits. [`compute`] is the list
//! of steps: the acquisition read once (brain mask, whole-brain curve, bolus timing, frame
//! windows: [`acquisition`]), ΔR2* and the first-pass metrics per voxel
//! (`models::delta_r2star`), the arterial input and its venous partial-volume rescaling
//! ([`arterial`]), then the model, with which the leakage correction (its reference:
//! [`leakage`]), an optional gamma-variate CBV, rCBV normalised to white matter
//! ([`normalisation`]), and CBF, MTT and Tmax by deconvolution (on the grid:
//! [`deconvolution`]). Per-voxel work runs on the chosen engine ([`engine`]: a WGSL kernel or
//! its f64 CPU twin in `models/`); the whole-brain reductions and selections run once on the
//! CPU. [`write`] puts the maps and the record ([`record`]) on disk.

mod acquisition;
mod arterial;
mod deconvolution;
mod engine;
mod leakage;
mod normalisation;
mod record;
mod write;

use std::path::PathBuf;
use std::time::Instant;

use ndarray::{Array3, Axis};
use serde::Serialize;

/// The model's choices, here where `DscOptions` names them (`paramap dsc`, tests).
pub use crate::models::dsc::{Integration, Leakage};
pub use arterial::AifFile;
pub use write::{write, DscWriteContext};

use super::mask::{MaskChoice, MaskRecord};
use super::{BackendSummary, Engine};
use crate::error::{Error, Result};
use crate::models::aif::{AifRules, AifSelection};
use crate::models::bolus::{BaselineRules, BolusTiming};
use crate::models::deconvolution::Method;
use crate::models::delta_r2star::{DscAcquisition, DscMaps, Echo, METRICS};
use crate::models::dsc::{DscChoices, DscModel, DEFAULT_KH, DEFAULT_RHO};
use crate::models::leakage_bsw::{self, BswReference};
use crate::models::normalisation::{ReferenceValue, Statistic};
use crate::models::response::ReadingThresholds;
use crate::volume::Series4;

/// A DSC acquisition ready to analyse: one or two echoes, sampling interval and echo times.
pub struct DscInput {
    pub echo1: Series4,
    pub echo2: Option<Series4>,
    pub dt_s: f64,
    pub echo: Echo,
    /// How Δt and TE were found (for the record).
    pub timing_source: String,
    /// The echoes' voxels mapped from their files (`nifti::read_mapped`), where the input was
    /// loaded so (`DscInputOptions::map_voxels`): then that echo's `data` holds no voxels
    /// (shape `[t, 0, 0, 0]`). Read the voxels through [`DscInput::voxels`].
    pub mapped: [Option<crate::io::nifti::MappedVoxels>; 2],
}

impl DscInput {
    /// The voxels of echo 1 (`second` false) or 2, `[t, z, y, x]`: mapped, or the series'
    /// `data`; None for a second echo the input does not have.
    pub fn voxels(&self, second: bool) -> Option<ndarray::ArrayView4<'_, f32>> {
        let (series, mapped) = if second {
            (self.echo2.as_ref()?, &self.mapped[1])
        } else {
            (&self.echo1, &self.mapped[0])
        };
        Some(mapped.as_ref().map_or(series.data.view(), |m| m.view()))
    }

    /// The single-echo DSC digital reference object as an input (its Δt and TE).
    pub fn from_phantom(p: &crate::synth::dsc::DscPhantom) -> Self {
        let te = p.series.info.echo_time_s.unwrap_or(0.030);
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
            mapped: [None, None],
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
            kh: DEFAULT_KH,
            rho: DEFAULT_RHO,
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

/// The brain voxels' ΔR2* curves and the frame windows: what every step after ΔR2* reads.
struct Curves<'a> {
    /// ΔR2*(t) (s⁻¹), planar: `values[t * n + k]`.
    values: &'a [f32],
    n: usize,
    nt: usize,
    /// Sampling interval (s).
    dt: f64,
    /// Baseline frames `[b0, b1)`.
    baseline: (usize, usize),
    /// The CBV integral's frames.
    integration: (usize, usize),
    /// Flat (z, y, x) index of each voxel.
    voxels: &'a [usize],
    shape: (usize, usize, usize),
    /// `models::aif::scan` of the curves from the baseline's end, made once where the AIF or
    /// the VOF is chosen automatically and shared by both ([`Curves::scans`]).
    scans: std::sync::OnceLock<Vec<crate::models::aif::VoxelScan>>,
}

impl Curves<'_> {
    /// Each voxel's area and peaks after the baseline (`models::aif::scan`), made on first use.
    fn scans(&self) -> &[crate::models::aif::VoxelScan] {
        self.scans
            .get_or_init(|| crate::models::aif::scan(self.values, self.n, self.nt, self.baseline.1))
    }
}

/// Computes every DSC map of `input`: the steps of the module doc, in order.
pub fn compute(input: &DscInput, opts: &DscOptions, engine: &Engine) -> Result<DscResult> {
    let series = &input.echo1;
    let label = series.info.label();
    let err = |problem: String| Error::series(label.clone(), problem);
    let nt = series.n_volumes();
    let mut stages = StageTimes::default();
    normalisation::check_reference_grid(opts, series)?;

    // 1. The acquisition: brain, whole-brain curve, bolus timing and the frame windows.
    let clock = Instant::now();
    let acquisition::BrainSignals {
        brain,
        brain_record,
        voxels: flat_mask,
        s1,
        s2,
        whole_brain_signal,
        whole_brain_signal2,
        timing,
    } = acquisition::read_brain(input, opts, &err)?;
    let n = flat_mask.len();
    stages.mask_and_whole_brain_curve = clock.elapsed().as_secs_f64();
    let acq = acquisition::windows(input, &timing, opts.integration);

    // 2. ΔR2* and the first-pass metrics of every voxel.
    let kernels = engine::Kernels::new(engine, opts.chunk_voxels);
    let clock = Instant::now();
    // The signals are not read again: they go in (the CPU writes the curves over them).
    let maps: DscMaps = kernels.delta_r2star_owned(&acq, s1, s2, n)?;
    stages.delta_r2star = clock.elapsed().as_secs_f64();
    let metric = |name: &str| {
        let k = METRICS.iter().position(|m| *m == name).expect("a metric");
        &maps.metrics[k * n..(k + 1) * n]
    };
    let cbv = metric("cbv").to_vec();
    let shape = brain.dim();
    let scatter = |values: &[f32]| acquisition::scatter(values, &flat_mask, shape);
    let curves = Curves {
        values: &maps.curves,
        n,
        nt,
        dt: input.dt_s,
        baseline: (timing.baseline_start, timing.baseline_end),
        integration: acq.integration,
        voxels: &flat_mask,
        shape,
        scans: std::sync::OnceLock::new(),
    };
    // BSW's reference voxels: non-enhancing tissue (also reported with the other corrections).
    let (peak, sd, late) = (metric("peak"), metric("baseline_sd"), metric("late_mean"));
    let reference_voxels = leakage_bsw::reference_voxels(peak, sd, late);

    // 3. The arterial input (for the residue-domain correction and every deconvolution), and
    // its partial-volume rescaling to a vein; then the model, built on it once.
    let clock = Instant::now();
    let mut leakage = opts.leakage;
    let mut notices: Vec<String> = crate::models::bolus::user_baseline_notice(
        &whole_brain_signal,
        &opts.baseline_rules,
        opts.baseline,
    )
    .into_iter()
    .collect();
    if timing.first_pass_end + 1 >= nt {
        notices.push(format!("the series ends ({nt} frames) before the bolus's first pass does: CBF, MTT, Tmax and the leakage estimates rest on a truncated curve and are unreliable; acquire at least 60 s after arrival"));
    }
    let aif = arterial::find_aif(opts, &curves, &mut leakage, &mut notices, &err)?;
    let arterial = arterial::rescale_to_vof(opts, aif.as_ref(), &curves, input.echo)?;
    let choices = DscChoices {
        leakage,
        deconvolution: opts.deconvolution,
        gamma_variate: opts.gamma_variate,
        kh: opts.kh,
        rho: opts.rho,
    };
    let ca = aif.is_some().then(|| arterial.ca.clone());
    let model = DscModel::new(acq.clone(), timing.first_pass_end, ca, choices).map_err(&err)?;
    stages.aif = clock.elapsed().as_secs_f64();

    // 4. The leakage correction: K1, K2 and the corrected CBV.
    let clock = Instant::now();
    let reference = leakage::reference(&model, &reference_voxels, &curves, &err)?;
    stages.leakage_reference = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let mut fit = model.fit_leakage(&kernels, &maps.curves, &cbv, reference.as_ref())?;
    stages.leakage_fit = clock.elapsed().as_secs_f64();
    let (mut cbv_u, mut cbv_c) = (cbv.clone(), std::mem::take(&mut fit.cbv_corrected));

    // 5. Optionally, CBV from gamma-variate fits to the first pass.
    let clock = Instant::now();
    if let Some((u, c)) = model.gamma_variate_cbv(&kernels, &maps.curves, &fit)? {
        (cbv_u, cbv_c) = (u, c);
    }
    stages.gamma_variate = clock.elapsed().as_secs_f64();

    // 6. rCBV: CBV over its value in the white-matter reference.
    let clock = Instant::now();
    let cbv_c_map = scatter(&cbv_c);
    let cbv_u_map = scatter(&cbv_u);
    let norm = normalisation::normalise(&cbv_u_map, &cbv_c_map, &brain, series, opts, &err)?;
    stages.normalisation = clock.elapsed().as_secs_f64();
    let leakage_reference_mask = acquisition::mask_of(&reference_voxels, &flat_mask, shape);

    // 7. CBF, MTT and Tmax: the corrected tissue curves deconvolved by the AIF.
    let clock = Instant::now();
    let residue_fits = fit.residue_fits.take();
    let tissue = fit.tissue(&maps.curves, curves.baseline.0);
    let flow = model.deconvolve(&kernels, &tissue, &cbv_c, residue_fits)?;
    let perfusion = match (model.deconvolution, flow, aif) {
        (Some(method), Some(flow), Some(aif)) => {
            stages.deconvolution = clock.elapsed().as_secs_f64();
            Some(deconvolution::maps(
                method,
                flow,
                aif,
                arterial,
                &curves,
                &norm.reference_mask,
                &brain,
                opts,
            ))
        }
        _ => None,
    };
    let invalid_voxels = cbv.iter().filter(|x| x.is_nan()).count();
    let scatter = |values: &[f32]| acquisition::scatter(values, &flat_mask, shape);
    Ok(DscResult {
        cbv_integral: cbv_u_map,
        cbv_integral_corrected: cbv_c_map,
        rcbv_uncorrected: norm.rcbv_uncorrected,
        rcbv: norm.rcbv,
        k1: fit.k1.as_deref().map(scatter),
        kep: fit.leigh.as_ref().map(|(k, _)| scatter(k)),
        leakage_nrmse: fit.nrmse.as_deref().map(scatter),
        k2: scatter(&fit.k2),
        leakage_model: model.leakage,
        notices,
        ttp: scatter(metric("ttp_s")),
        peak: scatter(peak),
        psr: scatter(metric("psr")),
        s0: scatter(metric("s0")),
        rcbv_class: norm.rcbv_class,
        brain,
        reference_mask: norm.reference_mask,
        leakage_reference_mask,
        timing,
        acquisition: acq,
        whole_brain_signal,
        whole_brain_signal2,
        leakage: reference.map(|r| r.bsw),
        reference_uncorrected: norm.reference_uncorrected,
        reference_corrected: norm.reference_corrected,
        brain_record,
        reference_rule: norm.reference_rule,
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

#[cfg(test)]
mod tests {
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
}
