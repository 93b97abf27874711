//! Fitting a picture onto a screen of another shape, and mapping screen
//! coordinates (a touch) back to picture coordinates.

use crate::model::Size;

/// The picture scaled by `scale` to fit the screen, centred, with bars on two sides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub picture: Size,
    pub screen: Size,
    pub scale: f32,
    /// Screen position of the picture's top-left corner.
    pub offset_x: u32,
    pub offset_y: u32,
    /// Size of the scaled picture on the screen.
    pub fitted: Size,
}

impl Letterbox {
    pub fn fit(picture: Size, screen: Size) -> Letterbox {
        let scale = (screen.width as f32 / picture.width as f32).min(screen.height as f32 / picture.height as f32);
        let fitted = Size::new(
            ((picture.width as f32 * scale).round() as u32).clamp(1, screen.width),
            ((picture.height as f32 * scale).round() as u32).clamp(1, screen.height),
        );
        Letterbox {
            picture,
            screen,
            scale,
            offset_x: (screen.width - fitted.width) / 2,
            offset_y: (screen.height - fitted.height) / 2,
            fitted,
        }
    }

    /// The picture pixel under screen point (`x`, `y`); `None` on the bars.
    pub fn to_picture(&self, x: f32, y: f32) -> Option<(f32, f32)> {
        let (px, py) = ((x - self.offset_x as f32) / self.scale, (y - self.offset_y as f32) / self.scale);
        let inside = px >= 0.0 && py >= 0.0 && px <= (self.picture.width - 1) as f32 && py <= (self.picture.height - 1) as f32;
        inside.then_some((px, py))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_picture_gets_bars_above_and_below() {
        let fit = Letterbox::fit(Size::new(640, 240), Size::new(320, 240));
        assert_eq!(fit.scale, 0.5);
        assert_eq!(fit.fitted, Size::new(320, 120));
        assert_eq!((fit.offset_x, fit.offset_y), (0, 60));
    }

    #[test]
    fn screen_points_map_back_to_picture_pixels() {
        let fit = Letterbox::fit(Size::new(640, 240), Size::new(320, 240));
        assert_eq!(fit.to_picture(160.0, 120.0), Some((320.0, 120.0)));
        assert_eq!(fit.to_picture(0.0, 60.0), Some((0.0, 0.0)));
        assert_eq!(fit.to_picture(160.0, 30.0), None, "a touch on the bar");
    }
}
