//! `maskd run`: the daemon.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use maskd::daemon::{self, init_logging, Exit, Settings};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (examples in board/*.toml).
    #[arg(long, env = "MASKD_CONFIG")]
    config: PathBuf,
    /// Check the configuration file and exit.
    #[arg(long)]
    check: bool,
    /// Also take prompts from stdin, one per line (`X,Y[,LABEL]... [box=X0,Y0,X1,Y1] [frame=ID]`),
    /// and print each answer as a JSON line.
    #[arg(long)]
    stdin: bool,
}

pub fn run(args: &RunArgs) -> Result<()> {
    let settings = Settings::load(&args.config, args.stdin)?;
    if args.check {
        println!("{}: valid", args.config.display());
        return Ok(());
    }
    init_logging(settings.log_level);
    match daemon::run(&settings)? {
        Exit::Stopped => Ok(()),
        Exit::Reload => {
            // Same binary, same arguments: the new configuration applies in full.
            let exe = std::env::current_exe().context("finding the maskd executable")?;
            let error = std::process::Command::new(&exe).args(std::env::args_os().skip(1)).exec();
            Err(error).with_context(|| format!("restarting {}", exe.display()))
        }
    }
}
