//! Exact Euclidean distance transform of a binary grid (Felzenszwalb & Huttenlocher, "Distance
//! Transforms of Sampled Functions", 2012): separable, linear in the pixel count.

/// Squared Euclidean distance from each pixel of a row-major `width` x `height`
/// grid to the nearest pixel where `inside` is false (0 for those pixels).
///
/// Everything beyond the grid's border counts as outside, so a region touching
/// the image edge is bounded there (RITM pads its error maps the same way).
/// Squared distances are exact integers, so callers compare them without
/// rounding.
pub fn squared_distance_to_outside(inside: &[bool], width: usize, height: usize) -> Vec<u64> {
    assert_eq!(inside.len(), width * height, "grid is {width}x{height}");
    // One pixel of outside padding on every side.
    let (pw, ph) = (width + 2, height + 2);
    let mut grid = vec![0.0f64; pw * ph];
    for (y, row) in inside.chunks_exact(width.max(1)).enumerate() {
        for (x, &is_inside) in row.iter().enumerate() {
            if is_inside {
                grid[(y + 1) * pw + x + 1] = f64::INFINITY;
            }
        }
    }

    let mut envelope = Envelope::default();
    let mut line = vec![0.0; pw.max(ph)];
    let mut out = vec![0.0; pw.max(ph)];
    for x in 0..pw {
        for y in 0..ph {
            line[y] = grid[y * pw + x];
        }
        envelope.transform(&line[..ph], &mut out[..ph]);
        for y in 0..ph {
            grid[y * pw + x] = out[y];
        }
    }
    for row in grid.chunks_exact_mut(pw) {
        line[..pw].copy_from_slice(row);
        envelope.transform(&line[..pw], row);
    }

    let mut distances = Vec::with_capacity(width * height);
    for y in 1..=height {
        // Finite: every pixel is within the padded grid of an outside pixel.
        distances.extend(grid[y * pw + 1..y * pw + 1 + width].iter().map(|&d| d as u64));
    }
    distances
}

/// The lower envelope of the parabolas `(q - p)^2 + f(p)`, one per sample `p`
/// with a finite `f(p)`; kept between lines to reuse its buffers.
#[derive(Default)]
struct Envelope {
    /// Samples whose parabolas form the envelope, left to right.
    vertices: Vec<usize>,
    /// Where each of those parabolas starts to be the lowest.
    starts: Vec<f64>,
}

impl Envelope {
    /// `d(q) = min_p (q - p)^2 + f(p)`; infinite everywhere when `f` is.
    fn transform(&mut self, f: &[f64], d: &mut [f64]) {
        self.vertices.clear();
        self.starts.clear();
        for (q, &fq) in f.iter().enumerate() {
            if fq.is_infinite() {
                continue;
            }
            let qf = q as f64;
            let mut start = f64::NEG_INFINITY;
            while let (Some(&p), Some(&p_start)) = (self.vertices.last(), self.starts.last()) {
                let pf = p as f64;
                // Where parabola q overtakes parabola p; the numerator is an exact
                // integer, so the comparisons below pick the true minimum.
                start = ((fq + qf * qf) - (f[p] + pf * pf)) / (2.0 * (qf - pf));
                if start > p_start {
                    break;
                }
                // The first parabola starts at -inf and is never hidden.
                self.vertices.pop();
                self.starts.pop();
            }
            self.vertices.push(q);
            self.starts.push(start);
        }

        if self.vertices.is_empty() {
            d.fill(f64::INFINITY);
            return;
        }
        let mut k = 0;
        for (q, dq) in d.iter_mut().enumerate() {
            let qf = q as f64;
            while k + 1 < self.vertices.len() && self.starts[k + 1] < qf {
                k += 1;
            }
            let p = self.vertices[k];
            let offset = qf - p as f64;
            *dq = offset * offset + f[p];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimum over every outside pixel, the padding ring included.
    fn brute_force(inside: &[bool], width: usize, height: usize) -> Vec<u64> {
        let is_outside = |x: i64, y: i64| {
            x < 0 || y < 0 || x >= width as i64 || y >= height as i64 || !inside[y as usize * width + x as usize]
        };
        let mut out = Vec::new();
        for y in 0..height as i64 {
            for x in 0..width as i64 {
                let mut best = u64::MAX;
                for oy in -1..=height as i64 {
                    for ox in -1..=width as i64 {
                        if is_outside(ox, oy) {
                            best = best.min(((ox - x).pow(2) + (oy - y).pow(2)) as u64);
                        }
                    }
                }
                out.push(best);
            }
        }
        out
    }

    #[test]
    fn matches_brute_force_on_random_masks() {
        let mut state = 7u32;
        for (width, height) in [(1, 1), (1, 6), (7, 1), (5, 5), (9, 4), (13, 11), (24, 17)] {
            for density in [0, 30, 70, 95, 100] {
                let inside: Vec<bool> = (0..width * height)
                    .map(|_| {
                        state = state.wrapping_mul(1103515245).wrapping_add(12345);
                        (state >> 16) % 100 < density
                    })
                    .collect();
                assert_eq!(
                    squared_distance_to_outside(&inside, width, height),
                    brute_force(&inside, width, height),
                    "{width}x{height}, {density}% inside"
                );
            }
        }
    }

    #[test]
    fn a_full_grid_is_bounded_by_its_border() {
        // 5x3, all inside: distance to the nearest border-adjacent outside pixel.
        let d = squared_distance_to_outside(&[true; 15], 5, 3);
        assert_eq!(d, vec![1, 1, 1, 1, 1, 1, 4, 4, 4, 1, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn outside_pixels_are_zero_and_diagonals_are_euclidean() {
        // A single outside pixel in the corner of a 3x3 interior of a 5x5 grid.
        let inside: Vec<bool> = (0..25).map(|i| i != 6).collect();
        let d = squared_distance_to_outside(&inside, 5, 5);
        assert_eq!(d[6], 0);
        // (3, 3) is 2 from the border and sqrt(8) from (1, 1): the border wins.
        assert_eq!(d[18], 4);
        assert_eq!(d[12], 2, "(2, 2) is one diagonal step from (1, 1)");
    }
}
