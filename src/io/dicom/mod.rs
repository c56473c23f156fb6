//! DICOM input (classic single-frame and Enhanced MR multi-frame) and the writer used by the
//! digital reference objects.

pub mod assemble;
pub mod derived;
pub mod elements;
pub mod guard;
pub mod scan;
pub mod seg;
pub mod values;
pub mod vendor;
pub mod write;

pub use assemble::{assemble, assemble_ordered, VolumeOrder};
pub use scan::{scan, Scan, ScannedSeries, SeriesKind};
