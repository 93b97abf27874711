//! A fixed frame rate for sources that could deliver frames as fast as asked.

use std::time::{Duration, Instant};

/// Largest frame rate a paced source accepts.
const MAX_FPS: f32 = 120.0;

/// Spaces frames `1 / fps` apart; a late frame does not make the next ones hurry.
#[derive(Debug)]
pub struct Pace {
    interval: Duration,
    due: Instant,
}

impl Pace {
    /// `fps` must have passed [`check_fps`].
    pub fn new(fps: f32) -> Pace {
        Pace { interval: Duration::from_secs_f32(1.0 / fps), due: Instant::now() }
    }

    /// The next frame is due now.
    pub fn restart(&mut self) {
        self.due = Instant::now();
    }

    /// Sleeps until the next frame is due.
    pub fn wait(&mut self) {
        std::thread::sleep(self.due.saturating_duration_since(Instant::now()));
        self.due = self.due.max(Instant::now() - self.interval) + self.interval;
    }
}

/// # Errors
/// `fps` (the value of key `source.fps`) is not in (0, 120].
pub fn check_fps(fps: f32) -> anyhow::Result<()> {
    anyhow::ensure!(fps.is_finite() && fps > 0.0 && fps <= MAX_FPS, "source.fps must be in (0, {MAX_FPS}], got {fps}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_spaced_by_the_interval() {
        let mut pace = Pace::new(50.0);
        let start = Instant::now();
        for _ in 0..3 {
            pace.wait();
        }
        // The first frame is due at once, the next two 20 ms apart.
        assert!(start.elapsed() >= Duration::from_millis(40), "{:?}", start.elapsed());
    }

    #[test]
    fn rates_outside_the_range_are_refused_by_key() {
        for bad in [0.0, -1.0, 121.0, f32::NAN] {
            assert!(check_fps(bad).unwrap_err().to_string().contains("source.fps"), "{bad}");
        }
        assert!(check_fps(0.2).is_ok());
    }
}
