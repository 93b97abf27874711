//! The controller line: a serial device, or a pseudo-terminal for trials
//! without hardware, reopened with backoff whenever it fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::{info, warn};
use serialport::{SerialPort, TTYPort};

use super::config::SerialConfig;
use crate::pipeline::Pipeline;
use crate::serial::{open_port, serve, ServerSettings, READ_TIMEOUT};

/// Longer than the read timeout of a typical client (maskd_client.py: 0.1 s).
const CLIENT_READ_TIMEOUT: Duration = Duration::from_millis(300);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// A pseudo-terminal pair: the daemon talks on `master`; clients open the
/// slave's path, also linked at `link`. The slave stays open here so that
/// the master does not hang up between clients.
pub struct Pty {
    master: TTYPort,
    slave: TTYPort,
    pub path: PathBuf,
    link: Option<PathBuf>,
}

impl Pty {
    /// # Errors
    /// No pseudo-terminal could be made, or `link` could not be written.
    pub fn open(link: Option<&Path>) -> Result<Pty> {
        let (mut master, slave) = TTYPort::pair().context("creating a pseudo-terminal")?;
        master.set_timeout(READ_TIMEOUT)?;
        let path = PathBuf::from(slave.name().context("the pseudo-terminal has no name")?);
        if let Some(link) = link {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(&path, link)
                .with_context(|| format!("linking {} to {}", link.display(), path.display()))?;
        }
        Ok(Pty { master, slave, path, link: link.map(Path::to_path_buf) })
    }

    /// Waits up to `within` for the client to read what was written: closing
    /// the master hangs the terminal up, which discards unread bytes and
    /// fails a read call still collecting them (pyserial reads until its
    /// timeout), losing the last answers of a drain.
    pub fn wait_until_read(&self, within: Duration) {
        let until = Instant::now() + within;
        while self.slave.bytes_to_read().is_ok_and(|n| n > 0) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(CLIENT_READ_TIMEOUT.min(until.saturating_duration_since(Instant::now())));
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// Serves the line until `stop`, reopening a device that fails. Sets
/// `reading_done` once no more requests will be queued.
pub fn run_line(
    config: &SerialConfig,
    pty: Option<&Pty>,
    pipeline: &Arc<Pipeline>,
    settings: &ServerSettings,
    stop: &AtomicBool,
    reading_done: &AtomicBool,
) {
    let mut backoff = BACKOFF_MIN;
    let mut reported = false;
    while !stop.load(Ordering::Relaxed) {
        let opened = match pty {
            Some(pty) => pty.master.try_clone_native().map(|p| Box::new(p) as Box<dyn SerialPort>).context("cloning the pseudo-terminal"),
            None => open_port(&config.device, config.baud),
        };
        let served = opened.and_then(|port| {
            let writer = port.try_clone().context("cloning the serial port")?;
            if reported {
                info!("serial: {} is back", config.device);
            }
            reported = false;
            backoff = BACKOFF_MIN;
            let started = Instant::now();
            let result = serve(port, writer, pipeline, settings, stop, reading_done);
            // A line that served for a while and then failed is retried at once.
            if started.elapsed() > BACKOFF_MAX {
                backoff = BACKOFF_MIN;
            }
            result
        });
        match served {
            Ok(()) => break,
            Err(e) => {
                if !reported {
                    warn!("serial: {e:#}; retrying");
                    reported = true;
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    reading_done.store(true, Ordering::SeqCst);
}
