//! The Parametric Map IOD (PS3.3 A.75): one multi-frame object of 32-bit float pixels in the
//! unit its Real World Value Mapping names; and the Real World Value Mapping item both
//! encodings carry.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::context::StudyContext;
use super::{display_window, finite_values, put_pixel_measures, put_window, slice_values};
use super::{DerivedMap, Plane};
use crate::io::dicom::elements::{
    code_item, ds_list, frame_content, lo, put_dimensions, put_str as put, put_u16, seq as put_seq,
};

/// Frame VOI LUT Sequence (0028,9132): the window of each frame of a multi-frame image.
const FRAME_VOI_LUT_SEQUENCE: Tag = Tag(0x0028, 0x9132);

/// The Parametric Map object of `map` (Parametric Map Image C.8.32.1, Floating Point Image
/// Pixel C.7.6.24, Multi-frame Dimension C.7.6.17, shared and per-frame functional groups
/// C.7.6.16).
pub(super) fn parametric_map(map: &DerivedMap, study: &StudyContext) -> InMemDicomObject {
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
        let content = frame_content((z + 1) as u32, &[1, (z + 1) as u32]);
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
pub(super) fn rwvm_item(map: &DerivedMap, slope: f64, zero_note: &str) -> InMemDicomObject {
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
