//! The voxelwise response map: docs/methods.md §1's reading of rCBV and ADC, voxel by voxel.
//!
//! After radio-, chemo- or immunotherapy a growing enhancing lesion may be treatment effect
//! (pseudoprogression, radiation necrosis) or regrowth. Leakage-corrected rCBV below a low
//! cut-off together with an ADC above 1.0×10⁻³ mm²/s supports treatment effect; rCBV above a
//! high cut-off supports progression (docs/methods.md §1, the table and its sources). Published
//! rCBV cut-offs between pseudoprogression and progression range from about 0.9 to 1.8 (Kong et
//! al. 2011: 1.49; Gahramanov et al. 2013: 1.5; Young et al. 2013: 1.8; as tabulated in the
//! review of Neuroradiol J 2015;28:574–583, table 5) and differ between software packages
//! (Kelm et al., J Med Imaging 2015), so the cut-offs are parameters
//! ([`ReadingThresholds`]) and the classes are support for a reader, never a diagnosis.
//!
//! The same thresholds drive the ROI reading (`report::reading`), the fractional tumour burden
//! ([`crate::models::roi::fractional_tumour_burden`]) and this map.

use ndarray::{Array3, ArrayView3, Zip};
use serde::Serialize;

use crate::error::{Error, Result};

/// The thresholds of the reading (docs/methods.md §1); parameters, never constants.
///
/// Defaults: rCBV low 1.5 and high 2.0 (ratio to normal-appearing white matter), ADC high
/// 1.0×10⁻³ mm²/s, the values of docs/methods.md §1's table (rCBV < 1.5 with ADC > 1.0×10⁻³
/// mm²/s supports treatment effect, reported PPV 93.2%; rCBV > 2.0 supports progression).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReadingThresholds {
    /// rCBV below this (with ADC above `adc_high_mm2_s`) supports treatment effect.
    pub rcbv_low: f64,
    /// rCBV above this supports true progression.
    pub rcbv_high: f64,
    /// ADC above this (mm²/s) is the diffusion half of the treatment-effect criterion.
    pub adc_high_mm2_s: f64,
}

impl Default for ReadingThresholds {
    fn default() -> Self {
        ReadingThresholds {
            rcbv_low: 1.5,
            rcbv_high: 2.0,
            adc_high_mm2_s: 1.0e-3,
        }
    }
}

impl ReadingThresholds {
    /// Errors ([`Error::Invalid`], naming the values) unless all three are positive and finite
    /// with low ≤ high.
    pub fn validate(&self) -> Result<()> {
        // Comparisons with NaN are false, so NaN thresholds fail this too.
        let valid = self.rcbv_low > 0.0
            && self.rcbv_low <= self.rcbv_high
            && self.rcbv_high.is_finite()
            && self.adc_high_mm2_s > 0.0
            && self.adc_high_mm2_s.is_finite();
        if valid {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "reading thresholds --rcbv-low {} / --rcbv-high {} (ratios) and --adc-high {} mm²/s: each must be a positive number, with --rcbv-low ≤ --rcbv-high (defaults 1.5, 2.0 and 0.001)",
                self.rcbv_low, self.rcbv_high, self.adc_high_mm2_s
            )))
        }
    }
}

/// One class of the response map; the discriminant is the voxel value written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ResponseClass {
    /// Outside the brain mask, or where either map is not finite (a failed fit).
    NotClassified = 0,
    /// Corrected rCBV < low and ADC > adc-high.
    TreatmentEffectLike = 1,
    /// Neither criterion met, or the voxel fails the quality floor.
    Indeterminate = 2,
    /// Corrected rCBV > high.
    ProgressionLike = 3,
}

impl ResponseClass {
    /// Every class, in voxel-value order.
    pub const ALL: [ResponseClass; 4] = [
        ResponseClass::NotClassified,
        ResponseClass::TreatmentEffectLike,
        ResponseClass::Indeterminate,
        ResponseClass::ProgressionLike,
    ];

    /// The voxel value.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The class of a voxel value; `None` for values above 3.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }

    /// Short name for legends and sidecars.
    pub fn name(self) -> &'static str {
        match self {
            ResponseClass::NotClassified => "not classified",
            ResponseClass::TreatmentEffectLike => "treatment-effect-like",
            ResponseClass::Indeterminate => "indeterminate",
            ResponseClass::ProgressionLike => "progression-like",
        }
    }

    /// The rule, with the thresholds in force, for legends and sidecars.
    pub fn rule(self, t: &ReadingThresholds) -> String {
        match self {
            ResponseClass::NotClassified => {
                "outside the brain mask, or rCBV or ADC not finite there".to_string()
            }
            ResponseClass::TreatmentEffectLike => format!(
                "corrected rCBV < {} and ADC > {} mm²/s",
                t.rcbv_low, t.adc_high_mm2_s
            ),
            ResponseClass::Indeterminate => format!(
                "neither criterion (rCBV between {} and {}, or low rCBV without ADC > {} mm²/s), or below the quality floor",
                t.rcbv_low, t.rcbv_high, t.adc_high_mm2_s
            ),
            ResponseClass::ProgressionLike => format!("corrected rCBV > {}", t.rcbv_high),
        }
    }
}

