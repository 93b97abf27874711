//! maskd's own tract operators, and the passes that put them in a model's
//! graph between tract's decluttering and its optimization.

mod dense;
mod gelu;
mod move_axis;
mod window_attention;

use tract_onnx::tract_core::internal::*;
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
    if !dense_measured_faster() {
        return Ok(());
    }
    let dense = dense::fuse(model)?;
    if dense > 0 {
        log::debug!("{dense} matmuls with constant weights run with their epilogues as one operator each");
    }
    // After Dense, which takes the GELUs that follow its matmuls.
    let gelus = gelu::fuse(model)?;
    if gelus > 0 {
        log::debug!("{gelus} other GELUs run in one pass each");
    }
    Ok(())
}

/// Rewrites an optimized model with maskd's operators that split across
/// threads what tract runs on one (after tract's optimizer, which would no
/// longer recognize them).
///
/// # Errors
/// A rewrite failed (a bug, as in [`fuse`]).
pub fn spread(model: &mut TypedModel) -> TractResult<()> {
    let moves = move_axis::spread(model)?;
    if moves > 0 {
        log::debug!("{moves} axis moves split across threads");
    }
    Ok(())
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
