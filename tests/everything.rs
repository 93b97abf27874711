//! `maskd everything` on the real model: the generator against PyTorch's
//! SamAutomaticMaskGenerator on a golden photo, determinism, SAM's JSON
//! records, and the command line. Small grids keep the run short.

mod common;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{golden_dir, model_dir};
use maskd::everything::{self, Cancelled, ProposedMask, SamRecord, Settings};
use crossbeam_channel::{bounded, Receiver};
use maskd::camera::{FileSettings, FileSource};
use maskd::model::{Embedding, Point, Precision, Prompt, Rle, Sam};
use maskd::pipeline::{
    CaptureSettings, EverythingJob, EverythingReply, FrameSelector, Job, Pipeline, PipelineSettings, Rejection, EVERYTHING_QUEUE,
};

/// SamAutomaticMaskGenerator(points_per_side=8), SAM's other defaults, on
/// PyTorch MobileSAM for chelsea.png (models/reference_everything.py):
/// bbox (SAM's x, y, x1 - x0, y1 - y0), area, predicted IoU, in its order.
const PYTORCH_8X8: [([u32; 4], u64, f32); 7] = [
    ([0, 0, 397, 298], 95029, 1.0016357),
    ([0, 0, 39, 125], 3887, 0.9923609),
    ([365, 0, 85, 134], 7896, 0.9783540),
    ([137, 86, 67, 58], 3240, 0.9776486),
    ([395, 176, 55, 122], 5615, 0.9729797),
    ([296, 111, 43, 51], 1756, 0.9623592),
    ([366, 124, 84, 42], 2752, 0.9472645),
];
/// Area may differ by this fraction: the f32 model matches PyTorch to float noise.
const AREA_TOLERANCE: f64 = 0.01;
const IOU_TOLERANCE: f32 = 0.01;

fn chelsea() -> PathBuf {
    golden_dir().join("images/chelsea.png")
}

fn model() -> &'static (Sam, Embedding) {
    static MODEL: OnceLock<(Sam, Embedding)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let sam = Sam::load(model_dir(), Precision::F32).expect("the exported model (run models/export.sh)");
        let image = image::open(chelsea()).unwrap().to_rgb8();
        let embedding = sam.embed(&image).unwrap();
        (sam, embedding)
    })
}

