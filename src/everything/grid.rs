//! The regular grid of single-point prompts laid over an image or a crop.

/// An `n` x `n` grid of cell centres in the unit square, row by row (x
/// fastest), computed as SAM's `build_point_grid` does (`numpy.linspace`
/// from `1/2n` to `1 - 1/2n`), so prompts land on the same pixels.
pub fn unit_grid(n: usize) -> Vec<[f64; 2]> {
    let offset = 1.0 / (2.0 * n as f64);
    let side = linspace(offset, 1.0 - offset, n);
    side.iter().flat_map(|&y| side.iter().map(move |&x| [x, y])).collect()
}

/// Points per side in crop layer `layer`: SAM's `int(n / factor**layer)`.
pub fn points_per_side(n: usize, layer: usize, downscale_factor: usize) -> usize {
    let divisor = (downscale_factor as f64).powi(layer as i32);
    (n as f64 / divisor) as usize
}

/// `numpy.linspace(start, stop, num)`: `start + i * step`, the last value
/// pinned to `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    (0..num).map(|i| if i + 1 == num { stop } else { i as f64 * step + start }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_cell_centres_with_x_fastest() {
        let g = unit_grid(2);
        assert_eq!(g, vec![[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]);
        assert_eq!(unit_grid(1), vec![[0.5, 0.5]]);
        // numpy.linspace(1/64, 1 - 1/64, 32)[1] == 0.046875
        let g = unit_grid(32);
        assert_eq!(g.len(), 1024);
        assert!((g[1][0] - 0.046875).abs() < 1e-15 && g[1][1] == 1.0 / 64.0);
        assert_eq!(g[1023], [1.0 - 1.0 / 64.0; 2]);
    }

    #[test]
    fn crop_layers_downscale_points_per_side() {
        assert_eq!(points_per_side(32, 0, 2), 32);
        assert_eq!(points_per_side(32, 1, 2), 16);
        assert_eq!(points_per_side(15, 1, 2), 7);
        assert_eq!(points_per_side(32, 1, 1), 32);
    }
}
