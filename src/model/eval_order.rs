//! The order a plan runs its nodes in, chosen for the fewest bytes of
//! activations alive at once.
//!
//! tract's depth-first order (each node's inputs computed in the order the
//! node lists them) is lean over most of the encoder, but not over its
//! striped convolutions (models/striped_convs.py). There tract's optimizer
//! splits the end of each stripe in two: the first rows, which the next
//! block's stripe before needs as its halo, and the rest. Depth first
//! computes the first part when that halo is needed and the rest only with
//! the stripe's own successor, so the stripe's 8 MB hidden map stays alive
//! across another stripe in between. Here a few orders are simulated on the
//! model's tensor sizes and the leanest is kept; the one that wins on the
//! encoder runs depth first but takes any ready node that frees more than it
//! allocates first, such as that rest of a stripe.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::model::order::eval_order;
use tract_onnx::tract_core::ops::binary::{OptBinByScalar, OptBinUnicast, TypedBinOp};
use tract_onnx::tract_core::ops::change_axes::{AxisOp, IntoShape};
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::konst::Const;

/// The order chosen for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Node ids, constants left out, each after its inputs.
    pub nodes: Vec<usize>,
    /// Activation bytes alive at the order's worst step.
    pub peak_bytes: usize,
    /// The same for tract's depth-first order.
    pub depth_first_peak_bytes: usize,
}

/// The leanest of the candidate orders of `model`; `None` when a tensor's
/// size is not known before running (symbolic shapes), where tract's
/// depth-first order stays.
pub fn leanest(model: &TypedModel) -> TractResult<Option<Order>> {
    let Some(graph) = Graph::of(model)? else { return Ok(None) };
    let mut depth_first = eval_order(model)?;
    depth_first.retain(|&id| !graph.is_const[id]);
    let last_input_first = graph.depth_first_last_input_first();
    let candidates = [
        graph.frees_first(&depth_first),
        graph.frees_first(&last_input_first),
        graph.fewest_bytes_first(&depth_first),
        last_input_first,
    ];
    let depth_first_peak_bytes = graph.peak(&depth_first);
    let (nodes, peak_bytes) = candidates
        .into_iter()
        .filter(|order| order.len() == depth_first.len())
        .map(|order| {
            let peak = graph.peak(&order);
            (order, peak)
        })
        .chain([(depth_first.clone(), depth_first_peak_bytes)])
        .min_by_key(|(_, peak)| *peak)
        .expect("tract's order is a candidate");
    Ok(Some(Order { nodes, peak_bytes, depth_first_peak_bytes }))
}

/// What ordering needs of a model: each node's output bytes and the nodes
/// it reads, constants left out (they are no activations).
struct Graph {
    bytes: Vec<usize>,
    /// Each node's distinct non-constant input nodes.
    inputs: Vec<Vec<usize>>,
    /// Each node's distinct readers.
    consumers: Vec<Vec<usize>>,
    is_const: Vec<bool>,
    /// Model outputs: alive to the end.
    is_output: Vec<bool>,
    outputs: Vec<usize>,
    /// Nodes that write their output over an input of the same size when
    /// they are its last reader: tract's element-wise and binary ops and
    /// reshapes.
    in_place: Vec<bool>,
}

