//! Loading an ONNX file into an optimized tract plan.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use tract_onnx::prelude::tract_data::knobs::KnobScope;
use tract_onnx::prelude::tract_linalg::multithread::{set_default_executor, Executor};
use tract_onnx::prelude::*;

use super::compute::{self, Compute};
use super::eval_order;
use super::ops;

/// An optimized, shareable execution plan.
pub type Plan = Arc<TypedRunnableModel>;

/// Loads `path`, binds its inputs (in this order; a fact overrides the
/// shape the file declares, `None` keeps it) and outputs by name, and
/// optimizes it for repeated runs in `compute` (with f16, the plan's inputs
/// and outputs are f16).
pub fn load(
    path: &Path,
    inputs: &[(&str, Option<InferenceFact>)],
    outputs: &[&str],
    compute: Compute,
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
    let optimized = match compute {
        Compute::F32 => {
            let mut typed = model.into_typed()?.into_decluttered()?;
            ops::fuse(&mut typed).with_context(|| format!("rewriting {}", path.display()))?;
            optimize_scope()?.enter(|| typed.into_optimized())
        }
        Compute::F16 => {
            let mut typed = model.into_typed()?.into_decluttered()?;
            compute::to_f16(&mut typed).with_context(|| format!("{} in f16", path.display()))?;
            optimize_scope()?.enter(|| typed.into_optimized())
        }
    };
    optimized
        .and_then(|mut m| {
            ops::spread(&mut m)?;
            plan(m)
        })
        .with_context(|| format!("optimizing {}", path.display()))
}

/// The plan of `model`, run in the order of [`eval_order::leanest`]: among
/// a few, the order that holds the fewest bytes of activations at once
/// (docs/PERFORMANCE.md#memory). Plans with symbolic shapes (the decoder's
/// per-prompt plan) keep tract's depth-first order; tract's default runs
/// whichever node is ready first, and over the encoder's striped
/// convolutions computes every stripe's first conv before any stripe's
/// second and holds them all.
fn plan(model: TypedModel) -> TractResult<Plan> {
    let options = RunOptions { skip_order_opt_ram: true, ..Default::default() };
    let Some(order) = eval_order::leanest(&model)? else {
        return model.into_runnable_with_options(&options);
    };
    log::debug!(
        "evaluation order: {:.1} MB of activations at the peak, {:.1} MB depth first",
        order.peak_bytes as f64 / 1e6,
        order.depth_first_peak_bytes as f64 / 1e6
    );
    // The order as a dependency of each node on the one before it: tract's
    // depth-first order then follows it exactly.
    let chain: Vec<(usize, usize)> = order.nodes.windows(2).map(|pair| (pair[1], pair[0])).collect();
    let outputs = model.output_outlets()?.to_vec();
    #[allow(deprecated)] // tract's only way in for an order of one's own
    let plan = TypedSimplePlan::build_with_outputs_and_deps(model, &outputs, &chain, &options)?;
    ensure!(plan.order_without_consts() == order.nodes, "tract did not follow the evaluation order");
    Ok(Arc::new(plan))
}

/// tract's settings for optimizing maskd's plans on this architecture. On
/// x86-64 its direct spatial convolution runs the encoder's second
/// patch-embedding conv (3x3, stride 2, 32 channels in) at a fifth of the
/// matmul rate: im2col + matmul make the whole encoder about 6% faster
/// (docs/PERFORMANCE.md). aarch64 keeps tract's choice until a board measures it.
fn optimize_scope() -> Result<KnobScope> {
    let knobs: &[(&str, &str)] = if cfg!(target_arch = "x86_64") {
        &[("TRACT_DISABLE_DIRECT_SPATIAL", "true")]
    } else {
        &[]
    };
    KnobScope::new(knobs.iter().copied()).context("setting tract's optimization knobs")
}

/// Hands the memory that loading freed back to the system. Loading frees far
/// more than it keeps (graph rewrites, weights before packing), and what a
/// second thread freed stays in its own glibc arena, resident, where the
/// encoder's runs on the loading thread cannot reuse it: without this,
/// loading on two threads raised the peak RSS of `maskd segment` by 24 MiB
/// (docs/PERFORMANCE.md#loading).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's arenas to the
    // kernel; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
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

// What the knob changes is decided on x86-64 only (see `optimize_scope`).
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
    use tract_onnx::pb::{
        attribute_proto::AttributeType, tensor_proto::DataType, type_proto, AttributeProto,
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
        TypeProto, ValueInfoProto,
    };

    fn f32_value(name: &str, dims: &[i64]) -> ValueInfoProto {
        let dim = dims.iter().map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d)),
            ..Default::default()
        });
        let tensor = type_proto::Tensor {
            elem_type: DataType::Float as i32,
            shape: Some(TensorShapeProto { dim: dim.collect() }),
        };
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(tensor)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A model of one conv shaped like the encoder's second patch-embedding
    /// conv: 3x3, stride 2, 32 channels in, 64 out, over a 512x512 input.
    fn patch_embedding_conv() -> InferenceModel {
        let ints = |name: &str, ints: Vec<i64>| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints,
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![NodeProto {
                op_type: "Conv".into(),
                input: vec!["x".into(), "w".into()],
                output: vec!["y".into()],
                attribute: vec![
                    ints("kernel_shape", vec![3, 3]),
                    ints("strides", vec![2, 2]),
                    ints("pads", vec![1, 1, 1, 1]),
                ],
                ..Default::default()
            }],
            initializer: vec![TensorProto {
                name: "w".into(),
                dims: vec![64, 32, 3, 3],
                data_type: DataType::Float as i32,
                float_data: vec![0.5; 64 * 32 * 9],
                ..Default::default()
            }],
            input: vec![f32_value("x", &[1, 32, 512, 512])],
            output: vec![f32_value("y", &[1, 64, 256, 256])],
            ..Default::default()
        };
        let proto = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(graph),
            ..Default::default()
        };
        tract_onnx::onnx().model_for_proto_model(&proto).unwrap()
    }

    fn op_names(model: TypedModel) -> Vec<String> {
        model
            .nodes()
            .iter()
            .map(|node| node.op().name().to_string())
            .collect()
    }

    #[test]
    fn x86_64_runs_the_patch_embedding_conv_as_a_matmul() {
        // Without the scope tract picks its direct convolution: if that ever
        // changes, the knob has no case left and should go.
        let default = op_names(patch_embedding_conv().into_optimized().unwrap());
        assert!(
            default.iter().any(|op| op == "DirectSpatialConv"),
            "{default:?}"
        );
        let scoped = op_names(
            optimize_scope()
                .unwrap()
                .enter(|| patch_embedding_conv().into_optimized())
                .unwrap(),
        );
        assert!(
            !scoped.iter().any(|op| op == "DirectSpatialConv"),
            "{scoped:?}"
        );
        assert!(scoped.iter().any(|op| op == "OptMatMul"), "{scoped:?}");
    }
}
