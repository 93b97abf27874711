//! maskd's own tract operators, and the passes that put them in a model's
//! graph: [`fuse`] between tract's decluttering and its optimization,
//! [`spread`] after it.

mod concat;
mod dense;
mod gelu;
mod layer_norm;
mod move_axis;
mod pad;
mod slice;
mod window_attention;

use tract_onnx::prelude::tract_linalg::multithread::par_chunks_mut;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{self, PadMode, TypedConcat};
use tract_onnx::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_onnx::tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};

/// Rewrites a decluttered float32 model with maskd's operators.
///
/// # Errors
/// A rewrite failed (a bug: each pass checks its pattern before it patches).
pub fn fuse(model: &mut TypedModel) -> TractResult<()> {
    let attentions = window_attention::fuse(model)?;
    if attentions > 0 {
        log::debug!("{attentions} window attentions run as one operator each");
    }
    if dense_measured_faster() {
        let dense = dense::fuse(model)?;
        if dense > 0 {
            log::debug!("{dense} matmuls with constant weights run with their epilogues as one operator each");
        }
        // After Dense, which takes the GELUs that follow its matmuls.
        let gelus = gelu::fuse(model)?;
        if gelus > 0 {
            log::debug!("{gelus} other GELUs run in one pass each");
        }
    }
    // After Dense, which folds the normalizations' affine steps.
    let norms = layer_norm::fuse(model)?;
    if norms > 0 {
        log::debug!("{norms} layer normalizations run as one operator each");
    }
    Ok(())
}

/// Rewrites an optimized model with maskd's operators that split across
/// threads the copies tract runs on one: axis moves, slices, constant pads
/// and concatenations of f32 tensors. After tract's optimizer, which moves
/// and merges its own such nodes and would not know these.
///
/// # Errors
/// A rewrite failed (a bug, as in [`fuse`]).
pub fn spread(model: &mut TypedModel) -> TractResult<()> {
    let spread = rewrite_matches(model, |model, id| {
        let node = model.node(id);
        rule_if!(node.outputs.len() == 1);
        let fact = &node.outputs[0].fact;
        rule_if!(fact.datum_type == f32::datum_type() && fact.shape.is_concrete());
        let op: Box<dyn TypedOp> = if let Some(&AxisOp::Move(from, to)) = node.op_as::<AxisOp>() {
            Box::new(move_axis::MoveAxis { from, to })
        } else if let Some(op) = node.op_as::<array::Slice>() {
            rule_if_some!(start = op.start.as_i64());
            rule_if_some!(end = op.end.as_i64());
            Box::new(slice::Slice { axis: op.axis, start: start as usize, end: end as usize })
        } else if let Some(op) = node.op_as::<array::Pad>() {
            let PadMode::Constant(value) = &op.mode else { return Ok(None) };
            rule_if!(value.datum_type() == f32::datum_type() && value.len() == 1);
            Box::new(pad::Pad { pads: op.pads.clone(), value: value.cast_to_scalar::<f32>()? })
        } else if let Some(op) = node.op_as::<TypedConcat>() {
            Box::new(concat::Concat { axis: op.axis })
        } else {
            return Ok(None);
        };
        TypedModelPatch::replace_single_op(model, node, &node.inputs, op).map(Some)
    })?;
    if spread > 0 {
        log::debug!("{spread} copies split across threads");
    }
    Ok(())
}

/// Fills `chunk`, the output from unit `first` on (a unit: `inner` values),
/// one contiguous run at a time: `source(unit)` is the slice that unit comes
/// from, where in it (in units) it starts, and how many units follow it there
/// contiguously.
fn copy_runs<'a>(chunk: &mut [f32], first: usize, inner: usize, source: impl Fn(usize) -> (&'a [f32], usize, usize)) {
    let units = chunk.len() / inner;
    let mut done = 0;
    while done < units {
        let (src, at, run) = source(first + done);
        let n = run.min(units - done);
        chunk[done * inner..(done + n) * inner].copy_from_slice(&src[at * inner..(at + n) * inner]);
        done += n;
    }
}

