//! Diffusion encoding from the standard tags and each vendor's own (METHODS §5).
//!
//! Precedence: the standard (0018,9087)/(0018,9089)/(0018,9075), top level or inside the
//! Enhanced MR diffusion macro; then the vendor's private tags. Directions are kept in the
//! frame the scanner gives them (patient LPS for the standard tags and Philips).

use dicom_core::Tag;

use super::values::{self, private_numbers, private_text, Binary, Dataset};
use crate::volume::Diffusion;

pub const DIFFUSION_B_VALUE: Tag = Tag(0x0018, 0x9087);
pub const DIFFUSION_GRADIENT_ORIENTATION: Tag = Tag(0x0018, 0x9089);
pub const DIFFUSION_DIRECTIONALITY: Tag = Tag(0x0018, 0x9075);
pub const MR_DIFFUSION_SEQUENCE: Tag = Tag(0x0018, 0x9117);
pub const DIFFUSION_GRADIENT_DIRECTION_SEQUENCE: Tag = Tag(0x0018, 0x9076);

pub const SIEMENS_B_VALUE: Tag = Tag(0x0019, 0x100C);
pub const SIEMENS_DIRECTIONALITY: Tag = Tag(0x0019, 0x100D);
pub const SIEMENS_GRADIENT: Tag = Tag(0x0019, 0x100E);
pub const SIEMENS_CSA_IMAGE: Tag = Tag(0x0029, 0x1010);

pub const GE_B_VALUE: Tag = Tag(0x0043, 0x1039);
pub const GE_GRADIENT: [Tag; 3] = [
    Tag(0x0019, 0x10BB),
    Tag(0x0019, 0x10BC),
    Tag(0x0019, 0x10BD),
];

pub const PHILIPS_B_VALUE: Tag = Tag(0x2001, 0x1003);
pub const PHILIPS_DIRECTION_LABEL: Tag = Tag(0x2001, 0x1004);
pub const PHILIPS_GRADIENT: [Tag; 3] = [
    Tag(0x2005, 0x10B0),
    Tag(0x2005, 0x10B1),
    Tag(0x2005, 0x10B2),
];
pub const PHILIPS_SCALE_SLOPE: Tag = Tag(0x2005, 0x100E);

/// Which vendor convention a dataset follows, from Manufacturer (0008,0070).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Siemens,
    Ge,
    Philips,
    Canon,
    Other,
}

impl Vendor {
    pub fn from_manufacturer(m: Option<&str>) -> Vendor {
        let m = m.unwrap_or("").to_ascii_uppercase();
        if m.contains("SIEMENS") {
            Vendor::Siemens
        } else if m.contains("GE ") || m.starts_with("GE") {
            Vendor::Ge
        } else if m.contains("PHILIPS") {
            Vendor::Philips
        } else if m.contains("CANON") || m.contains("TOSHIBA") {
            Vendor::Canon
        } else {
            Vendor::Other
        }
    }
}

fn unit(v: [f64; 3]) -> Option<[f64; 3]> {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    (n > 1e-6 && n.is_finite()).then(|| v.map(|x| x / n))
}

fn vec3(v: &[f64]) -> Option<[f64; 3]> {
    (v.len() >= 3).then(|| [v[0], v[1], v[2]])
}

/// The standard diffusion tags, in `ds` itself or in its MR Diffusion Sequence.
fn standard(ds: &Dataset) -> Option<Diffusion> {
    let macro_item = values::item(ds, MR_DIFFUSION_SEQUENCE);
    let b = macro_item
        .and_then(|m| values::float(m, DIFFUSION_B_VALUE))
        .or_else(|| values::float(ds, DIFFUSION_B_VALUE))?;
    let directionality = macro_item
        .and_then(|m| values::text(m, DIFFUSION_DIRECTIONALITY))
        .or_else(|| values::text(ds, DIFFUSION_DIRECTIONALITY))
        .unwrap_or_default()
        .to_ascii_uppercase();
    let direction = macro_item
        .and_then(|m| values::item(m, DIFFUSION_GRADIENT_DIRECTION_SEQUENCE))
        .and_then(|g| values::floats(g, DIFFUSION_GRADIENT_ORIENTATION))
        .or_else(|| values::floats(ds, DIFFUSION_GRADIENT_ORIENTATION))
        .and_then(|v| vec3(&v))
        .and_then(unit);
    Some(Diffusion {
        b,
        direction,
        isotropic: directionality == "ISOTROPIC",
    })
}

