//! Segment Anything as pure compute: preprocessing, the tract sessions of
//! the image encoder and the mask decoder, and postprocessing.
//!
//! Encode once per image with [`Sam::embed`], then decode each prompt
//! against the cached [`Embedding`] with [`Sam::decode`].

mod compute;
mod decoder;
mod distance;
mod encoder;
mod eval_order;
mod manifest;
mod mask;
mod memory_plan;
mod ops;
mod postprocess;
mod preprocess;
mod profile;
mod prompt;
mod resize;
mod run_heap;
mod session;
mod shape;

use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use image::RgbImage;

pub use compute::Compute;
pub use decoder::{Candidate, LowResMasks, MaskDecoder, Masks, TOKENS};
pub use distance::squared_distance_to_outside;
pub use encoder::{Embedding, Encoder, EncoderState, ImageEncoder};
#[cfg(test)]
pub(crate) use encoder::FrameTensors;
pub use manifest::{Manifest, ModelFile, Precision, Variant, MANIFEST_FILE};
pub use mask::{Mask, PixelBox, Rle};
pub use memory_plan::{record_with_system_allocator, MemoryPlanStats, PlanningAllocator};
pub use postprocess::{MASK_THRESHOLD, STABILITY_OFFSET};
pub use preprocess::{planar_pixels, Geometry, Size};
pub use profile::NodeCost;
pub use prompt::{BoxPrompt, LowResMask, Point, PointLabel, Prompt, PromptError};
pub use session::{release_freed_memory, set_threads};
pub use shape::{shape, Shape};

/// A SAM-family model: an image encoder (on this machine or elsewhere) and
/// the mask decoder of one manifest.
#[derive(Debug, Clone)]
pub struct Sam {
    encoder: Arc<dyn Encoder>,
    decoder: MaskDecoder,
    manifest: Manifest,
    precision: Precision,
}

impl Sam {
    /// Loads the `precision` variant of the model in `dir`, computing in float32.
    ///
    /// # Errors
    /// The manifest or a model file is missing or broken; the message names
    /// the file and how to recreate it.
    pub fn load(dir: impl AsRef<Path>, precision: Precision) -> Result<Sam> {
        Sam::load_computing(dir, precision, Compute::F32)
    }

    /// Loads the `precision` variant of the model in `dir`, its encoder
    /// computing in `compute` (the decoder computes in float32: see
    /// docs/PERFORMANCE.md#float16-encoder).
    ///
    /// # Errors
    /// As [`Sam::load`].
    pub fn load_computing(dir: impl AsRef<Path>, precision: Precision, compute: Compute) -> Result<Sam> {
        let manifest = Manifest::load(dir)?;
        let (encoder, decoder) = load_local(&manifest, precision, compute)?;
        Ok(Sam { encoder: Arc::new(encoder), decoder, manifest, precision })
    }

