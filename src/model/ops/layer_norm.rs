//! A layer normalization over the last axis as one operator, bit for bit
//! tract's chain for it.
//!
//! tract declutters ONNX's `LayerNormalization` (without its affine step,
//! which [`super::dense`] folds into the weights after it) into four nodes:
//! row sums, their scaling to means, `x - mean`, and its `RmsNorm`. Each
//! streams its tensor through memory: 21 ms for the encoder's 26
//! (docs/PERFORMANCE.md). [`LayerNorm`] runs the same tract kernels, a block
//! of rows at a time while the block is in cache: one read and one write.

use tract_onnx::prelude::tract_linalg::multithread::par_chunks_mut;
use tract_onnx::prelude::tract_linalg::reduce::Reduce as ReduceKernel;
use tract_onnx::prelude::tract_linalg::routines::{rms_norm_f32, Func};
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::math::{Mul, Sub};
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};

use super::{threaded_output, with_const};

/// Rows a thread takes through each step at once: calling tract's sum and
/// RmsNorm kernels alternately row by row ran twice as slow as in blocks.
const BLOCK_ROWS: usize = 32;

type Kernels = (Box<dyn ReduceKernel<f32>>, fn(&mut [f32], f32));

/// `RmsNorm(x - sum(x) * scale)` along the last axis of `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    /// What the row sums are multiplied by: the model's `1 / row length`.
    scale: f32,
    eps: f32,
}

// Both are constants of the model, never NaN.
impl Eq for LayerNorm {}

impl Op for LayerNorm {
    fn name(&self) -> StaticName {
        "LayerNorm".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("mean = sum x {}, eps {}", self.scale, self.eps)])
    }

    op_as_typed_op!();
}

