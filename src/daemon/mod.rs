//! `maskd run`: the pipeline with its adapters (frame source, serial line,
//! display, stdin prompts, MQTT) under one configuration, as a systemd service.
//!
//! SIGTERM and SIGINT stop taking prompts, answer those in flight, and exit.
//! SIGHUP checks the configuration file again: a broken one is logged and
//! ignored; a good one is applied by draining the same way and re-executing
//! the daemon, so every setting (model, camera, line) takes effect.

mod config;
mod line;
mod memory;
mod service;
mod settings;
mod snapshots;
mod stdin;

pub use config::{
    CaptureConfig, Config, DisplayConfig, EverythingConfig, LogConfig, ModelConfig, MqttConfig, MqttPublishConfig, MqttQosConfig,
    OverlayConfig, PipelineConfig, SerialConfig, SnapshotsConfig, SourceConfig,
};
pub use line::{Line, Pty};
pub use service::{init_logging, Service};
pub use settings::{DisplaySettings, LineSettings, ModelSettings, SerialDevice, Settings, SnapshotSettings};
pub use snapshots::run_snapshots;
pub use stdin::{parse_line, run_prompts};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Scope;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, select, tick};
use log::{debug, error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::camera::{Camera, FileSource, PatternSource};
use crate::display::{run_live, Framebuffer, PngSnapshot, Screen};
use crate::draw::Placement;
use crate::model::{set_threads, Sam};
use crate::mqtt::Mqtt;
use crate::offload;
use crate::pipeline::{FrameSource, Pipeline};
use crate::serial::DRAIN_READ;
use crate::touch::{run_taps, EvdevTouch};

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT: prompts in flight were answered.
    Stopped,
    /// SIGHUP with a valid configuration: the caller re-executes the daemon.
    Reload,
}

