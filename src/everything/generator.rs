//! The automatic mask generator: a grid of single-point prompts per crop,
//! decoded against the crop's embedding, filtered, and deduplicated, in the
//! order of SAM's `SamAutomaticMaskGenerator`.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use image::RgbImage;
use thiserror::Error;

use super::crops::{crop_boxes, CropBox};
use super::filter::{is_stable, near_crop_edge, passes_iou};
use super::grid::{points_per_side, unit_grid};
use super::nms::{nms, nms_box, rle_iou};
use super::regions::{remove_small_regions, Region};
use super::settings::Settings;
use crate::model::{Embedding, LowResMasks, Mask, PixelBox, Point, Prompt, Rle, Sam, Size, TOKENS};

/// One mask found in the image, in the image's own frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposedMask {
    /// The mask at image resolution, run-length encoded (COCO order).
    pub rle: Rle,
    /// Tightest box around the mask (inclusive ends).
    pub bbox: PixelBox,
    /// Pixels in the mask.
    pub area: u64,
    /// The model's estimate of the mask's IoU.
    pub predicted_iou: f32,
    /// Fraction of the mask that survives moving the logit threshold by
    /// +/- `STABILITY_OFFSET`.
    pub stability: f32,
    /// The grid point whose prompt produced the mask, in image pixels.
    pub point: [f64; 2],
    /// The crop whose embedding the mask was decoded against.
    pub crop: CropBox,
}

impl ProposedMask {
    /// The mask as pixels.
    ///
    /// # Errors
    /// Never for masks from [`generate`]; the RLE is checked while decoding.
    pub fn mask(&self) -> Result<Mask> {
        self.rle.to_mask()
    }
}

/// The error a run ends with when its progress callback breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("automatic mask generation was cancelled")]
pub struct Cancelled;

/// How far a run has got, reported after every batch of prompts and every crop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub crops_done: usize,
    pub crops: usize,
    pub prompts_done: usize,
    pub prompts: usize,
    /// Masks that passed the quality and crop-edge filters so far, before
    /// duplicates are removed.
    pub candidates: usize,
    /// Time spent on the prompts so far: decoder runs, upscaling and filters.
    pub decoding: Duration,
    /// Time spent embedding crops (layer 0 reuses the given embedding).
    pub embedding: Duration,
}

