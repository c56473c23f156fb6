//! What a NIfTI-1 header's numbers mean in seconds and millimetres: `xyzt_units` (bits 0x07 the
//! spatial unit: m, mm, µm; bits 0x38 the time unit: s, ms, µs), `pixdim[4]` (the sampling
//! interval), and the voxel-to-RAS affine from `sform_code`/`srow_*`, else
//! `qform_code`/`quatern_*`/`pixdim[0]` (qfac), else `pixdim[1..=3]` (NIfTI-1 header, method 3,
//! 2, 1 of nifti1.h), always in mm.

use nifti::NiftiHeader;

use crate::volume::Affine;

/// NIfTI time units per second (`xyzt_units` & 0x38, NIfTI-1 header `NIFTI_UNITS_SEC`,
/// `_MSEC`, `_USEC`: 1, 1000, 10⁶); Err names the code when it is not a time unit (0,
/// unknown; Hz, ppm or rad/s).
pub fn time_units_per_second(header: &NiftiHeader) -> std::result::Result<f64, String> {
    match header.xyzt_units & 0x38 {
        8 => Ok(1.0),
        16 => Ok(1e3),
        24 => Ok(1e6),
        0 => Err("its xyzt_units gives no time unit (code 0, unknown)".into()),
        c => Err(format!(
            "its xyzt_units gives time unit code {c}, which is not a time (32 Hz, 40 ppm, 48 rad/s)"
        )),
    }
}

/// Millimetres per NIfTI spatial unit (`xyzt_units` & 0x07: 1 m, 2 mm, 3 µm); unknown (0)
/// or another code is taken as mm, as nibabel and FSL do.
pub fn mm_per_space_unit(header: &NiftiHeader) -> f64 {
    match header.xyzt_units & 0x07 {
        1 => 1000.0,
        3 => 1e-3,
        _ => 1.0,
    }
}

/// The sampling interval pixdim[4] in seconds, by the header's time unit; `Ok(None)` where
/// pixdim[4] is not a positive number; Err (pixdim[4] and the unit code) where the unit is not
/// a time.
pub fn time_step_seconds(header: &NiftiHeader) -> std::result::Result<Option<f64>, String> {
    let t = header.pixdim[4] as f64;
    if !(t.is_finite() && t > 0.0) {
        return Ok(None);
    }
    time_units_per_second(header)
        .map(|per_s| Some(t / per_s))
        .map_err(|why| format!("pixdim[4] = {t} but {why}"))
}

/// The voxel-to-RAS affine a reader should use: sform when set, else qform, else pixdim.
pub fn header_affine(h: &NiftiHeader) -> Affine {
    let mm = mm_per_space_unit(h);
    let mut m = header_affine_native(h);
    if mm != 1.0 {
        for row in m.iter_mut().take(3) {
            for x in row.iter_mut() {
                *x *= mm;
            }
        }
    }
    m
}

/// [`header_affine`] in the header's own spatial unit.
fn header_affine_native(h: &NiftiHeader) -> Affine {
    if h.sform_code > 0 {
        return [
            h.srow_x.map(f64::from),
            h.srow_y.map(f64::from),
            h.srow_z.map(f64::from),
            [0.0, 0.0, 0.0, 1.0],
        ];
    }
    let pix = |i: usize| (h.pixdim[i] as f64).abs().max(f64::MIN_POSITIVE);
    if h.qform_code > 0 {
        let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let scale = [pix(1), pix(2), qfac * pix(3)];
        let off = [h.quatern_x as f64, h.quatern_y as f64, h.quatern_z as f64];
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = r[i][j] * scale[j];
            }
            m[i][3] = off[i];
        }
        m[3][3] = 1.0;
        return m;
    }
    [
        [pix(1), 0.0, 0.0, 0.0],
        [0.0, pix(2), 0.0, 0.0],
        [0.0, 0.0, pix(3), 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xyzt_units_give_seconds_and_millimetres() {
        let mut h = NiftiHeader {
            pixdim: [1.0, 0.002, 0.002, 0.003, 1500.0, 1.0, 1.0, 1.0],
            xyzt_units: 1 | 16, // m, ms
            sform_code: 0,
            qform_code: 0,
            ..Default::default()
        };
        assert_eq!(time_step_seconds(&h), Ok(Some(1.5)));
        let a = header_affine(&h);
        assert!(
            (a[0][0] - 2.0).abs() < 1e-6 && (a[2][2] - 3.0).abs() < 1e-6,
            "{a:?}"
        );
        h.xyzt_units = 2 | 24; // mm, µs
        h.pixdim[4] = 1_500_000.0;
        assert_eq!(time_step_seconds(&h), Ok(Some(1.5)));
        h.xyzt_units = 2;
        let err = time_step_seconds(&h).unwrap_err();
        assert!(
            err.contains("pixdim[4] = 1500000") && err.contains("code 0"),
            "{err}"
        );
        h.xyzt_units = 2 | 32;
        assert!(time_step_seconds(&h).unwrap_err().contains("code 32"));
        h.pixdim[4] = 0.0;
        assert_eq!(time_step_seconds(&h), Ok(None));
    }
}