impl Graph {
    fn of(model: &TypedModel) -> TractResult<Option<Graph>> {
        let nodes = model.nodes();
        let mut bytes = Vec::with_capacity(nodes.len());
        for node in nodes {
            let mut sum = 0;
            for output in &node.outputs {
                let Some(shape) = output.fact.shape.as_concrete() else { return Ok(None) };
                sum += shape.iter().product::<usize>() * output.fact.datum_type.size_of();
            }
            bytes.push(sum);
        }
        let is_const: Vec<bool> = nodes.iter().map(|n| n.op_is::<Const>()).collect();
        let mut inputs = vec![vec![]; nodes.len()];
        let mut consumers = vec![vec![]; nodes.len()];
        for node in nodes {
            for input in &node.inputs {
                if !is_const[input.node] && !inputs[node.id].contains(&input.node) {
                    inputs[node.id].push(input.node);
                    consumers[input.node].push(node.id);
                }
            }
        }
        let outputs: Vec<usize> = model.output_outlets()?.iter().map(|o| o.node).collect();
        let mut is_output = vec![false; nodes.len()];
        for &id in &outputs {
            is_output[id] = true;
        }
        let in_place = nodes
            .iter()
            .map(|n| {
                n.op_is::<ElementWiseOp>()
                    || n.op_is::<TypedBinOp>()
                    || n.op_is::<OptBinByScalar>()
                    || n.op_is::<OptBinUnicast>()
                    || n.op_is::<IntoShape>()
                    || n.op_as::<AxisOp>().is_some_and(|op| !matches!(op, AxisOp::Move(..)))
            })
            .collect();
        Ok(Some(Graph { bytes, inputs, consumers, is_const, is_output, outputs, in_place }))
    }

    /// Bytes alive at the worst step of `order`, as tract runs it: a node's
    /// inputs and outputs coexist while it runs, and a value is freed once
    /// its last reader has run.
    fn peak(&self, order: &[usize]) -> usize {
        let mut dying: Vec<Vec<usize>> = vec![vec![]; order.len()];
        let mut last_use = vec![None; self.bytes.len()];
        for (step, &id) in order.iter().enumerate() {
            for &input in &self.inputs[id] {
                last_use[input] = Some(step);
            }
        }
        for (node, step) in last_use.into_iter().enumerate() {
            if let (Some(step), false) = (step, self.is_output[node]) {
                dying[step].push(node);
            }
        }
        let (mut live, mut peak) = (0usize, 0usize);
        for (step, &id) in order.iter().enumerate() {
            let in_place = self.in_place[id] && dying[step].iter().any(|&n| self.bytes[n] == self.bytes[id]);
            live += self.bytes[id];
            // Written over a dying input, the output adds nothing at its step.
            peak = peak.max(if in_place { live - self.bytes[id] } else { live });
            live -= dying[step].iter().map(|&n| self.bytes[n]).sum::<usize>();
        }
        peak
    }

    /// Depth first from the outputs, each node's inputs from its last to its
    /// first.
    fn depth_first_last_input_first(&self) -> Vec<usize> {
        let mut done = vec![false; self.bytes.len()];
        let mut order = Vec::with_capacity(self.bytes.len());
        for &output in &self.outputs {
            let mut stack = vec![(output, false)];
            while let Some((id, expanded)) = stack.pop() {
                if done[id] {
                    continue;
                }
                if expanded {
                    done[id] = true;
                    order.push(id);
                    continue;
                }
                stack.push((id, true));
                // The stack pops the last pushed first: the last input.
                stack.extend(self.inputs[id].iter().filter(|&&i| !done[i]).map(|&i| (i, false)));
            }
        }
        order
    }

    /// `rank`'s order, except that a ready node that frees at least as many
    /// bytes as it allocates runs first (the one freeing most).
    fn frees_first(&self, rank: &[usize]) -> Vec<usize> {
        self.schedule(rank, |growth, rank| if growth <= 0 { (0, growth, rank) } else { (1, 0, rank) })
    }

    /// Among the ready nodes, the one that adds the fewest bytes, ties going
    /// to the earlier in `rank`.
    fn fewest_bytes_first(&self, rank: &[usize]) -> Vec<usize> {
        self.schedule(rank, |growth, rank| (0, growth, rank))
    }

