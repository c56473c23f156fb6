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

/// Days from 1970-01-01 to the proleptic Gregorian date `y`-`m`-`d` (H. Hinnant's
/// `days_from_civil`, exact for every date).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 of a DICOM DA value (YYYYMMDD, or YYYY.MM.DD in old ACR-NEMA files);
/// `None` where it is not a valid date (any non-digit, month 13, day 32…).
pub fn date_days(da: &str) -> Option<i64> {
    let digits: String = da
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .chars()
        .filter(|c| *c != '.')
        .collect();
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = digits[0..4].parse().ok()?;
    let m: u32 = digits[4..6].parse().ok()?;
    let d: u32 = digits[6..8].parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d))
}

/// Seconds since 1970-01-01 00:00 of a DICOM DT value (YYYYMMDDHHMMSS.ffffff&ZZXX, PS3.5
/// §6.2), in the value's own local time: the UTC offset is dropped (the images of one series
/// share it). `None` for a value that is not a date-time (any non-ASCII character included).
pub fn datetime_seconds(dt: &str) -> Option<f64> {
    let dt = dt.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if !dt.is_ascii() {
        return None;
    }
    let dt = dt.split(['+', '-']).next()?;
    let days = date_days(dt.get(..8)?)?;
    let tod = match dt.get(8..) {
        None | Some("") => 0.0,
        Some(t) => time_of_day(t)?,
    };
    Some(days as f64 * 86_400.0 + tod)
}

/// Seconds since 1970-01-01 of an image's acquisition, as precise as its header allows:
/// AcquisitionDateTime (0008,002A); else AcquisitionTime (0008,0032) on AcquisitionDate
/// (0008,0022), falling back to ContentDate, SeriesDate, then StudyDate for the day; else the
/// time of day alone. With the date, a series that runs past midnight (or a month's or a
/// year's end) stays in order with the right steps (as dcm2niix times images).
pub fn acquisition_seconds(ds: &Dataset) -> Option<f64> {
    use dicom_dictionary_std::tags;
    if let Some(t) = text(ds, tags::ACQUISITION_DATE_TIME).and_then(|t| datetime_seconds(&t)) {
        return Some(t);
    }
    let tod = text(ds, tags::ACQUISITION_TIME).and_then(|t| time_of_day(&t))?;
    let day = [
        tags::ACQUISITION_DATE,
        tags::CONTENT_DATE,
        tags::SERIES_DATE,
        tags::STUDY_DATE,
    ]
    .iter()
    .find_map(|&tag| text(ds, tag).and_then(|d| date_days(&d)));
    Some(day.map_or(0.0, |d| d as f64 * 86_400.0) + tod)
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
        let day = |y, m, d| days_from_civil(y, m, d) as f64 * 86_400.0;
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            datetime_seconds("20211005153511.5"),
            Some(day(2021, 10, 5) + 56111.5)
        );
        assert_eq!(
            datetime_seconds("20211005153511.5+0200"),
            Some(day(2021, 10, 5) + 56111.5)
        );
        // Across a month's and a year's end: one second apart.
        let a = datetime_seconds("20210131235959").unwrap();
        let b = datetime_seconds("20210201000000").unwrap();
        assert_eq!(b - a, 1.0);
        let a = datetime_seconds("20211231235959.5").unwrap();
        let b = datetime_seconds("20220101000000.5").unwrap();
        assert_eq!(b - a, 1.0);
        // Multi-byte characters, damaged or short values: no value, no panic.
        for bad in [
            "2021é005153511",
            "20ééé",
            "é",
            "2021",
            "20211305",
            "20211032120000",
        ] {
            assert_eq!(datetime_seconds(bad), None, "{bad}");
        }
        assert_eq!(date_days("2021.10.05"), Some(days_from_civil(2021, 10, 5)));
    }
}
