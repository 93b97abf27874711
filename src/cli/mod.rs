//! Command-line front end: parses arguments into typed requests and runs them.

mod args;
mod bench;
mod bench_offload;
mod eval;
mod everything;
mod profile;
mod run;
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
    /// Time this machine's encoder beside inference servers': per frame, bytes, daemon frames/s.
    BenchOffload(bench_offload::BenchOffloadArgs),
    /// Where the local encoder's time goes: tract's nodes timed one by one, by operator and by node.
    Profile(profile::ProfileArgs),
    /// Measure mask quality on interactive-segmentation benchmarks (NoC, NoF, mIoU).
    Eval(eval::EvalArgs),
    /// Propose masks for everything in an image: SAM's automatic mask generator.
    Everything(everything::EverythingArgs),
    /// Run the daemon: camera frames in, prompts from serial, touch or stdin, masks out.
    Run(run::RunArgs),
}

pub fn run() -> Result<()> {
    let command = Cli::parse().command;
    if !matches!(command, Command::Run(_)) {
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
        end_quietly_on_closed_output();
    }
    match command {
        Command::Run(args) => run::run(&args),
        Command::Segment(args) => segment::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchOffload(args) => bench_offload::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Profile(args) => profile::run(&args),
        Command::Everything(args) => everything::run(&args),
    }
}

/// Lets a one-shot command whose output is closed (`maskd segment ... | head`)
/// end quietly, as Unix tools do, instead of panicking in `println!`. The
/// daemon keeps Rust's default (the signal ignored, the write an error it
/// handles): a closed stdout must not end it.
fn end_quietly_on_closed_output() {
    // SAFETY: restores the default action of one signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
