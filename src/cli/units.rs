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
}
