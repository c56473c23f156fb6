//! Siemens mosaic: each volume one image, its slices tiled in a square grid, with the CSA
//! image header (0029,1010) carrying NumberOfImagesInMosaic, SliceNormalVector and the
//! diffusion encoding, as Siemens scanners write EPI series (the conventions dcm2niix reads).

use std::path::{Path, PathBuf};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::acquisition::Acquisition;
use crate::error::Result;
use crate::io::dicom::elements::{ds_fixed_list, put_str, MR_IMAGE_STORAGE};
use crate::io::dicom::vendor;

/// Writes each volume of the first echo of `acq` as `dir/MOSAIC_NNNN.dcm`.
pub(super) fn write_mosaic(acq: &Acquisition, dir: &Path) -> Result<Vec<PathBuf>> {
    let (nz, ny, nx) = (acq.nz, acq.ny, acq.nx);
    let grid = (nz as f64).sqrt().ceil() as usize;
    let (mr, mc) = (grid * ny, grid * nx);
    // The mosaic's ImagePositionPatient is where the first slice would start if it were
    // the size of the whole mosaic (the inverse of the reader's correction).
    let p0 = acq.position(0);
    let shift_r = (mr - ny) as f64 / 2.0 * acq.size[1];
    let shift_c = (mc - nx) as f64 / 2.0 * acq.size[0];
    let ipp: Vec<f64> = (0..3)
        .map(|k| p0[k] - acq.col[k] * shift_r - acq.row[k] * shift_c)
        .collect();
    let mut files = Vec::new();
    for v in 0..acq.nvol {
        let obj = mosaic_image(acq, v, grid, &ipp);
        files.push(acq.save(
            obj,
            MR_IMAGE_STORAGE,
            dir.join(format!("MOSAIC_{:04}.dcm", v + 1)),
        )?);
    }
    Ok(files)
}

/// Volume `v` as one mosaic image of `grid` × `grid` tiles, positioned at `ipp`.
fn mosaic_image(acq: &Acquisition, v: usize, grid: usize, ipp: &[f64]) -> InMemDicomObject {
    let (nz, ny, nx) = (acq.nz, acq.ny, acq.nx);
    let (mr, mc) = (grid * ny, grid * nx);
    let mut obj = InMemDicomObject::new_empty();
    acq.put_common(&mut obj);
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
    put_str(&mut obj, tags::ACQUISITION_TIME, VR::TM, &acq.acq_time(v));
    put_str(
        &mut obj,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        &ds_fixed_list(ipp, 6),
    );
    put_str(
        &mut obj,
        tags::SPACING_BETWEEN_SLICES,
        VR::DS,
        &format!("{:.6}", acq.size[2]),
    );
    put_str(
        &mut obj,
        tags::RESCALE_SLOPE,
        VR::DS,
        &format!("{:.9}", acq.echo_slopes[0][v]),
    );
    put_str(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, "0");
    put_csa_header(&mut obj, acq, v);
    let mut pixels = vec![0u8; mr * mc * 2];
    for z in 0..nz {
        let tile = acq.stored(0, v, z);
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
    obj
}

/// The CSA image header (0029,1010) with its private creator: the mosaic's slice count and
/// normal, and volume `v`'s b-value and gradient direction.
fn put_csa_header(obj: &mut InMemDicomObject, acq: &Acquisition, v: usize) {
    let n_str = acq.nz.to_string();
    let normal_str: Vec<String> = acq.normal.iter().map(|x| format!("{x:.8}")).collect();
    let mut fields: Vec<(&str, Vec<String>)> = vec![
        ("NumberOfImagesInMosaic", vec![n_str]),
        ("SliceNormalVector", normal_str),
    ];
    if let Some(d) = acq.series().volumes[v].diffusion {
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
    put_str(obj, Tag(0x0029, 0x0010), VR::LO, "SIEMENS CSA HEADER");
    obj.put(DataElement::new(
        vendor::SIEMENS_CSA_IMAGE,
        VR::OB,
        PrimitiveValue::U8(vendor::csa_header(&as_slices).into()),
    ));
}
