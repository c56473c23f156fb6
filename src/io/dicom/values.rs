//! Reading values out of a DICOM dataset, including private elements whose VR is unknown
//! (UN) in implicit-VR files: numbers there are either text (IS/DS) or raw little-endian
//! floats (FL/FD), and the expected form is given by the caller.

use dicom_core::Tag;
use dicom_object::InMemDicomObject;

pub type Dataset = InMemDicomObject;

pub fn text(ds: &Dataset, tag: Tag) -> Option<String> {
    let e = ds.element_opt(tag).ok()??;
    let s = e.to_str().ok()?;
    let s = s
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!s.is_empty()).then_some(s)
}

pub fn float(ds: &Dataset, tag: Tag) -> Option<f64> {
    floats(ds, tag).and_then(|v| v.first().copied())
}

pub fn floats(ds: &Dataset, tag: Tag) -> Option<Vec<f64>> {
    let e = ds.element_opt(tag).ok()??;
    let v = e.to_multi_float64().ok()?;
    (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
}

pub fn int(ds: &Dataset, tag: Tag) -> Option<i64> {
    let e = ds.element_opt(tag).ok()??;
    e.to_int::<i64>().ok().or_else(|| {
        e.to_str()
            .ok()
            .and_then(|s| s.trim().split('\\').next()?.trim().parse::<f64>().ok())
            .map(|f| f as i64)
    })
}

pub fn items(ds: &Dataset, tag: Tag) -> Option<&[Dataset]> {
    ds.element_opt(tag).ok()??.items()
}

/// The first item of a sequence.
pub fn item(ds: &Dataset, tag: Tag) -> Option<&Dataset> {
    items(ds, tag)?.first()
}

/// How a private numeric element is stored when its VR is not known.
#[derive(Clone, Copy)]
pub enum Binary {
    F32,
    F64,
}

/// Numbers of a private element: decoded normally when the VR is known (explicit VR), else
/// from text if the bytes are text, else as little-endian floats of the expected width.
pub fn private_numbers(ds: &Dataset, tag: Tag, binary: Binary) -> Option<Vec<f64>> {
    let e = ds.element_opt(tag).ok()??;
    if e.vr() != dicom_core::VR::UN {
        if let Ok(v) = e.to_multi_float64() {
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    let bytes = e.to_bytes().ok()?;
    if let Ok(s) = std::str::from_utf8(&bytes) {
        let parsed: Option<Vec<f64>> = s
            .trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .split('\\')
            .map(|t| t.trim().parse::<f64>().ok())
            .collect();
        if let Some(v) = parsed.filter(|v| !v.is_empty()) {
            return Some(v);
        }
    }
    let v: Vec<f64> = match binary {
        Binary::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        Binary::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
    };
    (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
}

/// A private element's text (e.g. Philips (2001,1004) 'I').
pub fn private_text(ds: &Dataset, tag: Tag) -> Option<String> {
    let e = ds.element_opt(tag).ok()??;
    let bytes = e.to_bytes().ok()?;
    let s = String::from_utf8_lossy(&bytes)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// Seconds since midnight from a DICOM TM value (HHMMSS.ffffff, or HH:MM:SS in old files).
pub fn time_of_day(tm: &str) -> Option<f64> {
    let t: String = tm.chars().filter(|c| *c != ':').collect();
    let (hms, frac) = t.split_once('.').unwrap_or((&t, ""));
    if hms.len() < 2 || !hms.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        hms.get(r)
            .map(|s| s.parse::<f64>().unwrap_or(0.0))
            .unwrap_or(0.0)
    };
    let frac: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().unwrap_or(0.0)
    };
    Some(num(0..2) * 3600.0 + num(2..4) * 60.0 + num(4..6) + frac)
}

/// Seconds since midnight from a DICOM DT value (YYYYMMDDHHMMSS.ffffff&ZZXX).
pub fn datetime_seconds(dt: &str) -> Option<f64> {
    let dt = dt.split(['+', '-']).next()?;
    if dt.len() < 8 {
        return None;
    }
    let day: f64 = dt[6..8].parse().ok()?;
    Some(day * 86_400.0 + time_of_day(dt.get(8..).unwrap_or("")).unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_times() {
        assert_eq!(
            time_of_day("153511.42"),
            Some(15.0 * 3600.0 + 35.0 * 60.0 + 11.42)
        );
        assert_eq!(
            time_of_day("15:35:11"),
            Some(15.0 * 3600.0 + 35.0 * 60.0 + 11.0)
        );
        assert_eq!(time_of_day("x"), None);
        assert_eq!(
            datetime_seconds("20211005153511.5"),
            Some(5.0 * 86400.0 + 56111.5)
        );
    }
}
