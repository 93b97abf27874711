//! `maskd segment` end to end: outputs on the real model, and clear errors
//! (exit status 2, a message naming what was wrong) for bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cases, model_dir};
use maskd::model::Mask;

fn maskd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskd")).args(args).env("MASKD_MODEL", model_dir()).output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maskd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_fails_with(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

fn golden_image() -> String {
    cases()[0].image_path().display().to_string()
}

#[test]
fn segment_writes_overlay_mask_and_json_matching_the_reference() {
    // Several clicks or a box: SAM's rule returns the single-mask output (token 0).
    // On a JPEG photo, which the command must decode as the reference does.
    let case = cases()
        .into_iter()
        .find(|c| c.image.ends_with(".jpg") && c.mask_input_from.is_none() && (c.points.len() > 1 || c.bbox.is_some()))
        .expect("a golden case on a JPEG photo with several points or a box");
    let overlay = scratch("overlay.png");
    let mask_path = scratch("mask.png");
    // The f32 model, held to the parity bound against PyTorch.
    let mut args = vec!["segment".to_string(), "--precision".into(), "f32".into(), "--image".into(), case.image_path().display().to_string()];
    for [x, y, label] in &case.points {
        args.extend(["--point".into(), format!("{x},{y},{label}")]);
    }
    if let Some([x0, y0, x1, y1]) = case.bbox {
        args.extend(["--box".into(), format!("{x0},{y0},{x1},{y1}")]);
    }
    args.extend(["--out".into(), overlay.display().to_string(), "--mask-out".into(), mask_path.display().to_string()]);
    args.push("--json".into());
    let out = maskd(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));

    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mask"]["token"], 0);
    assert!(report["timings_ms"]["encode"].as_f64().unwrap() > 0.0);
    assert_eq!(report["candidates"].as_array().unwrap().len(), 4);

    let written = image::open(&mask_path).unwrap().to_luma8();
    assert_eq!([written.height(), written.width()], case.size);
    assert!(written.pixels().all(|p| p[0] == 0 || p[0] == 255), "mask PNG holds only 0 and 255");
    let iou = Mask::from_gray(&written, 127).iou(&case.outputs[0].mask());
    assert!(iou >= 0.995, "mask IoU vs reference {iou}");
    assert_eq!(report["mask"]["area"], Mask::from_gray(&written, 127).area());

    let drawn = image::open(&overlay).unwrap().to_rgb8();
    let photo = maskd::picture::read_rgb(case.image_path()).unwrap();
    assert_eq!(drawn.dimensions(), photo.dimensions());
    assert_ne!(drawn, photo, "the overlay marks the photo");
}

#[test]
fn text_report_names_scores_bbox_area_and_timings() {
    let out = maskd(&["segment", "--image", &golden_image(), "--point", "100,100", "--out", &scratch("text.png").display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for field in ["encode", "decode", "predicted IoU", "stability", "area", "bbox", "best of 3 multimask"] {
        assert!(text.contains(field), "{field:?} not in:\n{text}");
    }
    // The float32 model is the default.
    assert!(text.contains("mobile_sam (f32)"), "{text}");
}

#[test]
fn missing_model_names_the_path_and_the_export_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(["segment", "--image", &golden_image(), "--point", "10,10", "--out", "/dev/null"])
        .args(["--model", "/nonexistent/maskd-model"])
        .output()
        .unwrap();
    assert_fails_with(&out, &["/nonexistent/maskd-model/manifest.json", "models/export.sh"]);
}

/// The model directory with every file linked from the real one, except
/// `broken`: a file of the same size (so the manifest's size check passes)
/// that is not ONNX.
fn model_with_broken_file(broken: &str) -> PathBuf {
    let dir = scratch(&format!("broken-{broken}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(model_dir()).unwrap() {
        let source = entry.unwrap().path();
        let target = dir.join(source.file_name().unwrap());
        if source.file_name().unwrap() == broken {
            let bytes = std::fs::metadata(&source).unwrap().len() as usize;
            std::fs::write(&target, vec![0xffu8; bytes]).unwrap();
        } else {
            std::os::unix::fs::symlink(&source, &target).unwrap();
        }
    }
    dir
}

#[test]
fn broken_model_files_are_named_whichever_part_loads_them() {
    // The encoder and the decoder load on two threads: either's error must
    // reach the user, with the file and the part that failed.
    for (file, part) in [
        ("decoder_points.onnx", "the mask decoder's per-prompt part"),
        ("encoder.onnx", "the image encoder"),
    ] {
        let dir = model_with_broken_file(file);
        let out = Command::new(env!("CARGO_BIN_EXE_maskd"))
            .args(["segment", "--image", &golden_image(), "--point", "10,10", "--out", "/dev/null"])
            .arg("--model")
            .arg(&dir)
            .output()
            .unwrap();
        assert_fails_with(&out, &[&dir.join(file).display().to_string(), part]);
    }
}

#[test]
fn a_closed_output_pipe_ends_segment_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // `maskd segment ... | head -0`: the reader is gone before the report is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(["segment", "--image", &golden_image(), "--point", "100,100"])
        .arg("--out")
        .arg(scratch("closed-pipe.png"))
        .env("MASKD_MODEL", model_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {}", out.status, stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn bad_prompts_are_named_before_the_model_runs() {
    let image = golden_image();
    let out_path = scratch("never.png").display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["segment", "--image", &image, "--out", &out_path];
        args.extend_from_slice(extra);
        // A missing model proves the prompt is rejected first.
        Command::new(env!("CARGO_BIN_EXE_maskd")).args(&args).args(["--model", "/nonexistent"]).output().unwrap()
    };
    assert_fails_with(&run(&["--point", "100000,5"]), &["point (100000, 5) lies outside"]);
    assert_fails_with(&run(&["--box", "50,10,20,40"]), &["needs x0 < x1"]);
    assert_fails_with(&run(&[]), &["neither points nor a box"]);
    let nan = run(&["--point", "NaN,4"]);
    assert_fails_with(&nan, &["\"NaN\" is not a finite number"]);
    assert_fails_with(&run(&["--point", "1,2,7"]), &["label must be 1 (object) or 0 (background)"]);
    assert!(!Path::new(&out_path).exists());
}

#[test]
fn non_image_input_is_named() {
    let text = scratch("notes.jpg");
    std::fs::write(&text, "not a photo").unwrap();
    let out = maskd(&["segment", "--image", &text.display().to_string(), "--point", "1,1", "--out", "/dev/null"]);
    assert_fails_with(&out, &["notes.jpg is not an image maskd can read"]);
}
