//! GELU as tract's `GeluExact` computes it, bit for bit, in one pass.
//!
//! tract's f32 `GeluExact` scales a copy of its input by 1/√2, runs its erf
//! kernel over the copy through an alignment wrapper, then combines the two:
//! three passes and a copy. In [`super::dense::Dense`]'s epilogue that took
//! 0.65 ns a value, 70 of the encoder's 1,060 ms (docs/PERFORMANCE.md); one
//! pass with the same operations in the same order takes a fraction of it.
//!
//! The erf is tract-linalg's (Abramowitz & Stegun 7.1.26, six coefficients).
//! tract's x86-64 kernels (AVX-512, and AVX with FMA) run its polynomial
//! with fused multiply-adds, its generic kernel with separate multiplies and
//! adds; [`gelu`] follows whichever of the two tract runs on this CPU.
//!
//! The GELUs no matmul precedes (those after the depthwise convolutions) run
//! as [`Gelu`], put in by [`fuse`].

use tract_onnx::prelude::tract_linalg::multithread::par_chunks_mut;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_onnx::tract_core::ops::nn::GeluExact;

use super::is_unary;

/// tract's f32 `GeluExact` computed by [`gelu`], in place and split across
/// tract's threads. An element-wise mini-op like tract's, so that tract's
/// optimizer still moves slices and axis changes through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gelu;

impl ElementWiseMiniOp for Gelu {
    fn name(&self) -> String {
        "Gelu".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, out_dt: Option<DatumType>) -> TractResult<()> {
        ensure!(t.datum_type() == f32::datum_type() && out_dt.is_none_or(|dt| dt == f32::datum_type()), "Gelu takes f32 values");
        let mut ram = t.try_as_plain_ram_mut()?;
        let values = ram.as_slice_mut::<f32>()?;
        let len = values.len();
        par_chunks_mut(values, 1, len, |_, chunk| {
            gelu(chunk);
            Ok(())
        })
    }

    fn cost_per_element(&self, dt: DatumType) -> TVec<(Cost, usize)> {
        // tract's GeluExact's figures: the same arithmetic.
        tvec!((Cost::FMA(dt), 14), (Cost::Div(dt), 1))
    }
}

/// Replaces each f32 `GeluExact` of `model` by [`Gelu`]; returns how many.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    super::rewrite_matches(model, |model, id| {
        let node = model.node(id);
        rule_if!(is_unary::<GeluExact>(node));
        rule_if!(model.outlet_fact(node.inputs[0])?.datum_type == f32::datum_type());
        let op = ElementWiseOp(Box::new(Gelu), None);
        TypedModelPatch::replace_single_op(model, node, &node.inputs, op).map(Some)
    })
}

/// Replaces each value `x` by `(x * 0.5) * (erf(x * (1/√2)) + 1)`.
pub fn gelu(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { gelu_avx512(values) };
        }
        if std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { gelu_avx(values) };
        }
    }
    gelu_with::<false>(values);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn gelu_avx512(values: &mut [f32]) {
    gelu_with::<true>(values);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,fma")]
fn gelu_avx(values: &mut [f32]) {
    gelu_with::<true>(values);
}

/// Inlined into each caller, so that it is vectorized for the caller's
/// target features.
#[inline(always)]
fn gelu_with<const FUSED: bool>(values: &mut [f32]) {
    let scale = 2f32.sqrt().recip();
    for x in values {
        *x = (*x * 0.5) * (erf::<FUSED>(*x * scale) + 1.0);
    }
}

/// tract-linalg's erf; `FUSED`: its polynomial's steps as fused
/// multiply-adds (only where the CPU has them: without, `mul_add` is a
/// library call).
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn erf<const FUSED: bool>(x: f32) -> f32 {
    const A: [f32; 6] = [0.0705230784, 0.0422820123, 0.0092705272, 0.0001520143, 0.0002765672, 0.0000430638];
    let abs = x.abs();
    let polynomial = if FUSED {
        let mut y = A[5];
        for a in A[..5].iter().rev() {
            y = y.mul_add(abs, *a);
        }
        y * abs
    } else {
        let mut y = A[5] * abs;
        for a in A[..5].iter().rev() {
            y = (a + y) * abs;
        }
        y
    };
    let p2 = (polynomial + 1.0) * (polynomial + 1.0);
    let p4 = p2 * p2;
    let p8 = p4 * p4;
    let p16 = p8 * p8;
    (1.0 - p16.recip()).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::super::test_values;
    use super::*;
    use tract_onnx::prelude::tract_linalg::multithread::{multithread_tract_scope, Executor};

    /// A model of one `GeluExact` node over `len` values.
    fn gelu_exact_model(len: usize) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([len])).unwrap();
        let out = model.wire_node("gelu", ElementWiseOp(Box::new(GeluExact {}), None), &[x]).unwrap();
        model.select_output_outlets(&out).unwrap();
        model
    }

    fn run(model: &TypedModel, values: &[f32]) -> Vec<f32> {
        let plan = model.clone().into_runnable().unwrap();
        let output = plan.run(tvec!(tensor1(values).into_tvalue())).unwrap().remove(0).into_tensor();
        output.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec()
    }

    fn assert_same_bits(got: &[f32], want: &[f32], values: &[f32]) {
        for (ix, (g, w)) in got.iter().zip(want).enumerate() {
            let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
            assert!(same, "value {ix} ({}): {g} against tract's {w}", values[ix]);
        }
    }

    #[test]
    fn equals_tracts_gelu_exact_bit_for_bit() {
        // Values over erf's whole curve and beyond, zeros of both signs,
        // extremes, and a length that is no multiple of any vector width.
        let mut values: Vec<f32> = test_values(100_003, 7).iter().map(|v| v * 8.0).collect();
        values.extend([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, f32::MAX, f32::MIN, f32::INFINITY, f32::NEG_INFINITY]);
        let want = run(&gelu_exact_model(values.len()), &values);
        let mut got = values.clone();
        gelu(&mut got);
        assert_same_bits(&got, &want, &values);
    }

    #[test]
    fn replaces_gelu_exact_nodes_and_splits_them_across_threads() {
        let values: Vec<f32> = test_values(200_001, 11).iter().map(|v| v * 6.0).collect();
        let model = gelu_exact_model(values.len());
        let want = run(&model, &values);
        let mut fused = model.clone();
        assert_eq!(fuse(&mut fused).unwrap(), 1);
        assert!(fused.nodes().iter().any(|n| n.op_as::<ElementWiseOp>().is_some_and(|op| op.0.is::<Gelu>())), "{fused}");
        for threads in [1, 2] {
            let got = multithread_tract_scope(Executor::multithread(threads), || run(&fused, &values));
            assert_same_bits(&got, &want, &values);
        }
    }
}
