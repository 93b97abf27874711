//! The simulated user: RITM's automatic clicker (`isegm/inference/clicker.py`).

use serde::Serialize;

use super::ground_truth::GroundTruth;
use crate::model::{squared_distance_to_outside, Mask, Point};

/// A click on pixel (`x`, `y`): positive on the object, negative on the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Click {
    pub x: u32,
    pub y: u32,
    pub positive: bool,
}

impl Click {
    /// The click as a SAM point; pixel indices are SAM's coordinates (its
    /// prompt encoder adds the half-pixel offset itself).
    pub fn to_point(self) -> Point {
        let (x, y) = (self.x as f32, self.y as f32);
        if self.positive {
            Point::foreground(x, y)
        } else {
            Point::background(x, y)
        }
    }
}

/// Chooses each next click from the errors of the current prediction.
#[derive(Debug, Clone)]
pub struct Clicker<'a> {
    truth: &'a GroundTruth,
    clicked: Vec<bool>,
}

impl<'a> Clicker<'a> {
    pub fn new(truth: &'a GroundTruth) -> Clicker<'a> {
        Clicker { truth, clicked: vec![false; truth.width() as usize * truth.height() as usize] }
    }

    /// The click a user would make to fix `prediction` (an empty mask before
    /// the first click), `None` when no scored pixel is wrong.
    ///
    /// As RITM: the false-negative and false-positive regions (ignored pixels
    /// excluded) each get an exact Euclidean distance transform with the
    /// image border as boundary; pixels already clicked are set to 0; the
    /// region whose farthest pixel is farther wins (a tie goes to the false
    /// positives, as RITM's strict `fn > fp`), and the click lands on that
    /// pixel, the first in row-major order among equals.
    ///
    /// # Panics
    /// `prediction` differs in size from the ground truth.
    pub fn next_click(&mut self, prediction: &Mask) -> Option<Click> {
        let (w, h) = (self.truth.width(), self.truth.height());
        assert_eq!((prediction.width(), prediction.height()), (w, h), "prediction differs in size from the mask");
        let mut false_negative = Vec::with_capacity(self.clicked.len());
        let mut false_positive = Vec::with_capacity(self.clicked.len());
        for y in 0..h {
            for x in 0..w {
                let scored = !self.truth.is_ignored(x, y);
                let (object, predicted) = (self.truth.is_object(x, y), prediction.get(x, y));
                false_negative.push(scored && object && !predicted);
                false_positive.push(scored && !object && predicted);
            }
        }
        let (fn_at, fn_far) = self.farthest(&false_negative);
        let (fp_at, fp_far) = self.farthest(&false_positive);
        if fn_far == 0 && fp_far == 0 {
            return None;
        }
        let positive = fn_far > fp_far;
        let at = if positive { fn_at } else { fp_at };
        self.clicked[at] = true;
        Some(Click { x: (at % w as usize) as u32, y: (at / w as usize) as u32, positive })
    }

    /// The first pixel, row-major, farthest from the region's boundary, and
    /// its squared distance (0 when the region is empty or all clicked).
    fn farthest(&self, region: &[bool]) -> (usize, u64) {
        let distances =
            squared_distance_to_outside(region, self.truth.width() as usize, self.truth.height() as usize);
        let mut best = (0, 0);
        for (i, (&d, &clicked)) in distances.iter().zip(&self.clicked).enumerate() {
            if !clicked && d > best.1 {
                best = (i, d);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses ASCII art: `#` object, `?` ignored, `.` background.
    fn truth(rows: &[&str]) -> GroundTruth {
        let at = |x: u32, y: u32| rows[y as usize].as_bytes()[x as usize];
        let (w, h) = (rows[0].len() as u32, rows.len() as u32);
        let object = Mask::from_fn(w, h, |x, y| at(x, y) == b'#');
        let ignore = Mask::from_fn(w, h, |x, y| at(x, y) == b'?');
        GroundTruth::new(object, Some(ignore)).unwrap()
    }

    fn mask(rows: &[&str]) -> Mask {
        Mask::from_fn(rows[0].len() as u32, rows.len() as u32, |x, y| rows[y as usize].as_bytes()[x as usize] == b'#')
    }

    fn empty(t: &GroundTruth) -> Mask {
        Mask::from_fn(t.width(), t.height(), |_, _| false)
    }

    #[test]
    fn first_click_is_positive_at_the_object_centre() {
        let t = truth(&[
            ".......", //
            ".#####.",
            ".#####.",
            ".#####.",
            ".#####.",
            ".#####.",
            ".......",
        ]);
        assert_eq!(Clicker::new(&t).next_click(&empty(&t)), Some(Click { x: 3, y: 3, positive: true }));
    }

    #[test]
    fn the_image_border_bounds_an_object_touching_it() {
        // Without the border as boundary the farthest pixel would be (0, 0).
        let t = truth(&[
            "####..", //
            "####..",
            "####..",
            "####..",
        ]);
        assert_eq!(Clicker::new(&t).next_click(&empty(&t)), Some(Click { x: 1, y: 1, positive: true }));
    }

    #[test]
    fn the_larger_error_region_gets_the_click() {
        let t = truth(&[
            "#####....", //
            "#####....",
            "#####....",
            "#####....",
            "#####....",
        ]);
        // A thin false negative (column 0) against a 3x3 false positive block.
        let fp_bigger = mask(&[
            ".####....", //
            ".####.###",
            ".####.###",
            ".####.###",
            ".####....",
        ]);
        assert_eq!(Clicker::new(&t).next_click(&fp_bigger), Some(Click { x: 7, y: 2, positive: false }));
        let fn_bigger = mask(&[
            ".........", //
            ".........",
            ".........",
            ".........",
            "........#",
        ]);
        assert_eq!(Clicker::new(&t).next_click(&fn_bigger), Some(Click { x: 2, y: 2, positive: true }));
    }

    #[test]
    fn ties_go_negative_and_clicked_pixels_are_not_clicked_again() {
        let t = truth(&[
            "#....", //
        ]);
        // FN at (0, 0) and FP at (4, 0), both at distance 1.
        let prediction = mask(&["....#"]);
        let mut clicker = Clicker::new(&t);
        assert_eq!(clicker.next_click(&prediction), Some(Click { x: 4, y: 0, positive: false }));
        assert_eq!(clicker.next_click(&prediction), Some(Click { x: 0, y: 0, positive: true }));
        assert_eq!(clicker.next_click(&prediction), None, "every error pixel was clicked");
    }

    #[test]
    fn ignored_pixels_are_never_errors() {
        let t = truth(&[
            "???????", //
            "?#####?",
            "???????",
        ]);
        let perfect_where_scored = mask(&["#######", "#######", "......."]);
        assert_eq!(Clicker::new(&t).next_click(&perfect_where_scored), None);
        // The band bounds the object like a boundary: all of row 1 is 1 away from it.
        assert_eq!(Clicker::new(&t).next_click(&empty(&t)), Some(Click { x: 1, y: 1, positive: true }));
    }
}
