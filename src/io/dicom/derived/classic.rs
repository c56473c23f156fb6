//! Classic MR images (MR Image Storage, one file per slice): signed 16-bit integers with
//! Rescale Slope/Intercept and a Real World Value Mapping, for viewers without Parametric Map
//! support.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::context::StudyContext;
use super::parametric::rwvm_item;
use super::{display_window, finite_values, put_pixel_measures, put_window, slice_values};
use super::{DerivedMap, Plane};
use crate::io::dicom::elements::{ds, ds_list, put_str as put, put_u16, seq as put_seq};

/// The classic encoding's step: the quantity's [`Quantity::classic_step`](crate::maps::Quantity::classic_step), made ten times
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

/// Slice `z` of `map` as one MR image, stored as `value / slope` rounded and clamped to i16
/// (NaN as 0).
pub(super) fn classic_slice(
    map: &DerivedMap,
    study: &StudyContext,
    z: usize,
    slope: f64,
) -> InMemDicomObject {
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
