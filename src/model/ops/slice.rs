//! tract's `Slice` of an f32 tensor, split across tract's threads.
//!
//! The encoder's plan slices its stripes' rows and its windows' padding off
//! on one thread, 80 slices and 20 ms (docs/PERFORMANCE.md). [`super::spread`]
//! puts this operator in their place.

use tract_onnx::tract_core::internal::*;

use super::{copy_runs, threaded_output};

/// `start..end` of axis `axis`, as tract's `Slice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slice {
    pub axis: usize,
    pub start: usize,
    pub end: usize,
}

impl Op for Slice {
    fn name(&self) -> StaticName {
        "SliceThreaded".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axis {}, {}..{}", self.axis, self.start, self.end)])
    }

    op_as_typed_op!();
}

impl EvalOp for Slice {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape = input.shape();
        ensure!(self.start <= self.end && self.end <= shape[self.axis], "SliceThreaded: {}..{} of {shape:?} on axis {}", self.start, self.end, self.axis);
        let (len, length) = (self.end - self.start, shape[self.axis]);
        let inner: usize = shape[self.axis + 1..].iter().product();
        let mut output_shape: TVec<usize> = shape.into();
        output_shape[self.axis] = len;
        let input = input.try_as_plain_ram()?;
        let src = input.as_slice::<f32>()?;
        // Output unit u (of `inner` values) is unit (o, start + k) of the input.
        // SAFETY: `copy_runs` writes every unit of the chunk.
        let output = unsafe {
            threaded_output(&output_shape, inner, |first, chunk| {
                copy_runs(chunk, first, inner, |u| {
                    let (o, k) = (u / len, u % len);
                    (src, o * length + self.start + k, len - k)
                });
                Ok(())
            })?
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Slice {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape = inputs[0].shape.to_tvec();
        shape[self.axis] = (self.end - self.start).to_dim();
        Ok(tvec!(f32::datum_type().fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::assert_spread_equals_tract;
    use tract_onnx::tract_core::internal::*;
    use tract_onnx::tract_core::ops::array::Slice;

    #[test]
    fn slices_of_every_axis_equal_tracts() {
        let shape = [4usize, 40, 9, 50];
        for axis in 0..shape.len() {
            for (start, end) in [(0, 1), (1, shape[axis] - 1), (0, shape[axis])] {
                let op = Slice { axis, start: start.to_dim(), end: end.to_dim() };
                assert_spread_equals_tract(&[&shape], |model, inputs| model.wire_node("slice", op.clone(), inputs));
            }
        }
    }
}