/// A new f32 tensor of `shape`, its rows of `row_len` values filled by
/// `fill(first_row, rows)` on tract's threads.
///
/// # Safety
/// `fill` writes every value of the rows it is given: the tensor starts
/// uninitialized.
unsafe fn threaded_output(shape: &[usize], row_len: usize, fill: impl Fn(usize, &mut [f32]) -> TractResult<()> + Sync + Send) -> TractResult<Tensor> {
    // SAFETY: the caller's `fill` writes every value before anything reads it.
    let mut output = unsafe { Tensor::uninitialized::<f32>(shape)? };
    let mut output_ram = output.try_as_plain_ram_mut()?;
    let values = output_ram.as_slice_mut::<f32>()?;
    let len = values.len();
    if len > 0 {
        par_chunks_mut(values, row_len, len, fill)?;
    }
    Ok(output)
}

/// Whether this CPU is one where [`dense::Dense`] was measured faster than
/// tract's matmuls: x86-64 with AVX-512, where matrixmultiply's AVX-512
/// kernels run these shapes 1.5-3x faster (docs/PERFORMANCE.md). With AVX2
/// only, its AVX2 kernel measured slower than tract's AVX-512 one on the same
/// CPU, and was not compared with tract's AVX2 kernels; aarch64 boards keep
/// tract's NEON kernels until one measures both (docs/BOARDS.md, "Speed").
fn dense_measured_faster() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Applies the patch `pattern` makes at each node of `model` where it makes
/// one; returns how many it applied.
fn rewrite_matches(
    model: &mut TypedModel,
    pattern: impl Fn(&TypedModel, usize) -> TractResult<Option<TypedModelPatch>>,
) -> TractResult<usize> {
    let mut applied = 0;
    for id in 0..model.nodes().len() {
        if let Some(patch) = pattern(model, id)? {
            patch.apply(model)?;
            applied += 1;
        }
    }
    Ok(applied)
}

fn is_unary<Mini: ElementWiseMiniOp>(node: &TypedNode) -> bool {
    node.op_as::<ElementWiseOp>().is_some_and(|op| op.0.is::<Mini>())
}

/// `node` as `Bin(other, constant)` in either order: the constant and `other`.
fn with_const<Bin: BinMiniOp>(model: &TypedModel, node: &TypedNode) -> TractResult<Option<(Arc<Tensor>, OutletId)>> {
    rule_if!(node.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Bin>()) && node.inputs.len() == 2);
    let facts = model.node_input_facts(node.id)?;
    rule_if_some!(slot = facts.iter().position(|f| f.konst.is_some()));
    rule_if!(facts[1 - slot].konst.is_none());
    Ok(Some((facts[slot].konst.clone().unwrap(), node.inputs[1 - slot])))
}

/// Reproducible test values in [-1, 1).
#[cfg(test)]
fn test_values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

#[cfg(test)]
use tract_onnx::prelude::tract_linalg::multithread::{multithread_tract_scope, Executor};

/// Checks that [`spread`] replaces the one node `wire` makes over inputs of
/// `shapes`, and that the plan's output then is tract's, value for value, on
/// 1 and 2 threads.
#[cfg(test)]
fn assert_spread_equals_tract(shapes: &[&[usize]], wire: impl Fn(&mut TypedModel, &[OutletId]) -> TractResult<TVec<OutletId>>) {
    let mut model = TypedModel::default();
    let mut inputs = tvec!();
    let mut values = tvec!();
    for (ix, shape) in shapes.iter().enumerate() {
        inputs.push(model.add_source(format!("x{ix}"), f32::fact(*shape)).unwrap());
        let len = shape.iter().product();
        values.push(Tensor::from_shape(shape, &test_values(len, ix as u64 + len as u64)).unwrap());
    }
    let output = wire(&mut model, &inputs).unwrap();
    model.select_output_outlets(&output).unwrap();
    let run = |model: &TypedModel| {
        let plan = model.clone().into_runnable().unwrap();
        plan.run(values.iter().map(|v| v.clone().into_tvalue()).collect()).unwrap().remove(0).into_tensor()
    };
    let want = run(&model);
    let mut spread_model = model.clone();
    spread(&mut spread_model).unwrap();
    let replaced = spread_model.nodes().iter().filter(|n| n.op.name().ends_with("Threaded")).count();
    assert_eq!(replaced, 1, "{spread_model}");
    for threads in [1, 2] {
        let got = multithread_tract_scope(Executor::multithread(threads), || run(&spread_model));
        assert_eq!(got, want, "{shapes:?}, {threads} thread(s): {spread_model}");
    }
}
