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
//! in [`INHERITED`], captured by the scan into [`DicomSource`](crate::volume::DicomSource);
//! `context.rs`), reference every source instance (Referenced Series Sequence, Source Image
//! Sequence with purpose DCM 121322), carry the Derivation Description and Code, and a window
//! (1st–99th percentile of the finite non-zero values) so that the map looks right when first
//! opened. `parametric.rs` and `classic.rs` write the two encodings.
//!
//! New UIDs (series, instances, dimension organisation) are made under one root: by default
//! `2.25`, the UUID-derived root of ISO/IEC 9834-8 / PS3.5 B.2, which needs no registration;
//! a site can pass its own registered root instead.

mod classic;
mod context;
mod parametric;

use std::path::{Path, PathBuf};

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use ndarray::ArrayView3;

pub use self::classic::classic_slope;
use self::context::StudyContext;
pub use super::elements::{
    check_uid_root, new_uid_under, now_utc, MR_IMAGE_STORAGE, PARAMETRIC_MAP_STORAGE, UUID_UID_ROOT,
};
use super::elements::{ds, ds_list, put_str as put, write_part10};
use crate::error::{Error, Result};
use crate::io::output::OutputDir;
pub use crate::maps::{Code, Quantity, PRIVATE_SCHEME};
use crate::volume::{Geometry, SeriesInfo};

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
            let obj = parametric::parametric_map(map, &study);
            let name = format!("{stem}.dcm");
            let path = out.path(&name);
            save(obj, PARAMETRIC_MAP_STORAGE, &study.new_uid(), &path, dir)?;
            staged.push(name);
        }
        Encoding::Classic => {
            let slope = classic_slope(map);
            for z in 0..nz {
                let obj = classic::classic_slice(map, &study, z, slope);
                let name = format!("{stem}_{:04}.dcm", z + 1);
                let path = out.path(&name);
                save(obj, MR_IMAGE_STORAGE, &study.new_uid(), &path, dir)?;
                staged.push(name);
            }
        }
    }
    out.commit()
}

// What both encodings share: the grid, the values in the stored unit, the window, the file.

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

/// The grid as DICOM describes it: rows top-down.
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
