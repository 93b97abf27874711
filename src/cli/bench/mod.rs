//! `maskd bench`: maskd against ONNX Runtime on the same ONNX files, images,
//! prompts and thread counts, one fresh process per engine and configuration.

mod npy;
mod ort;
mod prompts;
mod report;
pub mod stats;
mod worker;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use maskd::model::{Compute, Manifest, Precision};

use super::args::{compute_parser, precision_parser};

use report::{Config, Figures, Report};
use worker::Samples;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model directory (holding manifest.json).
    #[arg(long, env = "MASKD_MODEL", default_value = "models/mobile_sam")]
    model: PathBuf,
    /// Images to encode: files, or directories whose PNG, JPEG and BMP files are all used.
    #[arg(long, num_args = 1.., default_value = "tests/golden/images")]
    images: Vec<PathBuf>,
    /// Thread counts to measure [default: 1 and all cores].
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Model variants to measure.
    #[arg(long, value_delimiter = ',', default_value = "f32,int8", value_parser = precision_parser())]
    variants: Vec<Precision>,
    /// What maskd's encoder computes in (f16: aarch64 cores with FP16).
    /// ONNX Runtime runs the same files in float32.
    #[arg(long, default_value_t = Compute::default(), value_parser = compute_parser())]
    compute: Compute,
    /// Prompts decoded per image, cycling through 1, 2 and 5 points and a box.
    #[arg(long, default_value_t = 20)]
    prompts: usize,
    /// Measured encoder runs per image.
    #[arg(long, default_value_t = 3)]
    frames: usize,
    /// Measure maskd only.
    #[arg(long)]
    no_ort: bool,
    /// Python with onnxruntime [default: the one `models/export.sh --python` names].
    #[arg(long, env = "MASKD_PYTHON")]
    python: Option<PathBuf>,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure one variant at one thread count in this process and print the
    /// raw samples as JSON (how the benchmark runs each configuration).
    #[arg(long, hide = true)]
    worker: bool,
    /// With --worker: write the exact model inputs here as .npy files.
    #[arg(long, hide = true, requires = "worker")]
    dump: Option<PathBuf>,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    ensure!(args.frames > 0, "--frames must be at least 1");
    ensure!(args.prompts > 0, "--prompts must be at least 1");
    ensure!(args.threads.iter().all(|&n| n > 0), "--threads must be at least 1");
    let images = image_files(&args.images)?;
    if args.worker {
        return run_worker(args, images);
    }
    let threads = if args.threads.is_empty() { default_threads() } else { args.threads.clone() };
    // Fail on a missing model or Python before minutes of measuring.
    let manifest = Manifest::load(&args.model)?;
    let python = if args.no_ort { None } else { Some(ort::find_python(args.python.as_deref())?) };
    let scratch = Scratch::new()?;
    let script = python.as_ref().map(|_| ort::write_script(&scratch.0)).transpose()?;

    let compute = args.compute;
    let mut configs = Vec::new();
    let mut ort_version = None;
    for &precision in &args.variants {
        let variant = manifest.variant(precision)?;
        let (encoder, decoder) = (manifest.file_path(&variant.encoder)?, manifest.file_path(&variant.decoder)?);
        let inputs = scratch.0.join(precision.key());
        for (k, &n) in threads.iter().enumerate() {
            // The engines alternate, so that the noise of a shared machine
            // hits both; the first maskd run of a variant leaves its inputs
            // for ONNX Runtime.
            let dump = (python.is_some() && k == 0).then_some(inputs.as_path());
            eprintln!("maskd bench: maskd {precision}, {compute} encoder, {n} thread(s)");
            let maskd = run_child(args, &images, precision, n, dump)?;
            let ort = match (&python, &script) {
                (Some(python), Some(script)) => {
                    eprintln!("maskd bench: ONNX Runtime {precision}, {n} thread(s)");
                    let job = ort::Job {
                        encoder: &encoder,
                        decoder: &decoder,
                        inputs: &inputs,
                        threads: n,
                        frames: args.frames,
                    };
                    let result = ort::run(python, script, &job)?;
                    ort_version = Some(result.version);
                    Some(Figures::of(&result.samples))
                }
                _ => None,
            };
            configs.push(Config { variant: compute.variant_key(precision), threads: n, maskd: Figures::of(&maskd), ort });
        }
    }

    let names = images.iter().map(|p| p.display().to_string()).collect();
    let report = Report::new(manifest.model.clone(), names, args.frames, args.prompts, ort_version, configs);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn run_worker(args: &BenchArgs, images: Vec<PathBuf>) -> Result<()> {
    let (&[precision], &[threads]) = (args.variants.as_slice(), args.threads.as_slice()) else {
        bail!("--worker measures one variant at one thread count");
    };
    let job = worker::Job {
        model: args.model.clone(),
        precision,
        compute: args.compute,
        threads,
        images,
        frames: args.frames,
        prompts: args.prompts,
        dump: args.dump.clone(),
    };
    println!("{}", serde_json::to_string(&worker::run(&job)?)?);
    Ok(())
}

