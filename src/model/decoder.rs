//! The prompt encoder + mask decoder: one light pass per prompt against a
//! cached embedding.
//!
//! The decoder runs as two plans (see `models/split_decoder.py`): a
//! per-frame part that only depends on the embedding (and a mask input),
//! cached in the [`Embedding`], and a per-prompt part that takes a batch of
//! prompts with the same number of points.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use anyhow::{ensure, Context, Result};
use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis, Ix3};
use tract_onnx::prelude::*;

use super::encoder::{Embedding, FrameTensors};
use super::memory_plan::{MemoryPlanStats, RunMemories};
use super::manifest::{Manifest, Variant};
use super::mask::Mask;
use super::postprocess::upscale;
use super::preprocess::Geometry;
use super::prompt::{LowResMask, Prompt};
use super::compute::Compute;
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

/// The decoder's raw output for one prompt: scores and low-resolution
/// logits of the 4 tokens, before any upscaling.
#[derive(Debug, Clone)]
pub struct LowResMasks {
    /// The model's predicted IoU of each token's mask.
    pub ious: [f32; TOKENS],
    /// `[TOKENS, m, m]` logits.
    pub logits: Array3<f32>,
    ambiguous: bool,
}

impl LowResMasks {
    /// The token SAM's rule picks: the best multimask token for a lone
    /// point, the single-mask token otherwise.
    pub fn chosen_token(&self) -> usize {
        if self.ambiguous {
            (1..TOKENS).reduce(|best, t| if self.ious[t] > self.ious[best] { t } else { best }).unwrap_or(0)
        } else {
            0
        }
    }

    /// One token's candidate at original resolution: upscaling only the mask
    /// a caller uses saves 3/4 of the postprocessing.
    pub fn candidate(&self, token: usize, geometry: &Geometry) -> Candidate {
        let logits = self.logits.index_axis(Axis(0), token);
        let up = upscale(logits, geometry);
        Candidate {
            token,
            mask: up.mask,
            predicted_iou: self.ious[token],
            stability: up.stability,
            low_res: LowResMask(logits.to_owned()),
        }
    }

    /// All 4 candidates at original resolution.
    pub fn upscale(&self, geometry: &Geometry) -> Masks {
        let candidates = (0..TOKENS).map(|token| self.candidate(token, geometry)).collect();
        Masks { candidates, chosen: self.chosen_token() }
    }
}

/// A loaded prompt encoder + mask decoder.
#[derive(Debug, Clone)]
pub struct MaskDecoder {
    /// Embedding (+ mask input) -> the image side of the first layer.
    frame: Plan,
    /// Frame tensors + a batch of point sets -> scores and logits.
    points: Plan,
    /// By batch shape: a daemon's prompts mostly have one or two.
    points_memory: Arc<RunMemories>,
    mask_side: usize,
}

impl MaskDecoder {
    /// Loads the decoder files of `variant`.
    pub fn load(manifest: &Manifest, variant: &Variant) -> Result<MaskDecoder> {
        let [c, h, w] = manifest.embedding_shape;
        let m = manifest.mask_input_size;
        let frame = session::load(
            &manifest.file_path(&variant.decoder_frame)?,
            &[
                ("image_embeddings", session::f32_input(&[1, c, h, w])),
                ("mask_input", session::f32_input(&[1, 1, m, m])),
                ("has_mask_input", session::f32_input(&[1])),
            ],
            &FRAME_OUTPUTS,
            Compute::F32,
        )
        .context("loading the mask decoder's per-frame part")?;
        let points = session::load(
            &manifest.file_path(&variant.decoder_points)?,
            &[
                ("keys", None),
                ("t2i_keys", None),
                ("t2i_values", None),
                ("i2t_queries", None),
                // Declared [prompts, num_points, 2] and [prompts, num_points].
                ("point_coords", None),
                ("point_labels", None),
            ],
            &["iou_predictions", "low_res_masks"],
            Compute::F32,
        )
        .context("loading the mask decoder's per-prompt part")?;
        Ok(MaskDecoder { frame, points, points_memory: Arc::new(RunMemories::new(PLANNED_SHAPES)), mask_side: m })
    }

    /// How the last decodes of the prompt shapes run most recently had
    /// their tensors served, most recent first (docs/PERFORMANCE.md#memory).
    pub fn memory_plans(&self) -> Vec<MemoryPlanStats> {
        self.points_memory.stats()
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
        let mut all = self.decode_batch(embedding, std::slice::from_ref(prompt))?;
        Ok(all.remove(0))
    }

