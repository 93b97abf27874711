//! `maskd profile`: where the local encoder's time goes, node by node.
//!
//! Each of tract's nodes is timed on its own over a few runs (after one
//! untimed run), in CPU time of the whole process, which other processes'
//! load barely changes; the medians are summed by operator and listed for
//! the costliest nodes. This is the evidence behind docs/PERFORMANCE.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::Args;
use maskd::model::{load_encoder, set_threads, Encoder, Manifest, NodeCost};
use maskd::picture::read_rgb;
use serde::Serialize;

use super::args::LocalModelArgs;
use super::bench::stats::percentile;

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    model: LocalModelArgs,
    /// Image to encode (PNG, JPEG or BMP).
    #[arg(long, default_value = "tests/golden/images/chelsea.png")]
    image: PathBuf,
    /// Timed runs, after one untimed run; each node's median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Threads of tract's executor (1: every node on this thread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// How many of the costliest nodes to list.
    #[arg(long, default_value_t = 25)]
    top: usize,
    /// Print every node and operator as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// One operator's nodes together.
#[derive(Debug, Serialize)]
struct OpCost {
    op: String,
    nodes: usize,
    cpu_ms: f64,
    wall_ms: f64,
    share: f64,
    fmas: u64,
}

/// One node's medians over the timed runs.
#[derive(Debug, Serialize)]
struct NodeMedian {
    name: String,
    op: String,
    shape: String,
    cpu_ms: f64,
    wall_ms: f64,
    share: f64,
    /// Multiply-adds per run as tract counts them.
    fmas: u64,
}

#[derive(Debug, Serialize)]
struct Profile {
    encoder: String,
    image: String,
    threads: u32,
    runs: u32,
    /// Medians of the runs' sums.
    cpu_ms: f64,
    wall_ms: f64,
    ops: Vec<OpCost>,
    nodes: Vec<NodeMedian>,
}

pub fn run(args: &ProfileArgs) -> Result<()> {
    set_threads(args.threads as usize)?;
    let image = read_rgb(&args.image)?;
    let LocalModelArgs { dir, precision, compute } = &args.model;
    let manifest = Manifest::load(dir)?;
    let encoder = load_encoder(&manifest, *precision, *compute)?;
    let (input, geometry) = encoder.input(&image)?;
    encoder.embed_input(input.clone(), geometry).context("the untimed run")?;
    let runs = (0..args.runs)
        .map(|_| encoder.profile_input(input.clone()))
        .collect::<Result<Vec<_>>>()?;
    let profile = Profile::of(encoder.name(), args, &runs)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&profile)?);
    } else {
        print!("{}", profile.table(args.top));
    }
    Ok(())
}

impl Profile {
    fn of(encoder: String, args: &ProfileArgs, runs: &[Vec<NodeCost>]) -> Result<Profile> {
        let first = &runs[0];
        ensure!(
            runs.iter().all(|run| run.len() == first.len()),
            "the plan ran a different number of nodes from one run to the next"
        );
        let run_sum = |cost: fn(&NodeCost) -> Duration| median(runs.iter().map(|run| ms(run.iter().map(cost).sum())));
        let (cpu_ms, wall_ms) = (run_sum(|n| n.cpu), run_sum(|n| n.wall));
        let share = |node_ms: f64| if cpu_ms > 0.0 { node_ms / cpu_ms } else { 0.0 };
        let mut nodes: Vec<NodeMedian> = (0..first.len())
            .map(|ix| {
                let cpu_ms = median(runs.iter().map(|run| ms(run[ix].cpu)));
                NodeMedian {
                    name: first[ix].name.clone(),
                    op: first[ix].op.clone(),
                    shape: first[ix].shape.clone(),
                    cpu_ms,
                    wall_ms: median(runs.iter().map(|run| ms(run[ix].wall))),
                    share: share(cpu_ms),
                    fmas: first[ix].fmas,
                }
            })
            .collect();
        let mut by_op: BTreeMap<&str, OpCost> = BTreeMap::new();
        for node in &nodes {
            let op = by_op.entry(&node.op).or_insert_with(|| OpCost {
                op: node.op.clone(),
                nodes: 0,
                cpu_ms: 0.0,
                wall_ms: 0.0,
                share: 0.0,
                fmas: 0,
            });
            op.nodes += 1;
            op.cpu_ms += node.cpu_ms;
            op.wall_ms += node.wall_ms;
            op.share += node.share;
            op.fmas += node.fmas;
        }
        let mut ops: Vec<OpCost> = by_op.into_values().collect();
        ops.sort_by(|a, b| b.cpu_ms.total_cmp(&a.cpu_ms));
        nodes.sort_by(|a, b| b.cpu_ms.total_cmp(&a.cpu_ms));
        Ok(Profile {
            encoder,
            image: args.image.display().to_string(),
            threads: args.threads,
            runs: args.runs,
            cpu_ms,
            wall_ms,
            ops,
            nodes,
        })
    }

    fn table(&self, top: usize) -> String {
        let mut out = format!(
            "encoder {}, {} thread(s), {}: {:.0} ms CPU, {:.0} ms wall per run (medians of {} runs)\n\n",
            self.encoder, self.threads, self.image, self.cpu_ms, self.wall_ms, self.runs
        );
        out += &format!(
            "{:<24} {:>6} {:>9} {:>7} {:>9} {:>8} {:>7}\n",
            "operator", "nodes", "CPU ms", "share", "wall ms", "GFMA", "GFMA/s"
        );
        for op in &self.ops {
            out += &format!(
                "{:<24} {:>6} {:>9.1} {:>6.1}% {:>9.1} {}\n",
                op.op,
                op.nodes,
                op.cpu_ms,
                100.0 * op.share,
                op.wall_ms,
                rate(op.fmas, op.cpu_ms)
            );
        }
        out += &format!("\nthe {} costliest of {} nodes:\n", top.min(self.nodes.len()), self.nodes.len());
        out += &format!(
            "{:>9} {:>7} {:>8} {:>7}  {:<22} {:<24} {}\n",
            "CPU ms", "share", "GFMA", "GFMA/s", "operator", "output", "node"
        );
        for node in self.nodes.iter().take(top) {
            out += &format!(
                "{:>9.1} {:>6.1}% {}  {:<22} {:<24} {}\n",
                node.cpu_ms,
                100.0 * node.share,
                rate(node.fmas, node.cpu_ms),
                node.op,
                node.shape,
                node.name
            );
        }
        out
    }
}

/// Giga multiply-adds and their rate in CPU time, blank for ops tract counts none for.
fn rate(fmas: u64, cpu_ms: f64) -> String {
    if fmas == 0 || cpu_ms <= 0.0 {
        return format!("{:>8} {:>7}", "", "");
    }
    let giga = fmas as f64 / 1e9;
    format!("{giga:>8.3} {:>7.1}", giga / (cpu_ms / 1000.0))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The median of a non-empty set of figures.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    percentile(&values.collect::<Vec<_>>(), 50.0).unwrap_or(0.0)
}
