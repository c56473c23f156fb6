//! The mask a map is computed inside: automatic (Otsu, `models::mask`), the user's, or none.
//! Shared by every pipeline.

use std::path::PathBuf;

use ndarray::{Array3, ArrayView3};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::models::mask::background_mask;

/// Which mask to use.
#[derive(Debug, Clone)]
pub enum MaskChoice {
    /// Otsu's threshold of an image the pipeline chooses (see `models::mask`).
    Auto,
    /// A user mask on the same grid (non-zero = inside).
    User(Array3<bool>, PathBuf),
    /// Every voxel.
    None,
}

/// How the mask was made, for the record.
#[derive(Debug, Clone, Serialize)]
pub struct MaskRecord {
    pub rule: String,
    pub threshold: Option<f64>,
    pub voxels: usize,
}

/// The mask for `image` (`[z, y, x]`). `auto_rule` describes the image Otsu runs on; `what`
/// names the mask in errors. A user mask on another grid, or an empty one, is an error.
pub fn resolve(
    choice: &MaskChoice,
    image: ArrayView3<f32>,
    auto_rule: &str,
    what: &str,
) -> Result<(Array3<bool>, MaskRecord)> {
    match choice {
        MaskChoice::Auto => {
            let (m, t) = background_mask(image);
            let voxels = m.iter().filter(|&&b| b).count();
            Ok((
                m,
                MaskRecord {
                    rule: format!(
                        "Otsu threshold of {auto_rule} (256 bins, 0 to its 99.9th percentile)"
                    ),
                    threshold: Some(t),
                    voxels,
                },
            ))
        }
        MaskChoice::User(m, path) => {
            if m.dim() != image.dim() {
                return Err(Error::Nifti {
                    path: path.clone(),
                    problem: format!("{what} grid {:?} (z, y, x) differs from the series' {:?}: it must be on the same grid", m.dim(), image.dim()),
                });
            }
            let voxels = m.iter().filter(|&&b| b).count();
            if voxels == 0 {
                return Err(Error::Nifti {
                    path: path.clone(),
                    problem: format!("{what} is empty (no non-zero voxel)"),
                });
            }
            Ok((
                m.clone(),
                MaskRecord {
                    rule: format!("user mask {}", path.display()),
                    threshold: None,
                    voxels,
                },
            ))
        }
        MaskChoice::None => Ok((
            Array3::from_elem(image.dim(), true),
            MaskRecord {
                rule: "none (every voxel)".into(),
                threshold: None,
                voxels: image.len(),
            },
        )),
    }
}

/// Flat indices of the voxels inside `mask`, in memory order.
pub fn indices(mask: &Array3<bool>) -> Vec<usize> {
    mask.iter()
        .enumerate()
        .filter_map(|(i, &m)| m.then_some(i))
        .collect()
}
