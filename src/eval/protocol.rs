//! One image through the click protocol of RITM / SegNext.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use image::RgbImage;

use super::clicker::Clicker;
use super::ground_truth::GroundTruth;
use super::metrics::SampleResult;
use crate::model::{Mask, Prompt, Sam};

/// Clicking stops once IoU reaches this after at least [`MIN_CLICKS`]:
/// NoC@85, NoC@90, NoF and mIoU@1,3,5 are then already final.
pub const STOP_IOU: f64 = 0.90;
pub const MIN_CLICKS: usize = 5;

/// Clicks on `image` until IoU [`STOP_IOU`] (after at least [`MIN_CLICKS`]),
/// `max_clicks`, or a prediction with no error left.
///
/// Each step adds the [`Clicker`]'s click to all earlier ones, feeds back the
/// low-res logits kept at the previous step as `mask_input`, and keeps the
/// multimask candidate with the highest predicted IoU (the single-mask token
/// is not used).
///
/// # Errors
/// The image and mask differ in size, or the model fails.
pub fn evaluate(
    sam: &Sam,
    name: &str,
    image: &RgbImage,
    truth: &GroundTruth,
    max_clicks: usize,
) -> Result<SampleResult> {
    ensure!(
        image.dimensions() == (truth.width(), truth.height()),
        "image is {}x{} but its mask {}x{}",
        image.width(),
        image.height(),
        truth.width(),
        truth.height()
    );
    let started = Instant::now();
    let embedding = sam.embed(image).context("encoding the image")?;
    let encode_ms = ms(started);

    let mut clicker = Clicker::new(truth);
    let mut prediction = Mask::from_fn(truth.width(), truth.height(), |_, _| false);
    let mut prompt = Prompt::default();
    let mut result =
        SampleResult { name: name.to_string(), clicks: Vec::new(), ious: Vec::new(), encode_ms, decode_ms: Vec::new() };
    while result.clicks.len() < max_clicks {
        let Some(click) = clicker.next_click(&prediction) else { break };
        result.clicks.push(click);
        prompt.points.push(click.to_point());
        let started = Instant::now();
        let masks = sam.decode(&embedding, &prompt).with_context(|| format!("decoding click {}", result.clicks.len()))?;
        result.decode_ms.push(ms(started));
        let kept = masks.best_multimask();
        let iou = truth.iou(&kept.mask);
        result.ious.push(iou);
        prediction = kept.mask.clone();
        prompt.mask_input = Some(kept.low_res.clone());
        if iou >= STOP_IOU && result.ious.len() >= MIN_CLICKS {
            break;
        }
    }
    Ok(result)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
