//! Maps as DICOM derived series in the source study, so that a PACS files them with the scans
//! they came from and a viewer shows them beside those scans.
//!
//! Two encodings:
//! - [`Encoding::ParametricMap`]: one Parametric Map object (PS3.3 A.75), multi-frame, 32-bit
//!   Float Pixel Data (7FE0,0008) in the unit the Real World Value Mapping names (identity
//!   mapping). NaN voxels (paramap could not compute them) are stored as NaN, which IEEE floats
//!   and the standard allow; viewers differ in how they show them, so the LUT Explanation says
//!   so. 0 marks voxels outside the mask, as in every paramap map.
//! - [`Encoding::Classic`]: MR Image Storage, one file per slice, signed 16-bit integers with
//!   Rescale Slope/Intercept and the same mapping in a Real World Value Mapping Sequence, for
//!   viewers without Parametric Map support. ADC is stored as scanners store it: integers in
//!   10⁻⁶ mm²/s (µm²/s). NaN cannot be an integer: it is stored as 0, and the LUT Explanation
//!   and Derivation Description say so.
//!
//! Both inherit patient, study and Frame of Reference from the source series (the attributes
//! in [`INHERITED`], captured by the scan into [`DicomSource`]), reference every source instance
//! (Referenced Series Sequence, Source Image Sequence with purpose DCM 121322), carry the
//! Derivation Description and Code, and a window (1st–99th percentile of the finite non-zero
//! values) so that the map looks right when first opened.
//!
//! New UIDs (series, instances, dimension organisation) are made under one root: by default
//! `2.25`, the UUID-derived root of ISO/IEC 9834-8 / PS3.5 B.2, which needs no registration;
//! a site can pass its own registered root instead.

use std::path::{Path, PathBuf};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use ndarray::ArrayView3;

use super::elements::{
    ascii, code_item, ds_list, lo, put_dimensions, put_str as put, put_u16, seq as put_seq,
    truncate, write_part10,
};
pub use super::elements::{
    check_uid_root, ds, new_uid_under, now_utc, MR_IMAGE_STORAGE, PARAMETRIC_MAP_STORAGE,
    UUID_UID_ROOT,
};
use crate::error::{Error, Result};
use crate::io::output::OutputDir;
use crate::log;
pub use crate::maps::{Code, Quantity, PRIVATE_SCHEME};
use crate::volume::{DicomSource, Geometry, SeriesInfo};

/// Frame VOI LUT Sequence (0028,9132): the window of each frame of a multi-frame image.
const FRAME_VOI_LUT_SEQUENCE: Tag = Tag(0x0028, 0x9132);

/// Which modules of a derived series an inherited attribute belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inherit {
    /// Specific Character Set: the inherited text is encoded as the source says.
    CharacterSet,
    Patient,
    Study,
    FrameOfReference,
    /// General Series and General Equipment attributes that describe the patient's position
    /// and the site, not the device that made the images.
    Series,
    /// MR Image module attributes (classic MR images only; a Parametric Map has none).
    MrAcquisition,
}

