//! One measured configuration of maskd (variant, thread count), run in a
//! process of its own so that its peak memory is its own.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use maskd::model::{load_local, set_threads, Compute, Manifest, Precision, Size};
use maskd::picture::read_rgb;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::Tensor;

use super::npy;
use super::prompts::prompt_set;

/// Encoder runs before the measured ones (first image only): the first run
/// pays for allocation and cold caches.
pub const WARMUP_FRAMES: usize = 1;
/// Decoder runs before the measured ones (the first image's first prompts).
pub const WARMUP_PROMPTS: usize = 3;

/// The decoder plan's inputs, in order (see `MaskDecoder::inputs`).
const DECODER_INPUTS: [&str; 5] = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"];

/// What one configuration runs.
#[derive(Debug, Clone)]
pub struct Job {
    pub model: PathBuf,
    pub precision: Precision,
    pub compute: Compute,
    pub threads: usize,
    pub images: Vec<PathBuf>,
    /// Measured encoder runs per image.
    pub frames: usize,
    /// Prompts decoded per image.
    pub prompts: usize,
    /// Where to write the exact plan inputs for the ONNX Runtime side.
    pub dump: Option<PathBuf>,
}

/// Raw measurements of one configuration, from either engine, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Samples {
    /// Reading and preparing both models.
    pub load_ms: f64,
    /// Resize, normalize, pad (maskd only: the other engine gets the result).
    #[serde(default)]
    pub preprocess_ms: Vec<f64>,
    /// The encoder model, per frame.
    pub encoder_ms: Vec<f64>,
    /// The decoder model, per prompt.
    pub decoder_ms: Vec<f64>,
    /// The decoder's per-frame part, run once per embedding (maskd only).
    #[serde(default)]
    pub decoder_frame_ms: Vec<f64>,
    /// The decoder on all of an image's prompts in one `decode_batch`
    /// call, per prompt (maskd only).
    #[serde(default)]
    pub decoder_batch_ms: Vec<f64>,
    /// Upscaling only the chosen mask (maskd only).
    #[serde(default)]
    pub upscale_chosen_ms: Vec<f64>,
    /// Upscaling the 4 masks to the image and scoring them (maskd only).
    #[serde(default)]
    pub postprocess_ms: Vec<f64>,
    /// Resident memory before loading the models: the runtime itself.
    pub base_rss_kb: Option<u64>,
    /// Peak resident memory of the whole process.
    pub peak_rss_kb: Option<u64>,
}

/// Runs `job` in this process. Call it once per process: it sets tract's
/// process-wide executor.
///
/// # Errors
/// An image or the model cannot be loaded, or a dump cannot be written.
pub fn run(job: &Job) -> Result<Samples> {
    let base_rss_kb = memory_kb("VmRSS");
    set_threads(job.threads)?;

    // The parts, not a `Sam`: each is timed on its own.
    let started = Instant::now();
    let manifest = Manifest::load(&job.model)?;
    let (encoder, decoder) = load_local(&manifest, job.precision, job.compute)?;
    let mut samples = Samples { load_ms: ms(started), base_rss_kb, ..Samples::default() };

    for (i, path) in job.images.iter().enumerate() {
        let image = read_rgb(path)?;
        let dump = job.dump.as_ref().map(|dir| dir.join(format!("image{i:03}")));
        let warmup = if i == 0 { WARMUP_FRAMES } else { 0 };
        let mut embedding = None;
        for frame in 0..warmup + job.frames {
            let started = Instant::now();
            let (input, geometry) = encoder.input(&image)?;
            let preprocess_ms = ms(started);
            if let (Some(dir), 0) = (&dump, frame) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                write_tensor(&dir.join("image.npy"), &input)?;
            }
            let started = Instant::now();
            let encoded =
                encoder.embed_input(input, geometry).with_context(|| format!("encoding {}", path.display()))?;
            let encoder_ms = ms(started);
            let started = Instant::now();
            decoder.prepare(&encoded)?;
            if frame >= warmup {
                samples.preprocess_ms.push(preprocess_ms);
                samples.encoder_ms.push(encoder_ms);
                samples.decoder_frame_ms.push(ms(started));
            }
            embedding = Some(encoded);
        }
        let embedding = embedding.context("no frames to encode")?;
        if let Some(dir) = &dump {
            write_tensor(&dir.join("image_embeddings.npy"), embedding.features())?;
        }

        let prompts = prompt_set(Size::new(image.width(), image.height()), job.prompts);
        let warmup = if i == 0 { WARMUP_PROMPTS.min(prompts.len()) } else { 0 };
        for (j, prompt) in prompts[..warmup].iter().chain(&prompts).enumerate() {
            let inputs = decoder.inputs(&embedding, prompt)?;
            if let (Some(dir), true) = (&dump, j >= warmup) {
                let dir = dir.join(format!("prompt{:03}", j - warmup));
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                // The embedding is the image's, written once above.
                for (name, tensor) in DECODER_INPUTS.iter().zip(&inputs).skip(1) {
                    write_tensor(&dir.join(format!("{name}.npy")), tensor)?;
                }
            }
            let started = Instant::now();
            let low_res = decoder.low_res_batch(&embedding, std::slice::from_ref(prompt))?.remove(0);
            let decoder_ms = ms(started);
            let started = Instant::now();
            std::hint::black_box(low_res.upscale(&embedding.geometry));
            let postprocess_ms = ms(started);
            let started = Instant::now();
            std::hint::black_box(low_res.candidate(low_res.chosen_token(), &embedding.geometry));
            if j >= warmup {
                samples.decoder_ms.push(decoder_ms);
                samples.postprocess_ms.push(postprocess_ms);
                samples.upscale_chosen_ms.push(ms(started));
            }
        }
        let started = Instant::now();
        std::hint::black_box(decoder.low_res_batch(&embedding, &prompts)?);
        samples.decoder_batch_ms.push(ms(started) / prompts.len() as f64);
    }
    samples.peak_rss_kb = memory_kb("VmHWM");
    Ok(samples)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn write_tensor(path: &Path, tensor: &Tensor) -> Result<()> {
    let view = tensor.to_plain_array_view::<f32>()?;
    npy::write_f32(path, view.shape(), view.as_slice().context("a model input is not contiguous")?)
}

/// A `kB` field of `/proc/self/status` (`VmRSS` now, `VmHWM` the peak);
/// `None` where there is no procfs.
fn memory_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_fields_are_read_from_procfs() {
        if Path::new("/proc/self/status").exists() {
            let (now, peak) = (memory_kb("VmRSS").unwrap(), memory_kb("VmHWM").unwrap());
            assert!(now > 0 && peak >= now, "{now} {peak}");
        }
        assert_eq!(memory_kb("NoSuchField"), None);
    }
}