/// The fields of a dataset's Siemens CSA image header (0029,1010), empty where there is none.
pub fn siemens_csa(ds: &Dataset) -> Vec<(String, Vec<f64>)> {
    ds.element_opt(SIEMENS_CSA_IMAGE)
        .ok()
        .flatten()
        .and_then(|e| e.to_bytes().ok())
        .map(|b| csa_fields(&b))
        .unwrap_or_default()
}

fn siemens(ds: &Dataset) -> Option<Diffusion> {
    let csa = siemens_csa(ds);
    let csa_get = |name: &str| {
        csa.iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let b = private_numbers(ds, SIEMENS_B_VALUE, Binary::F64)
        .and_then(|v| v.first().copied())
        .or_else(|| csa_get("B_value").and_then(|v| v.first().copied()))?;
    let direction = private_numbers(ds, SIEMENS_GRADIENT, Binary::F64)
        .or_else(|| csa_get("DiffusionGradientDirection"))
        .and_then(|v| vec3(&v))
        .and_then(unit);
    let isotropic = private_text(ds, SIEMENS_DIRECTIONALITY)
        .map(|s| s.to_ascii_uppercase().contains("ISOTROPIC"))
        .unwrap_or(false);
    Some(Diffusion {
        b,
        direction,
        isotropic,
    })
}

/// Set once a GE image's b-value has been taken from its gradient vector's length.
static GE_SCALED_NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The effective b-value of a GE image whose (0043,1039) holds one nominal b for the whole
/// series and whose gradient vector (0019,10BB–BD) is shorter than 1 for the lower shells:
/// b = nominal·|g|² (the gradient amplitude is scaled, and b goes with its square; dcm2niix
/// reads GE multi-shell series so, and MRtrix3's `-bvalue_scaling` does the same). A vector
/// of length 1 (within 0.5%), or too short to carry a direction, leaves b as it is.
pub fn ge_effective_b(nominal: f64, gradient: [f64; 3]) -> f64 {
    let len2 = gradient.iter().map(|x| x * x).sum::<f64>();
    let len = len2.sqrt();
    if nominal > 0.0 && len.is_finite() && len > 1e-3 && (len - 1.0).abs() > 0.005 {
        nominal * len2
    } else {
        nominal
    }
}

fn ge(ds: &Dataset) -> Option<Diffusion> {
    // (0043,1039) "b\\…": the first value, which some software versions offset by 10⁹.
    let nominal = private_numbers(ds, GE_B_VALUE, Binary::F64)?
        .first()
        .copied()?
        % 1e9;
    let parts: Option<Vec<f64>> = GE_GRADIENT
        .iter()
        .map(|&t| private_numbers(ds, t, Binary::F64).and_then(|v| v.first().copied()))
        .collect();
    let gradient = parts.and_then(|v| vec3(&v));
    let b = gradient.map_or(nominal, |g| ge_effective_b(nominal, g));
    if b != nominal && !GE_SCALED_NOTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::log::info(&format!(
            "GE diffusion: (0043,1039) gives a nominal b = {nominal} s/mm² and the gradient vectors (0019,10BB–BD) are shorter than 1, so each image's b-value is nominal × |g|² (e.g. {b:.0} s/mm² for |g| = {:.3}), as dcm2niix reads it",
            (b / nominal).sqrt()
        ));
    }
    Some(Diffusion {
        b,
        direction: gradient.and_then(unit),
        isotropic: false,
    })
}

fn philips(ds: &Dataset) -> Option<Diffusion> {
    let b = private_numbers(ds, PHILIPS_B_VALUE, Binary::F32)?
        .first()
        .copied()?;
    let parts: Option<Vec<f64>> = PHILIPS_GRADIENT
        .iter()
        .map(|&t| private_numbers(ds, t, Binary::F32).and_then(|v| v.first().copied()))
        .collect();
    let isotropic = private_text(ds, PHILIPS_DIRECTION_LABEL).is_some_and(|s| s == "I");
    Some(Diffusion {
        b,
        direction: parts.and_then(|v| vec3(&v)).and_then(unit),
        isotropic,
    })
}

/// Diffusion encoding of a frame: `frame` is the per-frame functional group item (Enhanced)
/// or the dataset itself (classic); `top` is the whole dataset, where private tags live.
pub fn diffusion(frame: &Dataset, top: &Dataset, vendor: Vendor) -> Option<Diffusion> {
    let philips_isotropic = vendor == Vendor::Philips
        && private_text(top, PHILIPS_DIRECTION_LABEL).is_some_and(|s| s == "I");
    if let Some(mut d) = standard(frame).or_else(|| standard(top)) {
        d.isotropic |= philips_isotropic;
        return Some(d);
    }
    match vendor {
        Vendor::Siemens => siemens(top),
        Vendor::Ge => ge(top),
        Vendor::Philips => philips(top),
        Vendor::Canon | Vendor::Other => siemens(top).or_else(|| philips(top)).or_else(|| ge(top)),
    }
}