impl EvalOp for LayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let width = *x.shape().last().context("LayerNorm of a scalar")?;
        let kernels: Kernels = (Func::ReduceSum.reduce_f32()?, rms_norm_f32()?);
        // In place when nothing else holds x, as tract's chain runs: a fresh
        // output is faulted in, or taken from the heap's cold parts.
        if x.is_exclusive() {
            let mut x = x.into_tensor();
            let mut ram = x.try_as_plain_ram_mut()?;
            let values = ram.as_slice_mut::<f32>()?;
            let len = values.len();
            if len > 0 {
                par_chunks_mut(values, width, len, |_, rows| {
                    rows.chunks_mut(BLOCK_ROWS * width).try_for_each(|block| self.normalize(block, width, &kernels))
                })?;
            }
            return Ok(tvec!(x.into_tvalue()));
        }
        let x_ram = x.try_as_plain_ram()?;
        let x = x_ram.as_slice::<f32>()?;
        // Each block is copied out, then normalized there as in place.
        // SAFETY: each block is written whole by the copy.
        let output = unsafe {
            threaded_output(x_ram.shape(), width, |first, rows| {
                for (b, block) in rows.chunks_mut(BLOCK_ROWS * width).enumerate() {
                    block.copy_from_slice(&x[(first + b * BLOCK_ROWS) * width..][..block.len()]);
                    self.normalize(block, width, &kernels)?;
                }
                Ok(())
            })?
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl LayerNorm {
    /// Normalizes each row of `block` in place: tract's chain, step by step
    /// over the whole block.
    fn normalize(&self, block: &mut [f32], width: usize, kernels: &Kernels) -> TractResult<()> {
        let means = self.means(block, width, kernels)?;
        for (row, mean) in block.chunks_exact_mut(width).zip(means) {
            row.iter_mut().for_each(|v| *v -= mean);
        }
        block.chunks_exact_mut(width).for_each(|row| (kernels.1)(row, self.eps));
        Ok(())
    }

    /// Each row's sum times the scale, as tract's Reduce<Sum> and Mul
    /// compute them.
    fn means(&self, rows: &[f32], width: usize, (sum, _): &Kernels) -> TractResult<TVec<f32>> {
        rows.chunks_exact(width)
            .map(|row| {
                // tract's Reduce<Sum> uses its kernel from 4 values on.
                let total = if width >= 4 { sum.run_with_params(row, ())? } else { row.iter().sum() };
                Ok(total * self.scale)
            })
            .collect()
    }
}

impl TypedOp for LayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type() && inputs[0].rank() > 0, "LayerNorm takes f32 values");
        Ok(tvec!(f32::datum_type().fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Replaces each such four-node chain of `model` (decluttered, float32) by a
/// [`LayerNorm`]; returns how many.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    super::rewrite_matches(model, pattern)
}

/// The patch replacing the chain ending at node `norm`, if it is one.
fn pattern(model: &TypedModel, norm: usize) -> TractResult<Option<TypedModelPatch>> {
    let norm = model.node(norm);
    rule_if_some!(rms = norm.op_as::<RmsNorm>());
    let centered = model.node(norm.inputs[0].node);
    rule_if!(centered.op_as::<tract_onnx::tract_core::ops::binary::TypedBinOp>().is_some_and(|op| op.0.is::<Sub>()));
    rule_if!(centered.inputs.len() == 2 && model.single_succ(centered.id)?.is_some());
    let (x, mean) = (centered.inputs[0], model.node(centered.inputs[1].node));
    rule_if_some!((scale, sums) = with_const::<Mul>(model, mean)?);
    let sums = model.node(sums.node);
    rule_if_some!(reduce = sums.op_as::<Reduce>());
    let fact = model.outlet_fact(x)?;
    let last = fact.rank().saturating_sub(1);
    rule_if!(fact.datum_type == f32::datum_type() && fact.rank() > 0);
    rule_if!(reduce.reducer == Reducer::Sum && *reduce.axes == [last] && rms.axis == last && sums.inputs[0] == x);
    rule_if!(scale.len() == 1 && rms.eps.len() == 1);
    rule_if!(model.single_succ(sums.id)?.is_some() && model.single_succ(mean.id)?.is_some());
    let op = LayerNorm { scale: scale.cast_to_scalar::<f32>()?, eps: rms.eps.cast_to_scalar::<f32>()? };
    let mut patch = TypedModelPatch::default();
    let input = patch.tap_model(model, x)?;
    let output = patch.wire_node(&norm.name, op, &[input])?;
    patch.shunt_outside(model, norm.id.into(), output[0])?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::super::test_values;
    use super::*;
    use tract_onnx::prelude::tract_linalg::multithread::{multithread_tract_scope, Executor};
    use tract_onnx::tract_core::ops::math::{mul, sub};

    #[test]
    fn equals_tracts_chain_bit_for_bit() {
        // Rows of the encoder's widths, shifted off zero so that centring
        // matters; x also an output, the op cannot normalize it in place.
        for ((rows, width), x_too) in [((700usize, 128usize), false), ((300, 320), false), ((5, 3), false), ((700, 128), true)] {
            let values: Vec<f32> = test_values(rows * width, width as u64).iter().map(|v| v * 3.0 + 0.5).collect();
            let input = Tensor::from_shape(&[rows, width], &values).unwrap();
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact([rows, width])).unwrap();
            let sums = model.wire_node("sum", Reduce::new(tvec!(1), Reducer::Sum), &[x]).unwrap();
            let scale = model.add_const("scale", tensor2(&[[1f32 / width as f32]])).unwrap();
            let mean = model.wire_node("mean", mul(), &[sums[0], scale]).unwrap();
            let centered = model.wire_node("centered", sub(), &[x, mean[0]]).unwrap();
            let norm = model.wire_node("norm", RmsNorm { axis: 1, eps: rctensor0(1e-5f32) }, &centered).unwrap();
            model.select_output_outlets(&if x_too { vec![norm[0], x] } else { vec![norm[0]] }).unwrap();
            let run = |model: &TypedModel| {
                let plan = model.clone().into_runnable().unwrap();
                plan.run(tvec!(input.clone().into_tvalue())).unwrap().remove(0).into_tensor()
            };
            let want = run(&model);
            let mut fused = model.clone();
            assert_eq!(fuse(&mut fused).unwrap(), 1);
            fused = fused.into_compact().unwrap();
            assert_eq!(fused.nodes().len(), 2, "{fused}");
            for threads in [1, 2] {
                let got = multithread_tract_scope(Executor::multithread(threads), || run(&fused));
                assert_eq!(got, want, "{rows}x{width}, x an output too: {x_too}, {threads} thread(s)");
            }
        }
    }
}
