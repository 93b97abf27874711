//! The image encoder: one heavy pass per frame, producing an embedding.
//!
//! [`Encoder`] is the role; [`ImageEncoder`] fills it with a tract plan on
//! this machine, and an inference server elsewhere can fill it too.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result};
use image::RgbImage;
use tract_onnx::prelude::*;

use super::compute::Compute;
use super::manifest::{Manifest, Precision};
use super::memory_plan::{MemoryPlanStats, RunMemory};
use super::preprocess::{encoder_input, padded_input, resized, Geometry, Size};
use super::profile::{profile, NodeCost};
use super::session::{self, Plan};

/// The role of SAM's image encoder: an image in, its embedding out, once
/// per frame. Whoever runs it (this machine, a server) is the implementor's
/// business; the decoder only needs the embedding.
pub trait Encoder: Send + Sync + fmt::Debug {
    /// Encodes an RGB image of any size.
    ///
    /// # Errors
    /// The image is empty, or the encoder failed (its message says why).
    fn embed(&self, image: &RgbImage) -> Result<Embedding>;

    /// A short name for logs, file names and table columns: "int8",
    /// "int8-f16", or a remote model's name.
    fn name(&self) -> String;

    /// Where embeddings come from right now.
    fn state(&self) -> EncoderState {
        EncoderState::Local
    }

    /// How many frames may be encoded at once: more than one only where the
    /// work happens elsewhere (a server), so that the network's latency
    /// overlaps; a local encoder already uses every core for one frame.
    fn parallel_frames(&self) -> usize {
        1
    }
}

/// Where an [`Encoder`] gets its embeddings, as Status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncoderState {
    /// This machine's encoder.
    #[default]
    Local,
    /// A remote inference server answers.
    Remote,
    /// The remote server does not answer: this machine's encoder stands in.
    Fallback,
    /// The remote server does not answer and nothing stands in: frames go unencoded.
    Down,
}

impl EncoderState {
    pub fn key(self) -> &'static str {
        match self {
            EncoderState::Local => "local",
            EncoderState::Remote => "remote",
            EncoderState::Fallback => "fallback",
            EncoderState::Down => "down",
        }
    }
}

impl fmt::Display for EncoderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The encoder's output for one image, with the geometry needed to map
/// prompts in and masks out.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub(crate) features: Arc<Tensor>,
    pub geometry: Geometry,
    /// The mask decoder's per-frame tensors, kept by `MaskDecoder::prepare`
    /// until [`Embedding::forget_frame_tensors`], and shared by clones.
    pub(crate) frame: Arc<Mutex<Option<Arc<FrameTensors>>>>,
}

/// The mask decoder's per-frame tensors for one embedding.
#[derive(Debug)]
pub(crate) struct FrameTensors(pub(crate) Vec<Arc<Tensor>>);

impl Embedding {
    /// An embedding computed elsewhere (a remote encoder): `features` is
    /// the encoder output for an image that maps onto the model input as
    /// `geometry` says.
    pub fn new(features: Tensor, geometry: Geometry) -> Embedding {
        Embedding { features: Arc::new(features), geometry, frame: Arc::default() }
    }

    /// The encoder output, `[1, C, H, W]`.
    pub fn features(&self) -> &Tensor {
        &self.features
    }

