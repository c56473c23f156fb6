//! Input and output: DICOM, NIfTI, FSL and BIDS side files, atomic output folders. Nothing
//! here does arithmetic on maps.

pub mod aif_curve;
pub mod bids;
pub mod dicom;
pub mod fsl;
pub mod huge_pages;
pub mod nifti;
pub mod output;
pub mod transform;
pub mod tuning;
