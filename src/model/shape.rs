//! What a mask says about its object for a controller: area, bounds,
//! centroid, principal axis and a grasp point (docs/PROTOCOL.md, sections
//! 4.3 and 4.4). Pure functions, shared by the serial line and MQTT.

use super::distance::squared_distance_to_outside;
use super::mask::{Mask, PixelBox};

/// A mask's geometry, in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub area: u64,
    /// Inclusive bounds.
    pub bbox: PixelBox,
    pub centroid: (f32, f32),
    /// Principal axis, radians in (-pi/2, pi/2] from +x toward +y.
    pub angle: f32,
    /// The set pixel farthest from the mask's boundary.
    pub grasp: (u32, u32),
    /// Distance from `grasp` to the nearest unset pixel.
    pub clearance: f32,
}

/// Measures a mask; `None` when it is empty.
pub fn shape(mask: &Mask) -> Option<Shape> {
    let (bbox, (cx, cy)) = (mask.bbox()?, mask.centroid()?);
    let (grasp, clearance) = grasp_point(mask, bbox, (cx, cy));
    Some(Shape {
        area: mask.area() as u64,
        bbox,
        centroid: (cx, cy),
        angle: principal_angle(mask, bbox, (cx, cy)),
        grasp,
        clearance,
    })
}

/// Direction of the long axis from the second central moments, radians in
/// (-pi/2, pi/2] from +x toward +y; 0 when no axis dominates.
fn principal_angle(mask: &Mask, bbox: PixelBox, (cx, cy): (f32, f32)) -> f32 {
    let (cx, cy) = (f64::from(cx), f64::from(cy));
    let (mut mu20, mut mu02, mut mu11) = (0.0f64, 0.0f64, 0.0f64);
    for y in bbox.y0..=bbox.y1 {
        for x in bbox.x0..=bbox.x1 {
            if mask.get(x, y) {
                let (dx, dy) = (f64::from(x) - cx, f64::from(y) - cy);
                mu20 += dx * dx;
                mu02 += dy * dy;
                mu11 += dx * dy;
            }
        }
    }
    // Round off the float noise of symmetric shapes so that a square gives exactly 0.
    let scale = (mu20 + mu02).max(1.0) * 1e-9;
    let (num, den) = (2.0 * mu11, mu20 - mu02);
    if num.abs() < scale && den.abs() < scale {
        return 0.0;
    }
    let angle = 0.5 * num.atan2(den);
    // atan2 gives [-pi, pi], so angle is in [-pi/2, pi/2]: fold -pi/2 onto pi/2.
    if angle <= -std::f64::consts::FRAC_PI_2 {
        std::f32::consts::FRAC_PI_2
    } else {
        angle as f32
    }
}

/// The set pixel farthest from any unset pixel (or the image edge) and that
/// distance; ties go to the pixel nearest the centroid, then the first in row-major order.
fn grasp_point(mask: &Mask, bbox: PixelBox, (cx, cy): (f32, f32)) -> ((u32, u32), f32) {
    let (width, height) = (bbox.width() as usize, bbox.height() as usize);
    // Around a tight bbox lie only unset pixels or the image edge, which the
    // transform's outside border stands for, so the crop gives exact distances.
    let inside: Vec<bool> =
        (bbox.y0..=bbox.y1).flat_map(|y| (bbox.x0..=bbox.x1).map(move |x| mask.get(x, y))).collect();
    let dist2 = squared_distance_to_outside(&inside, width, height);
    let mut best = ((bbox.x0, bbox.y0), 0u64, f64::INFINITY);
    for (i, (&set, &d2)) in inside.iter().zip(&dist2).enumerate() {
        if !set {
            continue;
        }
        let (x, y) = (bbox.x0 + (i % width) as u32, bbox.y0 + (i / width) as u32);
        let c2 = (f64::from(x) - f64::from(cx)).powi(2) + (f64::from(y) - f64::from(cy)).powi(2);
        if d2 > best.1 || (d2 == best.1 && c2 < best.2) {
            best = ((x, y), d2, c2);
        }
    }
    (best.0, (best.1 as f64).sqrt() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mask from ASCII art: `#` set, anything else unset.
    fn mask(rows: &[&str]) -> Mask {
        let rows: Vec<&[u8]> = rows.iter().map(|r| r.as_bytes()).collect();
        Mask::from_fn(rows[0].len() as u32, rows.len() as u32, |x, y| rows[y as usize][x as usize] == b'#')
    }

    #[test]
    fn an_empty_mask_has_no_shape() {
        assert_eq!(shape(&mask(&["...", "..."])), None);
    }

    #[test]
    fn principal_angle_follows_the_long_axis() {
        let cases: [(&[&str], f32); 5] = [
            (&["#####"], 0.0),
            (&["#", "#", "#"], std::f32::consts::FRAC_PI_2),
            (&["#..", ".#.", "..#"], std::f32::consts::FRAC_PI_4),
            (&["..#", ".#.", "#.."], -std::f32::consts::FRAC_PI_4),
            (&["##", "##"], 0.0),
        ];
        for (art, angle) in cases {
            let got = shape(&mask(art)).expect("set").angle;
            assert!((got - angle).abs() < 1e-6, "{art:?}: {got} != {angle}");
        }
    }

    #[test]
    fn grasp_point_is_the_centre_of_the_largest_inscribed_disc() {
        let cases: [(&[&str], (u32, u32), f32); 4] = [
            (&[".....", ".###.", ".###.", ".###.", "....."], (2, 2), 2.0),
            // Touching the image edge counts as a boundary.
            (&["###", "###", "###"], (1, 1), 2.0),
            // An L: its centroid (2, 3.25) is one pixel from the inner corner; the grasp moves into the foot.
            (
                &["##....", "##....", "##....", "######", "######", "######"],
                (2, 4),
                2.0,
            ),
            (&["#"], (0, 0), 1.0),
        ];
        for (art, (x, y), clearance) in cases {
            let s = shape(&mask(art)).expect("set");
            assert_eq!(s.grasp, (x, y), "{art:?}");
            assert!(
                (s.clearance - clearance).abs() < 1e-6,
                "{art:?}: {}",
                s.clearance
            );
        }
    }

    #[test]
    fn grasp_point_of_a_ring_stays_on_the_ring() {
        let ring = Mask::from_fn(41, 41, |x, y| {
            let r2 = (x as i32 - 20).pow(2) + (y as i32 - 20).pow(2);
            (100..=324).contains(&r2)
        });
        let s = shape(&ring).expect("set");
        assert!(ring.get(s.grasp.0, s.grasp.1));
        assert!(!ring.get(20, 20), "the centroid is outside");
    }
}
