//! The leakage correction's reference (docs/methods.md §3): for BSW (Boxerman et al., AJNR
//! 2006) and its bidirectional form (Leu, Boxerman et al., AJNR 2016), R̄(t), the mean ΔR2*
//! of the brain's non-enhancing voxels; a selection step, so the pipeline's. The fits are
//! `models::dsc::DscModel::fit_leakage`.

use super::Curves;
use crate::error::{Error, Result};
use crate::models::dsc::{DscModel, Leakage, LeakageReference};
use crate::models::leakage_bsw;

/// BSW's reference R̄(t) of the non-enhancing `reference_voxels` (indices into the brain
/// voxels), with Leigh's regressors: BSW and Leigh only, refused when there is none.
pub(super) fn reference(
    model: &DscModel,
    reference_voxels: &[usize],
    c: &Curves,
    err: &impl Fn(String) -> Error,
) -> Result<Option<LeakageReference>> {
    if !matches!(model.leakage, Leakage::Bsw | Leakage::Leigh) {
        return Ok(None);
    }
    if reference_voxels.is_empty() {
        return Err(err("no non-enhancing reference voxels for the BSW leakage correction (none returns to baseline after the bolus); check the baseline frames, or use --leakage residue or none".into()));
    }
    let rbar = leakage_bsw::reference_curve(c.values, c.n, c.nt, reference_voxels);
    model
        .leakage_reference(rbar, reference_voxels.len())
        .map_err(err)
}
