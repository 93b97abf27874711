//! `maskd run`: the pipeline with its adapters (frame source, serial line,
//! display, stdin prompts) under one configuration, as a systemd service.
//!
//! SIGTERM and SIGINT stop taking prompts, answer those in flight, and exit.
//! SIGHUP checks the configuration file again: a broken one is logged and
//! ignored; a good one is applied by draining the same way and re-executing
//! the daemon, so every setting (model, camera, line) takes effect.

mod config;
mod line;
mod service;
mod snapshots;
mod stdin;

pub use config::{
    Config, DisplayConfig, EverythingConfig, LogConfig, ModelConfig, OverlayConfig, PipelineConfig, SerialConfig, SnapshotsConfig,
    SourceConfig,
};
pub use line::Pty;
pub use service::{init_logging, Service};
pub use snapshots::run_snapshots;
pub use stdin::{parse_line, run_prompts};

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, select, tick};
use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::camera::{Camera, FileSource, FrameSource, PatternSource};
use crate::display::{run_live, Framebuffer, Letterbox, LiveSettings, PngSnapshot, Screen};
use crate::model::{set_threads, Sam};
use crate::pipeline::{CaptureSettings, Pipeline, PipelineSettings};
use crate::serial::{ServerSettings, DRAIN_READ};
use crate::touch::{run_taps, EvdevTouch};

/// Makes every thread allocate from glibc's main heap. By default each thread
/// that allocates gets an arena of its own (eight to ten in a running daemon: capture,
/// encoder, decoder, tract's pool...), and each keeps the frames' tensors it
/// freed resident: one heap lowered the daemon's peak RSS from 418 to 378 MiB
/// (medians of 5 and 10 runs) with the same encoder and prompt times. Loading, which
/// allocates from two threads at once, takes about 0.2 s longer
/// (docs/PERFORMANCE.md#memory).
fn share_one_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: sets a malloc tunable, before the daemon starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT: prompts in flight were answered.
    Stopped,
    /// SIGHUP with a valid configuration: the caller re-executes the daemon.
    Reload,
}

/// Runs the daemon configured by `config` (read from `path`) until a signal.
/// With `stdin_prompts`, prompts are also read from stdin.
///
/// # Errors
/// The model, frame source, line or display cannot be set up.
pub fn run(path: &Path, config: &Config, stdin_prompts: bool) -> Result<Exit> {
    share_one_heap();
    let service = Service::detect();
    set_threads(config.model.threads)?;
    let sam = Sam::load_computing(&config.model.dir, config.model.precision, config.model.compute)?;
    info!("model {} ({}) loaded from {}", sam.manifest.model, sam.variant(), config.model.dir.display());
    let model_name = sam.manifest.model.clone();
    let pipeline = Arc::new(Pipeline::start(
        Arc::new(sam),
        frame_source(config),
        &PipelineSettings {
            embeddings_kept: config.pipeline.embeddings_kept,
            queue_capacity: config.pipeline.queue_capacity,
            capture: CaptureSettings::default(),
        },
    )?);
    let signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    let stop = AtomicBool::new(false);
    // Without a line there is nothing to read before draining.
    let reading_done = AtomicBool::new(config.serial.is_none());
    let pty = match &config.serial {
        Some(serial) if serial.device == "pty" => {
            let pty = Pty::open(serial.pty_link.as_deref())?;
            info!("serial: pseudo-terminal {} ready for a client", pty.path.display());
            Some(pty)
        }
        _ => None,
    };
    let mut screen = open_display(config)?;
    let display_size = screen.as_ref().map(|s| s.size());
    // Where the picture sits on the screen, for mapping taps back onto it.
    let shown: Arc<Mutex<Option<Letterbox>>> = Arc::default();
    let exit = std::thread::scope(|scope| -> Result<Exit> {
        if let Some(serial) = &config.serial {
            let settings = ServerSettings {
                model: model_name.clone(),
                max_points: serial.max_points,
                heartbeat: Duration::from_millis(u64::from(serial.heartbeat_ms)),
                everything: config.everything.settings(),
            };
            let (pipeline, stop, pty, reading_done) = (&pipeline, &stop, pty.as_ref(), &reading_done);
            std::thread::Builder::new()
                .name("serial".into())
                .spawn_scoped(scope, move || line::run_line(serial, pty, pipeline, &settings, stop, reading_done))?;
        }
        if let Some(screen) = screen.as_mut() {
            let live = LiveSettings { hold: Duration::from_millis(u64::from(config.overlay.hold_ms)) };
            let (pipeline, stop, shown) = (&pipeline, &stop, &*shown);
            std::thread::Builder::new().name("display".into()).spawn_scoped(scope, move || {
                run_live(screen.as_mut(), pipeline, &live, shown, stop);
            })?;
        }
        if let Some(snapshots) = &config.everything.snapshots {
            let settings = config.everything.settings();
            let (pipeline, stop) = (&pipeline, &stop);
            std::thread::Builder::new()
                .name("snapshots".into())
                .spawn_scoped(scope, move || run_snapshots(pipeline, &settings, snapshots, stop))?;
        }
        if let (Some(settings), Some(display)) = (&config.touch, display_size) {
            // Not scoped: a read from the device blocks until the next event,
            // and the process exits without waiting for it.
            let settings = settings.clone();
            let (pipeline, shown) = (pipeline.clone(), shown.clone());
            std::thread::Builder::new().name("touch".into()).spawn(move || {
                run_taps(|| EvdevTouch::open(&settings, display), &pipeline, &shown);
            })?;
        }
        if stdin_prompts {
            // Not scoped: a read from stdin cannot be interrupted, and the
            // process exits without waiting for it.
            let pipeline = pipeline.clone();
            std::thread::Builder::new().name("stdin".into()).spawn(move || {
                if let Err(e) = run_prompts(std::io::stdin().lock(), std::io::stdout().lock(), &pipeline) {
                    error!("stdin prompts: {e}");
                }
            })?;
        }
        service.ready(&format!("serving {}", path.display()));
        info!("maskd ready ({})", path.display());
        let exit = wait_for_signal(signals, path, &pipeline, &service);
        service.stopping();
        info!("stopping: answering the prompts in flight");
        stop.store(true, Ordering::SeqCst);
        // Requests already on the line are read and queued first, then drained.
        let until = Instant::now() + DRAIN_READ * 2;
        while !reading_done.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        pipeline.shutdown();
        Ok(exit)
    })?;
    if let Some(pty) = pty {
        pty.wait_until_read(Duration::from_secs(2));
    }
    info!("stopped");
    Ok(exit)
}

