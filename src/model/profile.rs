//! Where a plan's time goes: one run with each of tract's nodes timed on its own.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::Cost;
use tract_onnx::tract_core::plan::eval;

use super::session::Plan;

/// One node of an optimized plan, and what it cost in one run.
#[derive(Debug, Clone)]
pub struct NodeCost {
    pub name: String,
    /// tract's operator: "OptMatMul", "GeluExact", ...
    pub op: String,
    /// Its first output's shape, e.g. "1,4096,160".
    pub shape: String,
    /// Multiply-adds per run as tract counts them (0 for ops it counts none for).
    pub fmas: u64,
    /// CPU time of the whole process while the node ran: on one thread the
    /// node's own work, with more the work of tract's worker threads too.
    /// Unlike the wall time, other processes' load barely changes it.
    pub cpu: Duration,
    pub wall: Duration,
}

/// Runs `plan` once on `inputs`, timing each node, in the plan's order.
///
/// # Errors
/// The plan fails on `inputs`.
pub fn profile(plan: &Plan, inputs: TVec<TValue>) -> Result<Vec<NodeCost>> {
    let model = plan.model();
    let fmas = model.nodes().iter().map(|node| fmas(model, node)).collect::<Result<Vec<u64>>>()?;
    let mut state = plan.spawn()?;
    let mut costs = Vec::with_capacity(model.nodes().len());
    state
        .run_plan_with_eval(inputs, |session, op_state, node, input| {
            let (cpu, wall) = (process_cpu_time(), Instant::now());
            let outputs = eval(session, op_state, node, input);
            costs.push(NodeCost {
                name: node.name.clone(),
                op: node.op().name().into_owned(),
                shape: node.outputs.first().map(|o| format!("{:?}", o.fact.shape)).unwrap_or_default(),
                fmas: fmas[node.id],
                cpu: process_cpu_time().saturating_sub(cpu),
                wall: wall.elapsed(),
            });
            outputs
        })
        .context("running the profiled plan")?;
    Ok(costs)
}

/// The multiply-adds tract counts for `node`, any type; 0 when it counts
/// none or the count depends on a symbol.
fn fmas(model: &TypedModel, node: &TypedNode) -> Result<u64> {
    let inputs = model.node_input_facts(node.id)?;
    let costs = node.op.cost(&inputs).with_context(|| format!("the cost of {node}"))?;
    Ok(costs
        .iter()
        .filter(|(cost, _)| matches!(cost, Cost::FMA(_)))
        .filter_map(|(_, count)| count.to_i64().ok())
        .map(|count| count as u64)
        .sum())
}

/// The CPU time all of this process's threads have used.
fn process_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    debug_assert_eq!(status, 0, "CLOCK_PROCESS_CPUTIME_ID is always available on Linux");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
