//! `maskd bench-offload`: this machine's encoder beside inference servers'
//! (docs/OFFLOAD.md), in one run: time per frame and where it goes, the
//! bytes each way, the frames per second a daemon reaches, and what links
//! of 100 Mbit/s and 1 Gbit/s would allow for the measured bytes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;
use image::RgbImage;
use maskd::camera::{FileSettings, FileSource};
use maskd::model::{set_threads, Compute, Precision, Sam};
use maskd::offload::{self, Endpoint, Fallback, RemoteSettings, ServerTime};
use maskd::picture::read_rgb;
use maskd::pipeline::{CaptureSettings, Pipeline, PipelineSettings};

/// Links the figures are projected onto, bits per second.
const LINKS: [(&str, f64); 2] = [("100 Mbit/s", 100e6), ("1 Gbit/s", 1e9)];

#[derive(Debug, Args)]
pub struct BenchOffloadArgs {
    /// Model directory (holding manifest.json).
    #[arg(long, env = "MASKD_MODEL", default_value = "models/mobile_sam")]
    model: PathBuf,
    /// A server's encoder to measure, e.g. grpc://127.0.0.1:8001/mobile_sam_encoder; repeatable.
    #[arg(long = "encoder-url", value_name = "URL", required = true)]
    urls: Vec<Endpoint>,
    /// Images to encode, in turn.
    #[arg(long, num_args = 1.., default_value = "tests/golden/images/chelsea.png")]
    images: Vec<PathBuf>,
    /// Measured encodings per encoder (after one warm-up).
    #[arg(long, default_value_t = 5)]
    frames: usize,
    /// Threads of this machine's encoder.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How long each daemon run lasts, to count its embedded frames per second.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Frames in flight to a server in the daemon runs: each value is one run.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    in_flight: Vec<usize>,
}

/// One encoder's figures.
struct Row {
    name: String,
    /// Per-frame medians, ms.
    total: f64,
    prepare: f64,
    network: f64,
    server_queue: f64,
    server_compute: f64,
    decode: f64,
    sent: usize,
    received: usize,
    /// Daemon runs: (frames in flight, embedded frames per second).
    daemon_fps: Vec<(usize, f32)>,
}

pub fn run(args: &BenchOffloadArgs) -> Result<()> {
    ensure!(args.frames > 0 && args.seconds > 0, "--frames and --seconds must be at least 1");
    ensure!(args.in_flight.iter().all(|&n| (1..=8).contains(&n)), "--in-flight values must be 1-8");
    let images = args.images.iter().map(|p| read_rgb(p)).collect::<Result<Vec<_>>>()?;
    set_threads(args.threads)?;

    let mut rows = Vec::new();
    eprintln!("maskd bench-offload: this machine's encoder ({} thread(s))", args.threads);
    let local = Arc::new(Sam::load(&args.model, Precision::F32)?);
    let times = encode_times(&local, &images, args.frames)?;
    let total = median(&times);
    let fps = daemon_fps(local.clone(), args)?;
    rows.push(Row {
        name: format!("local f32, {} thread(s)", args.threads),
        total,
        prepare: 0.0,
        network: 0.0,
        server_queue: 0.0,
        server_compute: total,
        decode: 0.0,
        sent: 0,
        received: 0,
        daemon_fps: vec![(1, fps)],
    });
    drop(local);

    for endpoint in &args.urls {
        eprintln!("maskd bench-offload: {endpoint}");
        rows.push(remote_row(args, endpoint, &images)?);
    }
    print!("{}", table(&rows));
    Ok(())
}

