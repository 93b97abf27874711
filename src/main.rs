//! The `maskd` command line.

mod cli;

use std::process::ExitCode;

/// Serves the encoder's tensors from memory planned on its first run
/// (docs/PERFORMANCE.md#memory).
#[global_allocator]
static ALLOCATOR: maskd::model::PlanningAllocator = maskd::model::PlanningAllocator;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("maskd: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
