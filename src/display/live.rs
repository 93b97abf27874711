//! The live display: the newest embedded frame, or for a while after an
//! answer the answered frame with its mask, letterboxed onto a screen with
//! status text. Runs on its own thread and only reads the pipeline, so a
//! slow screen never holds up inference.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use embedded_graphics::prelude::{Point as EgPoint, Primitive, Size as EgSize};
use embedded_graphics::primitives::{PrimitiveStyleBuilder, Rectangle};
use embedded_graphics::Drawable;
use image::imageops::{self, FilterType};
use image::RgbImage;
use log::warn;

use crate::draw::{Canvas, Caption, Letterbox, Overlay, Placement, MASK_COLOR};
use super::screen::Screen;
use crate::model::{Candidate, Prompt, Size};
use crate::pipeline::Pipeline;

/// How often the display looks for news.
const POLL: Duration = Duration::from_millis(50);

/// A mask to draw over the picture.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a> {
    pub candidate: &'a Candidate,
    pub prompt: &'a Prompt,
}

/// Draws `picture` (with `shown` over it) letterboxed onto a black screen of
/// `screen` size, then one caption line per entry of `lines`.
pub fn compose(picture: &RgbImage, shown: Option<Shown<'_>>, lines: &[String], screen: Size) -> (RgbImage, Letterbox) {
    let mut canvas = Canvas::new(picture.clone());
    if let Some(shown) = shown {
        Overlay { mask: &shown.candidate.mask, prompt: shown.prompt, caption: "" }.render(&mut canvas);
        if let Some(b) = shown.candidate.mask.bbox() {
            let style = PrimitiveStyleBuilder::new().stroke_color(MASK_COLOR).stroke_width(1).build();
            let Ok(()) = Rectangle::new(EgPoint::new(b.x0 as i32, b.y0 as i32), EgSize::new(b.width(), b.height()))
                .into_styled(style)
                .draw(&mut canvas);
        }
    }
    let fit = Letterbox::fit(Size::new(picture.width(), picture.height()), screen);
    let scaled = imageops::resize(canvas.image(), fit.fitted.width, fit.fitted.height, FilterType::Triangle);
    let mut out = RgbImage::new(screen.width, screen.height);
    imageops::replace(&mut out, &scaled, i64::from(fit.offset_x), i64::from(fit.offset_y));
    let mut out = Canvas::new(out);
    let mut top = 0;
    for line in lines {
        let caption = Caption { text: line, large: screen.width >= 800, top };
        let Ok(()) = caption.draw(&mut out);
        top += caption.height() as i32;
    }
    (out.into_image(), fit)
}

/// How long an answer stays on screen before live frames resume.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSettings {
    pub hold: Duration,
}

/// Shows the pipeline's frames and answers on `screen` until `stop`.
/// `placement` always holds where the picture sits on screen, for touch input.
pub fn run_live(
    screen: &mut dyn Screen,
    pipeline: &Pipeline,
    settings: &LiveSettings,
    placement: &Placement,
    stop: &AtomicBool,
) {
    let (mut frame_seen, mut answer_seen) = (0, 0);
    let (mut frame, mut answer) = (None, None);
    let mut showing_answer = false;
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let mut changed = false;
        if let Some((version, newest)) = pipeline.cache().newest().peek_newer(frame_seen, POLL) {
            (frame_seen, frame, changed) = (version, Some(newest), true);
        }
        if let Some((version, newest)) = pipeline.answers().peek_newer(answer_seen, Duration::ZERO) {
            (answer_seen, answer, changed) = (version, Some(newest), true);
        }
        let hold = answer.as_ref().filter(|a| a.decoded_at.elapsed() < settings.hold);
        if showing_answer && hold.is_none() {
            changed = true;
        }
        if !changed {
            continue;
        }
        let status = pipeline.status();
        let mut lines = vec![format!("{:.2} fps  encoder {:.0} ms  {:?}", status.fps, status.encoder_ms, status.camera)];
        let (picture, shown) = match (hold, &frame) {
            (Some(a), _) => {
                lines.push(format!(
                    "frame {}  IoU {:.2}  stability {:.2}  decode {} ms",
                    a.frame.id,
                    a.mask.predicted_iou,
                    a.mask.stability,
                    a.decode.as_millis()
                ));
                (&*a.frame.image, Some(Shown { candidate: &a.mask, prompt: &a.prompt }))
            }
            (None, Some(f)) => (&*f.frame.image, None),
            (None, None) => continue,
        };
        showing_answer = shown.is_some();
        let started = Instant::now();
        let (out, fit) = compose(picture, shown, &lines, screen.size());
        placement.set(fit);
        match screen.show(&out) {
            Ok(()) => failing = false,
            // Say it once per outage, not at every frame.
            Err(e) if !failing => {
                warn!("display: {e:#}");
                failing = true;
            }
            Err(_) => {}
        }
        log::trace!("display: drew a frame in {:?}", started.elapsed());
    }
}
