//! TinyViT's window attention as one operator: for each window and head, the
//! scores, their exponentials and the weighted values, with the scores kept
//! in cache instead of written out between thirteen of tract's nodes.
//!
//! The export writes each attention as `exp(clip(q·kᵀ · scale + bias))`
//! times `v`, divided by the rows' sums (models/window_attention.py). tract
//! runs that as two batched matmuls and eleven other nodes, each streaming a
//! windows x tokens x heads x tokens map through memory, and all but the
//! matmuls' on one core: about a fifth of the encoder (docs/PERFORMANCE.md).
//! [`fuse`] finds that pattern in a decluttered model and puts this operator
//! in its place. The operator computes the same formula in the same order,
//! with tract's own exp and sum kernels, one window at a time (windows spread
//! over tract's threads); only the matmuls' summation order differs.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::Slice;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::{Add, Exp, Max, Min, Mul, Recip};
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::prelude::tract_linalg::element_wise::ElementWise;
use tract_onnx::prelude::tract_linalg::multithread::par_chunks_mut;
use tract_onnx::prelude::tract_linalg::reduce::Reduce as ReduceKernel;
use tract_onnx::prelude::tract_linalg::routines::Func;

use super::{is_unary, with_const};

/// Attention over `windows` x `tokens` x `heads`, from the qkv projection's
/// output `[windows, tokens, heads, 3 x head_dim]` (q, k and v side by side
/// in each head) to `[windows, tokens, heads, head_dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowAttention {
    /// Added to the scaled scores: `[1, tokens (query), heads, tokens (key)]`.
    bias: Arc<Tensor>,
    scale: f32,
    /// The bounds the scores are clipped to before `exp`.
    low: f32,
    high: f32,
}

// The op's floats are constants of the model, never NaN.
impl Eq for WindowAttention {}

/// The dimensions of one evaluation.
#[derive(Debug, Clone, Copy)]
struct Dims {
    tokens: usize,
    heads: usize,
    head_dim: usize,
}

/// tract's exp and sum kernels for this host, looked up once per evaluation
/// rather than for each of its thousands of window-heads.
struct Kernels {
    exp: Box<dyn ElementWise<f32>>,
    sum: Box<dyn ReduceKernel<f32>>,
}

impl Op for WindowAttention {
    fn name(&self) -> StaticName {
        "WindowAttention".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("scale {}, scores clipped to [{}, {}]", self.scale, self.low, self.high)])
    }

    op_as_typed_op!();
}

