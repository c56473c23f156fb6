//! Which series `run` processes: the recognition rules, applied to each series in order, and
//! the reason a series is skipped.

use serde::Serialize;

use crate::io::dicom::derived::Quantity;
use crate::io::dicom::ScannedSeries;

/// The kinds of series `run` processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Recognised {
    Dwi,
    Dsc,
}

impl std::fmt::Display for Recognised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Recognised::Dwi => "DWI",
            Recognised::Dsc => "DSC",
        })
    }
}

/// Echo times below this are T1-weighted (dynamic contrast-enhanced, DCE) rather than the
/// T2*-weighted gradient echo of DSC (TE 20–50 ms at 1.5–3 T; Boxerman 2020 consensus).
pub const DSC_MIN_TE_MS: f64 = 15.0;
/// DSC needs the baseline, the first pass and the recirculation: at least this many time
/// points per slice (the consensus protocol acquires 60–120).
pub const DSC_MIN_TIME_POINTS: usize = 20;
/// Series descriptions that name a BOLD fMRI time series, which looks like DSC by timing alone.
pub(super) const FMRI_WORDS: [&str; 4] = ["BOLD", "FMRI", "RESTING", "FUNC"];
/// ImageType values of the scanners' own derived maps (paramap's are [`Quantity::label`]s).
pub(super) const MAP_WORDS: [&str; 9] = [
    "ADC", "EADC", "FA", "EXP", "CBV", "CBF", "MTT", "TTP", "MAP",
];

/// What `run` made of one series, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognition {
    pub kind: Option<Recognised>,
    pub reason: String,
}

/// The recognition rules, applied in order (README "paramap run" states them too):
/// 1. ImageType DERIVED with a map word (ADC, FA, CBV, …), or a Parametric Map: a derived map,
///    skipped (Siemens' DERIVED\PRIMARY\DIFFUSION\TRACEW is source data and is kept).
/// 2. Any b > 0 and at least two distinct b-values: DWI. A single b-value: skipped.
/// 3. No diffusion encoding, at least [`DSC_MIN_TIME_POINTS`] timed images per slice position,
///    TE ≥ [`DSC_MIN_TE_MS`], and a description that does not name fMRI: DSC.
/// 4. Anything else is skipped, with the rule that excluded it.
pub fn recognise(s: &ScannedSeries) -> Recognition {
    let skip = |reason: String| Recognition { kind: None, reason };
    let image_type = s.image_type.clone().unwrap_or_default();
    if image_type.starts_with("DERIVED")
        && image_type
            .split('\\')
            .skip(2)
            .map(str::trim)
            .any(|v| MAP_WORDS.contains(&v) || Quantity::ALL.iter().any(|q| q.label() == v))
    {
        return skip(format!(
            "a derived map (ImageType {image_type}), not source images"
        ));
    }
    let b = s.b_values();
    if b.iter().any(|&b| b > 0.0) {
        return if b.len() >= 2 {
            Recognition {
                kind: Some(Recognised::Dwi),
                reason: format!(
                    "diffusion-weighted: b-values {} s/mm²",
                    b.iter()
                        .map(|x| crate::io::fsl::format_g(*x))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        } else {
            skip(format!(
                "diffusion-weighted with one b-value ({} s/mm²): ADC needs two",
                b[0]
            ))
        };
    }
    let positions = s.n_positions().max(1);
    let echoes = s.echo_keys().len().max(1);
    let per_position = s.frames.len() / positions / echoes;
    let timed = s
        .frames
        .iter()
        .any(|f| f.temporal_position.is_some() || f.acquisition_time.is_some());
    if per_position < 2 {
        return skip("one image per slice position: not a time series or DWI".into());
    }
    if !timed || per_position < DSC_MIN_TIME_POINTS {
        return skip(format!(
            "{per_position} images per slice position{}: DSC needs at least {DSC_MIN_TIME_POINTS} time points",
            if timed { "" } else { " without acquisition times" }
        ));
    }
    let te = s.info.echo_time_s.map_or(f64::NAN, |t| t * 1000.0);
    if !(te >= DSC_MIN_TE_MS) {
        return skip(format!(
            "a dynamic series with TE {te:.1} ms: T1-weighted (DCE?), DSC needs TE ≥ {DSC_MIN_TE_MS} ms"
        ));
    }
    let description = s.info.description.clone().unwrap_or_default();
    let upper = description.to_ascii_uppercase();
    if let Some(w) = FMRI_WORDS.iter().find(|w| upper.contains(*w)) {
        return skip(format!(
            "a time series whose description '{description}' names fMRI ({w}), not DSC"
        ));
    }
    Recognition {
        kind: Some(Recognised::Dsc),
        reason: format!(
            "dynamic T2*-weighted: {per_position} time points per slice, TE {te:.1} ms"
        ),
    }
}
