//! Classic MR images (MR Image Storage): one file per slice, volume and echo, as most scanners
//! write DSC and DWI series; instance numbers optionally scrambled, and the diffusion encoding
//! where the flavour's vendor puts it.

use std::path::{Path, PathBuf};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::acquisition::Acquisition;
use super::diffusion::put_diffusion;
use super::Flavour;
use crate::error::Result;
use crate::io::dicom::elements::{ds_fixed_list, put_str, MR_IMAGE_STORAGE};
use crate::io::dicom::vendor;

/// Writes every echo, volume and slice of `acq` as `dir/IM_NNNNN.dcm`, NNNNN its Instance
/// Number: echo-major, then volume, then slice, or scrambled (seeded) with
/// [`super::DicomWriteOptions::shuffle_instances`].
pub(super) fn write_classic(acq: &Acquisition, dir: &Path) -> Result<Vec<PathBuf>> {
    let n_images = acq.nvol * acq.nz;
    let mut numbers: Vec<usize> = (1..=n_images * acq.echoes.len()).collect();
    if acq.opts.shuffle_instances {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        numbers.shuffle(&mut rand::rngs::StdRng::seed_from_u64(acq.opts.seed));
    }
    let mut files = Vec::new();
    for e in 0..acq.echoes.len() {
        for v in 0..acq.nvol {
            for z in 0..acq.nz {
                let number = numbers[e * n_images + v * acq.nz + z];
                let obj = classic_image(acq, e, v, z, number);
                files.push(acq.save(
                    obj,
                    MR_IMAGE_STORAGE,
                    dir.join(format!("IM_{number:05}.dcm")),
                )?);
            }
        }
    }
    Ok(files)
}

/// Slice `z` of volume `v` of echo `e` as one MR image with Instance Number `number`.
fn classic_image(
    acq: &Acquisition,
    e: usize,
    v: usize,
    z: usize,
    number: usize,
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    acq.put_common(&mut obj);
    put_str(
        &mut obj,
        tags::IMAGE_TYPE,
        VR::CS,
        "ORIGINAL\\PRIMARY\\M\\ND",
    );
    put_str(&mut obj, tags::INSTANCE_NUMBER, VR::IS, &number.to_string());
    put_str(&mut obj, tags::ACQUISITION_TIME, VR::TM, &acq.acq_time(v));
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
        &ds_fixed_list(&acq.position(z), 6),
    );
    put_str(
        &mut obj,
        tags::RESCALE_SLOPE,
        VR::DS,
        &format!("{:.9}", acq.echo_slopes[e][v]),
    );
    put_str(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, "0");
    if acq.echoes.len() > 1 {
        put_str(&mut obj, tags::ECHO_NUMBERS, VR::IS, &(e + 1).to_string());
        if let Some(te) = acq.echoes[e].info.echo_time_s {
            put_str(
                &mut obj,
                tags::ECHO_TIME,
                VR::DS,
                &format!("{:.3}", te * 1000.0),
            );
        }
    }
    if acq.opts.flavour == Flavour::Philips {
        // Display scaling equals the float scaling here: SS = 1/RS.
        obj.put(DataElement::new(
            vendor::PHILIPS_SCALE_SLOPE,
            VR::FL,
            PrimitiveValue::from((1.0 / acq.echo_slopes[e][v]) as f32),
        ));
    }
    put_diffusion(&mut obj, acq.opts.flavour, &acq.series().volumes[v]);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(acq.stored(e, v, z).into()),
    ));
    obj
}