/// Runs the daemon `settings` describe until a signal.
///
/// # Errors
/// The model, frame source, line or display cannot be set up.
pub fn run(settings: &Settings) -> Result<Exit> {
    memory::tune_heap();
    let service = Service::detect();
    let pipeline = Arc::new(start_pipeline(settings)?);
    let released = memory::release_loading_code();
    debug!("released {:.1} MiB of the binary's pages that loading ran", released as f64 / (1 << 20) as f64);
    let signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    let line = settings.line.as_ref().map(|line| Line::open(&line.device)).transpose()?;
    let mut screen = open_display(settings)?;
    let stop = AtomicBool::new(false);
    // Without a line there is nothing to read before draining.
    let reading_done = AtomicBool::new(settings.line.is_none());
    let exit = std::thread::scope(|scope| -> Result<Exit> {
        let adapters = Adapters { settings, service, pipeline: &pipeline, stop: &stop, reading_done: &reading_done };
        adapters.start(scope, line.as_ref(), screen.as_deref_mut())?;
        service.ready(&format!("serving {}", settings.path.display()));
        info!("maskd ready ({})", settings.path.display());
        let exit = wait_for_signal(signals, settings, &pipeline, &service);
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
    if let Some(line) = line {
        line.close();
    }
    info!("stopped");
    Ok(exit)
}

fn start_pipeline(settings: &Settings) -> Result<Pipeline> {
    let model = &settings.model;
    set_threads(model.threads)?;
    let sam = match &model.remote {
        Some(remote) => offload::load(&model.dir, model.precision, model.compute, remote.clone())?.0,
        None => Sam::load_computing(&model.dir, model.precision, model.compute)?,
    };
    info!("model {} ({}) loaded from {}", sam.manifest().model, sam.encoder_name(), model.dir.display());
    Pipeline::start(Arc::new(sam), frame_source(settings), &settings.pipeline)
}

/// The threads that feed the pipeline and show its answers, for one run.
struct Adapters<'a> {
    settings: &'a Settings,
    service: Service,
    pipeline: &'a Arc<Pipeline>,
    stop: &'a AtomicBool,
    reading_done: &'a AtomicBool,
}

impl<'a> Adapters<'a> {
    /// Starts a thread for each configured adapter: the line, the display,
    /// snapshots, MQTT, touch and stdin prompts.
    fn start<'scope, 'env: 'scope>(
        &self,
        scope: &'scope Scope<'scope, 'env>,
        line: Option<&'env Line>,
        screen: Option<&'env mut (dyn Screen + 'static)>,
    ) -> Result<()>
    where
        'a: 'env,
    {
        let Adapters { settings, service, pipeline, stop, reading_done } = *self;
        let placement = Placement::default();
        if let (Some(line), Some(line_settings)) = (line, &settings.line) {
            let server = &line_settings.server;
            spawn_scoped(scope, "serial", move || line::run_line(line, server, pipeline, stop, reading_done))?;
        }
        let display_size = screen.as_ref().map(|screen| screen.size());
        if let (Some(screen), Some(display)) = (screen, &settings.display) {
            let placement = placement.clone();
            spawn_scoped(scope, "display", move || run_live(screen, pipeline, &display.live, &placement, stop))?;
        }
        if let Some(snapshots) = &settings.snapshots {
            spawn_scoped(scope, "snapshots", move || run_snapshots(pipeline, &settings.everything, snapshots, stop))?;
        }
        if let Some(mqtt) = &settings.mqtt {
            let mqtt = Mqtt::start(mqtt, pipeline)?;
            let path = settings.path.display();
            let report = move |state: &str| service.status(&format!("serving {path}; {state}"));
            spawn_scoped(scope, "mqtt", move || mqtt.run(pipeline, stop, &report))?;
        }
        if let (Some(touch), Some(display)) = (&settings.touch, display_size) {
            // Not scoped: a read from the device blocks until the next event,
            // and the process exits without waiting for it.
            let (touch, pipeline) = (touch.clone(), Arc::clone(pipeline));
            spawn("touch", move || run_taps(|| EvdevTouch::open(&touch, display), &pipeline, &placement))?;
        }
        if settings.stdin_prompts {
            // Not scoped: a read from stdin cannot be interrupted.
            let pipeline = Arc::clone(pipeline);
            spawn("stdin", move || {
                if let Err(e) = run_prompts(std::io::stdin().lock(), std::io::stdout().lock(), &pipeline) {
                    error!("stdin prompts: {e}");
                }
            })?;
        }
        Ok(())
    }
}

fn spawn_scoped<'scope, 'env>(scope: &'scope Scope<'scope, 'env>, name: &str, body: impl FnOnce() + Send + 'scope) -> Result<()> {
    std::thread::Builder::new().name(name.into()).spawn_scoped(scope, body).with_context(|| format!("starting the {name} thread"))?;
    Ok(())
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new().name(name.into()).spawn(body).with_context(|| format!("starting the {name} thread"))?;
    Ok(())
}

/// Pings the watchdog while the workers live; returns at the first
/// stopping signal or valid reload.
fn wait_for_signal(mut signals: Signals, settings: &Settings, pipeline: &Pipeline, service: &Service) -> Exit {
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
                Ok(SIGHUP) => match Settings::load(&settings.path, settings.stdin_prompts) {
                    Ok(_) => {
                        info!("SIGHUP: {} is valid, restarting with it", settings.path.display());
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

fn frame_source(settings: &Settings) -> Box<dyn FrameSource> {
    match &settings.source {
        SourceConfig::Camera(camera) => Box::new(Camera::new(camera.clone())),
        SourceConfig::Files(files) => Box::new(FileSource::new(files.clone())),
        SourceConfig::Pattern(pattern) => Box::new(PatternSource::new(pattern.clone())),
    }
}

fn open_display(settings: &Settings) -> Result<Option<Box<dyn Screen>>> {
    Ok(match settings.display.as_ref().map(|d| &d.screen) {
        None => None,
        Some(DisplayConfig::Png(png)) => Some(Box::new(PngSnapshot::new(png)?)),
        Some(DisplayConfig::Framebuffer(fb)) => Some(Box::new(Framebuffer::open(fb)?)),
    })
}
