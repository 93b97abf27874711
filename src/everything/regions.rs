//! Removing small disconnected regions and small holes from a mask, as
//! SAM's `remove_small_regions` does with OpenCV (8-connected components).

use std::collections::VecDeque;

use crate::model::Mask;

/// What to clean up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Unset components smaller than the area are filled (any of them,
    /// including ones touching the image border, as SAM does).
    Holes,
    /// Set components smaller than the area are cleared; when all are
    /// that small, the largest stays.
    Islands,
}

/// Cleans `mask` of `region`s with fewer than `min_area` pixels. Returns the
/// new mask and whether anything changed.
pub fn remove_small_regions(mask: &Mask, min_area: u64, region: Region) -> (Mask, bool) {
    let target = region == Region::Islands;
    let (labels, sizes) = components(mask, target);
    let small: Vec<bool> = sizes.iter().map(|&s| s < min_area).collect();
    if !small.contains(&true) {
        return (mask.clone(), false);
    }
    let keep_label: Vec<bool> = match region {
        // Holes: small unset components become set; everything else keeps its value.
        Region::Holes => small,
        Region::Islands => {
            if small.iter().all(|&s| s) {
                // The first largest, as numpy's argmax picks it.
                let largest = (0..sizes.len()).fold(0, |best, i| if sizes[i] > sizes[best] { i } else { best });
                (0..sizes.len()).map(|i| i == largest).collect()
            } else {
                small.iter().map(|&s| !s).collect()
            }
        }
    };
    let w = mask.width();
    let cleaned = Mask::from_fn(w, mask.height(), |x, y| match labels[(y * w + x) as usize] {
        Some(label) => keep_label[label],
        // Pixels outside the labelled components: the mask itself for holes, nothing for islands.
        None => region == Region::Holes,
    });
    (cleaned, true)
}

/// Labels the 8-connected components of pixels whose value is `target`,
/// numbered in raster order of their first pixel; returns each pixel's
/// label and each component's size.
fn components(mask: &Mask, target: bool) -> (Vec<Option<usize>>, Vec<u64>) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let mut labels: Vec<Option<usize>> = vec![None; w * h];
    let mut sizes = Vec::new();
    let mut queue = VecDeque::new();
    for start in 0..w * h {
        if labels[start].is_some() || mask.get((start % w) as u32, (start / w) as u32) != target {
            continue;
        }
        let label = sizes.len();
        labels[start] = Some(label);
        queue.push_back(start);
        let mut size = 0u64;
        while let Some(p) = queue.pop_front() {
            size += 1;
            let (x, y) = ((p % w) as i64, (p / w) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if labels[q].is_none() && mask.get(nx as u32, ny as u32) == target {
                        labels[q] = Some(label);
                        queue.push_back(q);
                    }
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_art(rows: &[&str]) -> Mask {
        Mask::from_fn(rows[0].len() as u32, rows.len() as u32, |x, y| rows[y as usize].as_bytes()[x as usize] == b'#')
    }

    #[test]
    fn small_holes_are_filled_and_large_ones_kept() {
        let mask = from_art(&[
            "..........", //
            ".########.",
            ".#.####..#",
            ".########.",
            "..........",
        ]);
        let (filled, changed) = remove_small_regions(&mask, 2, Region::Holes);
        assert!(changed);
        // The 1-pixel hole at (2, 2) is filled; the notch at (7..=8, 2) joins
        // the border background diagonally, so it is large and stays.
        assert!(filled.get(2, 2) && !filled.get(7, 2) && !filled.get(8, 2) && !filled.get(0, 0));
        assert_eq!(filled.area(), mask.area() + 1);
    }

    #[test]
    fn small_islands_are_removed_with_diagonal_neighbours_joined() {
        let mask = from_art(&[
            "##.....", //
            "##....#",
            ".......",
            "..#....",
            "...#...",
        ]);
        // Components: the 2x2 block (4), the lone pixel (1), the diagonal pair (2).
        let (clean, changed) = remove_small_regions(&mask, 2, Region::Islands);
        assert!(changed);
        assert_eq!(clean.area(), 6);
        assert!(!clean.get(6, 1) && clean.get(2, 3) && clean.get(3, 4));
    }

    #[test]
    fn when_every_island_is_small_the_largest_stays() {
        let mask = from_art(&["##..#", "....."]);
        let (clean, changed) = remove_small_regions(&mask, 10, Region::Islands);
        assert!(changed);
        assert_eq!(clean, from_art(&["##...", "....."]));
    }

    #[test]
    fn nothing_small_means_unchanged() {
        let mask = from_art(&["###..", "###.."]);
        assert_eq!(remove_small_regions(&mask, 3, Region::Islands), (mask.clone(), false));
        assert_eq!(remove_small_regions(&mask, 3, Region::Holes), (mask.clone(), false));
        let empty = from_art(&["....."]);
        assert_eq!(remove_small_regions(&empty, 3, Region::Islands), (empty.clone(), false));
    }
}
