//! rCBV (docs/methods.md §3): CBV, uncorrected and leakage corrected, over its value in the
//! normal-appearing white matter (automatic, a mask, or a sphere), and the rCBV class at the
//! reading's thresholds; the arithmetic in `models::normalisation`.

use ndarray::Array3;

use super::{DscOptions, Reference};
use crate::error::{Error, Result};
use crate::models::normalisation::{
    auto_white_matter, rcbv_class, reference_value, sphere_mask, ReferenceValue,
};
use crate::volume::Series4;

/// A reference mask on another grid than the series' is refused before any work is done.
pub(super) fn check_reference_grid(opts: &DscOptions, series: &Series4) -> Result<()> {
    if let Reference::Mask(m, path) = &opts.reference {
        let [nx, ny, nz] = series.geometry.dims;
        if m.dim() != (nz, ny, nx) {
            return Err(Error::Nifti {
                path: path.clone(),
                problem: format!(
                    "reference mask grid {:?} (z, y, x) differs from the series' {:?}: it must be on the same grid",
                    m.dim(),
                    (nz, ny, nx)
                ),
            });
        }
    }
    Ok(())
}

/// rCBV and the reference it was normalised by.
pub(super) struct Normalised {
    pub reference_mask: Array3<bool>,
    pub reference_rule: String,
    pub reference_uncorrected: ReferenceValue,
    pub reference_corrected: ReferenceValue,
    pub rcbv_uncorrected: Array3<f32>,
    pub rcbv: Array3<f32>,
    pub rcbv_class: Array3<u8>,
}

/// Normalises the CBV maps `cbv_u` (uncorrected) and `cbv_c` (leakage corrected) by their
/// values in the white-matter reference of `opts`.
pub(super) fn normalise(
    cbv_u: &Array3<f32>,
    cbv_c: &Array3<f32>,
    brain: &Array3<bool>,
    series: &Series4,
    opts: &DscOptions,
    err: &impl Fn(String) -> Error,
) -> Result<Normalised> {
    let shape = brain.dim();
    let brain_flat: Vec<bool> = brain.iter().copied().collect();
    let (reference_mask, reference_rule) = match &opts.reference {
        Reference::Auto => {
            let values: Vec<f32> = cbv_c.iter().copied().collect();
            let m = auto_white_matter(&values, &brain_flat);
            (Array3::from_shape_vec(shape, m).expect("same shape"), "automatic: brain voxels whose corrected CBV lies within 1/4 IQR of the mode of the brain's CBV histogram (white matter, the largest tissue class); check the reference_mask image".to_string())
        }
        Reference::Mask(m, path) => (m.clone(), format!("user mask {}", path.display())),
        Reference::Sphere(c, r) => {
            let m = sphere_mask(&series.geometry, *c, *r);
            let mut rule = format!(
                "sphere of radius {r} mm at RAS ({}, {}, {}) mm",
                c[0], c[1], c[2]
            );
            if !m.iter().any(|&b| b) {
                rule.push_str(&format!(
                    "; no voxel centre lies in it: the image's voxel centres span RAS {} mm, so give a centre inside (as FSLeyes or mrview show it)",
                    ras_extent(&series.geometry)
                ));
            }
            (m, rule)
        }
    };
    let ref_flat: Vec<bool> = reference_mask.iter().copied().collect();
    let ref_err = |e: String| {
        err(format!(
            "normal-appearing white matter reference ({reference_rule}): {e}"
        ))
    };
    // The two references side by side (independent; the same values).
    let reference = |cbv: &Array3<f32>| {
        reference_value(
            cbv.as_slice().expect("contiguous"),
            &ref_flat,
            &brain_flat,
            opts.statistic,
        )
    };
    let (corrected, uncorrected) = rayon::join(|| reference(cbv_c), || reference(cbv_u));
    let reference_corrected = corrected.map_err(&ref_err)?;
    let reference_uncorrected = uncorrected.map_err(&ref_err)?;
    let rcbv_uncorrected = cbv_u.mapv(|x| x / reference_uncorrected.value as f32);
    let rcbv = cbv_c.mapv(|x| x / reference_corrected.value as f32);
    let rcbv_class = rcbv_class(
        &rcbv,
        brain,
        opts.thresholds.rcbv_low,
        opts.thresholds.rcbv_high,
    );
    Ok(Normalised {
        reference_mask,
        reference_rule,
        reference_uncorrected,
        reference_corrected,
        rcbv_uncorrected,
        rcbv,
        rcbv_class,
    })
}

/// The RAS extent of a grid's voxel centres, "x a…b, y c…d, z e…f", for messages.
fn ras_extent(g: &crate::volume::Geometry) -> String {
    let [nx, ny, nz] = g.dims.map(|n| n.saturating_sub(1) as f64);
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for corner in 0..8 {
        let idx = [
            if corner & 1 == 0 { 0.0 } else { nx },
            if corner & 2 == 0 { 0.0 } else { ny },
            if corner & 4 == 0 { 0.0 } else { nz },
        ];
        let p = g.index_to_lps(idx);
        let ras = [-p[0], -p[1], p[2]];
        for k in 0..3 {
            lo[k] = lo[k].min(ras[k]);
            hi[k] = hi[k].max(ras[k]);
        }
    }
    format!(
        "x {:.0}…{:.0}, y {:.0}…{:.0}, z {:.0}…{:.0}",
        lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]
    )
}