    /// Drops the mask decoder's per-frame tensors that `MaskDecoder::prepare`
    /// kept (10 MB for MobileSAM, 2.5 times the embedding): decodes then
    /// compute them for themselves (15 ms on a laptop core). For frames that
    /// prompts rarely target any more.
    pub fn forget_frame_tensors(&self) {
        self.frame.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// A clone that holds the per-frame tensors this one has now (if any)
    /// for itself, whatever [`Embedding::forget_frame_tensors`] does to the
    /// others: for a long job on one frame while newer frames come.
    pub fn detached(&self) -> Embedding {
        let frame = self.frame.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Embedding { features: self.features.clone(), geometry: self.geometry, frame: Arc::new(Mutex::new(frame)) }
    }

}

/// The encoder of a local model, run by tract on this machine.
#[derive(Debug, Clone)]
pub struct ImageEncoder {
    plan: Plan,
    /// Shared by clones: one of them runs planned at a time.
    memory: Arc<RunMemory>,
    input_side: u32,
    pixel_mean: [f32; 3],
    pixel_std: [f32; 3],
    precision: Precision,
    compute: Compute,
}

impl ImageEncoder {
    /// Loads the encoder of the `precision` variant of `manifest`, to compute in `compute`.
    ///
    /// # Errors
    /// The variant or its file is missing or broken.
    pub fn load(manifest: &Manifest, precision: Precision, compute: Compute) -> Result<ImageEncoder> {
        let path = manifest.file_path(&manifest.variant(precision)?.encoder)?;
        let side = manifest.image_size;
        let plan = session::load(
            &path,
            &[("image", session::f32_input(&[1, 3, side, side]))],
            &["image_embeddings"],
            compute,
        )
        .context("loading the image encoder")?;
        Ok(ImageEncoder {
            plan,
            memory: Arc::default(),
            input_side: side as u32,
            pixel_mean: manifest.pixel_mean,
            pixel_std: manifest.pixel_std,
            precision,
            compute,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// The first half of [`Encoder::embed`]: the plan's input tensor
    /// for `image` (resized, normalized, padded) and how the image maps onto it.
    ///
    /// # Errors
    /// The image is empty.
    pub fn input(&self, image: &RgbImage) -> Result<(Tensor, Geometry)> {
        let geometry = Geometry::new(Size::new(image.width(), image.height()), self.input_side);
        let input = encoder_input(image, &geometry, self.pixel_mean, self.pixel_std)?;
        Ok((Tensor::from(input), geometry))
    }

    /// The second half of [`Encoder::embed`]: runs the plan alone on an
    /// input from [`ImageEncoder::input`].
    ///
    /// # Errors
    /// The model fails.
    pub fn embed_input(&self, input: Tensor, geometry: Geometry) -> Result<Embedding> {
        self.memory.run(|| self.run_plan(input, geometry))
    }

    fn run_plan(&self, input: Tensor, geometry: Geometry) -> Result<Embedding> {
        let mut outputs = self.plan.run(self.plan_inputs(input)?).context("running the image encoder")?;
        let features = match self.compute {
            Compute::F32 => outputs.remove(0).into_arc_tensor(),
            Compute::F16 => Arc::new(outputs[0].cast_to::<f32>()?.into_owned()),
        };
        Ok(Embedding { features, geometry, frame: Arc::default() })
    }

    /// How the last run's large tensors were served (docs/PERFORMANCE.md#memory).
    pub fn memory_plan(&self) -> MemoryPlanStats {
        self.memory.stats()
    }

    /// Runs the plan on an input from [`ImageEncoder::input`] as
    /// [`ImageEncoder::embed_input`] does, timing each of tract's nodes.
    ///
    /// # Errors
    /// The model fails.
    pub fn profile_input(&self, input: Tensor) -> Result<Vec<NodeCost>> {
        profile(&self.plan, self.plan_inputs(input)?).context("profiling the image encoder")
    }

    /// The plan's inputs for an input from [`ImageEncoder::input`]: in f16 when it computes in f16.
    fn plan_inputs(&self, input: Tensor) -> Result<TVec<TValue>> {
        let input = match self.compute {
            Compute::F32 => input,
            Compute::F16 => input.cast_to::<f16>()?.into_owned(),
        };
        Ok(tvec![input.into_tvalue()])
    }
}

impl Encoder for ImageEncoder {
    /// Runs the plan on an RGB image of any size.
    ///
    /// # Errors
    /// The image is empty, or the model fails or returns an unexpected shape.
    fn embed(&self, image: &RgbImage) -> Result<Embedding> {
        let geometry = Geometry::new(Size::new(image.width(), image.height()), self.input_side);
        // Resized outside the plan, as its sizes follow the image's. The
        // input (12.6 MB) is planned: freed within the run, its place serves later tensors.
        let resized = resized(image, &geometry)?;
        self.memory.run(|| {
            let input = padded_input(&resized, self.input_side, self.pixel_mean, self.pixel_std);
            self.run_plan(Tensor::from(input), geometry)
        })
    }

    fn name(&self) -> String {
        self.compute.variant_key(self.precision)
    }
}
