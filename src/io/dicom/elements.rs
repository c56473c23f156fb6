//! DICOM element and UID helpers: the one place for the SOP class and transfer syntax UIDs
//! paramap writes, new UIDs, putting elements into a data set, and the value rules of the
//! string VRs it writes (PS3.5 6.2). Used by the derived-series writer ([`super::derived`]),
//! the scanner-like writer of the phantoms ([`super::write`]) and the network code.

use std::path::Path;

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::error::{Error, Result};

/// MR Image Storage SOP class (PS3.4 B.5): classic single-frame MR images.
pub const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// Enhanced MR Image Storage SOP class (PS3.4 B.5): multi-frame MR images.
pub const ENHANCED_MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4.1";
/// Parametric Map Storage SOP class (PS3.4 B.5): float maps with a Real World Value Mapping.
pub const PARAMETRIC_MAP_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.30";
/// Explicit VR Little Endian transfer syntax (PS3.5 A.2): what paramap writes.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian transfer syntax (PS3.5 A.1): the default every peer accepts.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Deflated Explicit VR Little Endian transfer syntax (PS3.5 A.5).
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
/// Explicit VR Big Endian transfer syntax (PS3.5 A.3, retired but still met).
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
/// The UUID-derived UID root (ISO/IEC 9834-8, PS3.5 B.2): no registration needed.
pub const UUID_UID_ROOT: &str = "2.25";

/// Checks a UID root: dot-separated numbers without leading zeros, short enough to leave
/// room for at least 20 digits of randomness within the 64-character limit (PS3.5 9.1).
pub fn check_uid_root(root: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Invalid(format!(
            "UID root '{root}' {why}: give a root like 1.2.826.0.1.3680043.10.123 (your organisation's registered root) or 2.25 (UUID-derived, no registration)"
        )))
    };
    if root.is_empty() || root.len() > 42 {
        return bad("must be 1 to 42 characters");
    }
    for part in root.split('.') {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return bad("must be numbers separated by dots");
        }
        if part.len() > 1 && part.starts_with('0') {
            return bad("has a component with a leading zero");
        }
    }
    Ok(())
}

/// A new UID under `root` (checked with [`check_uid_root`]): the root, a dot, and the decimal
/// digits of a random 127-bit number, cut to fit 64 characters (PS3.5 9.1).
pub fn new_uid_under(root: &str) -> String {
    let digits = (rand::random::<u128>() >> 1).max(1).to_string();
    let room = 64usize.saturating_sub(root.len() + 1);
    format!("{root}.{}", &digits[..digits.len().min(room)])
}

/// A fresh UID under the UUID-derived root 2.25 ([`UUID_UID_ROOT`]): no registration needed.
pub fn new_uid() -> String {
    new_uid_under(UUID_UID_ROOT)
}

/// A string element (any string VR: the caller keeps `s` within the VR's rules, PS3.5 6.2).
pub fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, s: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(s)));
}

/// An Unsigned Short (US) element.
pub fn put_u16(obj: &mut InMemDicomObject, tag: Tag, v: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
}

/// A Floating Point Double (FD) element.
pub fn put_fd(obj: &mut InMemDicomObject, tag: Tag, v: f64) {
    obj.put(DataElement::new(tag, VR::FD, PrimitiveValue::from(v)));
}

/// A sequence (SQ) of `items`.
pub fn seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// A code sequence item (PS3.3 Table 8.8-1: Code Value, Coding Scheme Designator, Code
/// Meaning) of `(value, scheme, meaning)`.
pub fn code_item((value, scheme, meaning): (&str, &str, &str)) -> InMemDicomObject {
    let mut c = InMemDicomObject::new_empty();
    put_str(&mut c, tags::CODE_VALUE, VR::SH, value);
    put_str(&mut c, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put_str(&mut c, tags::CODE_MEANING, VR::LO, meaning);
    c
}

/// The Multi-frame Dimension Module (PS3.3 C.7.6.17): one dimension organisation `uid`, and
/// frames indexed by `indices` (an attribute of the Frame Content Sequence and its label), in
/// that order.
pub fn put_dimensions(obj: &mut InMemDicomObject, uid: &str, indices: &[(Tag, &str)]) {
    let mut organisation = InMemDicomObject::new_empty();
    put_str(
        &mut organisation,
        tags::DIMENSION_ORGANIZATION_UID,
        VR::UI,
        uid,
    );
    seq(
        obj,
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        vec![organisation],
    );
    let items = indices
        .iter()
        .map(|&(pointer, label)| {
            let mut d = InMemDicomObject::new_empty();
            put_str(&mut d, tags::DIMENSION_ORGANIZATION_UID, VR::UI, uid);
            d.put(DataElement::new(
                tags::DIMENSION_INDEX_POINTER,
                VR::AT,
                PrimitiveValue::Tags(vec![pointer].into()),
            ));
            d.put(DataElement::new(
                tags::FUNCTIONAL_GROUP_POINTER,
                VR::AT,
                PrimitiveValue::Tags(vec![tags::FRAME_CONTENT_SEQUENCE].into()),
            ));
            put_str(&mut d, tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label);
            d
        })
        .collect();
    seq(obj, tags::DIMENSION_INDEX_SEQUENCE, items);
}

/// A Frame Content item (PS3.3 C.7.6.16.2.2) of a frame in the one stack "1", at 1-based
/// In-Stack Position `in_stack`, with Dimension Index Values `index` (one per dimension
/// [`put_dimensions`] lists, in its order); the caller adds any further attribute (temporal
/// position, the frame's times).
pub fn frame_content(in_stack: u32, index: &[u32]) -> InMemDicomObject {
    let mut content = InMemDicomObject::new_empty();
    put_str(&mut content, tags::STACK_ID, VR::SH, "1");
    content.put(DataElement::new(
        tags::IN_STACK_POSITION_NUMBER,
        VR::UL,
        PrimitiveValue::from(in_stack),
    ));
    content.put(DataElement::new(
        tags::DIMENSION_INDEX_VALUES,
        VR::UL,
        PrimitiveValue::U32(index.into()),
    ));
    content
}

/// Writes `obj` as a DICOM Part 10 file at `path` (PS3.10 7.1): SOP Class and Instance UIDs
/// `class` and `sop` in the data set and the File Meta Information, Explicit VR Little Endian.
/// The error is the library's message; the caller names the file.
pub fn write_part10(
    mut obj: InMemDicomObject,
    class: &str,
    sop: &str,
    path: &Path,
) -> std::result::Result<(), String> {
    put_str(&mut obj, tags::SOP_CLASS_UID, VR::UI, class);
    put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, sop);
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(class)
                .media_storage_sop_instance_uid(sop)
                .transfer_syntax(EXPLICIT_VR_LE),
        )
        .map_err(|e| e.to_string())?;
    file.write_to_file(path).map_err(|e| e.to_string())
}

