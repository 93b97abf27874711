//! tract's constant `Pad` of an f32 tensor, split across tract's threads.
//!
//! The encoder's plan pads its maps to whole windows on one thread, through
//! ndarray (10 pads, 14 ms: docs/PERFORMANCE.md). [`super::spread`] puts
//! this operator in their place.

use tract_onnx::tract_core::internal::*;

use super::threaded_output;

/// `before` and `after` values of `value` around each axis, as tract's `Pad`
/// with a constant.
#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    pub pads: Vec<(usize, usize)>,
    pub value: f32,
}

// The pad value is a model's constant, never NaN.
impl Eq for Pad {}

impl Op for Pad {
    fn name(&self) -> StaticName {
        "PadThreaded".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?} with {}", self.pads, self.value)])
    }

    op_as_typed_op!();
}

impl EvalOp for Pad {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape: TVec<usize> = input.shape().into();
        ensure!(shape.len() == self.pads.len() && !shape.is_empty(), "PadThreaded: pads {:?} for {shape:?}", self.pads);
        let padded: TVec<usize> = shape.iter().zip(&self.pads).map(|(d, (b, a))| d + b + a).collect();
        let input = input.try_as_plain_ram()?;
        let src = input.as_slice::<f32>()?;
        let width = padded[padded.len() - 1];
        // SAFETY: `fill_row` writes the whole row.
        let output = unsafe {
            threaded_output(&padded, width, |first, rows| {
                for (r, row) in rows.chunks_exact_mut(width).enumerate() {
                    self.fill_row(row, first + r, &shape, &padded, src);
                }
                Ok(())
            })?
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl Pad {
    /// Output row `r` (along the last axis): the pad value, or the input row
    /// it falls on between the pad values of the last axis.
    fn fill_row(&self, row: &mut [f32], r: usize, shape: &[usize], padded: &[usize], src: &[f32]) {
        let last = shape.len() - 1;
        let mut input_row = 0;
        let mut rest = r;
        let mut stride = 1;
        for axis in (0..last).rev() {
            let index = rest % padded[axis];
            rest /= padded[axis];
            let before = self.pads[axis].0;
            if index < before || index >= before + shape[axis] {
                row.fill(self.value);
                return;
            }
            input_row += (index - before) * stride;
            stride *= shape[axis];
        }
        let (before, width) = (self.pads[last].0, shape[last]);
        row[..before].fill(self.value);
        row[before..before + width].copy_from_slice(&src[input_row * width..][..width]);
        row[before + width..].fill(self.value);
    }
}

impl TypedOp for Pad {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape: TVec<TDim> = inputs[0].shape.iter().zip(&self.pads).map(|(d, (b, a))| d.clone() + *b + *a).collect();
        Ok(tvec!(f32::datum_type().fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::assert_spread_equals_tract;
    use tract_onnx::tract_core::internal::*;
    use tract_onnx::tract_core::ops::array::{Pad, PadMode};

    #[test]
    fn pads_of_any_axes_equal_tracts() {
        for pads in [vec![(0, 0), (0, 5), (3, 4), (0, 0)], vec![(1, 0), (0, 0), (0, 0), (2, 1)], vec![(0, 0); 4]] {
            let op = Pad { pads, mode: PadMode::Constant(rctensor0(-2.5f32)) };
            assert_spread_equals_tract(&[&[2, 30, 19, 40]], |model, inputs| model.wire_node("pad", op.clone(), inputs));
        }
    }
}