    /// Decodes several prompts against one embedding: prompts with the same
    /// number of points (boxes count 2, a prompt without a box 1 more) and
    /// no mask input run in batches of up to `MAX_BATCH`; a prompt with a
    /// mask input runs alone. All share the embedding's per-frame part.
    /// The masks are those [`MaskDecoder::decode`] gives for each prompt.
    ///
    /// # Errors
    /// A prompt is invalid for the embedding's image (the message names
    /// which), or the model fails.
    pub fn decode_batch(&self, embedding: &Embedding, prompts: &[Prompt]) -> Result<Vec<Masks>> {
        Ok(self
            .low_res_batch(embedding, prompts)?
            .iter()
            .map(|low_res| low_res.upscale(&embedding.geometry))
            .collect())
    }

    /// [`MaskDecoder::decode_batch`] without upscaling: the decoder's
    /// low-resolution output per prompt, in order.
    ///
    /// # Errors
    /// As [`MaskDecoder::decode_batch`].
    pub fn low_res_batch(&self, embedding: &Embedding, prompts: &[Prompt]) -> Result<Vec<LowResMasks>> {
        let geometry = &embedding.geometry;
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut alone = Vec::new();
        for (i, prompt) in prompts.iter().enumerate() {
            prompt.validate(geometry.original).with_context(|| format!("prompt {i}"))?;
            prompt.validate_mask_input(self.mask_side).with_context(|| format!("prompt {i}"))?;
            match prompt.mask_input {
                Some(_) => alone.push(i),
                None => groups.entry(sparse_len(prompt)).or_default().push(i),
            }
        }
        let mut out: Vec<Option<LowResMasks>> = vec![None; prompts.len()];
        let frame = if groups.is_empty() { None } else { Some(self.frame_tensors(embedding)?) };
        for members in groups.values().flat_map(|m| m.chunks(MAX_BATCH)) {
            let batch: Vec<&Prompt> = members.iter().map(|&i| &prompts[i]).collect();
            let frame = frame.as_ref().expect("computed for the groups");
            for (&i, low_res) in members.iter().zip(self.run_points(frame, &batch, geometry)?) {
                out[i] = Some(low_res);
            }
        }
        for i in alone {
            let prompt = &prompts[i];
            let frame = self.run_frame(embedding, prompt.mask_input.as_ref())?;
            out[i] = self.run_points(&frame, &[prompt], geometry)?.pop();
        }
        Ok(out.into_iter().map(|o| o.expect("every prompt decoded")).collect())
    }

    /// Runs the per-frame part for `embedding` and keeps its tensors with it,
    /// unless they are kept already: call it where frames are encoded so that
    /// prompts only pay their own part.
    ///
    /// # Errors
    /// The model fails.
    pub fn prepare(&self, embedding: &Embedding) -> Result<()> {
        self.publish_then_prepare(embedding, || true).map(drop)
    }

    /// [`MaskDecoder::prepare`] after `publish`, which makes `embedding`
    /// reachable by prompts (a cache of frames) and returns whether it did.
    /// `publish` runs while the slot of the embedding's per-frame tensors
    /// is held: prompts for it then wait for the tensors rather than
    /// compute their own, and what `publish` lets go of (an older frame's
    /// tensors) is freed before these are made. Returns what `publish`
    /// returned; nothing runs if it was false.
    ///
    /// # Errors
    /// The model fails (the embedding was published all the same).
    pub fn publish_then_prepare(&self, embedding: &Embedding, publish: impl FnOnce() -> bool) -> Result<bool> {
        let mut kept = embedding.frame.lock().unwrap_or_else(PoisonError::into_inner);
        if !publish() {
            return Ok(false);
        }
        if kept.is_none() {
            *kept = Some(Arc::new(self.run_frame(embedding, None)?));
        }
        Ok(true)
    }

    /// The per-frame tensors kept by [`MaskDecoder::prepare`], or computed for this call.
    fn frame_tensors(&self, embedding: &Embedding) -> Result<Arc<FrameTensors>> {
        let kept = embedding.frame.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match kept {
            Some(frame) => Ok(frame),
            None => Ok(Arc::new(self.run_frame(embedding, None)?)),
        }
    }

    fn run_frame(&self, embedding: &Embedding, mask_input: Option<&LowResMask>) -> Result<FrameTensors> {
        let m = self.mask_side;
        let (mask, has_mask) = match mask_input {
            Some(LowResMask(logits)) => (logits.clone(), 1.0f32),
            None => (Array2::zeros((m, m)), 0.0),
        };
        let mask = Tensor::from(mask.into_shape_with_order((1, 1, m, m))?);
        let outputs = self
            .frame
            .run(tvec![embedding.features.clone().into_tvalue(), mask.into_tvalue(), tensor1(&[has_mask]).into_tvalue()])
            .context("running the mask decoder's per-frame part")?;
        ensure!(outputs.len() == FRAME_OUTPUTS.len(), "the per-frame decoder returned {} outputs", outputs.len());
        Ok(FrameTensors(outputs.into_iter().map(|t| t.into_arc_tensor()).collect()))
    }

