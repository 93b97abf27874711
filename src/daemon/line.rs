//! The controller line: a serial device, or a pseudo-terminal for trials
//! without hardware, reopened with backoff whenever it fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::{info, warn};
use serialport::{SerialPort, TTYPort};

use crate::pipeline::Pipeline;
use super::settings::SerialDevice;
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

/// The controller line as the daemon holds it.
pub enum Line {
    /// A pseudo-terminal the daemon made, kept open across clients.
    Pty(Pty),
    /// A serial device, opened (and reopened) by [`run_line`].
    Port { path: String, baud: u32 },
}

impl Line {
    /// Makes the pseudo-terminal of a `Pty` device; a port is opened by [`run_line`].
    ///
    /// # Errors
    /// As [`Pty::open`].
    pub fn open(device: &SerialDevice) -> Result<Line> {
        Ok(match device {
            SerialDevice::Pty { link } => {
                let pty = Pty::open(link.as_deref())?;
                info!("serial: pseudo-terminal {} ready for a client", pty.path.display());
                Line::Pty(pty)
            }
            SerialDevice::Port { path, baud } => Line::Port { path: path.clone(), baud: *baud },
        })
    }

    /// The device's path, for logs.
    fn name(&self) -> String {
        match self {
            Line::Pty(pty) => pty.path.display().to_string(),
            Line::Port { path, .. } => path.clone(),
        }
    }

    /// After the last answer: lets a pseudo-terminal's client read it (see [`Pty::wait_until_read`]).
    pub fn close(self) {
        if let Line::Pty(pty) = self {
            pty.wait_until_read(Duration::from_secs(2));
        }
    }
}

/// Serves the line until `stop`, reopening a device that fails. Sets
/// `reading_done` once no more requests will be queued.
pub fn run_line(line: &Line, settings: &ServerSettings, pipeline: &Arc<Pipeline>, stop: &AtomicBool, reading_done: &AtomicBool) {
    let mut backoff = BACKOFF_MIN;
    let mut reported = false;
    while !stop.load(Ordering::Relaxed) {
        let opened = match line {
            Line::Pty(pty) => {
                pty.master.try_clone_native().map(|p| Box::new(p) as Box<dyn SerialPort>).context("cloning the pseudo-terminal")
            }
            Line::Port { path, baud } => open_port(path, *baud),
        };
        let served = opened.and_then(|port| {
            let writer = port.try_clone().context("cloning the serial port")?;
            if reported {
                info!("serial: {} is back", line.name());
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
