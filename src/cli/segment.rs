//! `maskd segment`: one image, one prompt, one mask.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use maskd::draw::Overlay;
use maskd::draw::Canvas;
use maskd::model::{Candidate, Masks, Prompt, Sam};
use maskd::picture::read_rgb;
use serde_json::json;

use super::args::{BoxArg, ModelArgs, PointArg};

#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// Image to segment (PNG, JPEG or BMP).
    #[arg(long)]
    image: PathBuf,
    /// A click X,Y[,LABEL] in image pixels; LABEL 1 = object (default), 0 = background. Repeatable.
    #[arg(long = "point", value_name = "X,Y[,LABEL]", allow_hyphen_values = true)]
    points: Vec<PointArg>,
    /// A box X0,Y0,X1,Y1 around the object, in image pixels.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1", allow_hyphen_values = true)]
    bbox: Option<BoxArg>,
    /// Pick the best of the 3 multimask candidates even when the prompt is unambiguous.
    #[arg(long)]
    multimask: bool,
    #[command(flatten)]
    model: ModelArgs,
    /// Where to write the overlay (mask tinted over the image, prompts marked).
    #[arg(long)]
    out: PathBuf,
    /// Where to write the mask: 8-bit PNG at image size, 255 = object.
    #[arg(long)]
    mask_out: Option<PathBuf>,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &SegmentArgs) -> Result<()> {
    let prompt = Prompt {
        points: args.points.iter().map(|p| p.0).collect(),
        bbox: args.bbox.map(|b| b.0),
        mask_input: None,
    };
    let image = read_rgb(&args.image)?;
    let size = maskd::model::Size::new(image.width(), image.height());
    // Fail on a bad prompt before spending seconds on the model.
    prompt.validate(size).with_context(|| format!("prompt for {}", args.image.display()))?;

    let started = Instant::now();
    let sam = args.model.load()?;
    let load_ms = ms(started);

    let started = Instant::now();
    let embedding = sam.embed(&image).with_context(|| format!("encoding {}", args.image.display()))?;
    let encode_ms = ms(started);
    let started = Instant::now();
    let masks = sam.decode(&embedding, &prompt)?;
    let decode_ms = ms(started);

    let chosen = if args.multimask { masks.best_multimask() } else { masks.chosen() };
    write_overlay(&args.out, image, chosen, &prompt)?;
    if let Some(path) = &args.mask_out {
        write_file(path, &chosen.mask.encode_png()?)?;
    }

    let timings = Timings { load_ms, encode_ms, decode_ms };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(args, &sam, &masks, chosen, &timings))?);
    } else {
        print_report(args, &sam, &masks, chosen, &timings);
    }
    Ok(())
}

struct Timings {
    load_ms: f64,
    encode_ms: f64,
    decode_ms: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn write_overlay(path: &Path, image: image::RgbImage, chosen: &Candidate, prompt: &Prompt) -> Result<()> {
    let caption = format!(
        "IoU {:.3}  stability {:.3}  area {} px",
        chosen.predicted_iou,
        chosen.stability,
        chosen.mask.area()
    );
    let mut canvas = Canvas::new(image);
    Overlay { mask: &chosen.mask, prompt, caption: &caption }.render(&mut canvas);
    canvas.into_image().save(path).with_context(|| format!("writing overlay {}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn candidate_json(c: &Candidate) -> serde_json::Value {
    let rle = c.mask.to_rle();
    json!({
        "token": c.token,
        "predicted_iou": c.predicted_iou,
        "stability": c.stability,
        "area": c.mask.area(),
        "bbox": c.mask.bbox(),
        "centroid": c.mask.centroid().map(|(x, y)| [x, y]),
        "rle": { "size": rle.size, "counts": rle.to_coco_string() },
    })
}

fn report_json(args: &SegmentArgs, sam: &Sam, masks: &Masks, chosen: &Candidate, t: &Timings) -> serde_json::Value {
    json!({
        "image": { "path": args.image, "width": chosen.mask.width(), "height": chosen.mask.height() },
        "model": {
            "name": sam.manifest().model,
            "precision": sam.precision().key(),
            "encoder": sam.encoder_name(),
            // Where this image was encoded: local, remote, or fallback after a server failure.
            "encoded": sam.encoder_state().key(),
        },
        "mask": candidate_json(chosen),
        "candidates": masks.candidates.iter().map(candidate_json).collect::<Vec<_>>(),
        "timings_ms": { "load": t.load_ms, "encode": t.encode_ms, "decode": t.decode_ms },
        "outputs": { "overlay": args.out, "mask": args.mask_out },
    })
}

fn print_report(args: &SegmentArgs, sam: &Sam, masks: &Masks, chosen: &Candidate, t: &Timings) {
    let (w, h) = (chosen.mask.width(), chosen.mask.height());
    println!("image      {} ({w}x{h})", args.image.display());
    println!("model      {} ({}), loaded in {:.0} ms", sam.manifest().model, sam.encoder_name(), t.load_ms);
    println!("encode     {:.0} ms ({})", t.encode_ms, sam.encoder_state());
    println!("decode     {:.1} ms", t.decode_ms);
    println!(
        "mask       token {} ({}), predicted IoU {:.3}, stability {:.3}",
        chosen.token,
        if chosen.token == 0 { "single-mask output" } else { "best of 3 multimask candidates" },
        chosen.predicted_iou,
        chosen.stability
    );
    let area = chosen.mask.area();
    println!("area       {area} px ({:.1}% of the image)", 100.0 * area as f64 / (f64::from(w) * f64::from(h)));
    match (chosen.mask.bbox(), chosen.mask.centroid()) {
        (Some(b), Some((cx, cy))) => {
            println!("bbox       x {}..{}, y {}..{} ({}x{})", b.x0, b.x1, b.y0, b.y1, b.width(), b.height());
            println!("centroid   ({cx:.1}, {cy:.1})");
        }
        _ => println!("bbox       none (empty mask)"),
    }
    println!("candidates");
    for c in &masks.candidates {
        println!(
            "  token {}  predicted IoU {:.3}  stability {:.3}  area {}{}",
            c.token,
            c.predicted_iou,
            c.stability,
            c.mask.area(),
            if c.token == chosen.token { "  <- chosen" } else { "" }
        );
    }
    println!("overlay    {}", args.out.display());
    if let Some(path) = &args.mask_out {
        println!("mask       {}", path.display());
    }
}
