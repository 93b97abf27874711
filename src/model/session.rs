//! Loading an ONNX file into an optimized tract plan.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use tract_onnx::prelude::tract_linalg::multithread::{set_default_executor, Executor};
use tract_onnx::prelude::*;

/// An optimized, shareable execution plan.
pub type Plan = Arc<TypedRunnableModel>;

/// Loads `path`, binds its inputs (in this order; a fact overrides the
/// shape the file declares, `None` keeps it) and outputs by name, and
/// optimizes it for repeated runs.
pub fn load(
    path: &Path,
    inputs: &[(&str, Option<InferenceFact>)],
    outputs: &[&str],
) -> Result<Plan> {
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .with_context(|| format!("reading ONNX model {}", path.display()))?;
    let names: Vec<&str> = inputs.iter().map(|(name, _)| *name).collect();
    model
        .set_input_names(&names)
        .with_context(|| format!("{} must have inputs {names:?}", path.display()))?;
    for (ix, (_, fact)) in inputs.iter().enumerate() {
        if let Some(fact) = fact {
            model.set_input_fact(ix, fact.clone())?;
        }
    }
    model
        .select_outputs_by_name(outputs)
        .with_context(|| format!("{} must have outputs {outputs:?}", path.display()))?;
    model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .with_context(|| format!("optimizing {}", path.display()))
}

/// A float32 input of a fixed shape.
pub fn f32_input(shape: &[usize]) -> Option<InferenceFact> {
    Some(InferenceFact::dt_shape(f32::datum_type(), shape.iter().copied()))
}

/// Sets how many threads every model run uses, process-wide (tract's
/// default executor); 1, the default, runs inline on the calling thread.
/// Call it before the first run: plans in flight keep their executor.
///
/// # Errors
/// `threads` is 0.
pub fn set_threads(threads: usize) -> Result<()> {
    ensure!(threads > 0, "the thread count must be at least 1");
    // A one-thread pool would still pay rayon's dispatch: run inline instead.
    set_default_executor(if threads == 1 { Executor::SingleThread } else { Executor::multithread(threads) });
    Ok(())
}
