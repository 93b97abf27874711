//! maskd: Segment Anything on edge devices, run by tract.
//!
//! Encode an image once, then decode as many prompts as you like against the
//! cached embedding (the model comes from `models/export.sh`):
//!
//! ```
//! use maskd::model::{Point, Precision, Prompt, Sam};
//!
//! let sam = Sam::load("models/mobile_sam", Precision::F32)?;
//! let image = image::open("tests/golden/images/chelsea.png")?.to_rgb8();
//! let embedding = sam.embed(&image)?;
//! let prompt = Prompt::from_points(vec![Point::foreground(255.0, 180.0)]);
//! let masks = sam.decode(&embedding, &prompt)?;
//! let cat = masks.chosen(); // a lone click: the best of the 3 multimask candidates
//! assert!(cat.predicted_iou > 0.9 && cat.mask.area() > 50_000);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! - [`model`]: the SAM encoder/decoder sessions and pre/post-processing (pure compute).
//! - [`camera`]: frame sources (V4L2 camera, image files, synthetic pattern).
//! - [`daemon`]: `maskd run`: pipeline, adapters, configuration and service life cycle.
//! - [`display`]: overlays rendered through embedded-graphics into any `DrawTarget`.
//! - [`draw`]: the canvas, letterbox and placement shared by the display, touch and everything mode.
//! - [`eval`]: the interactive-segmentation benchmark (click protocol, NoC/NoF/mIoU).
//! - [`everything`]: automatic mask generation (SAM's "segment everything" grid of prompts).
//! - [`mqtt`]: fleets: status with a Last Will, answers, objects and remote prompts over an MQTT 5 broker (docs/MQTT.md).
//! - [`offload`]: the image encoder on an inference server (Triton, KServe v2 gRPC), with this machine's as fallback (docs/OFFLOAD.md).
//! - [`picture`]: image files and camera frames to RGB pixels, JPEG decoded as the reference decodes it.
//! - [`pipeline`]: frames to embeddings (latest frame wins) and prompts to masks (bounded queue).
//! - [`serial`]: the controller protocol over a serial line (docs/PROTOCOL.md): codec, link, mask geometry.
//! - [`touch`]: touchscreen taps as prompts.

pub mod camera;
pub mod daemon;
pub mod display;
pub mod draw;
pub mod eval;
pub mod everything;
pub mod model;
pub mod mqtt;
pub mod offload;
pub mod picture;
pub mod pipeline;
pub mod serial;
pub mod touch;