/// Re-runs this binary as a worker for one configuration.
fn run_child(
    args: &BenchArgs,
    images: &[PathBuf],
    precision: Precision,
    threads: usize,
    dump: Option<&Path>,
) -> Result<Samples> {
    let mut command = Command::new(own_binary()?);
    command
        .args(["bench", "--worker", "--variants", precision.key()])
        .args(["--compute", args.compute.key()])
        .args(["--threads", &threads.to_string()])
        .args(["--frames", &args.frames.to_string()])
        .args(["--prompts", &args.prompts.to_string()])
        .arg("--model")
        .arg(&args.model)
        .arg("--images")
        .args(images);
    if let Some(dir) = dump {
        command.arg("--dump").arg(dir);
    }
    let stdout = output_of(&mut command)?;
    serde_json::from_slice(&stdout).context("reading a maskd worker's result")
}

/// This very binary: on Linux `/proc/self/exe` still runs it after a
/// rebuild has replaced the file during a long benchmark.
fn own_binary() -> Result<PathBuf> {
    let proc_exe = Path::new("/proc/self/exe");
    if proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe().context("locating the maskd binary to run a worker")
}

/// Runs `command`, its stderr passed through, and returns its stdout.
fn output_of(command: &mut Command) -> Result<Vec<u8>> {
    let shown = format!("{command:?}");
    let out =
        command.stdin(Stdio::null()).stderr(Stdio::inherit()).output().with_context(|| format!("running {shown}"))?;
    ensure!(out.status.success(), "{shown} failed ({})", out.status);
    Ok(out.stdout)
}

/// 1 and every core (just 1 on a single core).
fn default_threads() -> Vec<usize> {
    let all = std::thread::available_parallelism().map_or(1, usize::from);
    if all > 1 {
        vec![1, all]
    } else {
        vec![1]
    }
}

/// The files among `paths`, directories replaced by their images, sorted.
fn image_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("listing images in {}", path.display()))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("listing images in {}", path.display()))?;
            found.retain(|p| is_image(p));
            found.sort();
            ensure!(!found.is_empty(), "no PNG, JPEG or BMP images in {}", path.display());
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    ensure!(!files.is_empty(), "no images to benchmark");
    Ok(files)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg", "bmp"].contains(&e.to_ascii_lowercase().as_str()))
}

/// A private temporary directory for the dumped inputs, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("maskd-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_expand_to_their_images_in_order() {
        let dir = std::env::temp_dir().join(format!("maskd-bench-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.PNG", "a.jpg", "notes.txt"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let files = image_files(&[dir.clone(), PathBuf::from("x.bmp")]).unwrap();
        assert_eq!(files, [dir.join("a.jpg"), dir.join("b.PNG"), PathBuf::from("x.bmp")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_threads_start_with_one() {
        assert_eq!(default_threads()[0], 1);
    }
}
