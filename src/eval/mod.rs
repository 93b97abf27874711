//! Interactive-segmentation benchmark: the RITM / SegNext click protocol on
//! labelled datasets, and its metrics (NoC, NoF, mIoU after k clicks).
//!
//! Open a [`Dataset`], read each sample's [`GroundTruth`] with its
//! [`Format`], run [`evaluate`] per image, then aggregate with [`Summary::of`].
//! The protocol is described in `docs/EVAL.md`.

mod clicker;
mod dataset;
mod format;
mod ground_truth;
mod metrics;
mod protocol;
mod report;

pub use clicker::{Click, Clicker};
pub use dataset::{detect_format, Dataset, Sample, IMAGE_EXTENSIONS};
pub use format::{Format, GRABCUT_IGNORE, OBJECT_ABOVE};
pub use ground_truth::GroundTruth;
pub use metrics::{SampleResult, Summary, MIOU_CLICKS, NOC_THRESHOLDS};
pub use protocol::{evaluate, MIN_CLICKS, STOP_IOU};
pub use report::{write_csv, Report, CSV_HEADER};