/// The attributes a derived series copies from its source (PS3.3 C.7.1.1 Patient, C.7.2.1
/// General Study, C.7.4.1 Frame of Reference, C.7.3.1 General Series, C.8.3.1 MR Image).
pub const INHERITED: &[(Tag, Inherit)] = &[
    (tags::SPECIFIC_CHARACTER_SET, Inherit::CharacterSet),
    (tags::PATIENT_NAME, Inherit::Patient),
    (tags::PATIENT_ID, Inherit::Patient),
    (tags::ISSUER_OF_PATIENT_ID, Inherit::Patient),
    (tags::PATIENT_BIRTH_DATE, Inherit::Patient),
    (tags::PATIENT_SEX, Inherit::Patient),
    (tags::PATIENT_AGE, Inherit::Patient),
    (tags::PATIENT_SIZE, Inherit::Patient),
    (tags::PATIENT_WEIGHT, Inherit::Patient),
    (tags::PATIENT_IDENTITY_REMOVED, Inherit::Patient),
    (tags::DEIDENTIFICATION_METHOD, Inherit::Patient),
    (tags::STUDY_INSTANCE_UID, Inherit::Study),
    (tags::STUDY_DATE, Inherit::Study),
    (tags::STUDY_TIME, Inherit::Study),
    (tags::REFERRING_PHYSICIAN_NAME, Inherit::Study),
    (tags::STUDY_ID, Inherit::Study),
    (tags::ACCESSION_NUMBER, Inherit::Study),
    (tags::STUDY_DESCRIPTION, Inherit::Study),
    (tags::FRAME_OF_REFERENCE_UID, Inherit::FrameOfReference),
    (
        tags::POSITION_REFERENCE_INDICATOR,
        Inherit::FrameOfReference,
    ),
    (tags::MODALITY, Inherit::Series),
    (tags::BODY_PART_EXAMINED, Inherit::Series),
    (tags::PATIENT_POSITION, Inherit::Series),
    (tags::LATERALITY, Inherit::Series),
    (tags::INSTITUTION_NAME, Inherit::Series),
    (tags::INSTITUTIONAL_DEPARTMENT_NAME, Inherit::Series),
    (tags::SCANNING_SEQUENCE, Inherit::MrAcquisition),
    (tags::SEQUENCE_VARIANT, Inherit::MrAcquisition),
    (tags::SCAN_OPTIONS, Inherit::MrAcquisition),
    (tags::MR_ACQUISITION_TYPE, Inherit::MrAcquisition),
    (tags::SEQUENCE_NAME, Inherit::MrAcquisition),
    (tags::REPETITION_TIME, Inherit::MrAcquisition),
    (tags::ECHO_TIME, Inherit::MrAcquisition),
    (tags::INVERSION_TIME, Inherit::MrAcquisition),
    (tags::ECHO_TRAIN_LENGTH, Inherit::MrAcquisition),
    (tags::MAGNETIC_FIELD_STRENGTH, Inherit::MrAcquisition),
];

/// How a map is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Parametric Map IOD, float pixels (the default: exact values).
    ParametricMap,
    /// MR Image IOD, 16-bit integers + rescale, for viewers without Parametric Map support.
    Classic,
}

impl std::str::FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "parametric-map" | "pmap" => Ok(Encoding::ParametricMap),
            "classic" => Ok(Encoding::Classic),
            o => Err(format!(
                "unknown DICOM encoding '{o}': use parametric-map (float Parametric Map) or classic (integer MR images)"
            )),
        }
    }
}

/// One map to write.
pub struct DerivedMap<'a> {
    /// `[z, y, x]` in the library's order: rows bottom-up (as dcm2niix stores them; see
    /// [`Geometry::flipped_y`]). DICOM rows are written top-down.
    pub data: ArrayView3<'a, f32>,
    pub geometry: &'a Geometry,
    pub quantity: Quantity,
    /// e.g. "paramap rCBV (leakage corrected)".
    pub series_description: String,
    pub series_number: i64,
    /// Derivation Description: the method and its key choices.
    pub derivation: String,
}

/// How to write.
#[derive(Debug, Clone)]
pub struct DerivedOptions {
    pub encoding: Encoding,
    /// Root of the new UIDs; [`UUID_UID_ROOT`] unless the site has its own registered root.
    pub uid_root: String,
}

impl Default for DerivedOptions {
    fn default() -> Self {
        DerivedOptions {
            encoding: Encoding::ParametricMap,
            uid_root: UUID_UID_ROOT.into(),
        }
    }
}

/// Writes `map` as a derived series of `source` into `dir` (created if needed); returns the
/// files. Nothing appears in `dir` unless every file was written.
pub fn write_derived(
    map: &DerivedMap,
    source: &SeriesInfo,
    opts: &DerivedOptions,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    write_derived_referencing(map, source, &[source], opts, dir)
}

