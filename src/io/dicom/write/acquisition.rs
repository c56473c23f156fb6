//! What every object of one written series shares: the grid as DICOM describes it (rows
//! top-down), the study, series and Frame of Reference UIDs, the per-volume rescale, and the
//! attributes of the patient, study, series and MR image that every object carries.

use std::path::PathBuf;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::{DicomWriteOptions, Flavour};
use crate::error::{Error, Result};
use crate::io::dicom::elements::{ds_fixed_list, new_uid, put_str, write_part10};
use crate::volume::{Geometry, Series4};

/// One acquisition being written: its echoes (the first is the series; the others share its
/// grid and times) and what every object of it shares.
pub(super) struct Acquisition<'a> {
    pub echoes: &'a [&'a Series4],
    pub opts: &'a DicomWriteOptions,
    /// The grid with rows top-down: the library keeps them bottom-up (dcm2niix's order),
    /// DICOM stores them top-down.
    native: Geometry,
    pub nvol: usize,
    pub nz: usize,
    pub ny: usize,
    pub nx: usize,
    /// Unit vectors of the rows, the columns and the slice normal (LPS).
    pub row: [f64; 3],
    pub col: [f64; 3],
    pub normal: [f64; 3],
    /// Voxel size (x, y, z) in mm.
    pub size: [f64; 3],
    /// Image Orientation (Patient) and Pixel Spacing as written.
    pub iop: String,
    pub spacing: String,
    study_uid: String,
    for_uid: String,
    series_uid: String,
    /// Rescale Slope of each echo's volumes: `echo_slopes[e][v]`.
    pub echo_slopes: Vec<Vec<f64>>,
}

/// Per-volume rescale: stored u16 = (value − intercept)/slope, the slope chosen so the
/// volume's maximum uses most of the 16 bits, as scanners do per image.
fn rescale_of(max: f32) -> f64 {
    (max.max(1e-6) as f64 / 30000.0).max(1e-6)
}

