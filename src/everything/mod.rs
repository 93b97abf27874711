//! Automatic mask generation ("segment everything"): SAM's
//! `SamAutomaticMaskGenerator` on maskd's model.
//!
//! A regular grid of single-point prompts is decoded against one image
//! embedding (plus optional crop layers, each with its own embedding); the
//! 3 multimask outputs of every point are filtered by predicted IoU and
//! stability, masks cut off by a crop edge are dropped, and duplicates are
//! removed by box NMS within each crop, then across crops. Optionally small
//! holes and islands are cleaned up. The order of operations and every
//! default follow SAM's generator, so the masks match PyTorch's (see
//! docs/EVERYTHING.md).
//!
//! Reusing an embedding that is already there (a daemon's cached frame):
//!
//! ```no_run
//! use maskd::everything::{self, SamRecord, Settings};
//! use maskd::model::{Precision, Sam};
//!
//! let sam = Sam::load("models/mobile_sam", Precision::F32)?;
//! let image = maskd::picture::read_rgb("photo.jpg")?;
//! let embedding = sam.embed(&image)?;
//! let settings = Settings { points_per_side: 16, ..Settings::default() };
//! let masks = everything::generate(&sam, &embedding, &settings, |p| {
//!     eprintln!("{}/{} prompts, {} candidates", p.prompts_done, p.prompts, p.candidates);
//!     std::ops::ControlFlow::Continue(())
//! })?;
//! let records: Vec<SamRecord> = masks.iter().map(SamRecord::from).collect();
//! println!("{}", serde_json::to_string(&records)?);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! With crop layers, call [`generate_with_crops`] with the image as well.

mod crops;
mod filter;
mod generator;
mod grid;
mod nms;
mod record;
mod regions;
mod render;
mod settings;

pub use crops::CropBox;
pub use generator::{generate, generate_with_crops, Cancelled, Progress, ProposedMask};
pub use record::{CocoRle, SamRecord};
pub use render::{edge_map, mask_color, overlay};
pub use settings::Settings;
