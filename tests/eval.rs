//! `maskd eval` end to end on the real model: a tiny COCO-MVal-style dataset
//! built from the golden photos, with the PyTorch reference masks as ground
//! truth (so a few clicks must reach a high IoU).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{golden_dir, model_dir};

/// Photo, golden mask: one object per photo.
const SAMPLES: [(&str, &str); 4] = [
    ("chelsea", "chelsea_refine_0.png"),
    ("coffee", "coffee_box_0.png"),
    ("rocket", "rocket_box_0.png"),
    ("astronaut", "astronaut_face_box_point_0.png"),
];

fn maskd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskd")).args(args).env("MASKD_MODEL", model_dir()).output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maskd-eval-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `root/images/<photo> photo.png` + `root/masks/<photo> photo.png` (255 = object):
/// names with spaces, as COCO-MVal has.
fn build_dataset(root: &Path) {
    for dir in ["images", "masks"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for (photo, mask) in SAMPLES {
        let name = format!("{photo} photo.png");
        std::fs::copy(golden_dir().join(format!("images/{photo}.png")), root.join("images").join(&name)).unwrap();
        let grey = image::open(golden_dir().join("masks").join(mask)).unwrap().to_luma8();
        let binary = image::GrayImage::from_fn(grey.width(), grey.height(), |x, y| {
            image::Luma([if grey.get_pixel(x, y)[0] > 127 { 255 } else { 0 }])
        });
        binary.save(root.join("masks").join(&name)).unwrap();
    }
}

#[test]
fn eval_writes_csv_and_json_and_reaches_high_iou() {
    let scratch = scratch("run");
    let dataset = scratch.join("COCO_MVal");
    build_dataset(&dataset);
    let out = scratch.join("results");
    let args = ["eval", "--dataset", dataset.to_str().unwrap(), "--max-clicks", "8", "--out", out.to_str().unwrap()];
    let run = maskd(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("COCO_MVal (coco-mval, 4 images") && stdout.contains("NoC@90"), "{stdout}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("COCO_MVal.f32.json")).unwrap()).unwrap();
    assert_eq!(summary["n"], 4);
    assert_eq!(summary["format"], "coco-mval");
    assert_eq!(summary["runtime"], "maskd");
    assert_eq!(summary["max_clicks"], 8);
    for key in ["noc85", "noc90"] {
        let noc = summary[key].as_f64().unwrap();
        assert!((1.0..=8.0).contains(&noc), "{key} {noc}");
    }
    assert!(summary["miou5"].as_f64().unwrap() >= 0.85, "{summary}");
    assert!(summary["encode_ms"].as_f64().unwrap() > 0.0 && summary["decode_ms"].as_f64().unwrap() > 0.0);

    let mut csv = csv::Reader::from_path(out.join("COCO_MVal.f32.csv")).unwrap();
    let header = csv.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    let names: Vec<&str> = rows.iter().map(|r| &r[column("image")]).collect();
    assert_eq!(names, ["astronaut photo", "chelsea photo", "coffee photo", "rocket photo"]);
    for row in &rows {
        let ious: Vec<f64> = row[column("ious")].split(' ').map(|v| v.parse().unwrap()).collect();
        let clicks: Vec<&str> = row[column("clicks")].split(' ').collect();
        assert_eq!(ious.len(), clicks.len(), "one IoU per click: {row:?}");
        assert!(clicks[0].ends_with(":+"), "the first click is positive: {row:?}");
        let after_five: f64 = row[column("iou5")].parse().unwrap();
        assert!(after_five >= 0.75, "IoU after 5 clicks {after_five}: {row:?}");
    }
}

#[test]
fn an_image_without_a_mask_is_named() {
    let dataset = scratch("unpaired").join("GrabCut");
    build_dataset(&dataset);
    std::fs::remove_file(dataset.join("masks/coffee photo.png")).unwrap();
    let run = maskd(&["eval", "--dataset", dataset.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("coffee photo.png") && stderr.contains("has no mask"), "{stderr}");
}

#[test]
fn an_unknown_format_asks_for_format() {
    let dataset = scratch("unknown").join("photos");
    build_dataset(&dataset);
    let run = maskd(&["eval", "--dataset", dataset.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot tell the format") && stderr.contains("--format"), "{stderr}");
}
