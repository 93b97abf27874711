//! tract's axis move (`AxisOp::Move`) of an f32 tensor, split across tract's
//! threads.
//!
//! The encoder's optimized plan keeps 43 axis moves: its window partitions
//! and their reverses, and the transposes around its depthwise convolutions.
//! tract runs each on one thread; at 2 threads they took 45 of the encoder's
//! 657 ms, with the second core idle (docs/PERFORMANCE.md).
//! [`super::spread`] puts this operator in their place.

use tract_onnx::tract_core::internal::*;

use super::threaded_output;

/// Output rows, and items of a row, copied as one tile: a tile reads `TILE`
/// items of each of `TILE` consecutive input rows, so that a transpose of
/// single values uses whole cache lines on both sides.
const TILE: usize = 16;

/// Moves axis `from` to position `to`, as tract's `AxisOp::Move`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MoveAxis {
    pub from: usize,
    pub to: usize,
}

impl MoveAxis {
    /// `shape` as `[outer, p, q, inner]`: the move swaps `p` and `q`.
    fn blocks(&self, shape: &[usize]) -> [usize; 4] {
        let (lo, hi) = (self.from.min(self.to), self.from.max(self.to));
        let product = |axes: &[usize]| axes.iter().product::<usize>();
        let (p, q) = if self.from < self.to {
            (shape[lo], product(&shape[lo + 1..=hi]))
        } else {
            (product(&shape[lo..hi]), shape[hi])
        };
        [product(&shape[..lo]), p, q, product(&shape[hi + 1..])]
    }
}

impl Op for MoveAxis {
    fn name(&self) -> StaticName {
        "MoveAxisThreaded".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axis {} to {}", self.from, self.to)])
    }

    op_as_typed_op!();
}

impl EvalOp for MoveAxis {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let [outer, p, q, inner] = self.blocks(input.shape());
        let mut shape: TVec<usize> = input.shape().into();
        let moved = shape.remove(self.from);
        shape.insert(self.to, moved);
        let input = input.try_as_plain_ram()?;
        let src = input.as_slice::<f32>()?;
        ensure!(src.len() == outer * p * q * inner, "MoveAxisThreaded: input of {} values for {shape:?}", src.len());
        // Output row (o, j) holds input items (o, 0..p, j), each `inner` values.
        // SAFETY: `copy_rows` writes every item of every row.
        let output = unsafe {
            threaded_output(&shape, p * inner, |first, rows| {
                copy_rows(src, rows, first, [p, q, inner]);
                Ok(())
            })?
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

/// Fills `rows`, the output rows from `first` on, tile by tile.
fn copy_rows(src: &[f32], rows: &mut [f32], first: usize, [p, q, inner]: [usize; 3]) {
    let row_len = p * inner;
    let count = rows.len() / row_len;
    for r0 in (0..count).step_by(TILE) {
        for i0 in (0..p).step_by(TILE) {
            let i1 = (i0 + TILE).min(p);
            for r in r0..(r0 + TILE).min(count) {
                let (o, j) = ((first + r) / q, (first + r) % q);
                let items = &mut rows[r * row_len + i0 * inner..r * row_len + i1 * inner];
                let from = ((o * p + i0) * q + j) * inner;
                if inner == 1 {
                    // A transpose: single values, `q` apart in the input.
                    items.iter_mut().zip(src[from..].iter().step_by(q)).for_each(|(d, s)| *d = *s);
                } else {
                    for (item, i) in items.chunks_exact_mut(inner).zip(0..) {
                        let at = from + i * q * inner;
                        item.copy_from_slice(&src[at..at + inner]);
                    }
                }
            }
        }
    }
}

impl TypedOp for MoveAxis {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape = inputs[0].shape.to_tvec();
        let moved = shape.remove(self.from);
        shape.insert(self.to, moved);
        Ok(tvec!(f32::datum_type().fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::assert_spread_equals_tract;
    use tract_onnx::tract_core::internal::*;

    #[test]
    fn every_move_of_odd_shapes_equals_tracts() {
        // Single values (a transpose) and runs of values, sizes on and off the
        // tile's edges.
        for shape in [vec![37usize, 300], vec![300, 37], vec![3, 19, 7, 19, 5], vec![2, 33, 17, 64], vec![1, 5, 1, 3]] {
            for from in 0..shape.len() {
                for to in (0..shape.len()).filter(|&to| to != from) {
                    assert_spread_equals_tract(&[&shape], |model, inputs| model.wire_node("move", AxisOp::Move(from, to), inputs));
                }
            }
        }
    }
}
