//! Pictures of the proposed masks: every mask tinted in its own colour over
//! the photo, and an edge map of the mask boundaries.

use embedded_graphics::pixelcolor::Rgb888;
use image::{GrayImage, Luma, RgbImage};

use crate::draw::Canvas;
use crate::model::Mask;

/// Opacity of each mask's tint (0-255).
pub const TINT_ALPHA: u8 = 120;

/// A distinct colour for mask `index`: hues a golden angle apart, so
/// neighbours in the list never look alike.
pub fn mask_color(index: usize) -> Rgb888 {
    let hue = (index as f64 * 137.507_764) % 360.0;
    let (s, v) = (0.75, 0.95);
    let c = v * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let byte = |f: f64| ((f + v - c) * 255.0).round() as u8;
    Rgb888::new(byte(r), byte(g), byte(b))
}

/// The photo with mask `i` tinted in `mask_color(i)` and outlined in it;
/// larger masks are drawn first so the smaller ones on them stay visible.
pub fn overlay(image: RgbImage, masks: &[Mask]) -> RgbImage {
    let mut order: Vec<usize> = (0..masks.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(masks[i].area()));
    let mut canvas = Canvas::new(image);
    for &i in &order {
        let color = mask_color(i);
        canvas.tint(&masks[i], color, TINT_ALPHA);
        canvas.tint(&boundary(&masks[i]), color, 255);
    }
    canvas.into_image()
}

/// The mask boundaries of all masks: 255 on a set pixel with an unset
/// 4-neighbour (the image border is not a boundary), 0 elsewhere. This is
/// how the SAM paper turns automatic masks into zero-shot edges.
pub fn edge_map(width: u32, height: u32, masks: &[Mask]) -> GrayImage {
    let mut edges = GrayImage::new(width, height);
    for mask in masks {
        let edge = boundary(mask);
        for (x, y, pixel) in edges.enumerate_pixels_mut() {
            if edge.get(x, y) {
                *pixel = Luma([255]);
            }
        }
    }
    edges
}

/// Set pixels with an unset 4-neighbour inside the image.
fn boundary(mask: &Mask) -> Mask {
    let (w, h) = (mask.width(), mask.height());
    Mask::from_fn(w, h, |x, y| {
        mask.get(x, y)
            && ((x > 0 && !mask.get(x - 1, y))
                || (x + 1 < w && !mask.get(x + 1, y))
                || (y > 0 && !mask.get(x, y - 1))
                || (y + 1 < h && !mask.get(x, y + 1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::pixelcolor::RgbColor;

    #[test]
    fn edges_are_inner_boundaries_not_the_frame() {
        // A square touching the left edge of a 6x5 image.
        let square = Mask::from_fn(6, 5, |x, y| x <= 2 && (1..=3).contains(&y));
        let edges = edge_map(6, 5, &[square]);
        let art: Vec<String> = (0..5)
            .map(|y| (0..6).map(|x| if edges.get_pixel(x, y)[0] == 255 { '#' } else { '.' }).collect())
            .collect();
        assert_eq!(art, vec!["......", "###...", "..#...", "###...", "......"]);
    }

    #[test]
    fn small_masks_are_drawn_over_large_ones() {
        let big = Mask::from_fn(4, 1, |_, _| true);
        let small = Mask::from_fn(4, 1, |x, _| x == 1);
        let out = overlay(RgbImage::new(4, 1), &[small.clone(), big]);
        let c = mask_color(0);
        assert_eq!(out.get_pixel(1, 0).0, [c.r(), c.g(), c.b()], "the small mask's outline is on top");
        assert_ne!(out.get_pixel(0, 0).0, [c.r(), c.g(), c.b()]);
    }

    #[test]
    fn colours_differ_between_neighbours() {
        let colors: Vec<Rgb888> = (0..32).map(mask_color).collect();
        for pair in colors.windows(2) {
            assert_ne!(pair[0], pair[1]);
        }
        assert_eq!(mask_color(0), Rgb888::new(242, 61, 61));
    }
}
