//! The mask overlay: tinted mask, contour, prompt markers, caption.

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::{DrawTarget, Point as EgPoint, Primitive, Size as EgSize};
use embedded_graphics::primitives::{Circle, PrimitiveStyleBuilder, Rectangle};
use embedded_graphics::{Drawable, Pixel};

use super::caption::Caption;
use super::Canvas;
use crate::model::{Mask, PointLabel, Prompt};

/// Colour of the mask tint and contour.
pub const MASK_COLOR: Rgb888 = Rgb888::new(30, 144, 255);
/// Opacity of the mask tint (0-255).
pub const MASK_ALPHA: u8 = 110;
const FOREGROUND_COLOR: Rgb888 = Rgb888::new(0, 200, 80);
const BACKGROUND_COLOR: Rgb888 = Rgb888::new(230, 40, 40);
const BOX_COLOR: Rgb888 = Rgb888::new(255, 210, 0);

/// Everything drawn over a photo for one mask.
#[derive(Debug, Clone, Copy)]
pub struct Overlay<'a> {
    pub mask: &'a Mask,
    pub prompt: &'a Prompt,
    /// One line of text drawn at the top-left, e.g. the scores.
    pub caption: &'a str,
}

impl Overlay<'_> {
    /// Tints the mask into the canvas' own pixels, then draws the rest.
    pub fn render(&self, canvas: &mut Canvas) {
        canvas.tint(self.mask, MASK_COLOR, MASK_ALPHA);
        let Ok(()) = self.draw(canvas);
    }

    /// Line widths and marker sizes grow with the picture so they stay visible.
    fn scale(&self) -> u32 {
        (self.mask.width().max(self.mask.height()) / 500).max(1)
    }
}

impl Drawable for Overlay<'_> {
    type Color = Rgb888;
    type Output = ();

    /// Draws contour, prompts and caption; the translucent tint needs
    /// [`Overlay::render`] on a [`Canvas`].
    fn draw<D: DrawTarget<Color = Rgb888>>(&self, target: &mut D) -> Result<(), D::Error> {
        let scale = self.scale() as i32;
        target.draw_iter(contour(self.mask, scale - 1).map(|p| Pixel(p, MASK_COLOR)))?;
        if let Some(b) = self.prompt.bbox {
            let style = PrimitiveStyleBuilder::new().stroke_color(BOX_COLOR).stroke_width(2 * scale as u32).build();
            let top_left = EgPoint::new(b.x0.round() as i32, b.y0.round() as i32);
            let size = EgSize::new((b.x1 - b.x0).round() as u32, (b.y1 - b.y0).round() as u32);
            Rectangle::new(top_left, size).into_styled(style).draw(target)?;
        }
        let diameter = 12 * scale as u32;
        for p in &self.prompt.points {
            let fill = match p.label {
                PointLabel::Foreground => FOREGROUND_COLOR,
                PointLabel::Background => BACKGROUND_COLOR,
            };
            let style = PrimitiveStyleBuilder::new()
                .fill_color(fill)
                .stroke_color(Rgb888::WHITE)
                .stroke_width(2 * scale as u32)
                .build();
            Circle::with_center(EgPoint::new(p.x.round() as i32, p.y.round() as i32), diameter)
                .into_styled(style)
                .draw(target)?;
        }
        Caption { text: self.caption, large: scale > 1, top: 0 }.draw(target)?;
        Ok(())
    }
}

/// Pixels on the mask's boundary (set, with an unset 4-neighbour or the
/// image edge), thickened by `radius` pixels outward and inward.
fn contour(mask: &Mask, radius: i32) -> impl Iterator<Item = EgPoint> + '_ {
    let (w, h) = (mask.width() as i32, mask.height() as i32);
    let set = move |x: i32, y: i32| x >= 0 && y >= 0 && x < w && y < h && mask.get(x as u32, y as u32);
    (0..h)
        .flat_map(move |y| (0..w).map(move |x| (x, y)))
        .filter(move |&(x, y)| {
            set(x, y) && [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)].iter().any(|&(a, b)| !set(a, b))
        })
        .flat_map(move |(x, y)| {
            (-radius..=radius).flat_map(move |dy| (-radius..=radius).map(move |dx| EgPoint::new(x + dx, y + dy)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Point;
    use embedded_graphics::mock_display::MockDisplay;

    #[test]
    fn contour_of_a_square_is_its_border() {
        let mask = Mask::from_fn(5, 5, |x, y| (1..=3).contains(&x) && (1..=3).contains(&y));
        let mut points: Vec<(i32, i32)> = contour(&mask, 0).map(|p| (p.x, p.y)).collect();
        points.sort();
        let mut border: Vec<(i32, i32)> =
            (1..=3).flat_map(|y| (1..=3).map(move |x| (x, y))).filter(|&p| p != (2, 2)).collect();
        border.sort();
        assert_eq!(points, border);
    }

    #[test]
    fn overlay_draws_contour_and_marker() {
        let mask = Mask::from_fn(40, 40, |x, y| (5..=30).contains(&x) && (5..=30).contains(&y));
        let prompt = Prompt::from_points(vec![Point::foreground(20.0, 20.0)]);
        let mut display: MockDisplay<Rgb888> = MockDisplay::new();
        display.set_allow_overdraw(true);
        Overlay { mask: &mask, prompt: &prompt, caption: "" }.draw(&mut display).unwrap();
        // Contour corner in mask colour, marker centre filled in object green,
        // nothing outside the mask.
        assert_eq!(display.get_pixel(EgPoint::new(5, 5)), Some(MASK_COLOR));
        assert_eq!(display.get_pixel(EgPoint::new(30, 17)), Some(MASK_COLOR));
        assert_eq!(display.get_pixel(EgPoint::new(20, 20)), Some(FOREGROUND_COLOR));
        assert_eq!(display.get_pixel(EgPoint::new(10, 10)), None);
        assert_eq!(display.get_pixel(EgPoint::new(35, 35)), None);
    }
}