/// The name → numbers fields of a Siemens CSA header (SV10 or the older unnamed format).
pub fn csa_fields(bytes: &[u8]) -> Vec<(String, Vec<f64>)> {
    let u32_at = |o: usize| -> Option<u32> {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut out = Vec::new();
    let mut pos = if bytes.starts_with(b"SV10") { 8 } else { 0 };
    let Some(n_tags) = u32_at(pos) else {
        return out;
    };
    if n_tags == 0 || n_tags > 512 {
        return out;
    }
    pos += 8;
    for _ in 0..n_tags {
        let Some(name_bytes) = bytes.get(pos..pos + 64) else {
            break;
        };
        let name = String::from_utf8_lossy(name_bytes.split(|&c| c == 0).next().unwrap_or(&[]))
            .to_string();
        let Some(n_items) = u32_at(pos + 76) else {
            break;
        };
        pos += 84;
        let mut numbers = Vec::new();
        for _ in 0..n_items.min(1024) {
            let Some(len) = u32_at(pos + 4) else {
                return out;
            };
            pos += 16;
            let len = len as usize;
            if let Some(v) = bytes.get(pos..pos + len) {
                let s = String::from_utf8_lossy(v);
                if let Ok(x) = s
                    .trim_matches(|c: char| c.is_whitespace() || c == '\0')
                    .parse::<f64>()
                {
                    numbers.push(x);
                }
            }
            pos += len.div_ceil(4) * 4;
        }
        out.push((name, numbers));
    }
    out
}

/// Builds a Siemens SV10 CSA header with numeric string items (for writing phantoms).
pub fn csa_header(fields: &[(&str, &[&str])]) -> Vec<u8> {
    let mut b = b"SV10\x04\x03\x02\x01".to_vec();
    b.extend((fields.len() as u32).to_le_bytes());
    b.extend(77u32.to_le_bytes());
    for (name, items) in fields {
        let mut n = name.as_bytes().to_vec();
        n.resize(64, 0);
        b.extend(n);
        b.extend(1i32.to_le_bytes()); // vm
        b.extend(b"DS\0\0");
        b.extend(3i32.to_le_bytes()); // syngodt
        b.extend((items.len() as u32).to_le_bytes());
        b.extend(77u32.to_le_bytes());
        for it in *items {
            let mut v = it.as_bytes().to_vec();
            v.push(0);
            let len = v.len() as u32;
            for x in [len, len, 77, len] {
                b.extend(x.to_le_bytes());
            }
            v.resize(v.len().div_ceil(4) * 4, 0);
            b.extend(v);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csa_header_b_value_and_direction() {
        let bytes = csa_header(&[
            ("B_value", &["1000"]),
            ("DiffusionGradientDirection", &["0.6", "-0.8", "0"]),
        ]);
        let f = csa_fields(&bytes);
        assert_eq!(f[0], ("B_value".to_string(), vec![1000.0]));
        assert_eq!(f[1].1, vec![0.6, -0.8, 0.0]);
    }

    #[test]
    fn ge_b_value_follows_the_square_of_the_gradient_length() {
        // Shells 100/400/900 under a nominal 900: |g| = 1/3, 2/3, 1.
        let g = |len: f64| [len * 0.6, len * 0.8, 0.0];
        assert!((ge_effective_b(900.0, g(1.0 / 3.0)) - 100.0).abs() < 1e-9);
        assert!((ge_effective_b(900.0, g(2.0 / 3.0)) - 400.0).abs() < 1e-9);
        assert_eq!(ge_effective_b(900.0, g(1.0)), 900.0);
        assert_eq!(ge_effective_b(900.0, g(0.999)), 900.0);
        assert_eq!(ge_effective_b(0.0, g(0.5)), 0.0);
        assert_eq!(ge_effective_b(900.0, [0.0; 3]), 900.0);
    }

    #[test]
    fn vendors_from_manufacturer() {
        assert_eq!(Vendor::from_manufacturer(Some("SIEMENS")), Vendor::Siemens);
        assert_eq!(
            Vendor::from_manufacturer(Some("GE MEDICAL SYSTEMS")),
            Vendor::Ge
        );
        assert_eq!(
            Vendor::from_manufacturer(Some("Philips Medical Systems")),
            Vendor::Philips
        );
        assert_eq!(
            Vendor::from_manufacturer(Some("TOSHIBA_MEC")),
            Vendor::Canon
        );
    }
}
