//! Segment Anything as pure compute: preprocessing, the tract sessions of
//! the image encoder and the mask decoder, and postprocessing.
//!
//! Encode once per image with [`Sam::embed`], then decode each prompt
//! against the cached [`Embedding`] with [`Sam::decode`].

mod compute;
mod decoder;
mod distance;
mod encoder;
mod manifest;
mod mask;
mod postprocess;
mod preprocess;
mod prompt;
mod resize;
mod session;

use std::path::Path;

use anyhow::{Context, Result};
use image::RgbImage;

pub use compute::Compute;
pub use decoder::{Candidate, LowResMasks, MaskDecoder, Masks, TOKENS};
pub use distance::squared_distance_to_outside;
pub use encoder::{Embedding, ImageEncoder};
pub use manifest::{Manifest, ModelFile, Precision, Variant, MANIFEST_FILE};
pub use mask::{Mask, PixelBox, Rle};
pub use postprocess::{MASK_THRESHOLD, STABILITY_OFFSET};
pub use preprocess::{Geometry, Size};
pub use prompt::{BoxPrompt, LowResMask, Point, PointLabel, Prompt, PromptError};
pub use session::set_threads;

/// A SAM-family model: an image encoder and a mask decoder from one manifest.
#[derive(Debug, Clone)]
pub struct Sam {
    pub encoder: ImageEncoder,
    pub decoder: MaskDecoder,
    pub manifest: Manifest,
    pub precision: Precision,
    pub compute: Compute,
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
        if !compute.is_native() {
            log::warn!("this CPU has no {compute} arithmetic that tract uses: the encoder runs emulated, many times slower");
        }
        let manifest = Manifest::load(dir)?;
        let variant = manifest.variant(precision)?;
        let encoder_path = manifest.file_path(&variant.encoder)?;
        // Loading is tract's single-threaded graph rewriting: the decoder (a
        // quarter of it) loads on a second core meanwhile (docs/PERFORMANCE.md#loading).
        let (encoder, decoder) = std::thread::scope(|scope| {
            let decoder = scope.spawn(|| MaskDecoder::load(&manifest, variant));
            let encoder = ImageEncoder::load(&manifest, &encoder_path, compute);
            (encoder, decoder.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        });
        session::release_freed_memory();
        let encoder = encoder
            .with_context(|| format!("model {} ({precision}, {compute} compute)", manifest.model))?;
        let decoder = decoder.with_context(|| format!("model {} ({precision})", manifest.model))?;
        Ok(Sam { encoder, decoder, manifest, precision, compute })
    }

    /// The weights and, when not float32, what the encoder computes in:
    /// "int8", "int8, f16 encoder".
    pub fn variant(&self) -> String {
        match self.compute {
            Compute::F32 => self.precision.to_string(),
            compute => format!("{}, {compute} encoder", self.precision),
        }
    }

    /// Encodes an image (the heavy, once-per-frame step), including the
    /// mask decoder's per-frame part, so that decoding pays only per prompt.
    pub fn embed(&self, image: &RgbImage) -> Result<Embedding> {
        let embedding = self.encoder.embed(image)?;
        self.decoder.prepare(&embedding)?;
        Ok(embedding)
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
}