/// Proposes masks for everything in the image behind `embedding`, decoding
/// only against that embedding (no crop layers), and reports `progress`
/// after each batch. Masks come by descending predicted IoU.
///
/// `progress` returning `Break` stops the run at once: a caller can cancel
/// it, or do other work between batches (the daemon answers prompts there).
///
/// # Errors
/// Invalid settings, crop layers asked for (they need the image: see
/// [`generate_with_crops`]), the model fails, or [`Cancelled`].
pub fn generate(
    sam: &Sam,
    embedding: &Embedding,
    settings: &Settings,
    progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<Vec<ProposedMask>> {
    ensure!(
        settings.crop_layers == 0,
        "{} crop layers need the image to embed the crops: use generate_with_crops",
        settings.crop_layers
    );
    run(sam, embedding, None, settings, progress)
}

/// [`generate`] with SAM's crop layers: every crop beyond the whole image is
/// cut from `image` and embedded on its own. `embedding` must be `image`'s.
/// Masks found in several crops are deduplicated preferring the smaller
/// crop, so masks come ordered by crop size, then predicted IoU.
///
/// # Errors
/// Invalid settings, an embedding of another image size, the model fails,
/// or [`Cancelled`].
pub fn generate_with_crops(
    sam: &Sam,
    image: &RgbImage,
    embedding: &Embedding,
    settings: &Settings,
    progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<Vec<ProposedMask>> {
    let size = embedding.geometry.original;
    ensure!(
        (image.width(), image.height()) == (size.width, size.height),
        "the embedding is of a {}x{} image, the image is {}x{}",
        size.width,
        size.height,
        image.width(),
        image.height()
    );
    run(sam, embedding, Some(image), settings, progress)
}

fn run(
    sam: &Sam,
    embedding: &Embedding,
    image: Option<&RgbImage>,
    settings: &Settings,
    mut progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<Vec<ProposedMask>> {
    settings.validate()?;
    // Its own per-frame tensors: a daemon drops the frame's once a newer
    // frame comes, and this job's hundreds of decodes would each recompute them.
    let embedding = &embedding.detached();
    sam.prepare(embedding)?;
    let size = embedding.geometry.original;
    let crops = crop_boxes(size, settings.crop_layers, settings.crop_overlap_ratio);
    let grids: Vec<Vec<[f64; 2]>> = (0..=settings.crop_layers)
        .map(|layer| unit_grid(points_per_side(settings.points_per_side, layer, settings.crop_points_downscale)))
        .collect();
    let mut state = Progress {
        crops: crops.len(),
        prompts: crops.iter().map(|c| grids[c.layer].len()).sum(),
        ..Progress::default()
    };
    report(&mut progress, &state)?;
    let mut found = Vec::new();
    for crop in &crops {
        let cropped;
        let crop_embedding = if crop.layer == 0 {
            embedding
        } else {
            let image = image.context("crop layers need the image")?;
            let started = Instant::now();
            let pixels = image::imageops::crop_imm(image, crop.x0, crop.y0, crop.width(), crop.height()).to_image();
            cropped = sam.embed(&pixels).with_context(|| format!("embedding crop {:?}", crop.xywh()))?;
            state.embedding += started.elapsed();
            &cropped
        };
        let mut batches = Batches { state: &mut state, progress: &mut progress };
        found.extend(process_crop(sam, crop_embedding, crop, &grids[crop.layer], size, settings, &mut batches)?);
        state.crops_done += 1;
        report(&mut progress, &state)?;
    }
    if crops.len() > 1 {
        // Prefer masks from smaller crops, as SAM does: they saw the object at a higher resolution.
        let scores: Vec<f32> = found.iter().map(|m| 1.0 / m.crop.area() as f32).collect();
        found = deduplicate(found, &scores, settings.crop_nms_iou);
    }
    if settings.min_area > 0 {
        found = clean_small_regions(found, settings)?;
    }
    Ok(found)
}

fn report(progress: &mut impl FnMut(&Progress) -> ControlFlow<()>, state: &Progress) -> Result<()> {
    match progress(state) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Cancelled.into()),
    }
}

/// The running progress and where to report it.
struct Batches<'a, F: FnMut(&Progress) -> ControlFlow<()>> {
    state: &'a mut Progress,
    progress: &'a mut F,
}

/// SAM's `_process_crop` + `_process_batch`: the crop's grid in batches,
/// every multimask candidate filtered, then NMS by predicted IoU.
fn process_crop<F: FnMut(&Progress) -> ControlFlow<()>>(
    sam: &Sam,
    embedding: &Embedding,
    crop: &CropBox,
    grid: &[[f64; 2]],
    image: Size,
    settings: &Settings,
    batches: &mut Batches<F>,
) -> Result<Vec<ProposedMask>> {
    let (w, h) = (f64::from(crop.width()), f64::from(crop.height()));
    // A point names a pixel (0..=width-1): SAM's last cell centre lies
    // beyond the last pixel only in a crop narrower than two cells.
    let points: Vec<[f64; 2]> = grid.iter().map(|&[u, v]| [(u * w).min(w - 1.0), (v * h).min(h - 1.0)]).collect();
    let mut found = Vec::new();
    for batch in points.chunks(settings.points_per_batch) {
        let prompts: Vec<Prompt> = batch
            .iter()
            .map(|&[x, y]| Prompt::from_points(vec![Point::foreground(x as f32, y as f32)]))
            .collect();
        let started = Instant::now();
        let decoded = decode_each(sam, embedding, &prompts)?;
        for (&[x, y], low_res) in batch.iter().zip(&decoded) {
            // SAM's generator always takes the 3 multimask outputs of a lone point.
            for token in 1..TOKENS {
                // Upscale only the masks that pass the pixel-free filter.
                if !passes_iou(low_res.ious[token], settings.pred_iou_thresh) {
                    continue;
                }
                let candidate = low_res.candidate(token, &embedding.geometry);
                let area = candidate.mask.area();
                if !is_stable(candidate.stability, area, settings.stability_thresh) {
                    continue;
                }
                // Empty masks are never proposed (SAM keeps them only with the stability filter off).
                let Some(local) = candidate.mask.bbox() else { continue };
                let bbox = PixelBox { x0: local.x0 + crop.x0, y0: local.y0 + crop.y0, x1: local.x1 + crop.x0, y1: local.y1 + crop.y0 };
                if near_crop_edge(&bbox, crop, image) {
                    continue;
                }
                found.push(ProposedMask {
                    rle: uncrop(&candidate.mask, crop, image).to_rle(),
                    bbox,
                    area,
                    predicted_iou: candidate.predicted_iou,
                    stability: candidate.stability,
                    point: [x + f64::from(crop.x0), y + f64::from(crop.y0)],
                    crop: *crop,
                });
                batches.state.candidates += 1;
            }
        }
        batches.state.decoding += started.elapsed();
        batches.state.prompts_done += batch.len();
        report(batches.progress, batches.state)?;
    }
    let scores: Vec<f32> = found.iter().map(|m| m.predicted_iou).collect();
    Ok(deduplicate(found, &scores, settings.box_nms_iou))
}

