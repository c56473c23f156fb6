//! Writes a 4-D series as DICOM MR images, classic (one file per slice and volume) or Enhanced
//! MR multi-frame, with the diffusion encoding in the standard tags or in one vendor's own
//! private tags. Used by the digital reference objects (`paramap synth`) so that every ingest
//! path is exercised with data whose truth is known.

use std::path::{Path, PathBuf};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::elements::{code_item, ds_fixed_list, put_fd, write_part10};
pub use super::elements::{new_uid, ENHANCED_MR_IMAGE_STORAGE, MR_IMAGE_STORAGE};
pub(crate) use super::elements::{put_dimensions, put_str, seq};
use super::vendor;
use crate::error::{Error, Result};
use crate::volume::{Series4, VolumeInfo};

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

/// Per-volume rescale: stored u16 = (value − intercept)/slope, the slope chosen so the
/// volume's maximum uses most of the 16 bits, as scanners do per image.
fn rescale_of(max: f32) -> f64 {
    (max.max(1e-6) as f64 / 30000.0).max(1e-6)
}

fn put_diffusion(
    obj: &mut InMemDicomObject,
    top: &mut InMemDicomObject,
    flavour: Flavour,
    v: &VolumeInfo,
) {
    let Some(d) = v.diffusion else { return };
    let dir = d.direction.unwrap_or([0.0; 3]);
    match flavour {
        Flavour::Standard => {
            let mut m = InMemDicomObject::new_empty();
            m.put(DataElement::new(
                vendor::DIFFUSION_B_VALUE,
                VR::FD,
                PrimitiveValue::from(d.b),
            ));
            let directionality = if d.isotropic {
                "ISOTROPIC"
            } else if d.direction.is_some() && d.b > 0.0 {
                "DIRECTIONAL"
            } else {
                "NONE"
            };
            put_str(
                &mut m,
                vendor::DIFFUSION_DIRECTIONALITY,
                VR::CS,
                directionality,
            );
            if d.direction.is_some() {
                let mut g = InMemDicomObject::new_empty();
                g.put(DataElement::new(
                    vendor::DIFFUSION_GRADIENT_ORIENTATION,
                    VR::FD,
                    PrimitiveValue::F64(dir.to_vec().into()),
                ));
                seq(
                    &mut m,
                    vendor::DIFFUSION_GRADIENT_DIRECTION_SEQUENCE,
                    vec![g],
                );
            }
            seq(obj, vendor::MR_DIFFUSION_SEQUENCE, vec![m]);
        }
        Flavour::Siemens => {
            put_str(top, Tag(0x0019, 0x0010), VR::LO, "SIEMENS MR HEADER");
            put_str(
                top,
                vendor::SIEMENS_B_VALUE,
                VR::IS,
                &format!("{}", d.b.round() as i64),
            );
            if d.direction.is_some() {
                top.put(DataElement::new(
                    vendor::SIEMENS_GRADIENT,
                    VR::FD,
                    PrimitiveValue::F64(dir.to_vec().into()),
                ));
            }
        }
        Flavour::Ge => {
            put_str(top, Tag(0x0043, 0x0010), VR::LO, "GEMS_PARM_01");
            put_str(top, Tag(0x0019, 0x0010), VR::LO, "GEMS_ACQU_01");
            // GE's b-value field carries a 10⁹ offset in some software versions.
            put_str(
                top,
                vendor::GE_B_VALUE,
                VR::IS,
                &format!("{}\\8\\0\\0", 1_000_000_000 + d.b.round() as i64),
            );
            for (k, t) in vendor::GE_GRADIENT.iter().enumerate() {
                put_str(top, *t, VR::DS, &format!("{:.6}", dir[k]));
            }
        }
        Flavour::Philips => {
            put_str(top, Tag(0x2001, 0x0010), VR::LO, "Philips Imaging DD 001");
            put_str(
                top,
                Tag(0x2005, 0x0010),
                VR::LO,
                "Philips MR Imaging DD 001",
            );
            top.put(DataElement::new(
                vendor::PHILIPS_B_VALUE,
                VR::FL,
                PrimitiveValue::from(d.b as f32),
            ));
            put_str(
                top,
                vendor::PHILIPS_DIRECTION_LABEL,
                VR::CS,
                if d.isotropic { "I" } else { "O" },
            );
            for (k, t) in vendor::PHILIPS_GRADIENT.iter().enumerate() {
                top.put(DataElement::new(
                    *t,
                    VR::FL,
                    PrimitiveValue::from(dir[k] as f32),
                ));
            }
        }
    }
}

