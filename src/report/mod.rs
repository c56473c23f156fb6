//! Previews and the study report: PNG montages of the maps with a perceptual colormap and a
//! labelled colour bar, the DSC curve plot, ROI statistics with the threshold reading of
//! docs/methods.md §1, and one self-contained HTML file per study that holds all of them.
//!
//! Everything here returns bytes or a string; writing files is the caller's job, through
//! [`crate::io::output::OutputDir`] so that a failed run leaves no half-written report.
//!
//! ```no_run
//! # fn main() -> paramap::Result<()> {
//! use paramap::report::*;
//! # let adc = ndarray::Array3::<f32>::zeros((4, 48, 48));
//! # let out = std::path::Path::new("out");
//! let png = montage_png(adc.view(), &PreviewSpec::new("ADC", "mm2/s", Colormap::Viridis))?;
//! let report = StudyReport {
//!     title: "Post-treatment MR".into(),
//!     generated_by: format!("paramap {}", env!("CARGO_PKG_VERSION")),
//!     series: vec![SeriesReport {
//!         label: "DWI".into(),
//!         kind: "DWI".into(),
//!         maps: vec![MapPreview { name: "ADC".into(), unit: "mm2/s".into(), png }],
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! };
//! let mut dir = paramap::io::output::OutputDir::create(out)?;
//! dir.write_text("report_20260101_ACC123.html", &render(&report))?;
//! dir.commit()?;
//! # Ok(()) }
//! ```

pub mod colormap;
pub mod compare;
pub mod curves;
pub mod html;
pub mod montage;
pub mod raster;
pub mod reading;

pub use colormap::Colormap;
pub use curves::{curves_png, Curve, CurvePlot};
pub use html::{
    render, KeyNumbers, LegendRow, MapPreview, RoiKeyNumbers, SeriesReport, StudyReport,
};
pub use montage::{
    montage, montage_png, Montage, Outline, PreviewSpec, AIF_OUTLINE, REFERENCE_OUTLINE,
    ROI_OUTLINE,
};
pub use reading::{
    load_roi, load_roi_on_grid, place_roi, read_rcbv_adc, read_rois, roi_stat, DrawnRoi, Reading,
    ReadingClass, ReadingThresholds, RoiOnGrid, RoiStat,
};