impl<'a> Acquisition<'a> {
    pub fn new(echoes: &'a [&'a Series4], opts: &'a DicomWriteOptions) -> Self {
        let series = echoes[0];
        let native = series.geometry.flipped_y();
        let (nvol, nz, ny, nx) = series.data.dim();
        let size = native.voxel_size();
        let (row, col, normal) = (
            native.axis_unit(0),
            native.axis_unit(1),
            native.axis_unit(2),
        );
        let iop = ds_fixed_list(&[row[0], row[1], row[2], col[0], col[1], col[2]], 6);
        let spacing = ds_fixed_list(&[size[1], size[0]], 6);
        let study = opts.study.clone().unwrap_or_default();
        let echo_slopes = echoes
            .iter()
            .map(|e| {
                (0..nvol)
                    .map(|v| {
                        rescale_of(
                            e.data
                                .index_axis(ndarray::Axis(0), v)
                                .fold(0.0f32, |m, &x| m.max(x)),
                        )
                    })
                    .collect()
            })
            .collect();
        Acquisition {
            echoes,
            opts,
            native,
            nvol,
            nz,
            ny,
            nx,
            row,
            col,
            normal,
            size,
            iop,
            spacing,
            study_uid: study.study_uid,
            for_uid: study.frame_of_reference_uid,
            series_uid: new_uid(),
            echo_slopes,
        }
    }

    /// The series (the first echo).
    pub fn series(&self) -> &'a Series4 {
        self.echoes[0]
    }

    /// Image Position (Patient) of slice `z`: its first voxel, LPS mm.
    pub fn position(&self, z: usize) -> [f64; 3] {
        self.native.index_to_lps([0.0, 0.0, z as f64])
    }

    /// Slice `z` of volume `v` of echo `e` as stored: u16 little-endian, rows top-down.
    pub fn stored(&self, e: usize, v: usize, z: usize) -> Vec<u8> {
        let (ny, nx) = (self.ny, self.nx);
        let mut bytes = Vec::with_capacity(nx * ny * 2);
        for y in 0..ny {
            for x in 0..nx {
                let val = self.echoes[e].data[[v, z, ny - 1 - y, x]] as f64;
                let sv = (val / self.echo_slopes[e][v]).round().clamp(0.0, 65535.0) as u16;
                bytes.extend(sv.to_le_bytes());
            }
        }
        bytes
    }

    /// Acquisition Time (TM) of volume `v`: its time from the start, after 09:00.
    pub fn acq_time(&self, v: usize) -> String {
        let t = self
            .series()
            .volumes
            .get(v)
            .and_then(|i| i.time_s)
            .unwrap_or(v as f64)
            + 9.0 * 3600.0;
        format!(
            "{:02}{:02}{:09.6}",
            (t / 3600.0) as u32,
            ((t % 3600.0) / 60.0) as u32,
            t % 60.0
        )
    }

    /// The Manufacturer (0008,0070) the readers recognise each flavour by.
    fn manufacturer(&self) -> &'static str {
        match self.opts.flavour {
            Flavour::Standard => "paramap",
            Flavour::Siemens => "SIEMENS",
            Flavour::Ge => "GE MEDICAL SYSTEMS",
            Flavour::Philips => "Philips Medical Systems",
        }
    }

    /// Patient, study, series, Frame of Reference, MR image and image pixel attributes that
    /// every object of the series carries.
    pub fn put_common(&self, obj: &mut InMemDicomObject) {
        put_str(obj, tags::PATIENT_NAME, VR::PN, "PARAMAP^PHANTOM");
        put_str(obj, tags::PATIENT_ID, VR::LO, &self.opts.patient_id);
        put_str(obj, tags::STUDY_INSTANCE_UID, VR::UI, &self.study_uid);
        put_str(obj, tags::SERIES_INSTANCE_UID, VR::UI, &self.series_uid);
        put_str(obj, tags::FRAME_OF_REFERENCE_UID, VR::UI, &self.for_uid);
        put_str(obj, tags::MODALITY, VR::CS, "MR");
        put_str(obj, tags::MANUFACTURER, VR::LO, self.manufacturer());
        put_str(
            obj,
            tags::SERIES_DESCRIPTION,
            VR::LO,
            &self.opts.series_description,
        );
        put_str(
            obj,
            tags::SERIES_NUMBER,
            VR::IS,
            &self.opts.series_number.to_string(),
        );
        put_str(obj, tags::STUDY_DATE, VR::DA, "20260101");
        // What a source study needs so that series derived from it are valid (General Study,
        // General Series, Frame of Reference and MR Image modules, PS3.3 C.7.2.1, C.7.3.1,
        // C.7.4.1, C.8.3.1); the phantom is synthetic, so the sequence is "research mode".
        put_str(obj, tags::STUDY_TIME, VR::TM, "090000");
        put_str(
            obj,
            tags::STUDY_DESCRIPTION,
            VR::LO,
            "paramap phantom study",
        );
        put_str(obj, tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
        put_str(obj, tags::PATIENT_POSITION, VR::CS, "HFS");
        put_str(obj, tags::BODY_PART_EXAMINED, VR::CS, "BRAIN");
        put_str(obj, tags::SCANNING_SEQUENCE, VR::CS, "RM");
        put_str(obj, tags::SEQUENCE_VARIANT, VR::CS, "NONE");
        put_str(obj, tags::SCAN_OPTIONS, VR::CS, "");
        put_str(obj, tags::MR_ACQUISITION_TYPE, VR::CS, "2D");
        put_str(obj, tags::ECHO_TRAIN_LENGTH, VR::IS, "1");
        put_str(obj, tags::MAGNETIC_FIELD_STRENGTH, VR::DS, "3");
        put_str(obj, tags::STUDY_ID, VR::SH, "1");
        put_str(obj, tags::ACCESSION_NUMBER, VR::SH, "");
        put_str(obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
        put_str(obj, tags::PATIENT_BIRTH_DATE, VR::DA, "");
        put_str(obj, tags::PATIENT_SEX, VR::CS, "O");
        put_str(obj, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, &self.iop);
        put_str(obj, tags::PIXEL_SPACING, VR::DS, &self.spacing);
        put_str(
            obj,
            tags::SLICE_THICKNESS,
            VR::DS,
            &format!("{:.6}", self.size[2]),
        );
        put_str(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
        for (tag, v) in [
            (tags::SAMPLES_PER_PIXEL, 1u16),
            (tags::ROWS, self.ny as u16),
            (tags::COLUMNS, self.nx as u16),
            (tags::BITS_ALLOCATED, 16),
            (tags::BITS_STORED, 16),
            (tags::HIGH_BIT, 15),
            (tags::PIXEL_REPRESENTATION, 0),
        ] {
            obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        }
        // DICOM's Echo Time and Repetition Time are in ms (PS3.3 C.8.3.1).
        match self.series().info.echo_time_s {
            Some(te) => put_str(obj, tags::ECHO_TIME, VR::DS, &format!("{:.3}", te * 1000.0)),
            None => put_str(obj, tags::ECHO_TIME, VR::DS, ""),
        }
        if let Some(tr) = self.series().info.repetition_time_s {
            put_str(
                obj,
                tags::REPETITION_TIME,
                VR::DS,
                &format!("{:.3}", tr * 1000.0),
            );
        }
    }

    /// Writes `obj` as `path` with a new SOP Instance UID; returns `path`.
    pub fn save(&self, obj: InMemDicomObject, class: &str, path: PathBuf) -> Result<PathBuf> {
        write_part10(obj, class, &new_uid(), &path).map_err(|reason| Error::Output {
            path: path.clone(),
            reason,
        })?;
        Ok(path)
    }
}
