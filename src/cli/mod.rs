//! Command-line front end: parses arguments into typed requests and runs them.

mod args;
mod bench;
mod eval;
mod everything;
mod segment;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Segment Anything on edge devices.
#[derive(Debug, Parser)]
#[command(name = "maskd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Segment one image from point and/or box prompts.
    Segment(segment::SegmentArgs),
    /// Time maskd against ONNX Runtime: encoder, decoder, load time, peak memory.
    Bench(bench::BenchArgs),
    /// Measure mask quality on interactive-segmentation benchmarks (NoC, NoF, mIoU).
    Eval(eval::EvalArgs),
    /// Propose masks for everything in an image: SAM's automatic mask generator.
    Everything(everything::EverythingArgs),
}

pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Segment(args) => segment::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Everything(args) => everything::run(&args),
    }
}
