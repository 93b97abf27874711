//! A line of white text on a black band, at the top-left.

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::{DrawTarget, Point as EgPoint, Primitive, Size as EgSize};
use embedded_graphics::primitives::{PrimitiveStyleBuilder, Rectangle};
use embedded_graphics::text::{Baseline, Text};
use embedded_graphics::Drawable;

/// Status or score text over a picture.
#[derive(Debug, Clone, Copy)]
pub struct Caption<'a> {
    pub text: &'a str,
    /// 10x20 glyphs instead of 6x10, for large pictures.
    pub large: bool,
    /// Top edge of the band, so that several lines can stack.
    pub top: i32,
}

impl Caption<'_> {
    /// Height of the band this caption draws.
    pub fn height(&self) -> u32 {
        self.font().character_size.height + 6
    }

    fn font(&self) -> &'static MonoFont<'static> {
        if self.large { &FONT_10X20 } else { &FONT_6X10 }
    }
}

impl Drawable for Caption<'_> {
    type Color = Rgb888;
    type Output = ();

    fn draw<D: DrawTarget<Color = Rgb888>>(&self, target: &mut D) -> Result<(), D::Error> {
        if self.text.is_empty() {
            return Ok(());
        }
        let font = self.font();
        let width = font.character_size.width * self.text.chars().count() as u32 + 8;
        Rectangle::new(EgPoint::new(0, self.top), EgSize::new(width, self.height()))
            .into_styled(PrimitiveStyleBuilder::new().fill_color(Rgb888::BLACK).build())
            .draw(target)?;
        Text::with_baseline(self.text, EgPoint::new(4, self.top + 3), MonoTextStyle::new(font, Rgb888::WHITE), Baseline::Top)
            .draw(target)?;
        Ok(())
    }
}