fn generate(points_per_side: usize) -> Vec<ProposedMask> {
    let (sam, embedding) = model();
    let settings = Settings { points_per_side, ..Settings::default() };
    let mut reports = 0;
    let masks = everything::generate(sam, embedding, &settings, |_| {
        reports += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    // A start report, one per batch, one per crop.
    assert_eq!(reports, 1 + (points_per_side * points_per_side).div_ceil(64) + 1);
    masks
}

#[test]
fn an_8x8_grid_finds_the_masks_pytorch_finds() {
    let masks = generate(8);
    assert_eq!(masks.len(), PYTORCH_8X8.len(), "{masks:#?}");
    for (m, (bbox, area, iou)) in masks.iter().zip(PYTORCH_8X8) {
        let record = SamRecord::from(m);
        assert_eq!(record.bbox, bbox);
        assert!((m.area as f64 - area as f64).abs() <= AREA_TOLERANCE * area as f64, "area {} vs {area}", m.area);
        assert!((m.predicted_iou - iou).abs() <= IOU_TOLERANCE, "predicted IoU {} vs {iou}", m.predicted_iou);
        assert!(m.stability >= 0.95 && m.predicted_iou > 0.88);
        // The record's RLE string decodes back to the mask, with the stated area and box.
        let rle = Rle::from_coco_string(record.segmentation.size, &record.segmentation.counts).unwrap();
        let mask = rle.to_mask().unwrap();
        assert_eq!(mask, m.mask().unwrap());
        assert_eq!((mask.area(), mask.bbox()), (m.area, Some(m.bbox)));
    }
}

#[test]
fn generation_is_deterministic() {
    let (first, second) = (generate(4), generate(4));
    assert!(!first.is_empty());
    assert_eq!(first, second);
}

#[test]
fn a_run_stops_when_its_progress_callback_breaks() {
    let (sam, embedding) = model();
    let settings = Settings { points_per_side: 4, points_per_batch: 2, ..Settings::default() };
    let mut done = Vec::new();
    let err = everything::generate(sam, embedding, &settings, |p| {
        done.push(p.prompts_done);
        if p.prompts_done >= 4 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .unwrap_err();
    assert!(err.is::<Cancelled>(), "{err:#}");
    // No batch is decoded after the break.
    assert_eq!(done, [0, 2, 4]);
}

#[test]
fn crop_layers_without_the_image_are_refused() {
    let (sam, embedding) = model();
    let settings = Settings { crop_layers: 1, ..Settings::default() };
    let err = everything::generate(sam, embedding, &settings, |_| ControlFlow::Continue(())).unwrap_err();
    assert!(err.to_string().contains("generate_with_crops"), "{err}");
    let other = image::RgbImage::new(10, 10);
    let err = everything::generate_with_crops(sam, &other, embedding, &settings, |_| ControlFlow::Continue(())).unwrap_err();
    assert!(err.to_string().contains("the image is 10x10"), "{err}");
}

fn maskd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskd")).args(args).env("MASKD_MODEL", model_dir()).output().unwrap()
}

#[test]
fn command_writes_overlay_sam_json_and_edges() {
    let dir = std::env::temp_dir().join(format!("maskd-everything-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (overlay, json, edges) = (dir.join("overlay.png"), dir.join("masks.json"), dir.join("edges.png"));
    let image = chelsea().display().to_string();
    let out = maskd(&[
        "everything", "--image", &image, "--points-per-side", "4", "--out", overlay.to_str().unwrap(),
        "--json", json.to_str().unwrap(), "--edges", edges.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("prompts    16 (4x4 grid, 1 crop)") && stdout.contains("prompts/s"), "{stdout}");
    let records: Vec<SamRecord> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(!records.is_empty());
    assert!(stdout.contains(&format!("masks      {} (", records.len())), "{stdout}");
    let picture = image::open(&overlay).unwrap();
    assert_eq!((picture.width(), picture.height()), (451, 300));
    let edge_map = image::open(&edges).unwrap().to_luma8();
    assert!(edge_map.pixels().any(|p| p[0] == 255) && edge_map.pixels().any(|p| p[0] == 0));
}

#[test]
fn bad_settings_fail_before_the_model_loads() {
    let out = maskd(&["everything", "--image", "no-such.png", "--pred-iou-thresh", "2", "--out", "x.png"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("predicted IoU threshold must be in 0..=1, got 2"), "{err}");
    let out = maskd(&["everything", "--image", "no-such.png", "--crop-layers", "2", "--out", "x.png"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A pipeline on the golden photo (f32, as `model()`), once it has embedded it.
fn pipeline() -> Pipeline {
    let sam = Arc::new(Sam::load(model_dir(), Precision::F32).expect("the exported model (run models/export.sh)"));
    let source = FileSource::new(FileSettings { paths: vec![chelsea()], repeat: false, fps: 10.0 });
    let settings = PipelineSettings { embeddings_kept: 2, queue_capacity: 4, capture: CaptureSettings::default() };
    let pipeline = Pipeline::start(sam, Box::new(source), &settings).unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while pipeline.cache().latest().is_none() {
        assert!(Instant::now() < until, "the photo was never embedded");
        std::thread::sleep(Duration::from_millis(50));
    }
    pipeline
}

fn everything_job(points_per_side: usize, tag: u32) -> (EverythingJob, Receiver<EverythingReply>) {
    let (reply, replies) = bounded(1);
    let settings = Settings { points_per_side, ..Settings::default() };
    (EverythingJob { settings, frame: FrameSelector::Latest, tag, reply }, replies)
}

#[test]
fn the_pipeline_answers_prompts_between_the_decoder_runs_of_an_everything_job() {
    let pipeline = pipeline();
    let (job, objects) = everything_job(8, 7);
    pipeline.submit_everything(job).unwrap();
    // Let the job get going, then ask for a prompt: it must not wait for the job's 64 decoder runs.
    std::thread::sleep(Duration::from_millis(500));
    let (reply, replies) = bounded(1);
    let prompt = Prompt::from_points(vec![Point::foreground(255.0, 180.0)]);
    pipeline.submit(Job { prompt, frame: FrameSelector::Latest, tag: 1, reply }).unwrap();
    let answer = replies.recv().unwrap();
    assert!(answer.result.is_ok(), "{:?}", answer.result);
    assert!(objects.try_recv().is_err(), "the everything job finished before the prompt was answered");
    let reply = objects.recv().unwrap();
    assert_eq!(reply.tag, 7);
    let found = reply.result.unwrap();
    assert_eq!(found.prompts, 64);
    assert!(found.decoding <= found.elapsed);
    // The same masks as the library on the same embedding: the interleaved prompt changed nothing.
    assert_eq!(found.masks, generate(8));
    pipeline.shutdown();
}

#[test]
fn a_shutdown_cuts_everything_jobs_short() {
    let pipeline = pipeline();
    let (running, running_reply) = everything_job(32, 1);
    let (waiting, waiting_reply) = everything_job(32, 2);
    pipeline.submit_everything(running).unwrap();
    pipeline.submit_everything(waiting).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    pipeline.shutdown();
    for replies in [running_reply, waiting_reply] {
        let reply = replies.recv().unwrap();
        assert_eq!(reply.result.unwrap_err(), Rejection::Stopping);
    }
    let (late, _) = everything_job(4, 3);
    assert_eq!(pipeline.submit_everything(late).unwrap_err().0, Rejection::Stopping);
}

#[test]
fn the_pipeline_refuses_crop_layers_invalid_settings_and_a_full_queue() {
    let pipeline = pipeline();
    let (mut job, _) = everything_job(4, 1);
    job.settings.crop_layers = 1;
    let (rejection, _) = pipeline.submit_everything(job).unwrap_err();
    assert_eq!(rejection, Rejection::InvalidPrompt("the daemon runs no crop layers".into()));
    let (mut job, _) = everything_job(4, 1);
    job.settings.stability_thresh = 2.0;
    let (rejection, _) = pipeline.submit_everything(job).unwrap_err();
    assert_eq!(rejection, Rejection::InvalidPrompt("stability threshold must be in 0..=1, got 2".into()));
    // One running and EVERYTHING_QUEUE waiting; the next is busy.
    let mut replies = Vec::new();
    for tag in 0..=EVERYTHING_QUEUE as u32 {
        let (job, reply) = everything_job(32, tag);
        pipeline.submit_everything(job).unwrap();
        replies.push(reply);
        // The first must have left the queue for the decoder before the queue can hold the others.
        std::thread::sleep(Duration::from_millis(300));
    }
    let (job, _) = everything_job(32, 9);
    assert_eq!(pipeline.submit_everything(job).unwrap_err().0, Rejection::Busy);
    pipeline.shutdown();
}
