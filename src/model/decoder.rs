//! The prompt encoder + mask decoder: one light pass per prompt against a
//! cached embedding.

use anyhow::{ensure, Context, Result};
use ndarray::{Array2, Array3, ArrayView2, Ix3};
use tract_onnx::prelude::*;

use super::encoder::Embedding;
use super::manifest::Manifest;
use super::mask::Mask;
use super::postprocess::upscale;
use super::preprocess::Geometry;
use super::prompt::{LowResMask, Prompt};
use super::session::{self, Plan};

/// Number of decoder outputs: the single-mask token, then 3 multimask tokens.
pub const TOKENS: usize = 4;

/// One decoder output at original resolution.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Decoder output index: 0 is the single-mask token, 1..=3 the multimask ones.
    pub token: usize,
    pub mask: Mask,
    /// The model's own estimate of the mask's IoU.
    pub predicted_iou: f32,
    /// Fraction of the mask that survives moving the logit threshold by
    /// +/- `STABILITY_OFFSET`.
    pub stability: f32,
    /// The logits, to feed back as `Prompt::mask_input`.
    pub low_res: LowResMask,
}

/// All decoder outputs for one prompt and the one SAM's rule picks.
#[derive(Debug, Clone)]
pub struct Masks {
    /// Indexed by token.
    pub candidates: Vec<Candidate>,
    chosen: usize,
}

impl Masks {
    /// The default answer: the best multimask candidate for a lone point,
    /// the single-mask output otherwise (see `Prompt::is_ambiguous`).
    pub fn chosen(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }

    /// The 3 multimask candidates.
    pub fn multimask(&self) -> &[Candidate] {
        &self.candidates[1..]
    }

    /// The multimask candidate with the highest predicted IoU.
    pub fn best_multimask(&self) -> &Candidate {
        best_by_iou(self.multimask())
    }

    /// The single-mask token's output.
    pub fn single(&self) -> &Candidate {
        &self.candidates[0]
    }
}

fn best_by_iou(candidates: &[Candidate]) -> &Candidate {
    candidates
        .iter()
        .reduce(|best, c| if c.predicted_iou > best.predicted_iou { c } else { best })
        .expect("at least one candidate")
}

/// A loaded prompt encoder + mask decoder.
#[derive(Debug, Clone)]
pub struct MaskDecoder {
    plan: Plan,
    mask_side: usize,
}

impl MaskDecoder {
    /// Loads the decoder ONNX file for `manifest`.
    pub fn load(manifest: &Manifest, path: &std::path::Path) -> Result<MaskDecoder> {
        let [c, h, w] = manifest.embedding_shape;
        let m = manifest.mask_input_size;
        let plan = session::load(
            path,
            &[
                ("image_embeddings", session::f32_input(&[1, c, h, w])),
                // Declared [1, num_points, 2] and [1, num_points]: any number of points.
                ("point_coords", None),
                ("point_labels", None),
                ("mask_input", session::f32_input(&[1, 1, m, m])),
                ("has_mask_input", session::f32_input(&[1])),
            ],
            &["iou_predictions", "low_res_masks"],
        )
        .context("loading the mask decoder")?;
        Ok(MaskDecoder { plan, mask_side: m })
    }

    /// Side of the low-resolution masks this decoder reads and writes.
    pub fn mask_side(&self) -> usize {
        self.mask_side
    }

    /// Decodes `prompt` against `embedding`.
    ///
    /// # Errors
    /// The prompt is invalid for the embedding's image (see
    /// `Prompt::validate`), or the model fails.
    pub fn decode(&self, embedding: &Embedding, prompt: &Prompt) -> Result<Masks> {
        let outputs = self.run(self.inputs(embedding, prompt)?)?;
        self.masks(&outputs, &embedding.geometry, prompt)
    }

    /// The first step of [`MaskDecoder::decode`]: the plan's inputs, in its
    /// order `image_embeddings`, `point_coords`, `point_labels`, `mask_input`,
    /// `has_mask_input`.
    ///
    /// # Errors
    /// The prompt is invalid for the embedding's image.
    pub fn inputs(&self, embedding: &Embedding, prompt: &Prompt) -> Result<TVec<TValue>> {
        let geometry = &embedding.geometry;
        prompt.validate(geometry.original)?;
        prompt.validate_mask_input(self.mask_side)?;
        let (coords, labels) = prompt.sparse_inputs(geometry);
        let n = coords.len();
        let coords = Tensor::from_shape(&[1, n, 2], coords.as_flattened())?;
        let labels = Tensor::from_shape(&[1, n], &labels)?;
        let m = self.mask_side;
        let (mask_input, has_mask) = match &prompt.mask_input {
            Some(LowResMask(logits)) => (logits.clone(), 1.0f32),
            None => (Array2::zeros((m, m)), 0.0),
        };
        let mask_input = Tensor::from(mask_input.into_shape_with_order((1, 1, m, m))?);
        Ok(tvec![
            embedding.features.clone().into_tvalue(),
            coords.into_tvalue(),
            labels.into_tvalue(),
            mask_input.into_tvalue(),
            tensor1(&[has_mask]).into_tvalue(),
        ])
    }

    /// The second step of [`MaskDecoder::decode`]: the plan alone, returning
    /// `iou_predictions` and `low_res_masks`.
    ///
    /// # Errors
    /// The model fails.
    pub fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>> {
        self.plan.run(inputs).context("running the mask decoder")
    }

    /// The last step of [`MaskDecoder::decode`]: upscales the plan's outputs
    /// to masks at original resolution and picks the default one.
    ///
    /// # Errors
    /// The outputs do not have the decoder's shapes.
    pub fn masks(&self, outputs: &[TValue], geometry: &Geometry, prompt: &Prompt) -> Result<Masks> {
        let m = self.mask_side;
        ensure!(outputs.len() == 2, "the mask decoder returned {} outputs, expected 2", outputs.len());
        let ious = outputs[0].to_plain_array_view::<f32>()?;
        let low_res = outputs[1].to_plain_array_view::<f32>()?;
        ensure!(
            ious.shape() == [1, TOKENS] && low_res.shape() == [1, TOKENS, m, m],
            "the mask decoder returned shapes {:?} and {:?}, expected [1, {TOKENS}] and [1, {TOKENS}, {m}, {m}]",
            ious.shape(),
            low_res.shape()
        );
        let low_res: Array3<f32> =
            low_res.index_axis(ndarray::Axis(0), 0).into_dimensionality::<Ix3>()?.to_owned();
        let candidates = (0..TOKENS)
            .map(|token| {
                let logits: ArrayView2<f32> = low_res.index_axis(ndarray::Axis(0), token);
                let up = upscale(logits, geometry);
                Candidate {
                    token,
                    mask: up.mask,
                    predicted_iou: ious[[0, token]],
                    stability: up.stability,
                    low_res: LowResMask(logits.to_owned()),
                }
            })
            .collect::<Vec<_>>();
        let chosen = if prompt.is_ambiguous() { best_by_iou(&candidates[1..]).token } else { 0 };
        Ok(Masks { candidates, chosen })
    }
}