/// The modules and functional groups an Enhanced MR Image (PS3.3 A.36.2) requires beyond what
/// the reader needs, so that the phantom passes dciodvfy like a scanner's object: Enhanced
/// General Equipment (C.7.5.2), Enhanced MR Image (C.8.13.1) with the MR Image and
/// Spectroscopy Instance and MR Image Description macros, MR Pulse Sequence (C.8.13.4),
/// Acquisition Context (C.7.6.14), Multi-frame Dimension (C.7.6.17; dimensions: temporal
/// position, then position in the stack), and the shared MR functional groups (C.8.13.5:
/// frame anatomy, frame type, timing, echo, modifiers, coils, averages). The values describe a
/// synthetic single-shot EPI acquisition; `diffusion` chooses the contrast (DIFFUSION or
/// PERFUSION) and the echo (spin or gradient); `matrix` is (rows, columns).
fn enhanced_mr_modules(
    obj: &mut InMemDicomObject,
    shared: &mut InMemDicomObject,
    dimension_uid: &str,
    diffusion: bool,
    te_ms: Option<f64>,
    tr_ms: Option<f64>,
    matrix: [u16; 2],
) {
    let contrast = if diffusion { "DIFFUSION" } else { "PERFUSION" };
    put_str(obj, tags::MANUFACTURER_MODEL_NAME, VR::LO, "paramap synth");
    put_str(obj, tags::DEVICE_SERIAL_NUMBER, VR::LO, "0");
    put_str(
        obj,
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        concat!("paramap ", env!("CARGO_PKG_VERSION")),
    );
    // Enhanced MR Image, with its image-level description and instance macros.
    for (tag, value) in [
        (tags::ACQUISITION_CONTRAST, contrast),
        (tags::PIXEL_PRESENTATION, "MONOCHROME"),
        (tags::VOLUMETRIC_PROPERTIES, "VOLUME"),
        (tags::VOLUME_BASED_CALCULATION_TECHNIQUE, "NONE"),
        (tags::COMPLEX_IMAGE_COMPONENT, "MAGNITUDE"),
        (tags::PRESENTATION_LUT_SHAPE, "IDENTITY"),
        (tags::BURNED_IN_ANNOTATION, "NO"),
        (tags::LOSSY_IMAGE_COMPRESSION, "00"),
        (tags::CONTENT_QUALIFICATION, "RESEARCH"),
        (tags::RESONANT_NUCLEUS, "1H"),
        (tags::K_SPACE_FILTERING, "NONE"),
        (tags::APPLICABLE_SAFETY_STANDARD_AGENCY, "IEC"),
        // MR Pulse Sequence: a 2-D single-shot echo-planar readout.
        (
            tags::ECHO_PULSE_SEQUENCE,
            if diffusion { "SPIN" } else { "GRADIENT" },
        ),
        (tags::MULTI_PLANAR_EXCITATION, "NO"),
        (tags::PHASE_CONTRAST, "NO"),
        (tags::TIME_OF_FLIGHT_CONTRAST, "NO"),
        (tags::STEADY_STATE_PULSE_SEQUENCE, "NONE"),
        (tags::ECHO_PLANAR_PULSE_SEQUENCE, "YES"),
        (tags::SATURATION_RECOVERY, "NO"),
        (tags::SPECTRALLY_SELECTED_SUPPRESSION, "NONE"),
        (tags::OVERSAMPLING_PHASE, "NONE"),
        (tags::GEOMETRY_OF_K_SPACE_TRAVERSAL, "RECTILINEAR"),
        (tags::RECTILINEAR_PHASE_ENCODE_REORDERING, "LINEAR"),
        (tags::SEGMENTED_K_SPACE_TRAVERSAL, "SINGLE"),
    ] {
        put_str(obj, tag, VR::CS, value);
    }
    if diffusion {
        // Required only of spin-echo sequences.
        put_str(obj, tags::MULTIPLE_SPIN_ECHO, VR::CS, "NO");
    }
    put_str(
        obj,
        tags::PULSE_SEQUENCE_NAME,
        VR::SH,
        if diffusion { "SE_EPI_DWI" } else { "GRE_EPI" },
    );
    obj.put(DataElement::new(
        tags::NUMBER_OF_K_SPACE_TRAJECTORIES,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    put_str(obj, tags::ACQUISITION_DATE_TIME, VR::DT, "20260101090000");
    put_fd(obj, tags::ACQUISITION_DURATION, 0.0);
    seq(obj, tags::ACQUISITION_CONTEXT_SEQUENCE, vec![]);
    // Multi-frame Dimension: each frame's (temporal position, position in the stack).
    put_dimensions(
        obj,
        dimension_uid,
        &[
            (tags::TEMPORAL_POSITION_INDEX, "volume"),
            (tags::IN_STACK_POSITION_NUMBER, "slice"),
        ],
    );

    // Shared functional groups.
    let mut anatomy = InMemDicomObject::new_empty();
    put_str(&mut anatomy, tags::FRAME_LATERALITY, VR::CS, "U");
    seq(
        &mut anatomy,
        tags::ANATOMIC_REGION_SEQUENCE,
        vec![code_item(("12738006", "SCT", "Brain"))],
    );
    seq(shared, tags::FRAME_ANATOMY_SEQUENCE, vec![anatomy]);
    let mut frame_type = InMemDicomObject::new_empty();
    put_str(
        &mut frame_type,
        tags::FRAME_TYPE,
        VR::CS,
        "ORIGINAL\\PRIMARY\\M\\NONE",
    );
    for (tag, value) in [
        (tags::PIXEL_PRESENTATION, "MONOCHROME"),
        (tags::VOLUMETRIC_PROPERTIES, "VOLUME"),
        (tags::VOLUME_BASED_CALCULATION_TECHNIQUE, "NONE"),
        (tags::COMPLEX_IMAGE_COMPONENT, "MAGNITUDE"),
        (tags::ACQUISITION_CONTRAST, contrast),
    ] {
        put_str(&mut frame_type, tag, VR::CS, value);
    }
    seq(shared, tags::MR_IMAGE_FRAME_TYPE_SEQUENCE, vec![frame_type]);
    let mut timing = InMemDicomObject::new_empty();
    put_str(
        &mut timing,
        tags::REPETITION_TIME,
        VR::DS,
        &format!("{:.3}", tr_ms.unwrap_or(1500.0)),
    );
    put_fd(
        &mut timing,
        tags::FLIP_ANGLE,
        if diffusion { 90.0 } else { 60.0 },
    );
    put_str(&mut timing, tags::ECHO_TRAIN_LENGTH, VR::IS, "1");
    timing.put(DataElement::new(
        tags::RF_ECHO_TRAIN_LENGTH,
        VR::US,
        PrimitiveValue::from(if diffusion { 1u16 } else { 0 }),
    ));
    timing.put(DataElement::new(
        tags::GRADIENT_ECHO_TRAIN_LENGTH,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    // Safety (IEC 60601-2-33): normal operating mode for every field, a whole-body SAR.
    let mut sar = InMemDicomObject::new_empty();
    put_str(
        &mut sar,
        tags::SPECIFIC_ABSORPTION_RATE_DEFINITION,
        VR::CS,
        "IEC_WHOLE_BODY",
    );
    put_fd(&mut sar, tags::SPECIFIC_ABSORPTION_RATE_VALUE, 0.5);
    seq(
        &mut timing,
        tags::SPECIFIC_ABSORPTION_RATE_SEQUENCE,
        vec![sar],
    );
    let modes = ["STATIC FIELD", "RF", "GRADIENT"]
        .map(|kind| {
            let mut m = InMemDicomObject::new_empty();
            put_str(&mut m, tags::OPERATING_MODE_TYPE, VR::CS, kind);
            put_str(&mut m, tags::OPERATING_MODE, VR::CS, "IEC_NORMAL");
            m
        })
        .to_vec();
    seq(&mut timing, tags::OPERATING_MODE_SEQUENCE, modes);
    seq(
        shared,
        tags::MR_TIMING_AND_RELATED_PARAMETERS_SEQUENCE,
        vec![timing],
    );
    let mut echo = InMemDicomObject::new_empty();
    put_fd(&mut echo, tags::EFFECTIVE_ECHO_TIME, te_ms.unwrap_or(0.0));
    seq(shared, tags::MR_ECHO_SEQUENCE, vec![echo]);
    let mut modifier = InMemDicomObject::new_empty();
    for (tag, value) in [
        (tags::INVERSION_RECOVERY, "NO"),
        (tags::FLOW_COMPENSATION, "NONE"),
        (tags::T2_PREPARATION, "NO"),
        (tags::SPECTRALLY_SELECTED_EXCITATION, "NONE"),
        (tags::SPATIAL_PRESATURATION, "NONE"),
        (tags::PARTIAL_FOURIER, "NO"),
        (tags::PARALLEL_ACQUISITION, "NO"),
    ] {
        put_str(&mut modifier, tag, VR::CS, value);
    }
    seq(shared, tags::MR_MODIFIER_SEQUENCE, vec![modifier]);
    let mut imaging = InMemDicomObject::new_empty();
    for (tag, value) in [
        (tags::MAGNETIZATION_TRANSFER, "NONE"),
        (tags::BLOOD_SIGNAL_NULLING, "NO"),
        (tags::TAGGING, "NONE"),
    ] {
        put_str(&mut imaging, tag, VR::CS, value);
    }
    put_fd(&mut imaging, tags::TRANSMITTER_FREQUENCY, 127.7);
    put_str(&mut imaging, tags::PIXEL_BANDWIDTH, VR::DS, "1500");
    seq(shared, tags::MR_IMAGING_MODIFIER_SEQUENCE, vec![imaging]);
    let mut receive = InMemDicomObject::new_empty();
    put_str(&mut receive, tags::RECEIVE_COIL_NAME, VR::SH, "HEAD");
    put_str(&mut receive, tags::RECEIVE_COIL_TYPE, VR::CS, "VOLUME");
    put_str(&mut receive, tags::QUADRATURE_RECEIVE_COIL, VR::CS, "NO");
    put_str(
        &mut receive,
        tags::RECEIVE_COIL_MANUFACTURER_NAME,
        VR::LO,
        "",
    );
    seq(shared, tags::MR_RECEIVE_COIL_SEQUENCE, vec![receive]);
    let mut transmit = InMemDicomObject::new_empty();
    put_str(&mut transmit, tags::TRANSMIT_COIL_NAME, VR::SH, "BODY");
    put_str(&mut transmit, tags::TRANSMIT_COIL_TYPE, VR::CS, "BODY");
    put_str(
        &mut transmit,
        tags::TRANSMIT_COIL_MANUFACTURER_NAME,
        VR::LO,
        "",
    );
    seq(shared, tags::MR_TRANSMIT_COIL_SEQUENCE, vec![transmit]);
    let mut fov = InMemDicomObject::new_empty();
    put_str(
        &mut fov,
        tags::IN_PLANE_PHASE_ENCODING_DIRECTION,
        VR::CS,
        "COLUMN",
    );
    for (tag, steps) in [
        (tags::MR_ACQUISITION_FREQUENCY_ENCODING_STEPS, matrix[1]),
        (
            tags::MR_ACQUISITION_PHASE_ENCODING_STEPS_IN_PLANE,
            matrix[0],
        ),
    ] {
        fov.put(DataElement::new(tag, VR::US, PrimitiveValue::from(steps)));
    }
    put_str(&mut fov, tags::PERCENT_SAMPLING, VR::DS, "100");
    put_str(&mut fov, tags::PERCENT_PHASE_FIELD_OF_VIEW, VR::DS, "100");
    seq(shared, tags::MRFOV_GEOMETRY_SEQUENCE, vec![fov]);
    let mut averages = InMemDicomObject::new_empty();
    put_str(&mut averages, tags::NUMBER_OF_AVERAGES, VR::DS, "1");
    seq(shared, tags::MR_AVERAGES_SEQUENCE, vec![averages]);
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
    let series = echoes[0];
    // The library keeps rows bottom-up (dcm2niix's order); DICOM stores them top-down.
    let native = series.geometry.flipped_y();
    let (nvol, nz, ny, nx) = series.data.dim();
    let a = native.affine_lps;
    let size = native.voxel_size();
    let unit = |c: usize| [a[0][c] / size[c], a[1][c] / size[c], a[2][c] / size[c]];
    let (row, col) = (unit(0), unit(1));
    let iop = ds_fixed_list(&[row[0], row[1], row[2], col[0], col[1], col[2]], 6);
    let spacing = ds_fixed_list(&[size[1], size[0]], 6);
    let position = |z: usize| native.index_to_lps([0.0, 0.0, z as f64]);

    let study = opts.study.clone().unwrap_or_default();
    let (study_uid, for_uid) = (study.study_uid, study.frame_of_reference_uid);
    let series_uid = new_uid();
    let manufacturer = match opts.flavour {
        Flavour::Standard => "paramap",
        Flavour::Siemens => "SIEMENS",
        Flavour::Ge => "GE MEDICAL SYSTEMS",
        Flavour::Philips => "Philips Medical Systems",
    };
    let n_images = nvol * nz;
    let n_echoes = if opts.enhanced || opts.mosaic {
        1
    } else {
        echoes.len()
    };
    let mut numbers: Vec<usize> = (1..=n_images * n_echoes).collect();
    if opts.shuffle_instances {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        numbers.shuffle(&mut rand::rngs::StdRng::seed_from_u64(opts.seed));
    }
    let echo_slopes: Vec<Vec<f64>> = echoes
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
    let slopes = &echo_slopes[0];
    let stored_echo = |e: usize, v: usize, z: usize| -> Vec<u8> {
        let mut bytes = Vec::with_capacity(nx * ny * 2);
        for y in 0..ny {
            for x in 0..nx {
                let val = echoes[e].data[[v, z, ny - 1 - y, x]] as f64;
                let sv = (val / echo_slopes[e][v]).round().clamp(0.0, 65535.0) as u16;
                bytes.extend(sv.to_le_bytes());
            }
        }
        bytes
    };
    let stored = |v: usize, z: usize| stored_echo(0, v, z);
    let common = |obj: &mut InMemDicomObject| {
        put_str(obj, tags::PATIENT_NAME, VR::PN, "PARAMAP^PHANTOM");
        put_str(obj, tags::PATIENT_ID, VR::LO, &opts.patient_id);
        put_str(obj, tags::STUDY_INSTANCE_UID, VR::UI, &study_uid);
        put_str(obj, tags::SERIES_INSTANCE_UID, VR::UI, &series_uid);
        put_str(obj, tags::FRAME_OF_REFERENCE_UID, VR::UI, &for_uid);
        put_str(obj, tags::MODALITY, VR::CS, "MR");
        put_str(obj, tags::MANUFACTURER, VR::LO, manufacturer);
        put_str(
            obj,
            tags::SERIES_DESCRIPTION,
            VR::LO,
            &opts.series_description,
        );
        put_str(
            obj,
            tags::SERIES_NUMBER,
            VR::IS,
            &opts.series_number.to_string(),
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
        put_str(obj, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, &iop);
        put_str(obj, tags::PIXEL_SPACING, VR::DS, &spacing);
        put_str(
            obj,
            tags::SLICE_THICKNESS,
            VR::DS,
            &format!("{:.6}", size[2]),
        );
        put_str(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
        for (tag, v) in [
            (tags::SAMPLES_PER_PIXEL, 1u16),
            (tags::ROWS, ny as u16),
            (tags::COLUMNS, nx as u16),
            (tags::BITS_ALLOCATED, 16),
            (tags::BITS_STORED, 16),
            (tags::HIGH_BIT, 15),
            (tags::PIXEL_REPRESENTATION, 0),
        ] {
            obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        }
        match series.info.echo_time_ms {
            Some(te) => put_str(obj, tags::ECHO_TIME, VR::DS, &format!("{te:.3}")),
            None => put_str(obj, tags::ECHO_TIME, VR::DS, ""),
        }
        if let Some(tr) = series.info.repetition_time_ms {
            put_str(obj, tags::REPETITION_TIME, VR::DS, &format!("{tr:.3}"));
        }
    };
    let save = |obj: InMemDicomObject, class: &str, path: PathBuf| -> Result<PathBuf> {
        write_part10(obj, class, &new_uid(), &path).map_err(|reason| Error::Output {
            path: path.clone(),
            reason,
        })?;
        Ok(path)
    };
    let acq_time = |v: usize| {
        let t = series
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
    };

    let mut files = Vec::new();
    if opts.mosaic {
        let grid = (nz as f64).sqrt().ceil() as usize;
        let (mr, mc) = (grid * ny, grid * nx);
        // The mosaic's ImagePositionPatient is where the first slice would start if it were
        // the size of the whole mosaic (the inverse of the reader's correction).
        let p0 = position(0);
        let shift_r = (mr - ny) as f64 / 2.0 * size[1];
        let shift_c = (mc - nx) as f64 / 2.0 * size[0];
        let ipp: Vec<f64> = (0..3)
            .map(|k| p0[k] - col[k] * shift_r - row[k] * shift_c)
            .collect();
        let normal = [a[0][2] / size[2], a[1][2] / size[2], a[2][2] / size[2]];
        for v in 0..nvol {
            let mut obj = InMemDicomObject::new_empty();
            common(&mut obj);
            obj.put(DataElement::new(
                tags::ROWS,
                VR::US,
                PrimitiveValue::from(mr as u16),
            ));
            obj.put(DataElement::new(
                tags::COLUMNS,
                VR::US,
                PrimitiveValue::from(mc as u16),
            ));
            put_str(
                &mut obj,
                tags::IMAGE_TYPE,
                VR::CS,
                "ORIGINAL\\PRIMARY\\DIFFUSION\\NONE\\ND\\MOSAIC",
            );
            put_str(
                &mut obj,
                tags::INSTANCE_NUMBER,
                VR::IS,
                &(v + 1).to_string(),
            );
            put_str(&mut obj, tags::ACQUISITION_TIME, VR::TM, &acq_time(v));
            put_str(
                &mut obj,
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                &ds_fixed_list(&ipp, 6),
            );
            put_str(
                &mut obj,
                tags::SPACING_BETWEEN_SLICES,
                VR::DS,
                &format!("{:.6}", size[2]),
            );
            put_str(
                &mut obj,
                tags::RESCALE_SLOPE,
                VR::DS,
                &format!("{:.9}", slopes[v]),
            );
            put_str(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, "0");
            let n_str = nz.to_string();
            let normal_str: Vec<String> = normal.iter().map(|x| format!("{x:.8}")).collect();
            let mut fields: Vec<(&str, Vec<String>)> = vec![
                ("NumberOfImagesInMosaic", vec![n_str]),
                ("SliceNormalVector", normal_str),
            ];
            if let Some(d) = series.volumes[v].diffusion {
                fields.push(("B_value", vec![format!("{}", d.b)]));
                if let Some(dir) = d.direction {
                    fields.push((
                        "DiffusionGradientDirection",
                        dir.iter().map(|x| format!("{x:.8}")).collect(),
                    ));
                }
            }
            let borrowed: Vec<(&str, Vec<&str>)> = fields
                .iter()
                .map(|(n, v)| (*n, v.iter().map(|s| s.as_str()).collect()))
                .collect();
            let as_slices: Vec<(&str, &[&str])> =
                borrowed.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            put_str(&mut obj, Tag(0x0029, 0x0010), VR::LO, "SIEMENS CSA HEADER");
            obj.put(DataElement::new(
                vendor::SIEMENS_CSA_IMAGE,
                VR::OB,
                PrimitiveValue::U8(vendor::csa_header(&as_slices).into()),
            ));
            let mut pixels = vec![0u8; mr * mc * 2];
            for z in 0..nz {
                let tile = stored(v, z);
                let (gr, gc) = (z / grid, z % grid);
                for y in 0..ny {
                    let dst = ((gr * ny + y) * mc + gc * nx) * 2;
                    pixels[dst..dst + nx * 2].copy_from_slice(&tile[y * nx * 2..(y + 1) * nx * 2]);
                }
            }
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U8(pixels.into()),
            ));
            files.push(save(
                obj,
                MR_IMAGE_STORAGE,
                dir.join(format!("MOSAIC_{:04}.dcm", v + 1)),
            )?);
        }
    } else if !opts.enhanced {
        for e in 0..n_echoes {
            for v in 0..nvol {
                for z in 0..nz {
                    let k = e * n_images + v * nz + z;
                    let mut obj = InMemDicomObject::new_empty();
                    common(&mut obj);
                    put_str(
                        &mut obj,
                        tags::IMAGE_TYPE,
                        VR::CS,
                        "ORIGINAL\\PRIMARY\\M\\ND",
                    );
                    put_str(
                        &mut obj,
                        tags::INSTANCE_NUMBER,
                        VR::IS,
                        &numbers[k].to_string(),
                    );
                    put_str(&mut obj, tags::ACQUISITION_TIME, VR::TM, &acq_time(v));
                    put_str(
                        &mut obj,
                        tags::TEMPORAL_POSITION_IDENTIFIER,
                        VR::IS,
                        &(v + 1).to_string(),
                    );
                    put_str(
                        &mut obj,
                        tags::IMAGE_POSITION_PATIENT,
                        VR::DS,
                        &ds_fixed_list(&position(z), 6),
                    );
                    put_str(
                        &mut obj,
                        tags::RESCALE_SLOPE,
                        VR::DS,
                        &format!("{:.9}", echo_slopes[e][v]),
                    );
                    put_str(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, "0");
                    if n_echoes > 1 {
                        put_str(&mut obj, tags::ECHO_NUMBERS, VR::IS, &(e + 1).to_string());
                        if let Some(te) = echoes[e].info.echo_time_ms {
                            put_str(&mut obj, tags::ECHO_TIME, VR::DS, &format!("{te:.3}"));
                        }
                    }
                    if opts.flavour == Flavour::Philips {
                        // Display scaling equals the float scaling here: SS = 1/RS.
                        obj.put(DataElement::new(
                            vendor::PHILIPS_SCALE_SLOPE,
                            VR::FL,
                            PrimitiveValue::from((1.0 / echo_slopes[e][v]) as f32),
                        ));
                    }
                    let mut top = InMemDicomObject::new_empty();
                    put_diffusion(&mut top, &mut obj, opts.flavour, &series.volumes[v]);
                    for e in top.into_iter() {
                        obj.put(e);
                    }
                    obj.put(DataElement::new(
                        tags::PIXEL_DATA,
                        VR::OW,
                        PrimitiveValue::U8(stored_echo(e, v, z).into()),
                    ));
                    files.push(save(
                        obj,
                        MR_IMAGE_STORAGE,
                        dir.join(format!("IM_{:05}.dcm", numbers[k])),
                    )?);
                }
            }
        }
    } else {
        let mut obj = InMemDicomObject::new_empty();
        common(&mut obj);
        put_str(
            &mut obj,
            tags::IMAGE_TYPE,
            VR::CS,
            "ORIGINAL\\PRIMARY\\M\\NONE",
        );
        put_str(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
        put_str(
            &mut obj,
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            &n_images.to_string(),
        );
        put_str(&mut obj, tags::CONTENT_DATE, VR::DA, "20260101");
        put_str(&mut obj, tags::CONTENT_TIME, VR::TM, "090000");
        let mut shared = InMemDicomObject::new_empty();
        let dimension_uid = new_uid();
        enhanced_mr_modules(
            &mut obj,
            &mut shared,
            &dimension_uid,
            series.volumes.iter().any(|v| v.diffusion.is_some()),
            series.info.echo_time_ms,
            series.info.repetition_time_ms,
            [ny as u16, nx as u16],
        );
        let mut measures = InMemDicomObject::new_empty();
        put_str(&mut measures, tags::PIXEL_SPACING, VR::DS, &spacing);
        put_str(
            &mut measures,
            tags::SLICE_THICKNESS,
            VR::DS,
            &format!("{:.6}", size[2]),
        );
        seq(&mut shared, Tag(0x0028, 0x9110), vec![measures]);
        let mut orient = InMemDicomObject::new_empty();
        put_str(&mut orient, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, &iop);
        seq(&mut shared, Tag(0x0020, 0x9116), vec![orient]);
        seq(&mut obj, Tag(0x5200, 0x9229), vec![shared]);
        let mut per_frame = Vec::with_capacity(n_images);
        let mut pixels = Vec::with_capacity(n_images * nx * ny * 2);
        for v in 0..nvol {
            for z in 0..nz {
                let mut item = InMemDicomObject::new_empty();
                let mut pos = InMemDicomObject::new_empty();
                put_str(
                    &mut pos,
                    tags::IMAGE_POSITION_PATIENT,
                    VR::DS,
                    &ds_fixed_list(&position(z), 6),
                );
                seq(&mut item, Tag(0x0020, 0x9113), vec![pos]);
                let mut content = InMemDicomObject::new_empty();
                content.put(DataElement::new(
                    Tag(0x0020, 0x9128),
                    VR::UL,
                    PrimitiveValue::from((v + 1) as u32),
                ));
                put_str(&mut content, tags::STACK_ID, VR::SH, "1");
                content.put(DataElement::new(
                    tags::IN_STACK_POSITION_NUMBER,
                    VR::UL,
                    PrimitiveValue::from((z + 1) as u32),
                ));
                content.put(DataElement::new(
                    tags::DIMENSION_INDEX_VALUES,
                    VR::UL,
                    PrimitiveValue::U32(vec![(v + 1) as u32, (z + 1) as u32].into()),
                ));
                // ms: one slice of a single-shot EPI readout.
                put_fd(&mut content, tags::FRAME_ACQUISITION_DURATION, 50.0);
                put_str(
                    &mut content,
                    tags::FRAME_REFERENCE_DATE_TIME,
                    VR::DT,
                    &format!("20260101{}", acq_time(v)),
                );
                put_str(
                    &mut content,
                    Tag(0x0018, 0x9074),
                    VR::DT,
                    &format!("20260101{}", acq_time(v)),
                );
                seq(&mut item, Tag(0x0020, 0x9111), vec![content]);
                let mut pvt = InMemDicomObject::new_empty();
                put_str(
                    &mut pvt,
                    tags::RESCALE_SLOPE,
                    VR::DS,
                    &format!("{:.9}", slopes[v]),
                );
                put_str(&mut pvt, tags::RESCALE_INTERCEPT, VR::DS, "0");
                put_str(&mut pvt, tags::RESCALE_TYPE, VR::LO, "US");
                seq(&mut item, Tag(0x0028, 0x9145), vec![pvt]);
                // Enhanced MR carries diffusion in the standard macro whatever the vendor.
                let mut ignored = InMemDicomObject::new_empty();
                put_diffusion(
                    &mut item,
                    &mut ignored,
                    Flavour::Standard,
                    &series.volumes[v],
                );
                per_frame.push(item);
                pixels.extend(stored(v, z));
            }
        }
        seq(&mut obj, Tag(0x5200, 0x9230), per_frame);
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(pixels.into()),
        ));
        files.push(save(
            obj,
            ENHANCED_MR_IMAGE_STORAGE,
            dir.join("ENHANCED_MR.dcm"),
        )?);
    }
    Ok(files)
}
