//! Previews and the study report: PNG montages of the maps with a perceptual colormap and a
//! labelled colour bar, the DSC curve plot, ROI statistics with the threshold reading of
//! METHODS §1, and one self-contained HTML file per study that holds all of them.
//!
//! Everything here returns bytes or a string; writing files is the caller's job, through
//! [`crate::io::output::OutputDir`] so that a failed run leaves no half-written report.
//!

pub mod colormap;
pub mod curves;
pub mod montage;
pub mod raster;

pub use colormap::Colormap;
pub use curves::{curves_png, CurvePlot};
pub use montage::{montage, montage_png, Montage, PreviewSpec};
