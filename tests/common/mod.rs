//! Shared by the integration tests: where the model and the goldens are.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use maskd::model::{BoxPrompt, Mask, Point, Prompt};
use serde::Deserialize;

/// The exported model the tests run: `MASKD_MODEL`, else the export
/// script's default output. Tests fail (never skip) when it is missing.
pub fn model_dir() -> PathBuf {
    std::env::var_os("MASKD_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mobile_sam"))
}

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// One PyTorch reference prediction (`tests/golden/cases.json`).
#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub image: String,
    pub size: [u32; 2],
    pub points: Vec<[f32; 3]>,
    #[serde(rename = "box")]
    pub bbox: Option<[f32; 4]>,
    pub mask_input_from: Option<String>,
    pub mask_input_index: Option<usize>,
    pub multimask: bool,
    pub outputs: Vec<Output>,
}

#[derive(Debug, Deserialize)]
pub struct Output {
    pub token: usize,
    pub mask: String,
    pub iou: f32,
    pub area: u64,
}

pub fn cases() -> Vec<Case> {
    let path = golden_dir().join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

impl Case {
    /// The prompt without its mask input (which comes from an earlier case).
    pub fn prompt(&self) -> Prompt {
        let points = self
            .points
            .iter()
            .map(|&[x, y, label]| if label == 1.0 { Point::foreground(x, y) } else { Point::background(x, y) })
            .collect();
        let bbox = self.bbox.map(|[x0, y0, x1, y1]| BoxPrompt { x0, y0, x1, y1 });
        Prompt { points, bbox, mask_input: None }
    }

    pub fn image_path(&self) -> PathBuf {
        golden_dir().join(&self.image)
    }
}

impl Output {
    pub fn mask(&self) -> Mask {
        let path = golden_dir().join(&self.mask);
        let gray = image::open(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())).to_luma8();
        Mask::from_gray(&gray, 127)
    }
}

/// A Python with pyserial for board/maskd_client.py: `$MASKD_CLIENT_PYTHON`,
/// else a venv in `${MASKD_CACHE:-~/.cache/maskd}/venv-client`, created here
/// when missing. Panics (never skips) when neither can be had.
pub fn client_python() -> PathBuf {
    if let Some(python) = std::env::var_os("MASKD_CLIENT_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("MASKD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME or MASKD_CACHE must be set"))
                .join(".cache/maskd")
        });
    let venv = cache.join("venv-client");
    let python = venv.join("bin/python");
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("board/requirements-client.txt");
    let has_pyserial = |python: &Path| {
        python.exists()
            && Command::new(python)
                .args(["-c", "import serial"])
                .status()
                .is_ok_and(|s| s.success())
    };
    // Tests run in parallel: one makes the venv while the others wait.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !has_pyserial(&python) {
        run_checked(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run_checked(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&requirements));
        assert!(
            has_pyserial(&python),
            "pyserial missing from {} after installing",
            venv.display()
        );
    }
    python
}

fn run_checked(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e} (./setup.sh --tests installs it)"));
    assert!(out.status.success(), "{command:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// A test CA (`ca.pem`, `ca.key`) and a server certificate it signed for
/// localhost and 127.0.0.1 (`server.pem`, `server.key`) in `dir`, by openssl.
pub fn make_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run_checked(
        Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .args(["-days", "2", "-subj", "/CN=maskd test CA"])
            .args(["-keyout", "ca.key", "-out", "ca.pem"])
            .current_dir(dir),
    );
    run_checked(
        Command::new("openssl")
            .arg("req")
            .args(ec)
            .args(["-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"])
            .current_dir(dir),
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    run_checked(
        Command::new("openssl")
            .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"])
            .args(["-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem"])
            .current_dir(dir),
    );
}