/// As [`write_derived`], with the patient, study and Frame of Reference of `source` but the
/// references of every series in `references` (each with its DICOM source): those in
/// `source`'s study in the Referenced Series Sequence, those of other studies in the Studies
/// Containing Other Referenced Instances Sequence (PS3.3 C.12.2), and every instance in the
/// Source Image Sequence. A map derived from two visits (`paramap compare`) references both.
pub fn write_derived_referencing(
    map: &DerivedMap,
    source: &SeriesInfo,
    references: &[&SeriesInfo],
    opts: &DerivedOptions,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    check_uid_root(&opts.uid_root)?;
    let [nx, ny, nz] = map.geometry.dims;
    let label = source.label();
    if map.data.dim() != (nz, ny, nx) {
        return Err(Error::series(
            &label,
            format!(
                "{} map is {:?} (z, y, x) but its geometry says {:?}",
                map.quantity.name(),
                map.data.dim(),
                (nz, ny, nx)
            ),
        ));
    }
    if nx == 0 || ny == 0 || nz == 0 || nx > 65535 || ny > 65535 {
        return Err(Error::series(
            &label,
            format!(
                "a {nx}×{ny}×{nz} map cannot be written as DICOM images (rows and columns 1–65535)"
            ),
        ));
    }
    let study = StudyContext::of(map, source, references, opts);
    let mut out = OutputDir::create(dir)?;
    let stem = format!(
        "{}_{}",
        map.quantity.label().to_ascii_lowercase(),
        map.series_number
    );
    let mut staged = Vec::new();
    match opts.encoding {
        Encoding::ParametricMap => {
            let obj = parametric_map(map, &study);
            let name = format!("{stem}.dcm");
            let path = out.path(&name);
            save(obj, PARAMETRIC_MAP_STORAGE, &study.new_uid(), &path, dir)?;
            staged.push(name);
        }
        Encoding::Classic => {
            let slope = classic_slope(map);
            for z in 0..nz {
                let obj = classic_slice(map, &study, z, slope);
                let name = format!("{stem}_{:04}.dcm", z + 1);
                let path = out.path(&name);
                save(obj, MR_IMAGE_STORAGE, &study.new_uid(), &path, dir)?;
                staged.push(name);
            }
        }
    }
    out.commit()
}

