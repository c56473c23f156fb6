//! paramap: quantitative diffusion (ADC) and perfusion (DSC) maps from MRI, computed on any GPU
//! through wgpu, with an f64 CPU reference path that proves the GPU right.
//!
//! Layers, lowest first; each module uses only those at or above it in this list (checked by
//! `tests/layers.rs`). `error`, `log` and `progress` sit below them all.
//! - [`volume`]: the volume model (voxels, geometry, per-volume metadata) and resampling;
//! - [`maps`]: the registry of output maps (names, units, codes), data only;
//! - [`io`]: DICOM, NIfTI, side files and atomic output; no arithmetic on maps;
//! - [`interrupt`]: Ctrl-C and SIGTERM, which abandon [`io`]'s staging folders;
//! - [`models`]: the quantitative models, CPU twins of the WGSL kernels; no I/O;
//! - [`net`]: DICOM networking (C-STORE, STOW-RS, the `listen` receiver);
//! - [`gpu`]: wgpu plumbing and the kernels in `shaders/`;
//! - [`synth`]: digital reference objects with known maps;
//! - [`report`]: previews (montages, curve plots) and the self-contained HTML study report;
//! - [`pipeline`]: a map from input to outputs, choosing CPU or GPU; a study's whole workflow;
//! - [`cli`]: one module per subcommand: parse, call a pipeline, print.

// Index loops mirror the equations and the WGSL kernels they twin; iterator chains would hide
// that correspondence.
#![allow(clippy::needless_range_loop)]
// `!(x > 0.0)` is how these checks say that NaN fails them too.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod cli;
pub mod error;
pub mod gpu;
pub mod interrupt;
pub mod io;
pub mod log;
pub mod maps;
pub mod models;
pub mod net;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod synth;
pub mod volume;

pub use error::{Error, Result};
