//! tract's `TypedConcat` of f32 tensors, split across tract's threads.
//!
//! The encoder's plan joins its stripes and the halves of its MLPs on one
//! thread, 27 concatenations and 9 ms (docs/PERFORMANCE.md).
//! [`super::spread`] puts this operator in their place.

use tract_onnx::tract_core::internal::*;

use super::{copy_runs, threaded_output};

/// The inputs joined along axis `axis`, as tract's `TypedConcat`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Concat {
    pub axis: usize,
}

impl Op for Concat {
    fn name(&self) -> StaticName {
        "ConcatThreaded".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axis {}", self.axis)])
    }

    op_as_typed_op!();
}

impl EvalOp for Concat {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(!inputs.is_empty(), "ConcatThreaded takes at least one input");
        let axis = self.axis;
        let mut shape: TVec<usize> = inputs[0].shape().into();
        for input in &inputs[1..] {
            let same = input.rank() == shape.len() && (0..shape.len()).all(|a| a == axis || input.shape()[a] == shape[a]);
            ensure!(same, "ConcatThreaded on axis {axis}: {:?} beside {:?}", input.shape(), inputs[0].shape());
        }
        let lengths: Vec<usize> = inputs.iter().map(|i| i.shape()[axis]).collect();
        let total_length: usize = lengths.iter().sum();
        shape[axis] = total_length;
        let inner: usize = shape[axis + 1..].iter().product();
        let rams = inputs.iter().map(|i| i.try_as_plain_ram()).collect::<TractResult<Vec<_>>>()?;
        let srcs = rams.iter().map(|r| r.as_slice::<f32>()).collect::<TractResult<Vec<_>>>()?;
        // Where each input starts along the axis.
        let offsets: Vec<usize> = lengths.iter().scan(0, |at, l| Some(std::mem::replace(at, *at + l))).collect();
        // Output unit u (of `inner` values) is (o, k) along the axis: of the
        // input whose span holds k.
        // SAFETY: `copy_runs` writes every unit of the chunk.
        let output = unsafe {
            threaded_output(&shape, inner, |first, chunk| {
                copy_runs(chunk, first, inner, |u| {
                    let (o, k) = (u / total_length, u % total_length);
                    let i = offsets.partition_point(|&at| at <= k) - 1;
                    (srcs[i], o * lengths[i] + k - offsets[i], offsets[i] + lengths[i] - k)
                });
                Ok(())
            })?
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Concat {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape = inputs[0].shape.to_tvec();
        shape[self.axis] = inputs.iter().map(|i| i.shape[self.axis].clone()).sum();
        Ok(tvec!(f32::datum_type().fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::assert_spread_equals_tract;
    use tract_onnx::tract_core::internal::*;
    use tract_onnx::tract_core::ops::array::TypedConcat;

    #[test]
    fn concatenations_on_every_axis_equal_tracts() {
        for axis in 0..4 {
            let shapes: Vec<Vec<usize>> = [1, 33, 2]
                .iter()
                .map(|l| {
                    let mut shape = vec![5, 30, 9, 40];
                    shape[axis] = *l;
                    shape
                })
                .collect();
            let shapes: Vec<&[usize]> = shapes.iter().map(|s| &s[..]).collect();
            assert_spread_equals_tract(&shapes, |model, inputs| model.wire_node("concat", TypedConcat { axis }, inputs));
        }
    }
}
