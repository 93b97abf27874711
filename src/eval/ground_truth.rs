//! A dataset's reference mask: the object, and the pixels that are not scored.

use anyhow::{ensure, Result};

use crate::model::Mask;

/// The object mask plus an optional ignore band (GrabCut's uncertain
/// boundary), whose pixels count neither for IoU nor as click errors.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    object: Mask,
    ignore: Option<Mask>,
}

impl GroundTruth {
    /// # Errors
    /// The ignore mask differs in size from the object mask, or no object
    /// pixel is scored (nothing to click on).
    pub fn new(object: Mask, ignore: Option<Mask>) -> Result<GroundTruth> {
        if let Some(ignore) = &ignore {
            ensure!(
                (ignore.width(), ignore.height()) == (object.width(), object.height()),
                "ignore mask is {}x{}, object mask {}x{}",
                ignore.width(),
                ignore.height(),
                object.width(),
                object.height()
            );
        }
        let truth = GroundTruth { object, ignore };
        let (w, h) = (truth.width(), truth.height());
        let scored = (0..h).any(|y| (0..w).any(|x| truth.object.get(x, y) && !truth.is_ignored(x, y)));
        ensure!(scored, "the mask has no object pixels");
        Ok(truth)
    }

    pub fn width(&self) -> u32 {
        self.object.width()
    }

    pub fn height(&self) -> u32 {
        self.object.height()
    }

    pub fn is_object(&self, x: u32, y: u32) -> bool {
        self.object.get(x, y)
    }

    pub fn is_ignored(&self, x: u32, y: u32) -> bool {
        self.ignore.as_ref().is_some_and(|m| m.get(x, y))
    }

    /// Intersection over union with a prediction, over the scored pixels only
    /// (1 when both are empty there).
    ///
    /// # Panics
    /// The prediction differs in size from the ground truth.
    pub fn iou(&self, prediction: &Mask) -> f64 {
        assert_eq!((prediction.width(), prediction.height()), (self.width(), self.height()), "masks differ in size");
        let (mut inter, mut union) = (0u64, 0u64);
        for y in 0..self.height() {
            for x in 0..self.width() {
                if self.is_ignored(x, y) {
                    continue;
                }
                let (p, t) = (prediction.get(x, y), self.object.get(x, y));
                inter += u64::from(p && t);
                union += u64::from(p || t);
            }
        }
        if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_pixels_do_not_count_for_iou() {
        // Object: left half of 4x1; the prediction also covers x = 2, which is ignored.
        let object = Mask::from_fn(4, 1, |x, _| x < 2);
        let ignore = Mask::from_fn(4, 1, |x, _| x == 2);
        let prediction = Mask::from_fn(4, 1, |x, _| x < 3);
        assert_eq!(GroundTruth::new(object.clone(), None).unwrap().iou(&prediction), 2.0 / 3.0);
        assert_eq!(GroundTruth::new(object, Some(ignore)).unwrap().iou(&prediction), 1.0);
    }

    #[test]
    fn a_mask_without_scored_object_pixels_is_an_error() {
        let object = Mask::from_fn(3, 1, |x, _| x == 1);
        let err = GroundTruth::new(object.clone(), Some(object)).unwrap_err();
        assert_eq!(err.to_string(), "the mask has no object pixels");
        let err = GroundTruth::new(Mask::from_fn(3, 1, |_, _| true), Some(Mask::from_fn(2, 1, |_, _| false)));
        assert!(err.unwrap_err().to_string().contains("ignore mask is 2x1"));
    }
}