    /// The decoder of the `precision` variant of `manifest`'s model, with
    /// embeddings from `encoder` (which must make them for this decoder: the
    /// manifest's `embedding_shape` is checked on every one).
    ///
    /// # Errors
    /// As [`Sam::load`].
    pub fn with_encoder(manifest: Manifest, precision: Precision, encoder: Arc<dyn Encoder>) -> Result<Sam> {
        let decoder = load_decoder(&manifest, precision)?;
        session::release_freed_memory();
        Ok(Sam { encoder, decoder, manifest, precision })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The variant whose decoder (and local encoder) runs.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The encoder's name: "int8", "int8-f16", a remote model.
    pub fn encoder_name(&self) -> String {
        self.encoder.name()
    }

    /// Where embeddings come from right now.
    pub fn encoder_state(&self) -> EncoderState {
        self.encoder.state()
    }

    /// How many frames may be encoded at once ([`Encoder::parallel_frames`]).
    pub fn parallel_frames(&self) -> usize {
        self.encoder.parallel_frames().max(1)
    }

    /// Encodes an image (the heavy, once-per-frame step), including the
    /// mask decoder's per-frame part, so that decoding pays only per prompt.
    ///
    /// # Errors
    /// The image is empty, the encoder fails, or its embedding does not
    /// have the manifest's shape.
    pub fn embed(&self, image: &RgbImage) -> Result<Embedding> {
        let embedding = self.encode(image)?;
        self.decoder.prepare(&embedding)?;
        Ok(embedding)
    }

    /// [`Sam::embed`] without the mask decoder's per-frame part: for a
    /// caller that runs it with [`Sam::publish_then_prepare`].
    ///
    /// # Errors
    /// As [`Sam::embed`].
    pub fn encode(&self, image: &RgbImage) -> Result<Embedding> {
        let embedding = self.encoder.embed(image)?;
        let [c, h, w] = self.manifest.embedding_shape;
        ensure!(
            embedding.features().shape() == [1, c, h, w],
            "the image encoder ({}) returned shape {:?}, model {} needs [1, {c}, {h}, {w}]",
            self.encoder.name(),
            embedding.features().shape(),
            self.manifest.model
        );
        Ok(embedding)
    }

    /// Runs the mask decoder's per-frame part for `embedding` and keeps its
    /// tensors with it, unless it has them (as [`Sam::embed`] does).
    ///
    /// # Errors
    /// The model fails.
    pub fn prepare(&self, embedding: &Embedding) -> Result<()> {
        self.decoder.prepare(embedding)
    }

    /// See [`MaskDecoder::publish_then_prepare`].
    ///
    /// # Errors
    /// The model fails.
    pub fn publish_then_prepare(&self, embedding: &Embedding, publish: impl FnOnce() -> bool) -> Result<bool> {
        self.decoder.publish_then_prepare(embedding, publish)
    }

    /// Decodes a prompt against an embedding (the light, per-prompt step).
    pub fn decode(&self, embedding: &Embedding, prompt: &Prompt) -> Result<Masks> {
        self.decoder.decode(embedding, prompt)
    }

    /// Decodes several prompts against an embedding, batching those the
    /// model can run together (see [`MaskDecoder::decode_batch`]).
    pub fn decode_batch(&self, embedding: &Embedding, prompts: &[Prompt]) -> Result<Vec<Masks>> {
        self.decoder.decode_batch(embedding, prompts)
    }

    /// [`Sam::decode_batch`] without upscaling (see [`MaskDecoder::low_res_batch`]).
    pub fn low_res_batch(&self, embedding: &Embedding, prompts: &[Prompt]) -> Result<Vec<LowResMasks>> {
        self.decoder.low_res_batch(embedding, prompts)
    }
}

/// The local encoder and the mask decoder of the `precision` variant.
/// Loading is tract's single-threaded graph rewriting: the decoder (a
/// quarter of it) loads on a second core meanwhile (docs/PERFORMANCE.md#loading).
///
/// # Errors
/// As [`Sam::load`].
pub fn load_local(manifest: &Manifest, precision: Precision, compute: Compute) -> Result<(ImageEncoder, MaskDecoder)> {
    let (encoder, decoder) = std::thread::scope(|scope| {
        let decoder = scope.spawn(|| load_decoder(manifest, precision));
        let encoder = load_encoder(manifest, precision, compute);
        (encoder, decoder.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    session::release_freed_memory();
    Ok((encoder?, decoder?))
}

/// The local encoder of `precision` weights computing in `compute`.
///
/// # Errors
/// As [`Sam::load`].
pub fn load_encoder(manifest: &Manifest, precision: Precision, compute: Compute) -> Result<ImageEncoder> {
    if !compute.is_native() {
        log::warn!("this CPU has no {compute} arithmetic that tract uses: the encoder runs emulated, many times slower");
    }
    ImageEncoder::load(manifest, precision, compute)
        .with_context(|| format!("model {} ({precision}, {compute} compute)", manifest.model))
}

/// The mask decoder of the `precision` variant.
///
/// # Errors
/// As [`Sam::load`].
pub fn load_decoder(manifest: &Manifest, precision: Precision) -> Result<MaskDecoder> {
    MaskDecoder::load(manifest, manifest.variant(precision)?).with_context(|| format!("model {} ({precision})", manifest.model))
}