/// A Decimal String (DS, PS3.5 6.2: at most 16 characters): the most decimals that fit.
/// Non-finite values (which DS cannot hold) are written as 0.
pub fn ds(x: f64) -> String {
    if !x.is_finite() {
        return "0".into();
    }
    for prec in (0..=10).rev() {
        let mut s = format!("{x:.prec$}");
        if s.contains('.') {
            s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        if s == "-0" {
            s = "0".into();
        }
        if s.len() <= 16 && s.parse::<f64>().is_ok_and(|v| v != 0.0 || x == 0.0) {
            return s;
        }
    }
    for prec in (0..=9).rev() {
        let s = format!("{x:.prec$e}");
        if s.len() <= 16 {
            return s;
        }
    }
    "0".into()
}

/// A multi-valued Decimal String (PS3.5 6.4: values separated by backslashes), each by [`ds`].
pub fn ds_list(v: &[f64]) -> String {
    v.iter().map(|&x| ds(x)).collect::<Vec<_>>().join("\\")
}

/// A multi-valued Decimal String with `decimals` fixed decimals, as scanners write positions
/// and orientations (the phantom writer's form). The caller keeps each value within DS's 16
/// characters (PS3.5 6.2): 6 decimals hold positions up to ±99 999 mm.
pub fn ds_fixed_list(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join("\\")
}

/// paramap's own text in ASCII, the default character repertoire (PS3.5 6.1.2): the inherited
/// Specific Character Set may not hold µ or ². Backslash, the value separator of the string
/// VRs (PS3.5 6.4), becomes a slash.
pub fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'µ' | 'μ' => "u".to_string(),
            '²' => "2".into(),
            '³' => "3".into(),
            '¹' => "1".into(),
            '⁶' => "6".into(),
            '⁻' | '−' | '–' | '—' => "-".into(),
            '×' => "x".into(),
            'Δ' => "d".into(),
            '∫' => "int ".into(),
            '\\' => "/".into(),
            c if c.is_ascii() && !c.is_ascii_control() => c.to_string(),
            _ => "?".into(),
        })
        .collect()
}

/// The first `n` characters of `s` (a VR's maximum length, PS3.5 6.2: LO 64, ST 1024).
pub fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A Long String (LO, PS3.5 6.2: 64 characters, no backslash) from paramap's text.
pub fn lo(s: &str) -> String {
    truncate(&ascii(s), 64)
}

/// (DA, TM) of now, UTC.
pub fn now_utc() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    dicom_date_time(secs)
}

/// (DA, TM) of a Unix time, UTC: YYYYMMDD and HHMMSS (PS3.5 6.2).
pub fn dicom_date_time(secs: u64) -> (String, String) {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, (rem % 3600) / 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_stay_under_64_characters_below_their_root() {
        for root in ["2.25", "1.2.826.0.1.3680043.10.123456789.1.2.3.4"] {
            check_uid_root(root).unwrap();
            for _ in 0..100 {
                let uid = new_uid_under(root);
                assert!(uid.len() <= 64, "{uid}");
                assert!(uid.starts_with(&format!("{root}.")), "{uid}");
                let last = uid.rsplit('.').next().unwrap();
                assert!(!last.starts_with('0') && last.len() >= 20, "{uid}");
            }
        }
        for bad in ["", "1..2", "1.02", "x.1", "1.2.", &"1.".repeat(30)] {
            assert!(check_uid_root(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimal_strings_fit_16_characters_and_keep_their_value() {
        for x in [
            0.0,
            1.0,
            -0.5,
            1e-7,
            -123.456789012345,
            1234567.891,
            3.5e12,
            -2.5e-9,
        ] {
            let s = ds(x);
            assert!(s.len() <= 16, "{x}: {s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - x).abs() <= x.abs() * 1e-6, "{x}: {s}");
        }
    }

    #[test]
    fn unix_times_become_dicom_dates_and_times_in_utc() {
        assert_eq!(dicom_date_time(0), ("19700101".into(), "000000".into()));
        // a leap day, and the first second of 2026
        assert_eq!(
            dicom_date_time(951_782_400 + 3600 + 61),
            ("20000229".into(), "010101".into())
        );
        assert_eq!(
            dicom_date_time(1_767_225_600),
            ("20260101".into(), "000000".into())
        );
        assert_eq!(now_utc().0.len(), 8);
    }
}
