//! Context inheritance: what every object of one derived series shares, most of it copied
//! from the source series ([`INHERITED`]) and completed where the source lacked it.

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::{DerivedMap, DerivedOptions, Encoding, Inherit, INHERITED};
use crate::io::dicom::elements::{
    ascii, code_item, lo, new_uid_under, now_utc, put_str as put, seq as put_seq, truncate,
};
use crate::log;
use crate::maps::{Code, PRIVATE_SCHEME};
use crate::volume::{DicomSource, SeriesInfo};

/// What every object of one derived series shares.
pub(super) struct StudyContext<'a> {
    /// The referenced series: (Study Instance UID, Series Instance UID, its instances).
    references: Vec<(Option<String>, String, &'a DicomSource)>,
    /// The derived series' study (inherited from the source).
    study_uid: String,
    /// Patient, study and frame of reference (and, for classic images, MR acquisition)
    /// attributes as (tag, VR, text).
    inherited: Vec<(Tag, VR, String)>,
    series_uid: String,
    uid_root: String,
    encoding: Encoding,
    now: (String, String),
}

impl<'a> StudyContext<'a> {
    pub(super) fn of(
        map: &DerivedMap,
        source: &SeriesInfo,
        references: &[&'a SeriesInfo],
        opts: &DerivedOptions,
    ) -> Self {
        let uid_root = opts.uid_root.clone();
        let mut inherited = Vec::new();
        match &source.dicom {
            Some(d) => {
                for ((g, e), vr, value) in &d.inherited {
                    let tag = Tag(*g, *e);
                    let Some(&(_, scope)) = INHERITED.iter().find(|(t, _)| *t == tag) else {
                        continue;
                    };
                    if scope == Inherit::MrAcquisition && opts.encoding != Encoding::Classic {
                        continue;
                    }
                    let vr = vr.parse::<VR>().unwrap_or(VR::LO);
                    inherited.push((tag, vr, value.clone()));
                }
            }
            None => {
                log::warn(&format!(
                    "{}: not a DICOM input, so the {} map has no study to join: it is written as a new study with the placeholder patient 'PARAMAP^NO DICOM SOURCE'; identify the patient before sending it to a PACS",
                    source.label(),
                    map.quantity.name()
                ));
                inherited.push((tags::PATIENT_NAME, VR::PN, "PARAMAP^NO DICOM SOURCE".into()));
                inherited.push((tags::PATIENT_ID, VR::LO, "PARAMAP-NO-DICOM".into()));
            }
        }
        let has = |v: &[(Tag, VR, String)], tag: Tag| v.iter().any(|(t, _, _)| *t == tag);
        // Adds each attribute the source did not carry, with its default value.
        let fill = |v: &mut Vec<(Tag, VR, String)>, defaults: &[(Tag, VR, &str)]| {
            for &(tag, vr, value) in defaults {
                if !has(v, tag) {
                    v.push((tag, vr, value.to_string()));
                }
            }
        };
        // Type 1 UIDs the source lacked: the summary fields, else new ones.
        for (tag, fallback) in [
            (tags::STUDY_INSTANCE_UID, source.study_uid.clone()),
            (
                tags::FRAME_OF_REFERENCE_UID,
                source.frame_of_reference_uid.clone(),
            ),
        ] {
            if !has(&inherited, tag) {
                let uid = fallback.unwrap_or_else(|| new_uid_under(&uid_root));
                inherited.push((tag, VR::UI, uid));
            }
        }
        let now = now_utc();
        // Type 2 attributes: present, empty when unknown. A new study is dated now.
        let new_study = source.dicom.is_none();
        fill(
            &mut inherited,
            &[
                (tags::PATIENT_NAME, VR::PN, ""),
                (tags::PATIENT_ID, VR::LO, ""),
                (tags::PATIENT_BIRTH_DATE, VR::DA, ""),
                (tags::PATIENT_SEX, VR::CS, ""),
                (
                    tags::STUDY_DATE,
                    VR::DA,
                    if new_study { now.0.as_str() } else { "" },
                ),
                (
                    tags::STUDY_TIME,
                    VR::TM,
                    if new_study { now.1.as_str() } else { "" },
                ),
                (tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
                (tags::STUDY_ID, VR::SH, ""),
                (tags::ACCESSION_NUMBER, VR::SH, ""),
                (tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
                (tags::MODALITY, VR::CS, "MR"),
                // Type 2C (C.7.3.1): empty where the source did not say.
                (tags::PATIENT_POSITION, VR::CS, ""),
            ],
        );
        // Laterality (Type 2C) must be absent for an unpaired body part and may be empty only
        // when the body part is unknown.
        // A Parametric Map says laterality per frame (Frame Anatomy), so the series-level one
        // must be absent.
        // An empty one beside a known body part (Philips writes that for the brain) must go too.
        let body_part = has(&inherited, tags::BODY_PART_EXAMINED);
        if opts.encoding == Encoding::ParametricMap || body_part {
            inherited.retain(|(t, _, v)| {
                *t != tags::LATERALITY || (opts.encoding == Encoding::Classic && !v.is_empty())
            });
        } else if !has(&inherited, tags::LATERALITY) {
            inherited.push((tags::LATERALITY, VR::CS, String::new()));
        }
        if opts.encoding == Encoding::Classic {
            // MR Image module (C.8.3.1): Type 1 and 2 acquisition attributes the source lacked.
            fill(
                &mut inherited,
                &[
                    (tags::SCANNING_SEQUENCE, VR::CS, "RM"),
                    (tags::SEQUENCE_VARIANT, VR::CS, "NONE"),
                    (tags::SCAN_OPTIONS, VR::CS, ""),
                    (tags::MR_ACQUISITION_TYPE, VR::CS, ""),
                    (tags::ECHO_TIME, VR::DS, ""),
                    (tags::REPETITION_TIME, VR::DS, ""),
                    (tags::ECHO_TRAIN_LENGTH, VR::IS, ""),
                ],
            );
        }
        let any_non_ascii = inherited.iter().any(|(_, _, v)| !v.is_ascii());
        if any_non_ascii && !has(&inherited, tags::SPECIFIC_CHARACTER_SET) {
            inherited.push((tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192".into()));
        }
        let study_uid = inherited
            .iter()
            .find(|(t, _, _)| *t == tags::STUDY_INSTANCE_UID)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_default();
        StudyContext {
            references: references
                .iter()
                .filter_map(|r| {
                    Some((
                        r.study_uid.clone(),
                        r.series_uid.clone()?,
                        r.dicom.as_ref()?,
                    ))
                })
                .collect(),
            study_uid,
            inherited,
            series_uid: new_uid_under(&uid_root),
            uid_root,
            encoding: opts.encoding,
            now,
        }
    }

    /// Frame Anatomy (CID 4031) from the source's Body Part Examined; the brain where the
    /// source does not say, as paramap's perfusion methods are for the brain.
    pub(super) fn anatomy(&self) -> Code {
        let body_part = self
            .inherited
            .iter()
            .find(|(t, _, _)| *t == tags::BODY_PART_EXAMINED)
            .map(|(_, _, v)| v.to_ascii_uppercase())
            .unwrap_or_default();
        match body_part.as_str() {
            "HEAD" => ("69536005", "SCT", "Head"),
            "PROSTATE" => ("41216001", "SCT", "Prostate"),
            _ => ("12738006", "SCT", "Brain"),
        }
    }

    pub(super) fn new_uid(&self) -> String {
        new_uid_under(&self.uid_root)
    }

    /// Patient, study, series, frame of reference, equipment and SOP common attributes.
    pub(super) fn put_common(&self, obj: &mut InMemDicomObject, map: &DerivedMap) {
        for (tag, vr, value) in &self.inherited {
            put(obj, *tag, *vr, value);
        }
        put(obj, tags::SERIES_INSTANCE_UID, VR::UI, &self.series_uid);
        put(
            obj,
            tags::SERIES_NUMBER,
            VR::IS,
            &map.series_number.to_string(),
        );
        put(
            obj,
            tags::SERIES_DESCRIPTION,
            VR::LO,
            &lo(&map.series_description),
        );
        put(obj, tags::SERIES_DATE, VR::DA, &self.now.0);
        put(obj, tags::SERIES_TIME, VR::TM, &self.now.1);
        put(obj, tags::CONTENT_DATE, VR::DA, &self.now.0);
        put(obj, tags::CONTENT_TIME, VR::TM, &self.now.1);
        put(obj, tags::INSTANCE_CREATION_DATE, VR::DA, &self.now.0);
        put(obj, tags::INSTANCE_CREATION_TIME, VR::TM, &self.now.1);
        // Dates and times above are UTC.
        put(obj, tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000");
        // General and Enhanced General Equipment (C.7.5.1, C.7.5.2): the equipment that made
        // these images is paramap.
        put(obj, tags::MANUFACTURER, VR::LO, "paramap");
        put(obj, tags::MANUFACTURER_MODEL_NAME, VR::LO, "paramap");
        put(obj, tags::DEVICE_SERIAL_NUMBER, VR::LO, "software");
        put(
            obj,
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            env!("CARGO_PKG_VERSION"),
        );
        put(obj, tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
        // Common Instance Reference (C.12.2): each source series and all its instances; those
        // of other studies (an earlier visit) under their study.
        let series_item = |series_uid: &str, src: &DicomSource| {
            let mut item = InMemDicomObject::new_empty();
            put(&mut item, tags::SERIES_INSTANCE_UID, VR::UI, series_uid);
            let instances = src
                .sop_instance_uids
                .iter()
                .map(|uid| referenced_instance(src, uid))
                .collect();
            put_seq(&mut item, tags::REFERENCED_INSTANCE_SEQUENCE, instances);
            item
        };
        let same_study = |s: &Option<String>| {
            s.as_deref()
                .is_none_or(|s| s.trim() == self.study_uid.trim())
        };
        let here: Vec<InMemDicomObject> = self
            .references
            .iter()
            .filter(|(study, _, _)| same_study(study))
            .map(|(_, series, src)| series_item(series, src))
            .collect();
        if !here.is_empty() {
            put_seq(obj, tags::REFERENCED_SERIES_SEQUENCE, here);
        }
        let mut other_studies: Vec<InMemDicomObject> = Vec::new();
        let mut studies: Vec<&str> = Vec::new();
        for (study, _, _) in &self.references {
            if let Some(st) = study.as_deref().filter(|_| !same_study(study)) {
                if !studies.contains(&st) {
                    studies.push(st);
                }
            }
        }
        for st in studies {
            let mut item = InMemDicomObject::new_empty();
            put(&mut item, tags::STUDY_INSTANCE_UID, VR::UI, st);
            let series = self
                .references
                .iter()
                .filter(|(s, _, _)| s.as_deref() == Some(st))
                .map(|(_, series, src)| series_item(series, src))
                .collect();
            put_seq(&mut item, tags::REFERENCED_SERIES_SEQUENCE, series);
            other_studies.push(item);
        }
        if !other_studies.is_empty() {
            put_seq(
                obj,
                tags::STUDIES_CONTAINING_OTHER_REFERENCED_INSTANCES_SEQUENCE,
                other_studies,
            );
        }
        if map.quantity.code().1 == PRIVATE_SCHEME {
            let mut id = InMemDicomObject::new_empty();
            put(
                &mut id,
                tags::CODING_SCHEME_DESIGNATOR,
                VR::SH,
                PRIVATE_SCHEME,
            );
            put(
                &mut id,
                tags::CODING_SCHEME_NAME,
                VR::ST,
                "paramap's codes for quantities without a DICOM code",
            );
            put(
                &mut id,
                tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
                VR::ST,
                "paramap",
            );
            put_seq(obj, tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE, vec![id]);
        }
    }

    /// Derivation Description, Derivation Code Sequence and Source Image Sequence, into `obj`
    /// (the top level of a classic image, or a Derivation Image functional group item).
    pub(super) fn put_derivation(&self, obj: &mut InMemDicomObject, map: &DerivedMap) {
        let nan_note = match self.encoding {
            Encoding::ParametricMap => "NaN: not computable; 0: outside the mask",
            Encoding::Classic => "0: outside the mask or not computable (NaN)",
        };
        let text = format!(
            "paramap {} {}: {}. Stored in {} ({nan_note}).",
            env!("CARGO_PKG_VERSION"),
            map.quantity.name(),
            ascii(&map.derivation),
            map.quantity.unit().1,
        );
        put(
            obj,
            tags::DERIVATION_DESCRIPTION,
            VR::ST,
            &truncate(&text, 1024),
        );
        put_seq(
            obj,
            tags::DERIVATION_CODE_SEQUENCE,
            vec![code_item(map.quantity.derivation_code())],
        );
        let sources: Vec<InMemDicomObject> = self
            .references
            .iter()
            .flat_map(|(_, _, src)| {
                src.sop_instance_uids
                    .iter()
                    .map(|uid| {
                        let mut r = referenced_instance(src, uid);
                        put_seq(
                            &mut r,
                            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                            vec![code_item((
                                "121322",
                                "DCM",
                                "Source image for image processing operation",
                            ))],
                        );
                        r
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        // Type 2 in the Derivation Image macro, Type 3 (so absent rather than empty) at the
        // top level of a classic image.
        if self.encoding == Encoding::ParametricMap || !sources.is_empty() {
            put_seq(obj, tags::SOURCE_IMAGE_SEQUENCE, sources);
        }
    }
}

/// A SOP Instance Reference item (PS3.3 Table 10-11): instance `uid` of `src`'s SOP class.
fn referenced_instance(src: &DicomSource, uid: &str) -> InMemDicomObject {
    let mut r = InMemDicomObject::new_empty();
    put(
        &mut r,
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        &src.sop_class_uid,
    );
    put(&mut r, tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, uid);
    r
}
