//! maskd's own tract operators, and the passes that put them in a model's
//! graph between tract's decluttering and its optimization.

mod dense;
mod window_attention;

use tract_onnx::prelude::*;

/// Rewrites a decluttered float32 model with maskd's operators.
///
/// # Errors
/// A rewrite failed (a bug: each pass checks its pattern before it patches).
pub fn fuse(model: &mut TypedModel) -> TractResult<()> {
    let attentions = window_attention::fuse(model)?;
    if attentions > 0 {
        log::debug!("{attentions} window attentions run as one operator each");
    }
    // On x86-64, matrixmultiply's kernels beat tract's on these shapes
    // (docs/PERFORMANCE.md). On aarch64 tract's own NEON kernels stay until a
    // board measures the two (docs/BOARDS.md, "Speed").
    if !cfg!(target_arch = "x86_64") {
        return Ok(());
    }
    let dense = dense::fuse(model)?;
    if dense > 0 {
        log::debug!("{dense} matmuls with constant weights run with their epilogues as one operator each");
    }
    Ok(())
}
