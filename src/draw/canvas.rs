//! An RGB image buffer that embedded-graphics draws into.
//!
//! embedded-graphics has no alpha blending, so translucent fills are done
//! here, on our own pixels, before primitives and text are drawn on top.

use std::convert::Infallible;

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::{DrawTarget, OriginDimensions, Pixel, Size as EgSize};
use image::RgbImage;

use crate::model::Mask;

/// A drawable RGB888 picture.
#[derive(Debug, Clone)]
pub struct Canvas {
    image: RgbImage,
}

impl Canvas {
    pub fn new(image: RgbImage) -> Canvas {
        Canvas { image }
    }

    pub fn image(&self) -> &RgbImage {
        &self.image
    }

    pub fn into_image(self) -> RgbImage {
        self.image
    }

    /// Blends `color` over the set pixels of `mask` with opacity `alpha`
    /// (0 transparent, 255 opaque). The mask must have the canvas' size.
    pub fn tint(&mut self, mask: &Mask, color: Rgb888, alpha: u8) {
        assert_eq!(
            (mask.width(), mask.height()),
            self.image.dimensions(),
            "mask and canvas differ in size"
        );
        let over = [color.r(), color.g(), color.b()];
        for (x, y, pixel) in self.image.enumerate_pixels_mut() {
            if mask.get(x, y) {
                for (c, o) in pixel.0.iter_mut().zip(over) {
                    *c = blend(*c, o, alpha);
                }
            }
        }
    }
}

/// `under * (1 - a) + over * a` with `a = alpha / 255`, rounded.
fn blend(under: u8, over: u8, alpha: u8) -> u8 {
    let a = u32::from(alpha);
    ((u32::from(under) * (255 - a) + u32::from(over) * a + 127) / 255) as u8
}

impl OriginDimensions for Canvas {
    fn size(&self) -> EgSize {
        EgSize::new(self.image.width(), self.image.height())
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        let (w, h) = self.image.dimensions();
        for Pixel(p, color) in pixels {
            // Out-of-bounds pixels are discarded, as the DrawTarget contract asks.
            if let (Ok(x), Ok(y)) = (u32::try_from(p.x), u32::try_from(p.y)) {
                if x < w && y < h {
                    self.image.put_pixel(x, y, image::Rgb([color.r(), color.g(), color.b()]));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::prelude::{Point, Primitive};
    use embedded_graphics::primitives::{Line, PrimitiveStyle};
    use embedded_graphics::Drawable;

    #[test]
    fn blend_endpoints_and_midpoint() {
        assert_eq!(blend(10, 200, 0), 10);
        assert_eq!(blend(10, 200, 255), 200);
        assert_eq!(blend(0, 255, 128), 128);
    }

    #[test]
    fn tint_only_touches_mask_pixels() {
        let mut canvas = Canvas::new(RgbImage::from_pixel(3, 1, image::Rgb([100, 100, 100])));
        canvas.tint(&Mask::from_fn(3, 1, |x, _| x == 1), Rgb888::new(200, 0, 100), 255);
        let px: Vec<[u8; 3]> = canvas.image().pixels().map(|p| p.0).collect();
        assert_eq!(px, vec![[100; 3], [200, 0, 100], [100; 3]]);
    }

    #[test]
    fn drawing_past_the_edges_is_clipped() {
        let mut canvas = Canvas::new(RgbImage::new(4, 2));
        Line::new(Point::new(-5, 0), Point::new(10, 0))
            .into_styled(PrimitiveStyle::with_stroke(Rgb888::WHITE, 1))
            .draw(&mut canvas)
            .unwrap();
        assert!((0..4).all(|x| canvas.image().get_pixel(x, 0).0 == [255; 3]));
        assert!((0..4).all(|x| canvas.image().get_pixel(x, 1).0 == [0; 3]));
    }
}