/// Pings the watchdog while the workers live; returns at the first
/// stopping signal or valid reload.
fn wait_for_signal(mut signals: Signals, path: &Path, pipeline: &Pipeline, service: &Service) -> Exit {
    let (signal_tx, signal_rx) = bounded(4);
    let handle = signals.handle();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal_tx.send(signal).is_err() {
                break;
            }
        }
    });
    // Ping at half the watchdog period, and only while the encoder and
    // decoder have shown life within it: a hung model run gets restarted.
    let period = service.watchdog.map_or(Duration::from_secs(1), |w| w / 2);
    let beat = tick(period);
    let exit = loop {
        select! {
            recv(beat) -> _ => {
                if service.watchdog.is_some() && pipeline.is_alive(period) {
                    service.alive();
                }
            }
            recv(signal_rx) -> signal => match signal {
                Ok(SIGHUP) => match Config::load(path) {
                    Ok(_) => {
                        info!("SIGHUP: {} is valid, restarting with it", path.display());
                        service.reloading();
                        break Exit::Reload;
                    }
                    Err(e) => warn!("SIGHUP: keeping the running configuration: {e:#}"),
                },
                Ok(signal) => {
                    info!("signal {signal}: stopping");
                    break Exit::Stopped;
                }
                Err(_) => break Exit::Stopped,
            },
        }
    };
    handle.close();
    exit
}

fn frame_source(config: &Config) -> Box<dyn FrameSource> {
    match &config.source {
        SourceConfig::Camera(camera) => Box::new(Camera::new(camera.clone())),
        SourceConfig::Files(files) => Box::new(FileSource::new(files.clone())),
        SourceConfig::Pattern(pattern) => Box::new(PatternSource::new(pattern.clone())),
    }
}

fn open_display(config: &Config) -> Result<Option<Box<dyn Screen>>> {
    Ok(match &config.display {
        None => None,
        Some(DisplayConfig::Png(png)) => Some(Box::new(PngSnapshot::new(png)?)),
        Some(DisplayConfig::Framebuffer(fb)) => Some(Box::new(Framebuffer::open(fb)?)),
    })
}
