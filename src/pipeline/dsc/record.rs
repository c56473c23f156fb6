//! The JSON record of a DSC run (`dsc.json`): the acquisition, the choices in force, the
//! reference values, the unit of every image written (from the registry of maps) and how
//! each perfusion map was computed, in words.

use serde::Serialize;

use super::write::DscWriteContext;
use super::{DscResult, Integration, Leakage, StageTimes};
use crate::error::{Error, Result};
use crate::maps::{unit_table, Map};
use crate::models::bolus::{BaselineRules, BolusTiming};
use crate::models::deconvolution::Method;
use crate::models::delta_r2star::{DscAcquisition, Echo};
use crate::models::normalisation::Statistic;
use crate::pipeline::mask::MaskRecord;
use crate::pipeline::GeometryRecord;
use crate::pipeline::{BackendChoice, BackendSummary, VERSIONS};
use crate::volume::SeriesInfo;

/// The JSON record of a DSC run.
#[derive(Serialize)]
struct DscRecord<'a> {
    command: &'static str,
    notices: &'a [String],
    versions: crate::pipeline::Versions,
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
    /// How the VOF measured it (`models::vof_scale`): "area", or "area, noise-floor frames
    /// from the transit fit" with those frames and the fit.
    aif_area_scale_source: Option<&'static str>,
    vof_noise_floor_frames: Option<&'a [usize]>,
    vof_transit_fit: Option<&'a crate::models::vof_scale::TransitFit>,
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

/// The record of `r` as written with `ctx`, as pretty JSON: `written` the images on disk,
/// `outputs` every file's name.
pub(super) fn json(
    r: &DscResult,
    ctx: &DscWriteContext,
    written: &[Map],
    outputs: Vec<String>,
) -> Result<String> {
    let g = &ctx.input.echo1.geometry;
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
        units: unit_table(written),
        outside_brain_value: 0.0,
        invalid_voxels_nan: r.invalid_voxels,
        perfusion: r.perfusion.as_ref().map(|p| {
            let vof_scale = p.vof.as_ref().and_then(|(s, _)| s.vof_scale.as_ref());
            PerfusionRecord {
            deconvolution: p.method,
            absolute_values: p.absolute_notice.as_deref().unwrap_or(if p.vof.is_some() { "the AIF's area was rescaled to the venous output function's (aif_area_scale; Bjørnerud and Emblem, JCBFM 2010; frames at the noise floor filled from a transit fit, Knutsson et al., MAGMA 2010; paramap docs/methods.md §4)" } else { "the AIF was given as a curve: absolute values take its scale" }),
            vof_rule: p.vof.as_ref().map(|(s, _)| s.rule.as_str()),
            vof_voxels: p.vof.as_ref().map_or(0, |(s, _)| s.voxels.len()),
            aif_area_scale: p.vof.as_ref().map_or(1.0, |(_, k)| *k),
            aif_area_scale_source: vof_scale.map(|v| v.source),
            vof_noise_floor_frames: vof_scale.map(|v| v.filled_frames.as_slice()),
            vof_transit_fit: vof_scale.and_then(|v| v.fit.as_ref()),
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
        }
        }),
        stages_s: &r.stages,
        total_s: ctx.started.elapsed().as_secs_f64(),
        outputs,
    };
    serde_json::to_string_pretty(&record).map_err(|e| Error::Invalid(e.to_string()))
}
