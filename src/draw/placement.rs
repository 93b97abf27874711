//! Where the live picture sits on the screen right now: written by the
//! display each time it shows a picture, read by touch input to map a tap
//! back onto the picture.

use std::sync::{Arc, Mutex, PoisonError};

use super::letterbox::Letterbox;

/// A shared handle on the picture's current [`Letterbox`]; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Placement(Arc<Mutex<Option<Letterbox>>>);

impl Placement {
    /// Records where the picture now sits.
    pub fn set(&self, fit: Letterbox) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(fit);
    }

    /// Where the picture sits; `None` before the first picture.
    pub fn get(&self) -> Option<Letterbox> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Size;

    #[test]
    fn clones_see_the_latest_placement() {
        let shown = Placement::default();
        let reader = shown.clone();
        assert_eq!(reader.get(), None);
        let fit = Letterbox::fit(Size::new(640, 480), Size::new(800, 480));
        shown.set(fit);
        assert_eq!(reader.get(), Some(fit));
    }
}
