//! `decode_batch` on the real model gives, prompt by prompt, what `decode`
//! gives alone: batching is a speed-up, never a different answer. Neither
//! does publishing a frame before its per-frame part (as the daemon does).

mod common;

use common::{cases, model_dir};
use maskd::model::{BoxPrompt, LowResMask, Masks, Point, Precision, Prompt, Sam};

/// Largest difference of a predicted IoU between batched and lone decoding.
const MAX_SCORE_DIFF: f32 = 1e-4;
/// Largest difference of a low-res logit (logits reach about +/-60).
const MAX_LOGIT_DIFF: f32 = 2e-3;
/// Minimum IoU of the upscaled masks (pixels whose logit is within float
/// noise of 0 may flip).
const MIN_MASK_IOU: f64 = 0.999;

fn assert_same(name: &str, lone: &Masks, batched: &Masks) {
    assert_eq!(lone.chosen().token, batched.chosen().token, "{name}: chosen token");
    for (a, b) in lone.candidates.iter().zip(&batched.candidates) {
        let score_diff = (a.predicted_iou - b.predicted_iou).abs();
        assert!(score_diff <= MAX_SCORE_DIFF, "{name} token {}: predicted IoU off by {score_diff}", a.token);
        let (LowResMask(la), LowResMask(lb)) = (&a.low_res, &b.low_res);
        let logit_diff = la.iter().zip(lb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(logit_diff <= MAX_LOGIT_DIFF, "{name} token {}: logits off by {logit_diff}", a.token);
        let iou = a.mask.iou(&b.mask);
        assert!(iou >= MIN_MASK_IOU, "{name} token {}: mask IoU {iou}", a.token);
    }
}

#[test]
fn batched_decoding_matches_decoding_one_by_one() {
    let sam = Sam::load(model_dir(), Precision::F32).unwrap_or_else(|e| panic!("{e:#}"));
    let all = cases();
    let image_name = &all[0].image;
    let image = image::open(all[0].image_path()).unwrap().to_rgb8();
    let embedding = sam.embed(&image).unwrap();
    let (w, h) = (image.width() as f32, image.height() as f32);

    // The goldens' prompts for this image, and more with the same point
    // counts so that batches hold several prompts: lone points, pairs, boxes.
    let mut prompts: Vec<Prompt> = all.iter().filter(|c| &c.image == image_name).map(|c| c.prompt()).collect();
    for i in 1..=4 {
        let f = i as f32 / 5.0;
        prompts.push(Prompt::from_points(vec![Point::foreground(f * w, (1.0 - f) * h)]));
        prompts.push(Prompt::from_points(vec![Point::foreground(f * w, f * h), Point::background(w - f * w, h / 2.0)]));
        let bbox = Some(BoxPrompt { x0: f * w / 2.0, y0: f * h / 2.0, x1: w - f * w / 3.0, y1: h - 1.0 });
        prompts.push(Prompt { points: vec![], bbox, mask_input: None });
    }
    // A mask input runs on its own inside the batch.
    let first = sam.decode(&embedding, &prompts[0]).unwrap();
    let mut refined = prompts[1].clone();
    refined.mask_input = Some(first.chosen().low_res.clone());
    prompts.push(refined);

    let lone: Vec<Masks> = prompts.iter().map(|p| sam.decode(&embedding, p).unwrap()).collect();
    let batched = sam.decode_batch(&embedding, &prompts).unwrap();
    assert_eq!(batched.len(), prompts.len());
    for (i, (a, b)) in lone.iter().zip(&batched).enumerate() {
        assert_same(&format!("prompt {i}"), a, b);
    }
}

#[test]
fn a_bad_prompt_in_a_batch_is_named() {
    let sam = Sam::load(model_dir(), Precision::F32).unwrap_or_else(|e| panic!("{e:#}"));
    let image = image::RgbImage::new(64, 48);
    let embedding = sam.embed(&image).unwrap();
    let good = Prompt::from_points(vec![Point::foreground(10.0, 10.0)]);
    let bad = Prompt::from_points(vec![Point::foreground(100.0, 10.0)]);
    let err = format!("{:#}", sam.decode_batch(&embedding, &[good, bad]).unwrap_err());
    assert!(err.contains("prompt 1"), "{err}");
}

#[test]
fn a_prompt_on_a_frame_published_before_its_per_frame_part_gets_the_same_masks() {
    let sam = Sam::load(model_dir(), Precision::F32).unwrap_or_else(|e| panic!("{e:#}"));
    let image = image::open(cases()[0].image_path()).unwrap().to_rgb8();
    let prompt = Prompt::from_points(vec![Point::foreground(120.0, 90.0)]);
    let expected = sam.decode(&sam.embed(&image).unwrap(), &prompt).unwrap();

    let embedding = sam.encode(&image).unwrap();
    assert!(!sam.publish_then_prepare(&embedding, || false).unwrap(), "an unpublished frame is not prepared");
    let (sent, answer) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let published = sam
            .publish_then_prepare(&embedding, || {
                // A prompt arriving the moment the frame is published.
                let (sam, embedding, prompt, sent) = (&sam, &embedding, &prompt, sent.clone());
                scope.spawn(move || sent.send(sam.decode(embedding, prompt)).unwrap());
                true
            })
            .unwrap();
        assert!(published);
        let masks = answer
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the prompt was answered (not stuck behind the per-frame part)")
            .unwrap();
        assert_eq!(masks.chosen().mask, expected.chosen().mask);
        assert_eq!(masks.chosen().predicted_iou, expected.chosen().predicted_iou);
    });
}
