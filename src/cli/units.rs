//! Time options with an explicit unit: `--te 30ms` or `--te 0.03s`, `--dt 1.5s` or
//! `--dt 1500ms`. A bare number keeps the option's historical unit (echo time in ms, as scanners
//! and dcm2niix's console show it; sampling interval in s, as BIDS' RepetitionTime), but only
//! inside a physiologically plausible range, so that the two habits (BIDS writes EchoTime in
//! seconds) cannot silently give maps 1000× off: outside it the value is refused with the unit
//! that was probably meant.
//!
//! Units are converted by the decimal parser itself (`0.03s` is read as `0.03e3` ms), so
//! `30ms` and `0.03s` give the very same f64 and the very same maps.

/// Plausible echo times for a bare `--te` (ms): DSC is run at 20–60 ms at 1.5–3 T, and no
/// clinical gradient-echo or spin-echo readout is below 1 ms or above 200 ms.
pub const TE_BARE_MS: (f64, f64) = (1.0, 200.0);

/// Plausible sampling intervals for a bare `--dt` (s): DSC samples every 0.3–2.5 s; below
/// 50 ms or above 10 s the bolus cannot be followed (or the number is in ms).
pub const DT_BARE_S: (f64, f64) = (0.05, 10.0);

/// Splits a number from its optional unit suffix ("ms" or "s"; None when bare).
fn split_unit(text: &str) -> Result<(String, Option<&'static str>), String> {
    let t = text.trim();
    let (number, unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, Some("ms"))
    } else if let Some(n) = t.strip_suffix('s') {
        (n, Some("s"))
    } else {
        (t, None)
    };
    let number = number.trim();
    if number.is_empty() || number.parse::<f64>().is_err() {
        return Err(format!(
            "'{text}' is not a time: give a number with its unit, e.g. 30ms or 1.5s"
        ));
    }
    Ok((number.to_string(), unit))
}

/// Parses `number` (decimal text) scaled by 10^`exp10`, rounding once (the decimal parser's
/// correctly rounded conversion), and checks that it is a positive finite time.
fn scaled(number: &str, exp10: i32, text: &str) -> Result<f64, String> {
    let value: f64 = if number.contains(['e', 'E']) {
        number.parse::<f64>().map(|v| v * 10f64.powi(exp10))
    } else {
        format!("{number}e{exp10}").parse()
    }
    .map_err(|_| format!("'{text}' is not a time"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("'{text}': a time must be a positive number"));
    }
    Ok(value)
}

/// `--te`: an echo time in milliseconds. `30ms`, `0.03s`, or a bare number of ms within
/// [`TE_BARE_MS`].
///
/// Errors: not a number, not positive, or a bare number outside 1–200 ms (the message suggests
/// the unit).
pub fn echo_time_ms(text: &str) -> Result<f64, String> {
    match split_unit(text)? {
        (n, Some("s")) => scaled(&n, 3, text),
        (n, Some(_)) => scaled(&n, 0, text),
        (n, None) => {
            let ms = scaled(&n, 0, text)?;
            let (lo, hi) = TE_BARE_MS;
            if (lo..=hi).contains(&ms) {
                return Ok(ms);
            }
            let hint = if ms < lo {
                format!(
                    "if you mean seconds (as BIDS' EchoTime), write {n}s (= {} ms)",
                    crate::io::fsl::format_g(ms * 1e3)
                )
            } else {
                "give the unit, e.g. 30ms or 0.03s".to_string()
            };
            Err(format!(
                "a bare echo time is in milliseconds, and {n} ms is outside the plausible {lo}–{hi} ms: {hint}"
            ))
        }
    }
}

/// `--dt`: a sampling interval in seconds. `1.5s`, `1500ms`, or a bare number of s within
/// [`DT_BARE_S`].
///
/// Errors: not a number, not positive, or a bare number outside 0.05–10 s (the message
/// suggests the unit).
pub fn interval_s(text: &str) -> Result<f64, String> {
    match split_unit(text)? {
        (n, Some("ms")) => scaled(&n, -3, text),
        (n, Some(_)) => scaled(&n, 0, text),
        (n, None) => {
            let s = scaled(&n, 0, text)?;
            let (lo, hi) = DT_BARE_S;
            if (lo..=hi).contains(&s) {
                return Ok(s);
            }
            let hint = if s > hi {
                format!(
                    "if you mean milliseconds, write {n}ms (= {} s)",
                    crate::io::fsl::format_g(s / 1e3)
                )
            } else {
                "give the unit, e.g. 1.5s or 1500ms".to_string()
            };
            Err(format!(
                "a bare sampling interval is in seconds, and {n} s is outside the plausible {lo}–{hi} s: {hint}"
            ))
        }
    }
}

