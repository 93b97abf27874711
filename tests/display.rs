//! The daemon's display picture, pixel for pixel against a checked-in PNG.
//!
//! After an intended change to the rendering, regenerate the golden with
//! `MASKD_BLESS=1 cargo test --release --test display` and look at it.

use std::path::Path;

use maskd::camera::pattern;
use maskd::display::{compose, Shown};
use maskd::model::{Candidate, LowResMask, Mask, Point, Prompt, Size};

fn golden() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/display/live_overlay.png")
}

#[test]
fn the_live_picture_matches_the_golden_png() {
    // A synthetic frame (the pattern source's frame 0: a red disc and a blue
    // square) with a mask of the disc, letterboxed onto a taller screen.
    let picture = pattern(320, 200, 0);
    let disc = Mask::from_fn(320, 200, |x, y| {
        let (dx, dy) = (x as f32 - 96.0, y as f32 - 100.0);
        dx * dx + dy * dy <= 36.0 * 36.0
    });
    let candidate = Candidate {
        token: 2,
        mask: disc,
        predicted_iou: 0.97,
        stability: 0.95,
        low_res: LowResMask(ndarray::Array2::zeros((4, 4))),
    };
    let prompt = Prompt::from_points(vec![Point::foreground(96.0, 100.0)]);
    let lines = ["0.38 fps  encoder 2600 ms  Streaming".to_string(), "frame 7  IoU 0.97  stability 0.95  decode 140 ms".to_string()];
    let shown = Shown { candidate: &candidate, prompt: &prompt };
    let (out, fit) = compose(&picture, Some(shown), &lines, Size::new(400, 300));
    assert_eq!(out.dimensions(), (400, 300));
    assert_eq!((fit.offset_x, fit.offset_y), (0, 25), "bars above and below");
    if std::env::var_os("MASKD_BLESS").is_some() {
        out.save(golden()).unwrap();
    }
    let expected = image::open(golden())
        .unwrap_or_else(|e| panic!("{}: {e} (MASKD_BLESS=1 writes it)", golden().display()))
        .to_rgb8();
    let differing = out.pixels().zip(expected.pixels()).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "{differing} pixels differ from {}", golden().display());
}
