//! Quantitative models. Nothing here reads or writes files or knows about the GPU: each model
//! is a plain struct of what is fixed for an acquisition plus functions of voxel data.

pub mod adc;
pub mod aif;
pub mod bolus;
pub mod deconvolution;
pub mod delta_r2star;
pub mod gamma_variate;
pub mod leakage_bsw;
pub mod mask;
pub mod normalisation;
pub mod trace_weighted;
