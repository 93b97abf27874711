//! Taps as prompts: each tap on the picture segments the object under it
//! in the newest frame; the display shows the answer.

use std::time::Duration;

use anyhow::Result;
use crossbeam_channel::unbounded;
use log::{debug, info, warn};

use super::{Touch, TouchSource};
use crate::draw::{Letterbox, Placement};
use crate::model::{Point, Prompt};
use crate::pipeline::{FrameSelector, Job, Pipeline};

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// Opens the touch device with `open` (again after each failure, with
/// backoff) and queues a point prompt for every tap on the picture; taps on
/// the bars around it are ignored. Runs until the process ends.
pub fn run_taps<T: TouchSource>(mut open: impl FnMut() -> Result<T>, pipeline: &Pipeline, shown: &Placement) {
    let (replies, answered) = unbounded();
    // The answers reach the screen through the pipeline; here they are only logged.
    std::thread::spawn(move || {
        for reply in answered {
            let reply: crate::pipeline::Reply = reply;
            if let Err(rejection) = reply.result {
                info!("touch: {rejection}");
            }
        }
    });
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut device = match open() {
            Ok(device) => device,
            Err(e) => {
                warn!("{e:#}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        loop {
            let touch = match device.next_touch() {
                Ok(touch) => touch,
                Err(e) => {
                    warn!("{e}; reopening");
                    break;
                }
            };
            let fit = shown.get();
            let Some(prompt) = tap_prompt(touch, fit) else {
                debug!("touch: tap at ({:.0}, {:.0}) is off the picture", touch.x, touch.y);
                continue;
            };
            let job = Job { prompt, frame: FrameSelector::Latest, tag: 0, reply: replies.clone() };
            if let Err((rejection, _)) = pipeline.submit(job) {
                info!("touch: tap at ({:.0}, {:.0}) not queued: {rejection}", touch.x, touch.y);
            }
        }
    }
}

/// The point prompt for a tap on the screen, where `fit` places the picture;
/// `None` when nothing is shown yet or the tap is on the bars.
pub fn tap_prompt(touch: Touch, fit: Option<Letterbox>) -> Option<Prompt> {
    let (x, y) = fit?.to_picture(touch.x, touch.y)?;
    Some(Prompt::from_points(vec![Point::foreground(x, y)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Size;

    #[test]
    fn a_tap_becomes_a_point_on_the_picture() {
        // A 640x480 picture on an 800x480 screen: bars of 80 px left and right.
        let fit = Letterbox::fit(Size::new(640, 480), Size::new(800, 480));
        let prompt = tap_prompt(Touch { x: 400.0, y: 240.0 }, Some(fit)).unwrap();
        assert_eq!((prompt.points[0].x, prompt.points[0].y), (320.0, 240.0));
        assert!(tap_prompt(Touch { x: 40.0, y: 240.0 }, Some(fit)).is_none(), "a tap on the bar");
        assert!(tap_prompt(Touch { x: 400.0, y: 240.0 }, None).is_none(), "nothing shown yet");
    }
}