    /// Runs, step by step, the ready node of the lowest `key(growth, rank)`:
    /// growth being the bytes it adds (its output less the inputs it is the
    /// last reader of) and rank its place in `rank`, which holds every node
    /// to schedule.
    fn schedule(&self, rank: &[usize], key: impl Fn(i64, usize) -> (u8, i64, usize)) -> Vec<usize> {
        let n = self.bytes.len();
        let mut position = vec![usize::MAX; n];
        for (at, &id) in rank.iter().enumerate() {
            position[id] = at;
        }
        let mut waiting: Vec<usize> = (0..n).map(|id| self.inputs[id].len()).collect();
        let mut readers_left: Vec<usize> = (0..n).map(|id| self.consumers[id].len()).collect();
        let mut ready: Vec<usize> = rank.iter().copied().filter(|&id| waiting[id] == 0).collect();
        let mut order = Vec::with_capacity(rank.len());
        while !ready.is_empty() {
            let growth = |id: usize| -> i64 {
                let freed: usize = self.inputs[id]
                    .iter()
                    .filter(|&&i| readers_left[i] == 1 && !self.is_output[i])
                    .map(|&i| self.bytes[i])
                    .sum();
                self.bytes[id] as i64 - freed as i64
            };
            let at = (0..ready.len()).min_by_key(|&at| key(growth(ready[at]), position[ready[at]])).expect("not empty");
            let id = ready.swap_remove(at);
            order.push(id);
            for &input in &self.inputs[id] {
                readers_left[input] -= 1;
            }
            for &consumer in &self.consumers[id] {
                waiting[consumer] -= 1;
                if waiting[consumer] == 0 && position[consumer] != usize::MAX {
                    ready.push(consumer);
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use tract_onnx::tract_core::ops::array::{Pad, PadMode, Slice};

    use super::*;

    /// `x` (1 KB) padded to 100 KB as `big`, whose two halves each get a
    /// slice: the first feeds a second 100 KB pad and its slice, the second
    /// goes straight to the output's sum. Depth first computes the second
    /// pad while `big` waits for its second slice; the leanest order takes
    /// that slice first and frees `big` before the second pad.
    fn split_model() -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([256])).unwrap();
        let pad = |model: &mut TypedModel, name: &str, input: OutletId, after: usize| {
            let op = Pad { pads: vec![(0, after)], mode: PadMode::Constant(rctensor0(0f32)) };
            model.wire_node(name, op, &[input]).unwrap()[0]
        };
        let slice = |model: &mut TypedModel, name: &str, input: OutletId, start: usize| {
            model.wire_node(name, Slice::new(0, start, start + 256), &[input]).unwrap()[0]
        };
        let big = pad(&mut model, "big", x, 25_600 - 256);
        let first = slice(&mut model, "first", big, 0);
        let second_big = pad(&mut model, "second_big", first, 25_600 - 256);
        let second = slice(&mut model, "second", second_big, 256);
        let rest = slice(&mut model, "rest", big, 12_800);
        let sum = model.wire_node("sum", tract_onnx::tract_core::ops::math::add(), &[second, rest]).unwrap();
        model.select_output_outlets(&sum).unwrap();
        model
    }

    #[test]
    fn the_leanest_order_frees_a_split_value_before_the_next_big_one() {
        let model = split_model();
        let order = leanest(&model).unwrap().unwrap();
        assert_eq!(order.depth_first_peak_bytes, 2 * 102_400 + 1_024);
        assert!(order.peak_bytes <= 102_400 + 2 * 1_024, "{order:?}");
        let position = |name: &str| order.nodes.iter().position(|&id| model.node(id).name == name).unwrap();
        assert!(position("rest") < position("second_big"), "{order:?}");
        // Every node after its inputs.
        for (at, &id) in order.nodes.iter().enumerate() {
            for input in &model.node(id).inputs {
                assert!(order.nodes[..at].contains(&input.node), "{} before its input", model.node(id).name);
            }
        }
    }

    #[test]
    fn symbolic_shapes_keep_tracts_order() {
        let mut model = TypedModel::default();
        let n = model.symbols.sym("n");
        let x = model.add_source("x", f32::fact([n])).unwrap();
        model.select_output_outlets(&[x]).unwrap();
        assert_eq!(leanest(&model).unwrap(), None);
    }
}
