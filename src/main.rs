//! The `maskd` command line.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("maskd: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
