//! Enhanced MR Image (PS3.3 A.36.2): the whole series as one multi-frame object, with the
//! modules and functional groups a scanner's object carries, so that the phantom passes
//! dciodvfy. Frames are ordered by volume, then slice; the diffusion encoding is always in the
//! standard macro, whatever the vendor, as Enhanced MR requires.

use std::path::{Path, PathBuf};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::acquisition::Acquisition;
use super::diffusion::put_diffusion;
use super::Flavour;
use crate::error::Result;
use crate::io::dicom::elements::{
    code_item, ds_fixed_list, frame_content, new_uid, put_dimensions, put_fd, put_str, seq,
    ENHANCED_MR_IMAGE_STORAGE,
};

/// Writes the first echo of `acq` as `dir/ENHANCED_MR.dcm`.
pub(super) fn write_enhanced(acq: &Acquisition, dir: &Path) -> Result<PathBuf> {
    let series = acq.series();
    let (nvol, nz, ny, nx) = (acq.nvol, acq.nz, acq.ny, acq.nx);
    let n_images = nvol * nz;
    let mut obj = InMemDicomObject::new_empty();
    acq.put_common(&mut obj);
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
    let diffusion = series.volumes.iter().any(|v| v.diffusion.is_some());
    let dimension_uid = new_uid();
    put_enhanced_mr_image(&mut obj, &dimension_uid, diffusion);
    let mut shared = InMemDicomObject::new_empty();
    put_shared_mr_groups(
        &mut shared,
        diffusion,
        series.info.echo_time_s.map(|s| s * 1000.0),
        series.info.repetition_time_s.map(|s| s * 1000.0),
        [ny as u16, nx as u16],
    );
    let mut measures = InMemDicomObject::new_empty();
    put_str(&mut measures, tags::PIXEL_SPACING, VR::DS, &acq.spacing);
    put_str(
        &mut measures,
        tags::SLICE_THICKNESS,
        VR::DS,
        &format!("{:.6}", acq.size[2]),
    );
    seq(&mut shared, tags::PIXEL_MEASURES_SEQUENCE, vec![measures]);
    let mut orient = InMemDicomObject::new_empty();
    put_str(
        &mut orient,
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        &acq.iop,
    );
    seq(&mut shared, tags::PLANE_ORIENTATION_SEQUENCE, vec![orient]);
    seq(
        &mut obj,
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![shared],
    );
    let mut per_frame = Vec::with_capacity(n_images);
    let mut pixels = Vec::with_capacity(n_images * nx * ny * 2);
    for v in 0..nvol {
        for z in 0..nz {
            per_frame.push(frame_item(acq, v, z));
            pixels.extend(acq.stored(0, v, z));
        }
    }
    seq(
        &mut obj,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        per_frame,
    );
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(pixels.into()),
    ));
    acq.save(obj, ENHANCED_MR_IMAGE_STORAGE, dir.join("ENHANCED_MR.dcm"))
}

/// The per-frame functional groups of slice `z` of volume `v` (PS3.3 C.7.6.16): Plane
/// Position, Frame Content (temporal position and place in the stack, the dimension index
/// values, the frame's time), Pixel Value Transformation (the volume's rescale) and the
/// diffusion encoding.
fn frame_item(acq: &Acquisition, v: usize, z: usize) -> InMemDicomObject {
    let series = acq.series();
    let mut item = InMemDicomObject::new_empty();
    let mut pos = InMemDicomObject::new_empty();
    put_str(
        &mut pos,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        &ds_fixed_list(&acq.position(z), 6),
    );
    seq(&mut item, tags::PLANE_POSITION_SEQUENCE, vec![pos]);
    let mut content = frame_content((z + 1) as u32, &[(v + 1) as u32, (z + 1) as u32]);
    content.put(DataElement::new(
        tags::TEMPORAL_POSITION_INDEX,
        VR::UL,
        PrimitiveValue::from((v + 1) as u32),
    ));
    // ms: one slice of a single-shot EPI readout.
    put_fd(&mut content, tags::FRAME_ACQUISITION_DURATION, 50.0);
    put_str(
        &mut content,
        tags::FRAME_REFERENCE_DATE_TIME,
        VR::DT,
        &format!("20260101{}", acq.acq_time(v)),
    );
    put_str(
        &mut content,
        tags::FRAME_ACQUISITION_DATE_TIME,
        VR::DT,
        &format!("20260101{}", acq.acq_time(v)),
    );
    seq(&mut item, tags::FRAME_CONTENT_SEQUENCE, vec![content]);
    let mut pvt = InMemDicomObject::new_empty();
    put_str(
        &mut pvt,
        tags::RESCALE_SLOPE,
        VR::DS,
        &format!("{:.9}", acq.echo_slopes[0][v]),
    );
    put_str(&mut pvt, tags::RESCALE_INTERCEPT, VR::DS, "0");
    put_str(&mut pvt, tags::RESCALE_TYPE, VR::LO, "US");
    seq(
        &mut item,
        tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        vec![pvt],
    );
    // Enhanced MR carries diffusion in the standard macro whatever the vendor.
    put_diffusion(&mut item, Flavour::Standard, &series.volumes[v]);
    item
}

/// Acquisition Contrast: DIFFUSION for a diffusion series, else PERFUSION (the phantoms are
/// one or the other).
fn contrast(diffusion: bool) -> &'static str {
    if diffusion {
        "DIFFUSION"
    } else {
        "PERFUSION"
    }
}

/// The image-level modules an Enhanced MR Image (PS3.3 A.36.2) requires beyond what the
/// reader needs, so that the phantom passes dciodvfy like a scanner's object: Enhanced General
/// Equipment (C.7.5.2), Enhanced MR Image (C.8.13.1) with the MR Image and Spectroscopy
/// Instance and MR Image Description macros, MR Pulse Sequence (C.8.13.4), Acquisition Context
/// (C.7.6.14) and Multi-frame Dimension (C.7.6.17; dimensions: temporal position, then
/// position in the stack, under `dimension_uid`). The values describe a synthetic single-shot
/// EPI acquisition; `diffusion` chooses the contrast (DIFFUSION or PERFUSION) and the echo
/// (spin or gradient).
fn put_enhanced_mr_image(obj: &mut InMemDicomObject, dimension_uid: &str, diffusion: bool) {
    let contrast = contrast(diffusion);
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
}

/// The shared MR functional groups (PS3.3 C.8.13.5): frame anatomy, frame type, timing and
/// safety, echo, modifiers, coils, field of view and averages, for the synthetic single-shot EPI
/// acquisition `diffusion` chooses (spin-echo DWI or gradient-echo DSC); `te_ms` and `tr_ms`
/// the series' echo and repetition times; `matrix` is (rows, columns).
fn put_shared_mr_groups(
    shared: &mut InMemDicomObject,
    diffusion: bool,
    te_ms: Option<f64>,
    tr_ms: Option<f64>,
    matrix: [u16; 2],
) {
    let contrast = contrast(diffusion);
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
