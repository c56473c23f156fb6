//! Writes a 4-D series as DICOM MR images, classic (one file per slice and volume) or Enhanced
//! MR multi-frame, with the diffusion encoding in the standard tags or in one vendor's own
//! private tags. Used by the digital reference objects (`paramap synth`) so that every ingest
//! path is exercised with data whose truth is known.
//!
//! [`write_echoes`] gathers what every object shares (`acquisition.rs`), then writes one of:
//! classic per-image objects (`classic.rs`), one Enhanced MR multi-frame object (`enhanced.rs`),
//! or Siemens mosaics (`mosaic.rs`); `diffusion.rs` holds the vendors' diffusion conventions.

mod acquisition;
mod classic;
mod diffusion;
mod enhanced;
mod mosaic;

use std::path::{Path, PathBuf};

use self::acquisition::Acquisition;
pub use super::elements::{new_uid, ENHANCED_MR_IMAGE_STORAGE, MR_IMAGE_STORAGE};
use crate::error::Result;
use crate::volume::Series4;

/// Where the diffusion encoding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// (0018,9087)/(0018,9089)/(0018,9075).
    Standard,
    /// (0019,100C) b-value, (0019,100E) direction, Manufacturer SIEMENS.
    Siemens,
    /// (0043,1039) "b\\…" with the 10⁹ offset some versions write, (0019,10BB–BD) direction.
    Ge,
    /// (2001,1003) b-value, (2005,10B0–B2) direction, (2001,1004) 'I' on the isotropic
    /// volume, (2005,100E) scale slope.
    Philips,
}

impl std::str::FromStr for Flavour {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "standard" => Ok(Flavour::Standard),
            "siemens" => Ok(Flavour::Siemens),
            "ge" => Ok(Flavour::Ge),
            "philips" => Ok(Flavour::Philips),
            o => Err(format!(
                "unknown vendor '{o}': use standard, siemens, ge or philips"
            )),
        }
    }
}

/// How to write a series.
#[derive(Debug, Clone)]
pub struct DicomWriteOptions {
    pub flavour: Flavour,
    pub enhanced: bool,
    pub series_description: String,
    pub series_number: i64,
    pub patient_id: String,
    /// Siemens mosaic: all slices of a volume tiled into one image, with the CSA header
    /// carrying NumberOfImagesInMosaic, SliceNormalVector and the diffusion encoding.
    pub mosaic: bool,
    /// Instance numbers are assigned in a scrambled order, as some scanners do.
    pub shuffle_instances: bool,
    pub seed: u64,
    /// The study this series joins; None: a new study of its own. Series written with the same
    /// [`StudyIds`] (and the same `patient_id`) sit in one study, as the series of one scan
    /// session do: same Study Instance UID, patient and Frame of Reference.
    pub study: Option<StudyIds>,
}

/// What the series of one study share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyIds {
    pub study_uid: String,
    /// One Frame of Reference for the session: the patient did not move between series.
    pub frame_of_reference_uid: String,
}

impl StudyIds {
    /// Fresh UIDs under 2.25.
    pub fn new() -> Self {
        StudyIds {
            study_uid: new_uid(),
            frame_of_reference_uid: new_uid(),
        }
    }
}

impl Default for StudyIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `series` into `dir` (which must exist) and returns the files written.
pub fn write_series(
    series: &Series4,
    dir: &Path,
    opts: &DicomWriteOptions,
) -> Result<Vec<PathBuf>> {
    write_echoes(&[series], dir, opts)
}

/// Writes the echoes of one multi-echo acquisition as one classic series: the same positions
/// and times, EchoNumbers 1, 2, … and each echo's EchoTime. (Enhanced and mosaic output take
/// the first echo only.)
pub fn write_echoes(
    echoes: &[&Series4],
    dir: &Path,
    opts: &DicomWriteOptions,
) -> Result<Vec<PathBuf>> {
    let acq = Acquisition::new(echoes, opts);
    if opts.mosaic {
        mosaic::write_mosaic(&acq, dir)
    } else if opts.enhanced {
        Ok(vec![enhanced::write_enhanced(&acq, dir)?])
    } else {
        classic::write_classic(&acq, dir)
    }
}
