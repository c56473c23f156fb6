//! The diffusion encoding of one image, in the standard MR Diffusion Macro or as one vendor's
//! scanners write it in their private tags (the conventions `io::dicom::vendor` reads and
//! dcm2niix documents).

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_object::InMemDicomObject;

use super::Flavour;
use crate::io::dicom::elements::{put_str, seq};
use crate::io::dicom::vendor;
use crate::volume::{Diffusion, VolumeInfo};

/// Puts the diffusion encoding of volume `v` into `obj` (a classic image, or a per-frame
/// functional group item of an Enhanced MR image), as `flavour` writes it; nothing for a
/// volume without diffusion encoding.
pub(super) fn put_diffusion(obj: &mut InMemDicomObject, flavour: Flavour, v: &VolumeInfo) {
    let Some(d) = v.diffusion else { return };
    match flavour {
        Flavour::Standard => put_standard(obj, &d),
        Flavour::Siemens => put_siemens(obj, &d),
        Flavour::Ge => put_ge(obj, &d),
        Flavour::Philips => put_philips(obj, &d),
    }
}

/// The gradient direction, (0, 0, 0) where there is none (b = 0, isotropic trace).
fn direction(d: &Diffusion) -> [f64; 3] {
    d.direction.unwrap_or([0.0; 3])
}

/// MR Diffusion Sequence (0018,9117; PS3.3 C.8.13.5.9): b-value (0018,9087), directionality
/// (0018,9075) and the gradient orientation (0018,9089) in its own sequence.
fn put_standard(obj: &mut InMemDicomObject, d: &Diffusion) {
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
            PrimitiveValue::F64(direction(d).to_vec().into()),
        ));
        seq(
            &mut m,
            vendor::DIFFUSION_GRADIENT_DIRECTION_SEQUENCE,
            vec![g],
        );
    }
    seq(obj, vendor::MR_DIFFUSION_SEQUENCE, vec![m]);
}

/// Siemens: (0019,100C) b-value (IS), (0019,100E) direction (FD), creator "SIEMENS MR HEADER".
fn put_siemens(obj: &mut InMemDicomObject, d: &Diffusion) {
    put_str(obj, Tag(0x0019, 0x0010), VR::LO, "SIEMENS MR HEADER");
    put_str(
        obj,
        vendor::SIEMENS_B_VALUE,
        VR::IS,
        &format!("{}", d.b.round() as i64),
    );
    if d.direction.is_some() {
        obj.put(DataElement::new(
            vendor::SIEMENS_GRADIENT,
            VR::FD,
            PrimitiveValue::F64(direction(d).to_vec().into()),
        ));
    }
}

/// GE: (0043,1039) "b\\8\\0\\0" with the 10⁹ offset some software versions write, and the
/// direction in (0019,10BB–BD) as DS.
fn put_ge(obj: &mut InMemDicomObject, d: &Diffusion) {
    put_str(obj, Tag(0x0043, 0x0010), VR::LO, "GEMS_PARM_01");
    put_str(obj, Tag(0x0019, 0x0010), VR::LO, "GEMS_ACQU_01");
    put_str(
        obj,
        vendor::GE_B_VALUE,
        VR::IS,
        &format!("{}\\8\\0\\0", 1_000_000_000 + d.b.round() as i64),
    );
    let dir = direction(d);
    for (k, t) in vendor::GE_GRADIENT.iter().enumerate() {
        put_str(obj, *t, VR::DS, &format!("{:.6}", dir[k]));
    }
}

/// Philips: (2001,1003) b-value (FL), (2001,1004) 'I' on the isotropic volume ('O'
/// otherwise), (2005,10B0–B2) direction (FL).
fn put_philips(obj: &mut InMemDicomObject, d: &Diffusion) {
    put_str(obj, Tag(0x2001, 0x0010), VR::LO, "Philips Imaging DD 001");
    put_str(
        obj,
        Tag(0x2005, 0x0010),
        VR::LO,
        "Philips MR Imaging DD 001",
    );
    obj.put(DataElement::new(
        vendor::PHILIPS_B_VALUE,
        VR::FL,
        PrimitiveValue::from(d.b as f32),
    ));
    put_str(
        obj,
        vendor::PHILIPS_DIRECTION_LABEL,
        VR::CS,
        if d.isotropic { "I" } else { "O" },
    );
    let dir = direction(d);
    for (k, t) in vendor::PHILIPS_GRADIENT.iter().enumerate() {
        obj.put(DataElement::new(
            *t,
            VR::FL,
            PrimitiveValue::from(dir[k] as f32),
        ));
    }
}
