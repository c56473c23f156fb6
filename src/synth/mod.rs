//! Digital reference objects: phantoms whose maps are known by construction.

pub mod dsc;
pub mod dwi;
