//! An arterial input function given as a file (`--aif-curve`): a CSV of time and one value per
//! row, the value's kind named by the second column's header.
//!
//! ```text
//! time_s,concentration_mM      (contrast agent concentration, mM)
//! time_s,delta_r2star_per_s    (ΔR2* of arterial blood, s⁻¹)
//! time_s,signal                (arterial signal, any unit; baseline from the first rows)
//! ```
//!
//! Blank lines and lines starting with `#` are skipped. Times must increase. The conversion to
//! the tissue curves' units (arterial and tissue blood relate ΔR2* to concentration
//! differently; the OSIPI DSC reference objects use κ ≈ 7 s⁻¹/mM in arterial blood and ≈ 107
//! s⁻¹/mM in tissue, with S = S0·e^(−κ·C·TE)) is the pipeline's (`pipeline::dsc`).

use std::path::Path;

use crate::error::{Error, Result};

/// What the curve's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AifValues {
    /// Concentration (mM).
    ConcentrationMm,
    /// ΔR2* of arterial blood (s⁻¹).
    DeltaR2StarPerS,
    /// Signal (baseline taken from the first rows, before the bolus).
    Signal,
}

/// An AIF read from a file: times (s) and values.
#[derive(Debug, Clone)]
pub struct AifCurve {
    pub times_s: Vec<f64>,
    pub values: Vec<f64>,
    pub kind: AifValues,
}

/// Reads `path`; an error names the file, the line and what to fix.
pub fn read(path: &Path) -> Result<AifCurve> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Sidecar {
        path: path.to_path_buf(),
        problem: format!("cannot read the AIF curve ({e})"),
    })?;
    parse(&text).map_err(|problem| Error::Sidecar {
        path: path.to_path_buf(),
        problem,
    })
}

/// Parses the CSV text of [`read`].
pub fn parse(text: &str) -> std::result::Result<AifCurve, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or("the AIF curve is empty: give a header line `time_s,concentration_mM` (or delta_r2star_per_s, or signal) and one row per time point")?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let kind = match columns.as_slice() {
        ["time_s", "concentration_mM"] => AifValues::ConcentrationMm,
        ["time_s", "delta_r2star_per_s"] => AifValues::DeltaR2StarPerS,
        ["time_s", "signal"] => AifValues::Signal,
        _ => {
            return Err(format!(
                "line 1: header '{header}' is not one of `time_s,concentration_mM`, `time_s,delta_r2star_per_s`, `time_s,signal`"
            ))
        }
    };
    let (mut times_s, mut values) = (Vec::new(), Vec::new());
    for (number, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parse = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite());
        match fields.as_slice() {
            [t, v] => match (parse(t), parse(v)) {
                (Some(t), Some(v)) => {
                    if let Some(&last) = times_s.last() {
                        if !(t > last) {
                            return Err(format!(
                                "line {number}: time {t} s does not follow {last} s: times must increase"
                            ));
                        }
                    }
                    times_s.push(t);
                    values.push(v);
                }
                _ => return Err(format!("line {number}: '{line}' is not two finite numbers")),
            },
            _ => {
                return Err(format!(
                    "line {number}: '{line}' has {} fields; give time and value",
                    fields.len()
                ))
            }
        }
    }
    if times_s.len() < 4 {
        return Err(format!(
            "{} time points: the AIF needs at least 4",
            times_s.len()
        ));
    }
    Ok(AifCurve {
        times_s,
        values,
        kind,
    })
}

impl AifCurve {
    /// The values at `times` (s) by linear interpolation; an error for a time outside the
    /// curve's range (more than 1 ms outside).
    pub fn at(&self, times: &[f64]) -> std::result::Result<Vec<f64>, String> {
        let (first, last) = (self.times_s[0], *self.times_s.last().expect("4 or more"));
        times
            .iter()
            .map(|&t| {
                if t < first - 1e-3 || t > last + 1e-3 {
                    return Err(format!(
                        "the AIF curve covers {first}–{last} s and the series needs {t} s: give the AIF for every frame's time"
                    ));
                }
                let k = self.times_s.partition_point(|&x| x <= t).clamp(1, self.times_s.len() - 1);
                let (t0, t1) = (self.times_s[k - 1], self.times_s[k]);
                let r = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
                Ok(self.values[k - 1] * (1.0 - r) + self.values[k] * r)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_kind_and_interpolates_between_rows() {
        let c = parse("# an AIF\ntime_s,concentration_mM\n0,0\n1,2\n2,4\n3,1\n").unwrap();
        assert_eq!(c.kind, AifValues::ConcentrationMm);
        assert_eq!(c.at(&[0.5, 2.0, 2.5]).unwrap(), vec![1.0, 4.0, 2.5]);
        assert!(c.at(&[3.5]).unwrap_err().contains("covers 0–3 s"));
        let s = parse("time_s,signal\n0,100\n1,100\n2,50\n3,80\n").unwrap();
        assert_eq!(s.kind, AifValues::Signal);
    }

    #[test]
    fn bad_files_say_which_line_and_what_to_fix() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("t,c\n0,1\n").unwrap_err().contains("line 1"));
        let e = parse("time_s,signal\n0,1\n1,x\n2,3\n3,4\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        let e = parse("time_s,signal\n0,1\n2,1\n1,3\n3,4\n").unwrap_err();
        assert!(e.contains("times must increase"), "{e}");
        assert!(parse("time_s,signal\n0,1\n1,1\n")
            .unwrap_err()
            .contains("at least 4"));
    }
}
