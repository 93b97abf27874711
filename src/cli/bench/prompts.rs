//! The benchmark's prompts: a fixed mix of the prompt shapes users send.

use maskd::model::{BoxPrompt, Point, Prompt, Size};

/// Prompt shapes, in the order the set cycles through them. They differ in
/// the number of sparse tokens the decoder attends to (a padding point is
/// added without a box).
pub const SHAPES: [Shape; 4] = [Shape::OnePoint, Shape::TwoPoints, Shape::FivePoints, Shape::Box];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OnePoint,
    TwoPoints,
    /// Three object points and two background points.
    FivePoints,
    Box,
}

/// Seed of the position generator: every run, and both engines, decode the
/// same prompts.
const SEED: u64 = 0x6d61_736b_6462_656e;

/// `n` prompts inside an image of `size`, cycling through [`SHAPES`].
pub fn prompt_set(size: Size, n: usize) -> Vec<Prompt> {
    let mut rng = SplitMix64(SEED);
    let (w, h) = (size.width as f32, size.height as f32);
    (0..n)
        .map(|i| {
            let mut point = |object: bool| {
                // A point names a pixel: 0..=width-1.
                let (x, y) = (rng.unit() * (w - 1.0), rng.unit() * (h - 1.0));
                if object {
                    Point::foreground(x, y)
                } else {
                    Point::background(x, y)
                }
            };
            match SHAPES[i % SHAPES.len()] {
                Shape::OnePoint => Prompt::from_points(vec![point(true)]),
                Shape::TwoPoints => Prompt::from_points(vec![point(true), point(true)]),
                Shape::FivePoints => {
                    Prompt::from_points(vec![point(true), point(true), point(true), point(false), point(false)])
                }
                Shape::Box => {
                    // 20% to 60% of each side, anywhere in the image.
                    let (bw, bh) = (0.2 + 0.4 * rng.unit(), 0.2 + 0.4 * rng.unit());
                    let x0 = rng.unit() * w * (1.0 - bw);
                    let y0 = rng.unit() * h * (1.0 - bh);
                    Prompt { bbox: Some(BoxPrompt { x0, y0, x1: x0 + bw * w, y1: y0 + bh * h }), ..Prompt::default() }
                }
            }
        })
        .collect()
}

/// A tiny deterministic generator (Vigna's SplitMix64): reproducible across
/// platforms without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_cycle_through_one_two_five_points_and_a_box() {
        let prompts = prompt_set(Size::new(640, 480), 8);
        let shapes: Vec<(usize, bool)> = prompts.iter().map(|p| (p.points.len(), p.bbox.is_some())).collect();
        assert_eq!(
            shapes,
            [(1, false), (2, false), (5, false), (0, true), (1, false), (2, false), (5, false), (0, true)]
        );
        assert_eq!(prompts[2].points.iter().filter(|p| p.label == maskd::model::PointLabel::Background).count(), 2);
    }

    #[test]
    fn prompts_are_valid_for_the_image_and_reproducible() {
        for size in [Size::new(640, 427), Size::new(1, 1), Size::new(3000, 20)] {
            let prompts = prompt_set(size, 40);
            for p in &prompts {
                assert_eq!(p.validate(size), Ok(()), "{p:?} in {size:?}");
            }
            assert_eq!(prompts, prompt_set(size, 40));
        }
    }

    #[test]
    fn prompts_differ_from_each_other() {
        let prompts = prompt_set(Size::new(640, 480), 20);
        let singles: Vec<&Prompt> = prompts.iter().filter(|p| p.points.len() == 1).collect();
        assert!(singles.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn no_prompts_asked_none_made() {
        assert!(prompt_set(Size::new(10, 10), 0).is_empty());
    }
}