/// Plausible brain tissue densities for `--rho` (g/ml): water is 1, brain 1.04 (Rempp et al.,
/// Radiology 1994), OSIPI's convention 1; a value outside 0.5–2 is another unit (kg/m³ gives
/// 1040) or a typing slip, and would scale CBF and absolute CBV by its inverse.
pub const RHO_G_PER_ML: (f64, f64) = (0.5, 2.0);

/// Plausible large-to-small-vessel haematocrit ratios for `--kh`: kH = (1 − Hct_large)/(1 −
/// Hct_small) is 0.733 for haematocrits 0.45/0.25 (Rempp et al., Radiology 1994) and 1 in
/// OSIPI's convention; outside 0.3–1.5 no pair of haematocrits gives it.
pub const KH_RATIO: (f64, f64) = (0.3, 1.5);

/// `--rho`: brain tissue density in g/ml, within [`RHO_G_PER_ML`].
///
/// Errors: not a number, or outside 0.5–2 g/ml (the message names the default and suggests
/// g/ml for a value in kg/m³).
pub fn tissue_density_g_per_ml(text: &str) -> Result<f64, String> {
    let rho: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number: give the density in g/ml, e.g. 1.04"))?;
    let (lo, hi) = RHO_G_PER_ML;
    if (lo..=hi).contains(&rho) {
        return Ok(rho);
    }
    let hint = if (500.0..=2000.0).contains(&rho) {
        format!(
            "if {text} is in kg/m³, write {} (g/ml)",
            crate::io::fsl::format_g(rho / 1e3)
        )
    } else {
        "brain is 1.04 g/ml (the default); OSIPI's convention is --kh 1 --rho 1".to_string()
    };
    Err(format!(
        "the tissue density ρ is in g/ml, and {text} is outside the plausible {lo}–{hi} g/ml (it divides CBF and absolute CBV): {hint}"
    ))
}

/// `--kh`: the large-to-small-vessel haematocrit ratio, dimensionless, within [`KH_RATIO`].
///
/// Errors: not a number, or outside 0.3–1.5 (the message names the default).
pub fn haematocrit_ratio(text: &str) -> Result<f64, String> {
    let kh: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number: give kH as a ratio, e.g. 0.733"))?;
    let (lo, hi) = KH_RATIO;
    if (lo..=hi).contains(&kh) {
        return Ok(kh);
    }
    Err(format!(
        "kH = (1 − Hct_large)/(1 − Hct_small) is a ratio, and {text} is outside the plausible {lo}–{hi} (it multiplies CBF and absolute CBV): the default 0.733 is for haematocrits 0.45/0.25; OSIPI's convention is --kh 1 --rho 1"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_units_convert_exactly() {
        assert_eq!(echo_time_ms("30ms"), Ok(30.0));
        assert_eq!(echo_time_ms("0.03s"), Ok(30.0));
        assert_eq!(echo_time_ms("0.032 s"), Ok(32.0));
        assert_eq!(echo_time_ms("30"), Ok(30.0));
        assert_eq!(interval_s("1.5s"), Ok(1.5));
        assert_eq!(interval_s("1500ms"), Ok(1.5));
        assert_eq!(interval_s("1243ms"), Ok(1.243));
        assert_eq!(interval_s("1.5"), Ok(1.5));
    }

    #[test]
    fn implausible_bare_values_are_refused_with_the_unit_they_probably_meant() {
        let te = echo_time_ms("0.03").unwrap_err();
        assert!(te.contains("0.03s") && te.contains("30 ms"), "{te}");
        let dt = interval_s("1500").unwrap_err();
        assert!(dt.contains("1500ms") && dt.contains("1.5 s"), "{dt}");
        assert!(echo_time_ms("500").unwrap_err().contains("30ms"));
        assert!(interval_s("0.01").unwrap_err().contains("1500ms"));
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in ["", "ms", "abc", "-30ms", "0s", "nanms", "30 min"] {
            assert!(echo_time_ms(bad).is_err(), "{bad}");
            assert!(interval_s(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn density_and_haematocrit_ratio_are_refused_outside_their_plausible_range() {
        assert_eq!(tissue_density_g_per_ml("1.04"), Ok(1.04));
        assert_eq!(tissue_density_g_per_ml("1"), Ok(1.0));
        assert_eq!(haematocrit_ratio("0.733"), Ok(0.733));
        assert_eq!(haematocrit_ratio("1"), Ok(1.0));
        let kg = tissue_density_g_per_ml("1040").unwrap_err();
        assert!(kg.contains("kg/m³") && kg.contains("write 1.04"), "{kg}");
        for bad in ["0", "-1", "nan", "inf", "abc", "", "0.1"] {
            let e = tissue_density_g_per_ml(bad).unwrap_err();
            assert!(e.contains("g/ml"), "{bad}: {e}");
            let e = haematocrit_ratio(bad).unwrap_err();
            assert!(e.contains("0.733"), "{bad}: {e}");
        }
        assert!(haematocrit_ratio("5")
            .unwrap_err()
            .contains("--kh 1 --rho 1"));
    }
}
