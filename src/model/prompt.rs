//! What the user asks for: points, a box, a previous mask.

use std::fmt;

use ndarray::Array2;
use thiserror::Error;

use super::preprocess::{Geometry, Size};

/// Whether a point lies on the object or on the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointLabel {
    Background,
    Foreground,
}

impl PointLabel {
    /// The label value SAM's prompt encoder expects.
    fn code(self) -> f32 {
        match self {
            PointLabel::Background => 0.0,
            PointLabel::Foreground => 1.0,
        }
    }
}

/// A click, in original image pixels (x right, y down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
    pub label: PointLabel,
}

impl Point {
    pub fn foreground(x: f32, y: f32) -> Point {
        Point { x, y, label: PointLabel::Foreground }
    }

    pub fn background(x: f32, y: f32) -> Point {
        Point { x, y, label: PointLabel::Background }
    }
}

/// A box around the object, in original image pixels: `x0 < x1`, `y0 < y1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxPrompt {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

/// Low-resolution mask logits (`mask_input_size` squared) from an earlier
/// decode, fed back to refine the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct LowResMask(pub Array2<f32>);

/// A prompt for the mask decoder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub points: Vec<Point>,
    pub bbox: Option<BoxPrompt>,
    pub mask_input: Option<LowResMask>,
}

/// Why a prompt cannot be decoded.
#[derive(Debug, Error, PartialEq)]
pub enum PromptError {
    #[error("the prompt has neither points nor a box")]
    Empty,
    #[error("{what} is not a finite number ({value})")]
    NotFinite { what: String, value: f32 },
    #[error("point ({x}, {y}) lies outside the {width}x{height} image (x 0-{}, y 0-{})", width.saturating_sub(1), height.saturating_sub(1))]
    PointOutside { x: f32, y: f32, width: u32, height: u32 },
    #[error("box ({x0}, {y0}, {x1}, {y1}) needs x0 < x1 and y0 < y1")]
    BoxInverted { x0: f32, y0: f32, x1: f32, y1: f32 },
    #[error("box ({x0}, {y0}, {x1}, {y1}) lies outside the {width}x{height} image")]
    BoxOutside { x0: f32, y0: f32, x1: f32, y1: f32, width: u32, height: u32 },
    #[error("mask input is {got:?}, the model takes {expected}x{expected}")]
    MaskInputShape { got: Vec<usize>, expected: usize },
}

impl Prompt {
    pub fn from_points(points: Vec<Point>) -> Prompt {
        Prompt { points, ..Prompt::default() }
    }

    /// Checks the points and box against an image of `size`. A point names a
    /// pixel, so it lies in 0..=width-1 (pixel centres at whole numbers); a
    /// box's corners may touch the far edges: it may end at `width`.
    ///
    /// # Errors
    /// The first problem found, naming the offending value.
    pub fn validate(&self, size: Size) -> Result<(), PromptError> {
        if self.points.is_empty() && self.bbox.is_none() {
            return Err(PromptError::Empty);
        }
        let (w, h) = (size.width as f32, size.height as f32);
        for (i, p) in self.points.iter().enumerate() {
            finite(&format!("point {} x", i + 1), p.x)?;
            finite(&format!("point {} y", i + 1), p.y)?;
            if !(0.0..=w - 1.0).contains(&p.x) || !(0.0..=h - 1.0).contains(&p.y) {
                return Err(PromptError::PointOutside {
                    x: p.x,
                    y: p.y,
                    width: size.width,
                    height: size.height,
                });
            }
        }
        if let Some(b) = self.bbox {
            for (name, v) in [("box x0", b.x0), ("box y0", b.y0), ("box x1", b.x1), ("box y1", b.y1)] {
                finite(name, v)?;
            }
            if b.x0 >= b.x1 || b.y0 >= b.y1 {
                return Err(PromptError::BoxInverted { x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1 });
            }
            if b.x0 < 0.0 || b.y0 < 0.0 || b.x1 > w || b.y1 > h {
                return Err(PromptError::BoxOutside {
                    x0: b.x0,
                    y0: b.y0,
                    x1: b.x1,
                    y1: b.y1,
                    width: size.width,
                    height: size.height,
                });
            }
        }
        Ok(())
    }

    /// Checks the mask input against a model whose low-res masks are
    /// `mask_side` squared.
    ///
    /// # Errors
    /// The mask input has another shape.
    pub fn validate_mask_input(&self, mask_side: usize) -> Result<(), PromptError> {
        match &self.mask_input {
            Some(mask) if mask.0.shape() != [mask_side, mask_side] => {
                Err(PromptError::MaskInputShape { got: mask.0.shape().to_vec(), expected: mask_side })
            }
            _ => Ok(()),
        }
    }

    /// SAM's rule for the default mask: a single point is ambiguous, so pick
    /// the best of the multimask candidates; more points or a box pin the
    /// object down, so take the single-mask output.
    pub fn is_ambiguous(&self) -> bool {
        self.points.len() == 1 && self.bbox.is_none()
    }