impl EvalOp for WindowAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let qkv = args_1!(inputs);
        let &[windows, tokens, heads, width] = qkv.shape() else {
            bail!("WindowAttention takes [windows, tokens, heads, 3 x head_dim], got {:?}", qkv.shape());
        };
        let dims = Dims { tokens, heads, head_dim: width / 3 };
        let qkv = qkv.try_as_plain_ram()?;
        let qkv = qkv.as_slice::<f32>()?;
        let bias = self.bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<f32>()?;
        let kernels = Kernels { exp: Func::Exp.ew_f32()?, sum: Func::ReduceSum.reduce_f32()? };
        let mut output = Tensor::zero::<f32>(&[windows, tokens, heads, dims.head_dim])?;
        let window_len = tokens * heads * dims.head_dim;
        par_chunks_mut(output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?, window_len, windows * tokens * heads * tokens, |first, chunk| {
            let mut scores = vec![0f32; tokens * tokens];
            for (ix, out) in chunk.chunks_exact_mut(window_len).enumerate() {
                let window = &qkv[(first + ix) * tokens * heads * width..][..tokens * heads * width];
                for head in 0..heads {
                    self.attend(window, bias, out, &mut scores, head, dims, &kernels)?;
                }
            }
            Ok(())
        })?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl WindowAttention {
    /// One head of one window: `window` is its `[tokens, heads, 3 x head_dim]`
    /// slice of qkv, `out` its `[tokens, heads, head_dim]` slice of the output.
    fn attend(
        &self,
        window: &[f32],
        bias: &[f32],
        out: &mut [f32],
        scores: &mut [f32],
        head: usize,
        Dims { tokens, heads, head_dim }: Dims,
        kernels: &Kernels,
    ) -> TractResult<()> {
        let row = heads * 3 * head_dim;
        let part = |which: usize| {
            ArrayView2::from_shape((tokens, head_dim).strides((row, 1)), &window[(head * 3 + which) * head_dim..])
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        // scores = q·kᵀ · scale + bias, clipped.
        for (query, scores) in scores.chunks_exact_mut(tokens).enumerate() {
            scores.copy_from_slice(&bias[(query * heads + head) * tokens..][..tokens]);
        }
        let mut grid = ArrayViewMut2::from_shape((tokens, tokens), &mut *scores)?;
        general_mat_mul(self.scale, &q, &k.t(), 1.0, &mut grid);
        for score in scores.iter_mut() {
            *score = score.max(self.low).min(self.high);
        }
        kernels.exp.run(scores)?;
        // out = exp(scores)·v, each row divided by its sum.
        let mut weighted = ArrayViewMut2::from_shape(
            (tokens, head_dim).strides((heads * head_dim, 1)),
            &mut out[head * head_dim..],
        )?;
        let exps = ArrayView2::from_shape((tokens, tokens), &*scores)?;
        general_mat_mul(1.0, &exps, &v, 0.0, &mut weighted);
        for (mut values, exps) in weighted.rows_mut().into_iter().zip(scores.chunks_exact(tokens)) {
            let recip = 1.0 / kernels.sum.run(exps)?;
            values.iter_mut().for_each(|v| *v *= recip);
        }
        Ok(())
    }
}

impl TypedOp for WindowAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let qkv = inputs[0];
        ensure!(qkv.datum_type == f32::datum_type() && qkv.rank() == 4, "WindowAttention takes a rank-4 f32 qkv");
        let mut shape = qkv.shape.to_tvec();
        shape[3] = shape[3].clone() / 3;
        Ok(tvec!(f32::datum_type().fact(shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let shape = &inputs[0].shape;
        // Two matmuls: tokens x tokens x head_dim multiply-adds each, per window and head.
        let fmas = shape[0].clone() * &shape[1] * &shape[1] * &shape[2] * (shape[3].clone() / 3) * 2;
        Ok(tvec!((Cost::FMA(f32::datum_type()), fmas)))
    }

    as_op!();
}

/// Replaces every window attention of `model` (decluttered, float32) by a
/// [`WindowAttention`]; returns how many it replaced.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    super::rewrite_matches(model, pattern)
}

/// The patch replacing the attention whose `exp` is node `exp`, if it is one.
fn pattern(model: &TypedModel, exp: usize) -> TractResult<Option<TypedModelPatch>> {
    let exp = model.node(exp);
    rule_if!(is_unary::<Exp>(exp));
    // Backwards from exp: clip's Min and Max, the bias Add, the scale Mul, q·kᵀ.
    rule_if_some!((clipped, high) = binary_with_const::<Min>(model, model.node(exp.inputs[0].node))?);
    rule_if_some!((biased, low) = binary_with_const::<Max>(model, clipped)?);
    rule_if_some!((scaled, bias) = binary_with_const::<Add>(model, biased)?);
    rule_if_some!((scores, scale) = binary_with_const::<Mul>(model, scaled)?);
    rule_if!(high.len() == 1 && low.len() == 1 && scale.len() == 1);
    rule_if!(is_einsum(scores, "ambk,anbk->ambn"));
    rule_if_some!((qkv, q) = slice_of(model, scores.inputs[0])?);
    rule_if_some!((qkv_k, k) = slice_of(model, scores.inputs[1])?);
    // Forwards from exp: exp·v, and its rows' sum, inverted, times that.
    rule_if!(exp.outputs[0].successors.len() == 2);
    let successors: Vec<&TypedNode> = exp.outputs[0].successors.iter().map(|s| model.node(s.node)).collect();
    rule_if_some!(weighted = successors.iter().find(|n| is_einsum(n, "ambk,akbn->ambn")));
    rule_if_some!(sum = successors.iter().find(|n| is_row_sum(n)));
    rule_if!(weighted.inputs[0].node == exp.id);
    rule_if_some!((qkv_v, v) = slice_of(model, weighted.inputs[1])?);
    rule_if_some!(recip = model.single_succ(sum.id)?);
    rule_if!(is_unary::<Recip>(recip));
    rule_if_some!(divided = model.single_succ(recip.id)?);
    rule_if!(divided.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Mul>()));
    rule_if!(divided.inputs.iter().any(|i| i.node == weighted.id));
    rule_if_some!(only_weighted_use = model.single_succ(weighted.id)?);
    rule_if!(only_weighted_use.id == divided.id);

    // q, k and v are the three consecutive head_dim slices of each head's qkv.
    let fact = model.outlet_fact(qkv)?;
    rule_if!(qkv == qkv_k && qkv == qkv_v && fact.datum_type == f32::datum_type() && fact.rank() == 4);
    rule_if_some!(width = fact.shape[3].to_usize().ok());
    let head_dim = width / 3;
    rule_if!(width == 3 * head_dim && (q, k, v) == ((0, head_dim), (head_dim, 2 * head_dim), (2 * head_dim, width)));
    let (Ok(tokens), Ok(heads)) = (fact.shape[1].to_usize(), fact.shape[2].to_usize()) else { return Ok(None) };
    rule_if!(bias.shape() == [1, tokens, heads, tokens] && bias.datum_type() == f32::datum_type());

    let op = WindowAttention {
        bias,
        scale: scale.cast_to_scalar::<f32>()?,
        low: low.cast_to_scalar::<f32>()?,
        high: high.cast_to_scalar::<f32>()?,
    };
    let mut patch = TypedModelPatch::new(format!("fusing the window attention at {}", exp.name));
    let input = patch.tap_model(model, qkv)?;
    let output = patch.wire_node(format!("{}.window_attention", divided.name), op, &[input])?;
    patch.shunt_outside(model, divided.id.into(), output[0])?;
    Ok(Some(patch))
}

