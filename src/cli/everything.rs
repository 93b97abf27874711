//! `maskd everything`: automatic mask generation over a whole image.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use maskd::everything::{self, Progress, ProposedMask, SamRecord, Settings};
use maskd::model::Mask;
use maskd::picture::read_rgb;

use super::args::ModelArgs;

#[derive(Debug, Args)]
pub struct EverythingArgs {
    /// Image to segment (PNG, JPEG or BMP).
    #[arg(long)]
    image: PathBuf,
    /// Grid points per image side (the grid has this squared prompts per crop layer 0).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=256))]
    points_per_side: u32,
    /// Prompts decoded per batch (memory and progress steps only; results do not depend on it).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    points_per_batch: u32,
    /// Keep masks whose predicted IoU is above this (0 keeps all).
    #[arg(long, default_value_t = 0.88)]
    pred_iou_thresh: f32,
    /// Keep masks whose stability score is at least this (0 keeps all).
    #[arg(long, default_value_t = 0.95)]
    stability_thresh: f32,
    /// Box IoU above which a lower-scored mask is a duplicate.
    #[arg(long, default_value_t = 0.7)]
    nms_iou: f32,
    /// Fill holes and drop islands smaller than this many pixels (0: off).
    #[arg(long, default_value_t = 0)]
    min_area: u64,
    /// Crop layers after the whole image: 1 adds 4 overlapping crops, each embedded on its own.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    crop_layers: u8,
    #[command(flatten)]
    model: ModelArgs,
    /// Where to write the overlay: every mask tinted in its own colour.
    #[arg(long)]
    out: PathBuf,
    /// Where to write the masks as JSON, in the records SAM's generator writes (COCO RLE).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where to write the edge map: 8-bit PNG, 255 on mask boundaries.
    #[arg(long)]
    edges: Option<PathBuf>,
}

impl EverythingArgs {
    fn settings(&self) -> Settings {
        Settings {
            points_per_side: self.points_per_side as usize,
            points_per_batch: self.points_per_batch as usize,
            pred_iou_thresh: self.pred_iou_thresh,
            stability_thresh: self.stability_thresh,
            box_nms_iou: self.nms_iou,
            crop_layers: usize::from(self.crop_layers),
            min_area: self.min_area,
            ..Settings::default()
        }
    }
}

pub fn run(args: &EverythingArgs) -> Result<()> {
    let settings = args.settings();
    settings.validate()?;
    let image = read_rgb(&args.image)?;
    let started = Instant::now();
    let sam = args.model.load()?;
    let load_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let embedding = sam.embed(&image).with_context(|| format!("encoding {}", args.image.display()))?;
    let encode_s = started.elapsed().as_secs_f64();

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} prompts {pos}/{len} [{bar:30}] {msg} {elapsed_precise} eta {eta}")
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    let mut last = Progress::default();
    let on_progress = |p: &Progress| {
        bar.set_length(p.prompts as u64);
        bar.set_position(p.prompts_done as u64);
        bar.set_message(format!("crop {}/{}, {} masks found", (p.crops_done + 1).min(p.crops), p.crops, p.candidates));
        last = p.clone();
        ControlFlow::Continue(())
    };
    let started = Instant::now();
    let masks = everything::generate_with_crops(&sam, &image, &embedding, &settings, on_progress)?;
    let generate_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let pixels = masks.iter().map(ProposedMask::mask).collect::<Result<Vec<Mask>>>()?;
    if let Some(path) = &args.json {
        let records: Vec<SamRecord> = masks.iter().map(SamRecord::from).collect();
        std::fs::write(path, serde_json::to_string(&records)?).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.edges {
        everything::edge_map(image.width(), image.height(), &pixels)
            .save(path)
            .with_context(|| format!("writing edge map {}", path.display()))?;
    }
    let (w, h) = image.dimensions();
    everything::overlay(image, &pixels).save(&args.out).with_context(|| format!("writing overlay {}", args.out.display()))?;

    let decode_s = last.decoding.as_secs_f64();
    println!("image      {} ({w}x{h})", args.image.display());
    println!("model      {} ({}), loaded in {:.0} ms", sam.manifest().model, sam.encoder_name(), load_s * 1000.0);
    println!("encode     {:.0} ms ({})", encode_s * 1000.0, sam.encoder_state());
    println!(
        "prompts    {} ({n}x{n} grid, {} crop{}), decoded in {decode_s:.1} s ({:.1} prompts/s)",
        last.prompts,
        last.crops,
        if last.crops == 1 { "" } else { "s" },
        last.prompts as f64 / decode_s.max(1e-9),
        n = settings.points_per_side,
    );
    if last.crops > 1 {
        println!("crops      embedded in {:.1} s", last.embedding.as_secs_f64());
    }
    println!("masks      {} ({} passed the filters before duplicates were removed)", masks.len(), last.candidates);
    println!(
        "total      {:.1} s ({:.3} masks/s, encode and generate)",
        encode_s + generate_s,
        masks.len() as f64 / (encode_s + generate_s)
    );
    println!("overlay    {}", args.out.display());
    if let Some(path) = &args.json {
        println!("json       {}", path.display());
    }
    if let Some(path) = &args.edges {
        println!("edges      {}", path.display());
    }
    Ok(())
}