    /// One run of the per-prompt part for prompts with equal point counts.
    fn run_points(&self, frame: &FrameTensors, prompts: &[&Prompt], geometry: &Geometry) -> Result<Vec<LowResMasks>> {
        let mut coords = Vec::new();
        let mut labels = Vec::new();
        for prompt in prompts {
            let (c, l) = prompt.sparse_inputs(geometry);
            coords.extend(c.into_iter().flatten());
            labels.extend(l);
        }
        let (b, n) = (prompts.len(), labels.len() / prompts.len());
        let mut inputs: TVec<TValue> = frame.0.iter().map(|t| t.clone().into_tvalue()).collect();
        inputs.push(Tensor::from_shape(&[b, n, 2], &coords)?.into_tvalue());
        inputs.push(Tensor::from_shape(&[b, n], &labels)?.into_tvalue());
        let memory = self.points_memory.for_shape(&[b, n]);
        let outputs = memory.run(|| self.points.run(inputs)).context("running the mask decoder")?;
        let (ious, logits) = output_views(&outputs, b, self.mask_side)?;
        Ok(prompts
            .iter()
            .enumerate()
            .map(|(i, prompt)| LowResMasks {
                ious: std::array::from_fn(|t| ious[[i, t]]),
                logits: logits.index_axis(Axis(0), i).to_owned(),
                ambiguous: prompt.is_ambiguous(),
            })
            .collect())
    }

    /// The first step of [`MaskDecoder::decode`]: the single-prompt inputs
    /// of `decoder.onnx` (`image_embeddings`, `point_coords`,
    /// `point_labels`, `mask_input`, `has_mask_input`), which
    /// [`MaskDecoder::run`] takes.
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

    /// The second step of [`MaskDecoder::decode`]: both parts of the
    /// decoder on inputs from [`MaskDecoder::inputs`], returning
    /// `iou_predictions` and `low_res_masks` as `decoder.onnx` does.
    ///
    /// # Errors
    /// The inputs are not 5 tensors of `decoder.onnx`'s shapes, or the model fails.
    pub fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>> {
        ensure!(inputs.len() == 5, "the mask decoder takes 5 inputs, got {}", inputs.len());
        let [embedding, coords, labels, mask_input, has_mask]: [TValue; 5] =
            inputs.into_iter().collect::<Vec<_>>().try_into().expect("5 inputs");
        let outputs = self
            .frame
            .run(tvec![embedding, mask_input, has_mask])
            .context("running the mask decoder's per-frame part")?;
        let mut inputs: TVec<TValue> = outputs;
        inputs.extend([coords, labels]);
        self.points.run(inputs).context("running the mask decoder")
    }

    /// The last step of [`MaskDecoder::decode`]: upscales the outputs of
    /// [`MaskDecoder::run`] to masks at original resolution and picks the default one.
    ///
    /// # Errors
    /// The outputs do not have the decoder's shapes.
    pub fn masks(&self, outputs: &[TValue], geometry: &Geometry, prompt: &Prompt) -> Result<Masks> {
        let (ious, logits) = output_views(outputs, 1, self.mask_side)?;
        let logits: ArrayView3<f32> = logits.index_axis(Axis(0), 0).into_dimensionality::<Ix3>()?;
        let low_res = LowResMasks {
            ious: std::array::from_fn(|t| ious[[0, t]]),
            logits: logits.to_owned(),
            ambiguous: prompt.is_ambiguous(),
        };
        Ok(low_res.upscale(geometry))
    }
}

/// `iou_predictions` `[b, TOKENS]` and `low_res_masks` `[b, TOKENS, m, m]`
/// of a per-prompt run, checked.
fn output_views(outputs: &[TValue], b: usize, m: usize) -> Result<(ArrayView2<'_, f32>, ndarray::ArrayView4<'_, f32>)> {
    ensure!(outputs.len() == 2, "the mask decoder returned {} outputs, expected 2", outputs.len());
    let ious = outputs[0].to_plain_array_view::<f32>()?;
    let low_res = outputs[1].to_plain_array_view::<f32>()?;
    ensure!(
        ious.shape() == [b, TOKENS] && low_res.shape() == [b, TOKENS, m, m],
        "the mask decoder returned shapes {:?} and {:?}, expected [{b}, {TOKENS}] and [{b}, {TOKENS}, {m}, {m}]",
        ious.shape(),
        low_res.shape()
    );
    Ok((ious.into_dimensionality()?, low_res.into_dimensionality()?))
}