fn remote_row(args: &BenchOffloadArgs, endpoint: &Endpoint, images: &[RgbImage]) -> Result<Row> {
    let settings = RemoteSettings {
        fallback: Fallback::None,
        deadline: Duration::from_secs(120),
        ..RemoteSettings::new(endpoint.clone())
    };
    let (sam, encoder) = offload::load(&args.model, Precision::F32, Compute::F32, settings.clone())?;
    sam.embed(&images[0]).context("warm-up")?;
    let mut samples = Samples::default();
    for k in 0..args.frames {
        let before = encoder.server_time()?;
        let started = Instant::now();
        sam.embed(&images[k % images.len()])?;
        let total = started.elapsed();
        let after = encoder.server_time()?;
        let traffic = encoder.last_traffic().context("no traffic recorded")?;
        let server = delta(before, after);
        samples.total.push(ms(total));
        samples.prepare.push(ms(traffic.prepare));
        samples.queue.push(ms(server.queue));
        samples.compute.push(ms(server.compute));
        samples.decode.push(ms(traffic.exchange.decode));
        samples.network.push(ms(traffic.round_trip.saturating_sub(server.queue + server.compute + traffic.exchange.decode)));
        samples.sent = traffic.exchange.sent_bytes;
        samples.received = traffic.exchange.received_bytes;
    }
    let wire = encoder.output_type().map_or("?", |t| t.key());
    drop((sam, encoder));
    let mut fps_by_in_flight = Vec::new();
    for &in_flight in &args.in_flight {
        let settings = RemoteSettings { in_flight, ..settings.clone() };
        let (sam, _) = offload::load(&args.model, Precision::F32, Compute::F32, settings)?;
        fps_by_in_flight.push((in_flight, daemon_fps(Arc::new(sam), args)?));
    }
    Ok(Row {
        name: format!("{} ({wire})", endpoint.model),
        total: median(&samples.total),
        prepare: median(&samples.prepare),
        network: median(&samples.network),
        server_queue: median(&samples.queue),
        server_compute: median(&samples.compute),
        decode: median(&samples.decode),
        sent: samples.sent,
        received: samples.received,
        daemon_fps: fps_by_in_flight,
    })
}

#[derive(Default)]
struct Samples {
    total: Vec<f64>,
    prepare: Vec<f64>,
    queue: Vec<f64>,
    compute: Vec<f64>,
    decode: Vec<f64>,
    network: Vec<f64>,
    sent: usize,
    received: usize,
}

fn delta(before: ServerTime, after: ServerTime) -> ServerTime {
    ServerTime {
        queue: after.queue.saturating_sub(before.queue),
        compute: after.compute.saturating_sub(before.compute),
        count: after.count - before.count,
    }
}

fn encode_times(sam: &Sam, images: &[RgbImage], frames: usize) -> Result<Vec<f64>> {
    sam.embed(&images[0]).context("warm-up")?;
    (0..frames)
        .map(|k| {
            let started = Instant::now();
            sam.embed(&images[k % images.len()])?;
            Ok(ms(started.elapsed()))
        })
        .collect()
}

/// Frames a daemon embeds per second from a camera faster than its encoder
/// (the images looping at 30 fps), over `args.seconds`.
fn daemon_fps(sam: Arc<Sam>, args: &BenchOffloadArgs) -> Result<f32> {
    let source = FileSource::new(FileSettings { paths: args.images.clone(), repeat: true, fps: 30.0 });
    let settings = PipelineSettings { embeddings_kept: 2, queue_capacity: 4, capture: CaptureSettings::default() };
    let pipeline = Pipeline::start(sam, Box::new(source), &settings)?;
    std::thread::sleep(Duration::from_secs(args.seconds));
    let fps = pipeline.status().fps;
    pipeline.shutdown();
    Ok(fps)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "\nencoder                              ms/frame  prepare  network  queue  server  decode  up MiB  down MiB  daemon fps (in flight)\n",
    );
    for r in rows {
        let fps: Vec<String> = r.daemon_fps.iter().map(|(n, fps)| format!("{fps:.2} ({n})")).collect();
        out += &format!(
            "{:<36} {:>8.0} {:>8.1} {:>8.1} {:>6.1} {:>7.0} {:>7.1} {:>7.2} {:>9.2}  {}\n",
            r.name,
            r.total,
            r.prepare,
            r.network,
            r.server_queue,
            r.server_compute,
            r.decode,
            mib(r.sent),
            mib(r.received),
            fps.join(", ")
        );
    }
    out += "\nOn other links (the measured bytes at the link's rate, this run's other times; computed, not shaped):\n";
    out += "encoder                              link         wire ms  ms/frame  fps, 1 in flight  fps, pipelined\n";
    for r in rows.iter().filter(|r| r.sent > 0) {
        for (link, bits) in LINKS {
            let wire = (r.sent + r.received) as f64 * 8.0 / bits * 1e3;
            let frame = r.prepare + r.server_queue + r.server_compute + r.decode + wire;
            // Pipelined, the slowest stage sets the pace: the server, or the busier direction of the link.
            let slowest = r.server_compute.max(r.sent.max(r.received) as f64 * 8.0 / bits * 1e3);
            out += &format!(
                "{:<36} {:<12} {:>7.1} {:>9.0} {:>17.2} {:>15.2}\n",
                r.name,
                link,
                wire,
                frame,
                1e3 / frame,
                1e3 / slowest
            );
        }
    }
    out
}