    /// The decoder's sparse inputs: coordinates in the model input frame and
    /// labels, with box corners labelled 2 and 3, and a padding point
    /// (label -1) when there is no box, as the reference predictor does.
    pub(crate) fn sparse_inputs(&self, geometry: &Geometry) -> (Vec<[f32; 2]>, Vec<f32>) {
        let mut coords = Vec::with_capacity(self.points.len() + 2);
        let mut labels = Vec::with_capacity(self.points.len() + 2);
        for p in &self.points {
            let (x, y) = geometry.to_input(p.x, p.y);
            coords.push([x, y]);
            labels.push(p.label.code());
        }
        match self.bbox {
            Some(b) => {
                let (x0, y0) = geometry.to_input(b.x0, b.y0);
                let (x1, y1) = geometry.to_input(b.x1, b.y1);
                coords.extend([[x0, y0], [x1, y1]]);
                labels.extend([2.0, 3.0]);
            }
            None => {
                coords.push([0.0, 0.0]);
                labels.push(-1.0);
            }
        }
        (coords, labels)
    }
}

fn finite(what: &str, value: f32) -> Result<(), PromptError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(PromptError::NotFinite { what: what.to_string(), value })
    }
}

impl fmt::Display for PointLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PointLabel::Background => "background",
            PointLabel::Foreground => "object",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: Size = Size { width: 640, height: 480 };

    fn boxed(x0: f32, y0: f32, x1: f32, y1: f32) -> Prompt {
        Prompt { bbox: Some(BoxPrompt { x0, y0, x1, y1 }), ..Prompt::default() }
    }

    #[test]
    fn empty_prompt_is_rejected() {
        assert_eq!(Prompt::default().validate(SIZE), Err(PromptError::Empty));
    }

    #[test]
    fn points_on_the_last_pixels_are_inside_and_beyond_are_outside() {
        let ok = Prompt::from_points(vec![Point::foreground(639.0, 479.0), Point::background(0.0, 0.0)]);
        assert_eq!(ok.validate(SIZE), Ok(()));
        for (x, y) in [(640.0, 10.0), (10.0, 480.0), (639.5, 10.0)] {
            let err = Prompt::from_points(vec![Point::foreground(x, y)]).validate(SIZE);
            assert!(matches!(err, Err(PromptError::PointOutside { x: ex, y: ey, .. }) if (ex, ey) == (x, y)), "{x}, {y}");
        }
        let err = Prompt::from_points(vec![Point::foreground(10.0, -0.5)]).validate(SIZE);
        assert!(matches!(err, Err(PromptError::PointOutside { .. })));
    }

    #[test]
    fn nan_and_infinite_coordinates_are_named() {
        let err = Prompt::from_points(vec![Point::foreground(1.0, 1.0), Point::foreground(f32::NAN, 2.0)])
            .validate(SIZE)
            .unwrap_err();
        assert_eq!(err.to_string(), "point 2 x is not a finite number (NaN)");
        let err = boxed(0.0, 0.0, f32::INFINITY, 5.0).validate(SIZE).unwrap_err();
        assert_eq!(err.to_string(), "box x1 is not a finite number (inf)");
    }

    #[test]
    fn inverted_degenerate_and_outside_boxes_are_rejected() {
        assert!(matches!(boxed(100.0, 0.0, 50.0, 10.0).validate(SIZE), Err(PromptError::BoxInverted { .. })));
        assert!(matches!(boxed(0.0, 10.0, 50.0, 10.0).validate(SIZE), Err(PromptError::BoxInverted { .. })));
        assert!(matches!(boxed(0.0, 0.0, 700.0, 10.0).validate(SIZE), Err(PromptError::BoxOutside { .. })));
        assert_eq!(boxed(0.0, 0.0, 640.0, 480.0).validate(SIZE), Ok(()));
    }

    #[test]
    fn mask_input_must_match_the_model() {
        let mut prompt = Prompt::from_points(vec![Point::foreground(1.0, 1.0)]);
        prompt.mask_input = Some(LowResMask(Array2::zeros((64, 64))));
        assert_eq!(
            prompt.validate_mask_input(256),
            Err(PromptError::MaskInputShape { got: vec![64, 64], expected: 256 })
        );
        assert_eq!(prompt.validate_mask_input(64), Ok(()));
    }

    #[test]
    fn sparse_inputs_pad_without_box_and_label_box_corners() {
        let geometry = Geometry::new(SIZE, 1024);
        let points = Prompt::from_points(vec![Point::foreground(320.0, 240.0), Point::background(0.0, 480.0)]);
        let (coords, labels) = points.sparse_inputs(&geometry);
        assert_eq!(coords, vec![[512.0, 384.0], [0.0, 768.0], [0.0, 0.0]]);
        assert_eq!(labels, vec![1.0, 0.0, -1.0]);

        let mut with_box = boxed(64.0, 48.0, 640.0, 480.0);
        with_box.points.push(Point::foreground(320.0, 240.0));
        let (coords, labels) = with_box.sparse_inputs(&geometry);
        assert_eq!(coords, vec![[512.0, 384.0], [102.4, 76.8], [1024.0, 768.0]]);
        assert_eq!(labels, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn only_a_lone_point_is_ambiguous() {
        assert!(Prompt::from_points(vec![Point::foreground(1.0, 1.0)]).is_ambiguous());
        assert!(!Prompt::from_points(vec![Point::foreground(1.0, 1.0); 2]).is_ambiguous());
        let mut with_box = boxed(0.0, 0.0, 5.0, 5.0);
        assert!(!with_box.is_ambiguous());
        with_box.points.push(Point::foreground(1.0, 1.0));
        assert!(!with_box.is_ambiguous());
    }
}