/// The class of one voxel from its corrected rCBV (ratio) and ADC (mm²/s), both finite.
///
/// Boundaries are strict, as in the ROI reading: rCBV exactly at `rcbv_high` is not
/// progression-like, rCBV exactly at `rcbv_low` or ADC exactly at `adc_high_mm2_s` is not
/// treatment-effect-like; both are indeterminate. The comparison is made in f32, the maps'
/// precision, with each threshold rounded to the nearest f32, so a voxel stored as exactly the
/// threshold (e.g. ADC 1.0e-3 as f32) sits on the boundary rather than above it.
pub fn classify_voxel(rcbv: f32, adc_mm2_s: f32, t: &ReadingThresholds) -> ResponseClass {
    if !(rcbv.is_finite() && adc_mm2_s.is_finite()) {
        ResponseClass::NotClassified
    } else if rcbv > t.rcbv_high as f32 {
        ResponseClass::ProgressionLike
    } else if rcbv < t.rcbv_low as f32 && adc_mm2_s > t.adc_high_mm2_s as f32 {
        ResponseClass::TreatmentEffectLike
    } else {
        ResponseClass::Indeterminate
    }
}

/// The response map (`[z, y, x]`, voxel values [`ResponseClass::code`]) of a leakage-corrected
/// rCBV map and an ADC map in mm²/s on one grid (ADC resampled there by
/// [`crate::volume::resample::resample_linear`]):
/// - 0 outside `brain`, or where either map is not finite;
/// - 2 where `quality_ok` is given and false (the voxel fails a fit-quality floor: not
///   classified, whatever its values);
/// - otherwise 1, 2 or 3 by [`classify_voxel`].
///
/// Errors ([`Error::Invalid`]): arrays of different shapes; thresholds that fail
/// [`ReadingThresholds::validate`]; an ADC map whose median finite value inside the brain is
/// above 0.01 mm²/s (no tissue diffuses faster than free water, 3×10⁻³ mm²/s: the map is in
/// another unit, e.g. the 10⁻⁶ mm²/s scanners store).
pub fn response_map(
    rcbv: ArrayView3<f32>,
    adc_mm2_s: ArrayView3<f32>,
    brain: ArrayView3<bool>,
    quality_ok: Option<ArrayView3<bool>>,
    thresholds: &ReadingThresholds,
) -> Result<Array3<u8>> {
    thresholds.validate()?;
    let shape = rcbv.dim();
    let others = [
        ("ADC map", Some(adc_mm2_s.dim())),
        ("brain mask", Some(brain.dim())),
        ("quality mask", quality_ok.as_ref().map(|q| q.dim())),
    ];
    for (what, dim) in others {
        if let Some(d) = dim.filter(|d| *d != shape) {
            return Err(Error::Invalid(format!(
                "response map: the {what} has shape {d:?} (z, y, x) and the rCBV map {shape:?}; resample it onto the rCBV map's grid first"
            )));
        }
    }
    let mut brain_adc: Vec<f32> =
        Zip::from(&adc_mm2_s)
            .and(&brain)
            .fold(Vec::new(), |mut v, &a, &b| {
                if b && a.is_finite() {
                    v.push(a);
                }
                v
            });
    if !brain_adc.is_empty() {
        let mid = brain_adc.len() / 2;
        let median = *brain_adc.select_nth_unstable_by(mid, f32::total_cmp).1;
        if median > 0.01 {
            return Err(Error::Invalid(format!(
                "response map: the ADC map's median in the brain is {median}, not a diffusivity in mm²/s (tissue lies below 0.01 mm²/s); values in 10⁻⁶ mm²/s (µm²/s), as scanners store them, must be multiplied by 10⁻⁶"
            )));
        }
    }
    let mut out = Array3::<u8>::zeros(shape);
    Zip::from(&mut out)
        .and(&rcbv)
        .and(&adc_mm2_s)
        .and(&brain)
        .for_each(|o, &r, &a, &b| {
            *o = if b {
                classify_voxel(r, a, thresholds).code()
            } else {
                0
            };
        });
    if let Some(q) = quality_ok {
        Zip::from(&mut out).and(&q).for_each(|o, &ok| {
            if *o != 0 && !ok {
                *o = ResponseClass::Indeterminate.code();
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    const T: ReadingThresholds = ReadingThresholds {
        rcbv_low: 1.5,
        rcbv_high: 2.0,
        adc_high_mm2_s: 1.0e-3,
    };

    #[test]
    fn voxels_at_and_around_each_threshold() {
        use ResponseClass::*;
        let hi = 1.2e-3;
        let cases = [
            // rCBV around the low cut-off, ADC high.
            (1.49, hi, TreatmentEffectLike),
            (1.5, hi, Indeterminate), // at low: strict
            (1.51, hi, Indeterminate),
            // ADC around its cut-off, rCBV low.
            (1.0, 1.01e-3, TreatmentEffectLike),
            (1.0, 1.0e-3, Indeterminate), // at adc-high: strict
            (1.0, 0.99e-3, Indeterminate),
            // rCBV around the high cut-off, whatever the ADC.
            (1.99, hi, Indeterminate),
            (2.0, hi, Indeterminate), // at high: strict
            (2.01, hi, ProgressionLike),
            (2.01, 0.5e-3, ProgressionLike),
            (5.0, 3.0e-3, ProgressionLike),
            // Low perfusion without raised diffusion.
            (0.3, 0.6e-3, Indeterminate),
            // Invalid values.
            (f32::NAN, hi, NotClassified),
            (1.0, f32::NAN, NotClassified),
            (f32::INFINITY, hi, NotClassified),
        ];
        for (r, a, want) in cases {
            assert_eq!(classify_voxel(r, a, &T), want, "rCBV {r}, ADC {a}");
        }
        let moved = ReadingThresholds {
            rcbv_low: 1.0,
            rcbv_high: 1.75,
            adc_high_mm2_s: 1.3e-3,
        };
        assert_eq!(classify_voxel(1.2, 1.4e-3, &moved), Indeterminate);
        assert_eq!(classify_voxel(0.9, 1.4e-3, &moved), TreatmentEffectLike);
        assert_eq!(classify_voxel(0.9, 1.2e-3, &moved), Indeterminate);
        assert_eq!(classify_voxel(1.8, 1.2e-3, &moved), ProgressionLike);
    }

    #[test]
    fn the_map_classifies_inside_the_brain_and_marks_failed_quality_indeterminate() {
        // Voxels along x: treatment-effect-like, progression-like, indeterminate, NaN rCBV,
        // outside the brain, failing the quality floor (values of treatment effect).
        let rcbv =
            Array3::from_shape_vec((1, 1, 6), vec![1.2, 3.0, 1.7, f32::NAN, 3.0, 1.2]).unwrap();
        let adc = Array3::from_shape_vec(
            (1, 1, 6),
            vec![1.4e-3, 0.8e-3, 1.4e-3, 1.4e-3, 0.8e-3, 1.4e-3],
        )
        .unwrap();
        let brain =
            Array3::from_shape_vec((1, 1, 6), vec![true, true, true, true, false, true]).unwrap();
        let quality =
            Array3::from_shape_vec((1, 1, 6), vec![true, true, true, true, true, false]).unwrap();
        let m = response_map(
            rcbv.view(),
            adc.view(),
            brain.view(),
            Some(quality.view()),
            &T,
        )
        .unwrap();
        assert_eq!(
            m.iter().copied().collect::<Vec<_>>(),
            vec![1, 3, 2, 0, 0, 2]
        );
        let m = response_map(rcbv.view(), adc.view(), brain.view(), None, &T).unwrap();
        assert_eq!(
            m.iter().copied().collect::<Vec<_>>(),
            vec![1, 3, 2, 0, 0, 1]
        );
        // A failed fit stays 0 even where quality says no.
        let bad_q = quality.mapv(|_| false);
        let m = response_map(
            rcbv.view(),
            adc.view(),
            brain.view(),
            Some(bad_q.view()),
            &T,
        )
        .unwrap();
        assert_eq!(
            m.iter().copied().collect::<Vec<_>>(),
            vec![2, 2, 2, 0, 0, 2]
        );
    }

    #[test]
    fn wrong_shapes_units_and_thresholds_are_errors() {
        let rcbv = Array3::from_elem((2, 2, 2), 1.0f32);
        let adc = Array3::from_elem((2, 2, 2), 1.2e-3f32);
        let brain = Array3::from_elem((2, 2, 2), true);
        let other = Array3::from_elem((2, 2, 3), 1.2e-3f32);
        let e = response_map(rcbv.view(), other.view(), brain.view(), None, &T)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ADC map") && e.contains("resample"), "{e}");
        let micro = adc.mapv(|a| a * 1e6);
        let e = response_map(rcbv.view(), micro.view(), brain.view(), None, &T)
            .unwrap_err()
            .to_string();
        assert!(e.contains("10⁻⁶"), "{e}");
        let bad = ReadingThresholds { rcbv_low: 2.5, ..T };
        assert!(response_map(rcbv.view(), adc.view(), brain.view(), None, &bad).is_err());
        assert!(ReadingThresholds {
            adc_high_mm2_s: f64::NAN,
            ..T
        }
        .validate()
        .is_err());
        assert!(T.validate().is_ok());
        assert_eq!(ReadingThresholds::default(), T);
    }

    #[test]
    fn class_codes_names_and_rules() {
        for (i, c) in ResponseClass::ALL.iter().enumerate() {
            assert_eq!(c.code() as usize, i);
            assert_eq!(ResponseClass::from_code(i as u8), Some(*c));
        }
        assert_eq!(ResponseClass::from_code(4), None);
        assert!(ResponseClass::TreatmentEffectLike
            .rule(&T)
            .contains("< 1.5"));
        assert!(ResponseClass::ProgressionLike.rule(&T).contains("> 2"));
    }
}