/// Decodes each prompt against `embedding`, in order, one decoder run per
/// prompt: tract runs a batch of prompts slower per prompt than single ones
/// (docs/PERFORMANCE.md), so `low_res_batch` gets one at a time.
fn decode_each(sam: &Sam, embedding: &Embedding, prompts: &[Prompt]) -> Result<Vec<LowResMasks>> {
    prompts
        .iter()
        .map(|prompt| Ok(sam.low_res_batch(embedding, std::slice::from_ref(prompt))?.remove(0)))
        .collect()
}

/// A mask decoded in `crop`, placed in the whole image.
fn uncrop(mask: &Mask, crop: &CropBox, image: Size) -> Mask {
    if *crop == CropBox::whole(image) {
        return mask.clone();
    }
    Mask::from_fn(image.width, image.height, |x, y| {
        (crop.x0..crop.x1).contains(&x) && (crop.y0..crop.y1).contains(&y) && mask.get(x - crop.x0, y - crop.y0)
    })
}

/// NMS over the masks' boxes, keeping the survivors by descending score.
fn deduplicate(found: Vec<ProposedMask>, scores: &[f32], threshold: f32) -> Vec<ProposedMask> {
    let boxes: Vec<_> = found.iter().map(|m| nms_box(&m.bbox)).collect();
    let keep = nms(&boxes, scores, threshold, |a, b| rle_iou(&found[a].rle, &found[b].rle));
    let mut slots: Vec<Option<ProposedMask>> = found.into_iter().map(Some).collect();
    keep.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// SAM's `postprocess_small_regions`: fill small holes, drop small islands,
/// then deduplicate again preferring masks that needed no cleaning.
fn clean_small_regions(found: Vec<ProposedMask>, settings: &Settings) -> Result<Vec<ProposedMask>> {
    let mut cleaned = Vec::with_capacity(found.len());
    let mut scores = Vec::with_capacity(found.len());
    for m in found {
        let mask = m.mask()?;
        let (mask, holes) = remove_small_regions(&mask, settings.min_area, Region::Holes);
        let (mask, islands) = remove_small_regions(&mask, settings.min_area, Region::Islands);
        // Cleaning never empties a mask (the largest island stays), so a changed mask has a box.
        let changed = (holes || islands).then(|| mask.bbox()).flatten();
        scores.push(if changed.is_some() { 0.0 } else { 1.0 });
        cleaned.push(match changed {
            Some(bbox) => ProposedMask { rle: mask.to_rle(), bbox, area: mask.area(), ..m },
            None => m,
        });
    }
    let threshold = settings.box_nms_iou.max(settings.crop_nms_iou);
    Ok(deduplicate(cleaned, &scores, threshold))
}