/// Most prompts in one run of the per-prompt plan. The plan takes any
/// batch, but tract 0.23.9 on x86-64 ran a batch of 8 single-point prompts
/// at 1.6x the cost per prompt of 8 lone runs (thread CPU time, see
/// docs/PERFORMANCE.md): lone runs it is, until a measurement says otherwise.
const MAX_BATCH: usize = 1;

/// Prompt shapes (number of points) whose memory plans are kept: each
/// arena holds a decode's tensors, about 20 MB (docs/PERFORMANCE.md#memory).
const PLANNED_SHAPES: usize = 2;

/// Number of sparse inputs of `prompt` (see `Prompt::sparse_inputs`): its
/// points, then 2 box corners or 1 padding point.
fn sparse_len(prompt: &Prompt) -> usize {
    prompt.points.len() + if prompt.bbox.is_some() { 2 } else { 1 }
}

/// Outputs of the per-frame part, inputs of the per-prompt part.
const FRAME_OUTPUTS: [&str; 4] = ["keys", "t2i_keys", "t2i_values", "i2t_queries"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BoxPrompt, Point, Size};

    /// Logits of 4 tokens on an 8x8 grid: token t is positive on its first
    /// t + 1 rows, so each token's mask is a band of a different height.
    fn bands(ious: [f32; TOKENS], ambiguous: bool) -> LowResMasks {
        let logits = Array3::from_shape_fn((TOKENS, 8, 8), |(t, y, _)| if y <= t { 5.0 } else { -5.0 });
        LowResMasks { ious, logits, ambiguous }
    }

    /// An 8x8 image whose model input is the 8x8 logit grid itself.
    fn geometry() -> Geometry {
        Geometry::new(Size::new(8, 8), 8)
    }

    #[test]
    fn a_lone_point_picks_the_best_multimask_token_and_others_the_single_mask() {
        assert_eq!(bands([0.9, 0.2, 0.8, 0.5], true).chosen_token(), 2, "token 0 is never a multimask candidate");
        assert_eq!(bands([0.1, 0.7, 0.7, 0.3], true).chosen_token(), 1, "a tie keeps the first");
        assert_eq!(bands([0.1, 0.2, 0.8, 0.5], false).chosen_token(), 0);
    }

    #[test]
    fn candidates_are_upscaled_with_their_scores_and_logits() {
        let low_res = bands([0.5, 0.6, 0.9, 0.7], true);
        let masks = low_res.upscale(&geometry());
        assert_eq!(masks.candidates.len(), TOKENS);
        assert_eq!(masks.chosen().token, 2);
        assert_eq!(masks.best_multimask().token, 2);
        assert_eq!(masks.single().token, 0);
        for (t, candidate) in masks.candidates.iter().enumerate() {
            assert_eq!(candidate.mask.area(), 8 * (t as u64 + 1), "token {t}");
            assert_eq!(candidate.predicted_iou, low_res.ious[t]);
            assert_eq!(candidate.low_res.0, low_res.logits.index_axis(Axis(0), t));
            assert_eq!(candidate.stability, 1.0, "logits of +-5 never flip within the offset");
        }
        let chosen = low_res.candidate(low_res.chosen_token(), &geometry());
        assert_eq!(chosen.mask.area(), masks.chosen().mask.area());
    }

    #[test]
    fn sparse_inputs_count_box_corners_or_a_padding_point() {
        let point = Prompt::from_points(vec![Point::foreground(1.0, 1.0)]);
        assert_eq!(sparse_len(&point), 2);
        let boxed = Prompt { bbox: Some(BoxPrompt { x0: 0.0, y0: 0.0, x1: 4.0, y1: 4.0 }), ..point.clone() };
        assert_eq!(sparse_len(&boxed), 3);
        assert_eq!(sparse_len(&boxed), boxed.sparse_inputs(&geometry()).1.len());
        assert_eq!(sparse_len(&point), point.sparse_inputs(&geometry()).1.len());
    }

    #[test]
    fn decoder_outputs_of_the_wrong_shape_are_named() {
        let ious = Tensor::zero::<f32>(&[1, TOKENS]).unwrap().into_tvalue();
        let good = Tensor::zero::<f32>(&[1, TOKENS, 8, 8]).unwrap().into_tvalue();
        assert!(output_views(&[ious.clone(), good.clone()], 1, 8).is_ok());
        let err = output_views(&[ious.clone(), good.clone()], 1, 16).unwrap_err().to_string();
        assert!(err.contains("[1, 4, 8, 8]") && err.contains("expected [1, 4] and [1, 4, 16, 16]"), "{err}");
        let err = output_views(&[ious], 1, 8).unwrap_err().to_string();
        assert!(err.contains("returned 1 outputs"), "{err}");
    }
}