fn is_einsum(node: &TypedNode, axes: &str) -> bool {
    node.op_as::<EinSum>().is_some_and(|op| op.q_params.is_none() && op.axes.to_string() == axes)
}

/// A sum over the last of four axes.
fn is_row_sum(node: &TypedNode) -> bool {
    node.op_as::<Reduce>().is_some_and(|op| op.reducer == Reducer::Sum && *op.axes == [3])
}

/// `node` as `Bin(x, constant)` of its only non-constant input `x` (whose
/// node must feed nothing else), with the constant.
fn binary_with_const<'m, Bin: BinMiniOp>(
    model: &'m TypedModel,
    node: &TypedNode,
) -> TractResult<Option<(&'m TypedNode, Arc<Tensor>)>> {
    rule_if_some!((constant, input) = with_const::<Bin>(model, node)?);
    let input = model.node(input.node);
    rule_if!(input.outputs.len() == 1 && input.outputs[0].successors.len() == 1);
    Ok(Some((input, constant)))
}

/// The source and range of `outlet` when it is a slice along the last of four axes.
fn slice_of(model: &TypedModel, outlet: OutletId) -> TractResult<Option<(OutletId, (usize, usize))>> {
    let node = model.node(outlet.node);
    rule_if_some!(slice = node.op_as::<Slice>());
    rule_if!(slice.axis == 3);
    let (Ok(start), Ok(end)) = (slice.start.to_usize(), slice.end.to_usize()) else { return Ok(None) };
    Ok(Some((node.inputs[0], (start, end))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::test_values;

    const SHAPE: [usize; 4] = [3, 7, 2, 4];

    /// The scores of the export's formula before clipping, `[window][head][query][key]`, one at a time.
    fn raw_scores(op: &WindowAttention, qkv: &[f32]) -> Vec<Vec<Vec<Vec<f32>>>> {
        let [windows, tokens, heads, head_dim] = SHAPE;
        let bias = op.bias.try_as_plain_ram().unwrap();
        let bias = bias.as_slice::<f32>().unwrap();
        (0..windows)
            .map(|w| {
                (0..heads)
                    .map(|h| {
                        (0..tokens)
                            .map(|query| {
                                (0..tokens)
                                    .map(|key| {
                                        let dot: f32 = (0..head_dim)
                                            .map(|d| qkv_at(qkv, w, query, h, 0, d) * qkv_at(qkv, w, key, h, 1, d))
                                            .sum();
                                        dot * op.scale + bias[(query * heads + h) * tokens + key]
                                    })
                                    .collect()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    fn qkv_at(qkv: &[f32], w: usize, t: usize, h: usize, part: usize, d: usize) -> f32 {
        let [_, tokens, heads, head_dim] = SHAPE;
        qkv[((w * tokens + t) * heads + h) * 3 * head_dim + part * head_dim + d]
    }

    #[test]
    fn every_window_and_head_matches_the_formula_with_clipped_scores() {
        let [windows, tokens, heads, head_dim] = SHAPE;
        let bias = Tensor::from_shape(&[1, tokens, heads, tokens], &test_values(tokens * heads * tokens, 1)).unwrap();
        let op = WindowAttention { bias: Arc::new(bias), scale: 3.0, low: -1.5, high: 1.5 };
        let qkv = test_values(windows * tokens * heads * 3 * head_dim, 2);
        let scores = raw_scores(&op, &qkv);
        let all = || scores.iter().flatten().flatten().flatten();
        assert!(all().any(|s| *s < op.low) && all().any(|s| *s > op.high), "no score is clipped at one end");

        let input = Tensor::from_shape(&[windows, tokens, heads, 3 * head_dim], &qkv).unwrap();
        let output = op.eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue())).unwrap().remove(0);
        assert_eq!(output.shape(), [windows, tokens, heads, head_dim]);
        let output = output.try_as_plain_ram().unwrap();
        let output = output.as_slice::<f32>().unwrap();
        for (w, h, query) in (0..windows).flat_map(|w| (0..heads).flat_map(move |h| (0..tokens).map(move |q| (w, h, q)))) {
            let exps: Vec<f32> = scores[w][h][query].iter().map(|s| s.max(op.low).min(op.high).exp()).collect();
            let sum: f32 = exps.iter().sum();
            for d in 0..head_dim {
                let want = exps.iter().enumerate().map(|(key, e)| e * qkv_at(&qkv, w, key, h, 2, d)).sum::<f32>() / sum;
                let got = output[((w * tokens + query) * heads + h) * head_dim + d];
                assert!((got - want).abs() <= 1e-5, "window {w} head {h} query {query} dim {d}: {got} against {want}");
            }
        }
    }
}
