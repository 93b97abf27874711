//! The image encoder: one heavy pass per frame, producing an embedding.

use std::sync::OnceLock;

use anyhow::{ensure, Context, Result};
use image::RgbImage;
use tract_onnx::prelude::*;

use super::compute::Compute;
use super::manifest::Manifest;
use super::preprocess::{encoder_input, Geometry, Size};
use super::session::{self, Plan};

/// The encoder's output for one image, with the geometry needed to map
/// prompts in and masks out.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub(crate) features: Arc<Tensor>,
    pub geometry: Geometry,
    /// The mask decoder's per-frame part, computed by the first decode (or
    /// `MaskDecoder::prepare`) and shared by clones.
    pub(crate) frame: Arc<OnceLock<FrameTensors>>,
}

/// The mask decoder's per-frame tensors for one embedding.
#[derive(Debug)]
pub(crate) struct FrameTensors(pub(crate) Vec<Arc<Tensor>>);

impl Embedding {
    /// The encoder output, `[1, C, H, W]`.
    pub fn features(&self) -> &Tensor {
        &self.features
    }
}

/// A loaded image encoder.
#[derive(Debug, Clone)]
pub struct ImageEncoder {
    plan: Plan,
    input_side: u32,
    pixel_mean: [f32; 3],
    pixel_std: [f32; 3],
    embedding_shape: [usize; 4],
    compute: Compute,
}

impl ImageEncoder {
    /// Loads the encoder ONNX file for `manifest`, to compute in `compute`.
    pub fn load(manifest: &Manifest, path: &std::path::Path, compute: Compute) -> Result<ImageEncoder> {
        let side = manifest.image_size;
        let plan = session::load(
            path,
            &[("image", session::f32_input(&[1, 3, side, side]))],
            &["image_embeddings"],
            compute,
        )
        .context("loading the image encoder")?;
        let [c, h, w] = manifest.embedding_shape;
        Ok(ImageEncoder {
            plan,
            input_side: side as u32,
            pixel_mean: manifest.pixel_mean,
            pixel_std: manifest.pixel_std,
            embedding_shape: [1, c, h, w],
            compute,
        })
    }

    /// Runs the encoder on an RGB image of any size.
    ///
    /// # Errors
    /// The image is empty, or the model fails or returns an unexpected shape.
    pub fn embed(&self, image: &RgbImage) -> Result<Embedding> {
        let (input, geometry) = self.input(image)?;
        self.embed_input(input, geometry)
    }

    /// The first half of [`ImageEncoder::embed`]: the plan's input tensor
    /// for `image` (resized, normalized, padded) and how the image maps onto it.
    ///
    /// # Errors
    /// The image is empty.
    pub fn input(&self, image: &RgbImage) -> Result<(Tensor, Geometry)> {
        let geometry = Geometry::new(Size::new(image.width(), image.height()), self.input_side);
        let input = encoder_input(image, &geometry, self.pixel_mean, self.pixel_std)?;
        Ok((Tensor::from(input), geometry))
    }

    /// The second half of [`ImageEncoder::embed`]: runs the plan alone on an
    /// input from [`ImageEncoder::input`].
    ///
    /// # Errors
    /// The model fails or returns an unexpected shape.
    pub fn embed_input(&self, input: Tensor, geometry: Geometry) -> Result<Embedding> {
        let input = match self.compute {
            Compute::F32 => input,
            Compute::F16 => input.cast_to::<f16>()?.into_owned(),
        };
        let mut outputs =
            self.plan.run(tvec![input.into_tvalue()]).context("running the image encoder")?;
        let features = match self.compute {
            Compute::F32 => outputs.remove(0).into_arc_tensor(),
            Compute::F16 => Arc::new(outputs[0].cast_to::<f32>()?.into_owned()),
        };
        ensure!(
            features.shape() == self.embedding_shape,
            "the image encoder returned shape {:?}, the manifest says {:?}",
            features.shape(),
            self.embedding_shape
        );
        Ok(Embedding { features, geometry, frame: Arc::default() })
    }
}
