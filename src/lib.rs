//! maskd: Segment Anything on edge devices, run by tract.
//!
//! - [`model`]: the SAM encoder/decoder sessions and pre/post-processing (pure compute).
//! - [`display`]: overlays rendered through embedded-graphics into any `DrawTarget`.
//! - [`eval`]: the interactive-segmentation benchmark (click protocol, NoC/NoF/mIoU).
//! - [`serial`]: the controller protocol over a serial line (docs/PROTOCOL.md): codec, link, mask geometry.

pub mod display;
pub mod eval;
pub mod model;
pub mod serial;