/// What every object of one derived series shares.
struct StudyContext<'a> {
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
    fn of(
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
    fn anatomy(&self) -> Code {
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

    fn new_uid(&self) -> String {
        new_uid_under(&self.uid_root)
    }

    /// Patient, study, series, frame of reference, equipment and SOP common attributes.
    fn put_common(&self, obj: &mut InMemDicomObject, map: &DerivedMap) {
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
                .map(|uid| {
                    let mut r = InMemDicomObject::new_empty();
                    put(
                        &mut r,
                        tags::REFERENCED_SOP_CLASS_UID,
                        VR::UI,
                        &src.sop_class_uid,
                    );
                    put(&mut r, tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, uid);
                    r
                })
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
    fn put_derivation(&self, obj: &mut InMemDicomObject, map: &DerivedMap) {
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
                        let mut r = InMemDicomObject::new_empty();
                        put(
                            &mut r,
                            tags::REFERENCED_SOP_CLASS_UID,
                            VR::UI,
                            &src.sop_class_uid,
                        );
                        put(&mut r, tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, uid);
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

/// The grid as DICOM describes it: rows top-down.
/// Pixel Spacing, Slice Thickness and Spacing Between Slices (the Pixel Measures macro, or
/// the same attributes at the top level of a classic image).
fn put_pixel_measures(obj: &mut InMemDicomObject, plane: &Plane) {
    put(obj, tags::PIXEL_SPACING, VR::DS, &ds_list(&plane.spacing));
    put(obj, tags::SLICE_THICKNESS, VR::DS, &ds(plane.thickness));
    put(
        obj,
        tags::SPACING_BETWEEN_SLICES,
        VR::DS,
        &ds(plane.thickness),
    );
}

struct Plane {
    iop: [f64; 6],
    /// (row spacing, column spacing) in mm, as (0028,0030) orders them.
    spacing: [f64; 2],
    thickness: f64,
    native: Geometry,
}

impl Plane {
    fn of(g: &Geometry) -> Self {
        let native = g.flipped_y();
        let row = native.axis_unit(0);
        let col = native.axis_unit(1);
        let size = native.voxel_size();
        Plane {
            iop: [row[0], row[1], row[2], col[0], col[1], col[2]],
            spacing: [size[1], size[0]],
            thickness: size[2],
            native,
        }
    }

    fn position(&self, z: usize) -> [f64; 3] {
        self.native.index_to_lps([0.0, 0.0, z as f64])
    }
}

/// Values of slice `z` in the stored unit, rows top-down.
fn slice_values(map: &DerivedMap, z: usize) -> Vec<f64> {
    let (_, ny, nx) = map.data.dim();
    let f = map.quantity.factor();
    let mut v = Vec::with_capacity(ny * nx);
    for r in 0..ny {
        for c in 0..nx {
            v.push(map.data[[z, ny - 1 - r, c]] as f64 * f);
        }
    }
    v
}

/// Finite non-zero values in the stored unit (0 marks voxels outside the mask).
fn finite_values(map: &DerivedMap) -> Vec<f64> {
    let f = map.quantity.factor();
    map.data
        .iter()
        .map(|&v| v as f64 * f)
        .filter(|v| v.is_finite() && *v != 0.0)
        .collect()
}

/// The classic encoding's step: the quantity's [`Quantity::classic_step`], made ten times
/// coarser until the largest finite magnitude fits a signed 16-bit integer.
pub fn classic_slope(map: &DerivedMap) -> f64 {
    let max = finite_values(map)
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let mut slope = map.quantity.classic_step();
    while max / slope > 32767.0 {
        slope *= 10.0;
    }
    slope
}

fn parametric_map(map: &DerivedMap, study: &StudyContext) -> InMemDicomObject {
    let (nz, ny, nx) = map.data.dim();
    let plane = Plane::of(map.geometry);
    let q = map.quantity;
    let finite = finite_values(map);
    let (center, width) = display_window(q, &finite);
    let mut obj = InMemDicomObject::new_empty();
    study.put_common(&mut obj, map);
    // Parametric Map Image module (C.8.32.1) and Floating Point Image Pixel (C.7.6.24).
    let image_type = format!("DERIVED\\PRIMARY\\VOLUME\\{}", q.pixel_contrast());
    put(&mut obj, tags::IMAGE_TYPE, VR::CS, &image_type);
    put(&mut obj, tags::CONTENT_LABEL, VR::CS, q.label());
    put(
        &mut obj,
        tags::CONTENT_DESCRIPTION,
        VR::LO,
        &lo(&map.series_description),
    );
    put(&mut obj, tags::CONTENT_CREATOR_NAME, VR::PN, "");
    put(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    put(&mut obj, tags::NUMBER_OF_FRAMES, VR::IS, &nz.to_string());
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put_u16(&mut obj, tags::SAMPLES_PER_PIXEL, 1);
    put_u16(&mut obj, tags::ROWS, ny as u16);
    put_u16(&mut obj, tags::COLUMNS, nx as u16);
    put_u16(&mut obj, tags::BITS_ALLOCATED, 32);
    put(&mut obj, tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
    put(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    put(&mut obj, tags::CONTENT_QUALIFICATION, VR::CS, "RESEARCH");
    put(&mut obj, tags::RECOGNIZABLE_VISUAL_FEATURES, VR::CS, "NO");
    put_seq(&mut obj, tags::ACQUISITION_CONTEXT_SEQUENCE, vec![]);

    // Multi-frame Dimension (C.7.6.17): one stack, frames indexed by their place in it.
    let dim_uid = study.new_uid();
    put(&mut obj, tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D");
    put_dimensions(
        &mut obj,
        &dim_uid,
        &[
            (tags::STACK_ID, "Stack ID"),
            (tags::IN_STACK_POSITION_NUMBER, "In-Stack Position Number"),
        ],
    );

    // Shared functional groups (C.7.6.16).
    let mut shared = InMemDicomObject::new_empty();
    let mut measures = InMemDicomObject::new_empty();
    put_pixel_measures(&mut measures, &plane);
    put_seq(&mut shared, tags::PIXEL_MEASURES_SEQUENCE, vec![measures]);
    let mut orientation = InMemDicomObject::new_empty();
    put(
        &mut orientation,
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        &ds_list(&plane.iop),
    );
    put_seq(
        &mut shared,
        tags::PLANE_ORIENTATION_SEQUENCE,
        vec![orientation],
    );
    let mut anatomy = InMemDicomObject::new_empty();
    put_seq(
        &mut anatomy,
        tags::ANATOMIC_REGION_SEQUENCE,
        vec![code_item(study.anatomy())],
    );
    // Brain, head and prostate are unpaired.
    put(&mut anatomy, tags::FRAME_LATERALITY, VR::CS, "U");
    put_seq(&mut shared, tags::FRAME_ANATOMY_SEQUENCE, vec![anatomy]);
    let mut derivation = InMemDicomObject::new_empty();
    study.put_derivation(&mut derivation, map);
    put_seq(
        &mut shared,
        tags::DERIVATION_IMAGE_SEQUENCE,
        vec![derivation],
    );
    let mut frame_type = InMemDicomObject::new_empty();
    put(&mut frame_type, tags::FRAME_TYPE, VR::CS, &image_type);
    put_seq(
        &mut shared,
        tags::PARAMETRIC_MAP_FRAME_TYPE_SEQUENCE,
        vec![frame_type],
    );
    let mut voi = InMemDicomObject::new_empty();
    put_window(&mut voi, center, width);
    put_seq(&mut shared, FRAME_VOI_LUT_SEQUENCE, vec![voi]);
    // Identity Pixel Value Transformation (C.7.6.16.2.9.b): stored floats are the values.
    let mut identity = InMemDicomObject::new_empty();
    put(&mut identity, tags::RESCALE_INTERCEPT, VR::DS, "0");
    put(&mut identity, tags::RESCALE_SLOPE, VR::DS, "1");
    put(&mut identity, tags::RESCALE_TYPE, VR::LO, "US");
    put_seq(
        &mut shared,
        tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        vec![identity],
    );
    let lo_v = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi_v = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (first, last) = if lo_v <= hi_v {
        (lo_v, hi_v)
    } else {
        (0.0, 0.0)
    };
    let mut rwvm = rwvm_item(map, 1.0, "NaN not computable, 0 outside mask");
    rwvm.put(DataElement::new(
        tags::DOUBLE_FLOAT_REAL_WORLD_VALUE_FIRST_VALUE_MAPPED,
        VR::FD,
        PrimitiveValue::from(first.min(0.0)),
    ));
    rwvm.put(DataElement::new(
        tags::DOUBLE_FLOAT_REAL_WORLD_VALUE_LAST_VALUE_MAPPED,
        VR::FD,
        PrimitiveValue::from(last.max(0.0)),
    ));
    put_seq(
        &mut shared,
        tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE,
        vec![rwvm],
    );
    put_seq(
        &mut obj,
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![shared],
    );

    let mut per_frame = Vec::with_capacity(nz);
    let mut pixels: Vec<f32> = Vec::with_capacity(nz * ny * nx);
    for z in 0..nz {
        let mut item = InMemDicomObject::new_empty();
        let mut content = InMemDicomObject::new_empty();
        put(&mut content, tags::STACK_ID, VR::SH, "1");
        content.put(DataElement::new(
            tags::IN_STACK_POSITION_NUMBER,
            VR::UL,
            PrimitiveValue::from((z + 1) as u32),
        ));
        content.put(DataElement::new(
            tags::DIMENSION_INDEX_VALUES,
            VR::UL,
            PrimitiveValue::U32(vec![1, (z + 1) as u32].into()),
        ));
        put_seq(&mut item, tags::FRAME_CONTENT_SEQUENCE, vec![content]);
        let mut position = InMemDicomObject::new_empty();
        put(
            &mut position,
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            &ds_list(&plane.position(z)),
        );
        put_seq(&mut item, tags::PLANE_POSITION_SEQUENCE, vec![position]);
        per_frame.push(item);
        pixels.extend(slice_values(map, z).into_iter().map(|v| v as f32));
    }
    put_seq(
        &mut obj,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        per_frame,
    );
    obj.put(DataElement::new(
        tags::FLOAT_PIXEL_DATA,
        VR::OF,
        PrimitiveValue::F32(pixels.into()),
    ));
    obj
}

/// Real World Value Mapping item (C.7.6.16.2.11) without the first/last value mapped: the
/// identity (Parametric Map) or the rescale slope (classic), the unit and the quantity.
fn rwvm_item(map: &DerivedMap, slope: f64, zero_note: &str) -> InMemDicomObject {
    let q = map.quantity;
    let (unit, unit_meaning) = q.unit();
    let mut rwvm = InMemDicomObject::new_empty();
    put(&mut rwvm, tags::LUT_LABEL, VR::SH, q.label());
    put(
        &mut rwvm,
        tags::LUT_EXPLANATION,
        VR::LO,
        &lo(&format!("{} in {unit_meaning}; {zero_note}", q.name())),
    );
    rwvm.put(DataElement::new(
        tags::REAL_WORLD_VALUE_INTERCEPT,
        VR::FD,
        PrimitiveValue::from(0.0f64),
    ));
    rwvm.put(DataElement::new(
        tags::REAL_WORLD_VALUE_SLOPE,
        VR::FD,
        PrimitiveValue::from(slope),
    ));
    put_seq(
        &mut rwvm,
        tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
        vec![code_item((unit, "UCUM", unit_meaning))],
    );
    let mut quantity = InMemDicomObject::new_empty();
    put(&mut quantity, tags::VALUE_TYPE, VR::CS, "CODE");
    put_seq(
        &mut quantity,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code_item(("246205007", "SCT", "Quantity"))],
    );
    put_seq(
        &mut quantity,
        tags::CONCEPT_CODE_SEQUENCE,
        vec![code_item(q.code())],
    );
    put_seq(
        &mut rwvm,
        tags::QUANTITY_DEFINITION_SEQUENCE,
        vec![quantity],
    );
    rwvm
}

fn classic_slice(map: &DerivedMap, study: &StudyContext, z: usize, slope: f64) -> InMemDicomObject {
    let (_, ny, nx) = map.data.dim();
    let plane = Plane::of(map.geometry);
    let q = map.quantity;
    let (center, width) = display_window(q, &finite_values(map));
    let stored: Vec<i16> = slice_values(map, z)
        .into_iter()
        .map(|v| {
            if v.is_finite() {
                (v / slope).round().clamp(-32768.0, 32767.0) as i16
            } else {
                0
            }
        })
        .collect();
    let mut obj = InMemDicomObject::new_empty();
    study.put_common(&mut obj, map);
    put(
        &mut obj,
        tags::IMAGE_TYPE,
        VR::CS,
        &format!("DERIVED\\SECONDARY\\{}", q.label()),
    );
    put(
        &mut obj,
        tags::INSTANCE_NUMBER,
        VR::IS,
        &(z + 1).to_string(),
    );
    put(
        &mut obj,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        &ds_list(&plane.position(z)),
    );
    put(
        &mut obj,
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        &ds_list(&plane.iop),
    );
    put_pixel_measures(&mut obj, &plane);
    study.put_derivation(&mut obj, map);
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put_u16(&mut obj, tags::SAMPLES_PER_PIXEL, 1);
    put_u16(&mut obj, tags::ROWS, ny as u16);
    put_u16(&mut obj, tags::COLUMNS, nx as u16);
    put_u16(&mut obj, tags::BITS_ALLOCATED, 16);
    put_u16(&mut obj, tags::BITS_STORED, 16);
    put_u16(&mut obj, tags::HIGH_BIT, 15);
    // Signed: K2 and other maps go negative.
    put_u16(&mut obj, tags::PIXEL_REPRESENTATION, 1);
    put(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, "0");
    put(&mut obj, tags::RESCALE_SLOPE, VR::DS, &ds(slope));
    put(&mut obj, tags::RESCALE_TYPE, VR::LO, "US");
    // Window Center/Width apply after the rescale, in the stored unit.
    put_window(&mut obj, center, width);
    let min = stored.iter().copied().min().unwrap_or(0).min(0);
    let max = stored.iter().copied().max().unwrap_or(0).max(0);
    let mut rwvm = rwvm_item(map, slope, "0 outside mask or not computable");
    rwvm.put(DataElement::new(
        tags::REAL_WORLD_VALUE_FIRST_VALUE_MAPPED,
        VR::SS,
        PrimitiveValue::from(min),
    ));
    rwvm.put(DataElement::new(
        tags::REAL_WORLD_VALUE_LAST_VALUE_MAPPED,
        VR::SS,
        PrimitiveValue::from(max),
    ));
    put_seq(
        &mut obj,
        tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE,
        vec![rwvm],
    );
    let bytes: Vec<u8> = stored.iter().flat_map(|v| v.to_le_bytes()).collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(bytes.into()),
    ));
    obj
}

fn save(obj: InMemDicomObject, class: &str, sop: &str, path: &Path, dir: &Path) -> Result<()> {
    write_part10(obj, class, sop, path).map_err(|e| Error::Output {
        path: dir.to_path_buf(),
        reason: format!(
            "writing {}: {e}",
            path.file_name().unwrap_or_default().to_string_lossy()
        ),
    })
}

/// The first display window: [`crate::volume::window::robust_window`], except for classes
/// (the response map, the PRM), whose window spans the four classes 0–3 so that each shows as its own grey level (centre 1.5, width 4:
/// 0, 1, 2, 3 at 1/6, 1/2, 5/6 of the grey range and white, by C.11.2.1.2's linear function).
fn display_window(q: Quantity, finite: &[f64]) -> (f64, f64) {
    match q {
        Quantity::Response | Quantity::Prm => (1.5, 4.0),
        _ => crate::volume::window::robust_window(finite),
    }
}

/// Window Center/Width (C.11.2). A width under 1 (maps in s⁻¹ or ratios) is only permitted
/// with the LINEAR_EXACT function (C.11.2.1.3), which also reads the window as the exact range.
fn put_window(obj: &mut InMemDicomObject, center: f64, width: f64) {
    put(obj, tags::WINDOW_CENTER, VR::DS, &ds(center));
    put(obj, tags::WINDOW_WIDTH, VR::DS, &ds(width));
    let explanation = if (center, width) == (1.5, 4.0) {
        "classes 0 to 3"
    } else {
        "1st to 99th percentile"
    };
    put(
        obj,
        tags::WINDOW_CENTER_WIDTH_EXPLANATION,
        VR::LO,
        explanation,
    );
    if width < 1.0 {
        put(obj, tags::VOILUT_FUNCTION, VR::CS, "LINEAR_EXACT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_parse_by_name() {
        assert_eq!(
            "parametric-map".parse::<Encoding>(),
            Ok(Encoding::ParametricMap)
        );
        assert_eq!("Classic".parse::<Encoding>(), Ok(Encoding::Classic));
        assert!("png".parse::<Encoding>().is_err());
    }
}
