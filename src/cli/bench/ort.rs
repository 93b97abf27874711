//! The ONNX Runtime side: `models/bench_ort.py`, run by the export venv's
//! Python on the tensors maskd dumped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::worker::{Samples, WARMUP_FRAMES, WARMUP_PROMPTS};

/// Built in, so that the binary can benchmark from any directory.
const SCRIPT: &str = include_str!("../../../models/bench_ort.py");

/// Creates the venv with onnxruntime (and prints its Python with `--python`).
const EXPORT_SCRIPT: &str = "models/export.sh";

/// One ONNX Runtime measurement and the version that made it.
#[derive(Debug, Deserialize)]
pub struct OrtSamples {
    #[serde(flatten)]
    pub samples: Samples,
    pub version: String,
}

/// What one configuration runs: the same files, inputs and counts as maskd's worker.
pub struct Job<'a> {
    pub encoder: &'a Path,
    pub decoder: &'a Path,
    /// A directory a maskd worker dumped its inputs into.
    pub inputs: &'a Path,
    pub threads: usize,
    pub frames: usize,
}

/// The Python to run: `explicit`, else the one `models/export.sh --python` names.
///
/// # Errors
/// No such Python; the message names the command that creates the venv.
pub fn find_python(explicit: Option<&Path>) -> Result<PathBuf> {
    let python = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let out = Command::new(EXPORT_SCRIPT)
                .arg("--python")
                .output()
                .with_context(|| format!("running `{EXPORT_SCRIPT} --python` to find the ONNX Runtime venv"))?;
            if !out.status.success() {
                bail!(
                    "`{EXPORT_SCRIPT} --python` failed ({}): create the venv with `{EXPORT_SCRIPT}`, \
                     pass --python PATH, or skip ONNX Runtime with --no-ort",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    if !python.is_file() {
        bail!(
            "no Python at {}: create the venv with onnxruntime with `{EXPORT_SCRIPT}`, \
             pass --python PATH, or skip ONNX Runtime with --no-ort",
            python.display()
        );
    }
    Ok(python)
}

/// Writes the built-in script into `dir`, returning its path.
///
/// # Errors
/// The file cannot be written.
pub fn write_script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("bench_ort.py");
    std::fs::write(&path, SCRIPT).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs one configuration in a fresh Python process.
///
/// # Errors
/// The script fails (its stderr is passed through) or prints no result.
pub fn run(python: &Path, script: &Path, job: &Job) -> Result<OrtSamples> {
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg("--encoder")
        .arg(job.encoder)
        .arg("--decoder")
        .arg(job.decoder)
        .arg("--inputs")
        .arg(job.inputs)
        .args(["--threads", &job.threads.to_string()])
        .args(["--frames", &job.frames.to_string()])
        .args(["--warmup-frames", &WARMUP_FRAMES.to_string()])
        .args(["--warmup-prompts", &WARMUP_PROMPTS.to_string()]);
    let stdout = super::output_of(&mut command)?;
    serde_json::from_slice(&stdout).with_context(|| format!("reading the result of {}", script.display()))
}
