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
    if !dense_measured_faster() {
        return Ok(());
    }
    let dense = dense::fuse(model)?;
    if dense > 0 {
        log::debug!("{dense} matmuls with constant weights run with their epilogues as one operator each");
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
