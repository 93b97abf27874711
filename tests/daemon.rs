//! `maskd run` end to end, with the real model and no hardware: frames from
//! a folder, the serial line on a pseudo-terminal, the display as a PNG file,
//! and board/maskd_client.py (written from docs/PROTOCOL.md) as the controller.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client_python, model_dir};

const QUEUE_CAPACITY: usize = 2;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maskd-daemon-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    dir
}

fn golden_image() -> PathBuf {
    repo().join("tests/golden/images/chelsea.png")
}

/// A config with a folder source, a pty line and a PNG display.
fn config(dir: &Path, repeat: bool, heartbeat_ms: u32) -> PathBuf {
    let text = format!(
        r#"
[model]
dir = "{model}"
precision = "int8"
threads = 1

[source]
kind = "files"
paths = ["frames"]
loop = {repeat}
fps = 1.0

[pipeline]
queue_capacity = {QUEUE_CAPACITY}

[serial]
device = "pty"
pty_link = "tty"
heartbeat_ms = {heartbeat_ms}

[display]
kind = "png"
path = "display.png"
width = 400
height = 300

[log]
level = "info"
"#,
        model = model_dir().display()
    );
    let path = dir.join("maskd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The daemon, killed if a test fails before stopping it.
struct Daemon(Child);

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_maskd"))
            .args(["run", "--config"])
            .arg(config)
            .stderr(Stdio::from(std::fs::File::create(config.with_extension("log")).unwrap()))
            .spawn()
            .expect("starting maskd run");
        let daemon = Daemon(child);
        let link = config.parent().unwrap().join("tty");
        wait_for(Duration::from_secs(30), || link.exists(), || format!("{} never appeared", link.display()));
        daemon
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill").args(["-s", signal, &self.0.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -s {signal} failed");
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "the daemon did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(within: Duration, mut ready: impl FnMut() -> bool, what: impl Fn() -> String) {
    let until = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < until, "{}", what());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_of(config: &Path) -> String {
    std::fs::read_to_string(config.with_extension("log")).unwrap_or_default()
}

/// Runs `maskd ARGS --precision int8 --image <golden image>` (the daemon's model) and checks it succeeded.
fn maskd_on_golden_image(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(args)
        .args(["--precision", "int8", "--image"])
        .arg(golden_image())
        .env("MASKD_MODEL", model_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "maskd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs a Python client script of the repo against the daemon of `config`;
/// prints what it printed, and fails with its output and the daemon's log.
fn run_client(script: &str, args: &[&str], config: &Path) {
    let out = Command::new(client_python()).arg(repo().join(script)).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_of(config)
    );
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// `maskd segment`'s mask for the same image and prompt, as the client script reads it.
fn expected_mask(dir: &Path) -> PathBuf {
    let (overlay, mask_png) = (dir.join("expected_overlay.png"), dir.join("expected.png"));
    maskd_on_golden_image(&["segment", "--point", "255,180", "--out", utf8(&overlay), "--mask-out", utf8(&mask_png)]);
    let mask = image::open(&mask_png).unwrap().to_luma8();
    let bits: String = mask.pixels().map(|p| if p[0] > 127 { '1' } else { '0' }).collect();
    let path = dir.join("expected.json");
    let json = serde_json::json!({ "width": mask.width(), "height": mask.height(), "bits": bits });
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

/// `maskd everything`'s SAM records for the golden image on a 4x4 grid.
fn expected_everything(dir: &Path) -> PathBuf {
    let (overlay, json) = (dir.join("expected_everything.png"), dir.join("expected_everything.json"));
    maskd_on_golden_image(&["everything", "--points-per-side", "4", "--out", utf8(&overlay), "--json", utf8(&json)]);
    json
}

#[test]
fn the_daemon_answers_a_python_controller_over_a_pty() {
    let dir = scratch("serial");
    let expected = expected_mask(&dir);
    let expected_everything = expected_everything(&dir);
    std::fs::copy(golden_image(), dir.join("frames/chelsea.png")).unwrap();
    let config = config(&dir, false, 1000);
    let mut daemon = Daemon::start(&config);
    run_client(
        "tests/e2e/daemon_e2e.py",
        &[
            "--port",
            utf8(&dir.join("tty")),
            "--expected",
            utf8(&expected),
            "--daemon-pid",
            &daemon.0.id().to_string(),
            "--queue-capacity",
            &QUEUE_CAPACITY.to_string(),
            "--expected-everything",
            utf8(&expected_everything),
        ],
        &config,
    );
    // The client sent SIGTERM after its last request: the daemon drains and exits cleanly.
    let status = daemon.wait(Duration::from_secs(60));
    assert!(status.success(), "exit {status}\n{}", log_of(&config));
    assert!(!dir.join("tty").exists(), "the pty link outlived the daemon");
    let display = image::open(dir.join("display.png")).expect("the display snapshot");
    assert_eq!((display.width(), display.height()), (400, 300));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn everything_snapshots_are_written_on_a_timer_and_pruned() {
    let dir = scratch("snapshots");
    std::fs::copy(golden_image(), dir.join("frames/chelsea.png")).unwrap();
    // A looping folder gives a new frame id every second, so every tick has a new frame.
    let config = config(&dir, true, 1000);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[everything]\npoints_per_side = 2\n\n[everything.snapshots]\nevery_s = 1\ndir = \"snapshots\"\nkeep = 2\n");
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon::start(&config);
    wait_for(
        Duration::from_secs(240),
        || log_of(&config).lines().filter(|l| l.contains("snapshot: ") && l.contains(" objects on frame ")).count() >= 3,
        || format!("fewer than 3 snapshots\n{}", log_of(&config)),
    );
    // The client's command line asks for the same over the line, between the snapshots.
    let out = Command::new(client_python())
        .arg(repo().join("board/maskd_client.py"))
        .arg("--port")
        .arg(dir.join("tty"))
        .args(["--timeout", "120", "everything", "--points-per-side", "2", "--max-objects", "1", "--rle"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "maskd_client.py everything: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let head: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!((head["type"].as_str(), head["prompts"].as_u64()), (Some("Objects"), Some(4)), "{stdout}");
    assert_eq!(stdout.lines().count() as u64, 1 + head["objects"].as_u64().unwrap(), "{stdout}");
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(60)).success(), "{}", log_of(&config));
    let mut names: Vec<String> =
        std::fs::read_dir(dir.join("snapshots")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names.len(), 4, "two snapshots kept, a JSON and a PNG each: {names:?}");
    for pair in names.chunks(2) {
        let (json, png) = (&pair[0], &pair[1]);
        assert!(json.starts_with("everything-") && json.ends_with(".json"), "{names:?}");
        assert_eq!(json.trim_end_matches(".json"), png.trim_end_matches(".png"));
        let records: Vec<maskd::everything::SamRecord> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("snapshots").join(json)).unwrap()).unwrap();
        assert!(records.iter().all(|r| r.point_coords.len() == 1 && r.area > 0), "{json}");
        assert_eq!(image::image_dimensions(dir.join("snapshots").join(png)).unwrap(), (451, 300));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Sends a GetStatus over the pty and returns the camera state index.
fn camera_state(tty: &Path) -> u8 {
    use maskd::serial::{CameraState, Link, Message};
    let port = maskd::serial::open_port(tty.to_str().unwrap(), 115_200).unwrap();
    let mut link = Link::new(port);
    link.resync().unwrap();
    link.send(7, Message::GetStatus, false).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        match link.recv() {
            Ok(frame) if frame.request_id == 7 => {
                let Message::Status(status) = frame.message else { panic!("{frame:?}") };
                return match status.camera {
                    CameraState::Starting => 0,
                    CameraState::Streaming => 1,
                    CameraState::Stalled => 2,
                    CameraState::Disconnected => 3,
                };
            }
            _ => {}
        }
    }
    panic!("no Status answer")
}

#[test]
fn a_frame_source_that_fails_is_reopened_and_the_daemon_recovers() {
    let dir = scratch("camera");
    let config = config(&dir, true, 1000);
    let mut daemon = Daemon::start(&config);
    let tty = dir.join("tty");
    // An empty folder is a camera that is down.
    wait_for(Duration::from_secs(10), || camera_state(&tty) == 3, || format!("never Disconnected\n{}", log_of(&config)));
    std::fs::copy(golden_image(), dir.join("frames/chelsea.png")).unwrap();
    wait_for(Duration::from_secs(30), || camera_state(&tty) == 1, || format!("never Streaming\n{}", log_of(&config)));
    // The image goes away: down again, then back.
    std::fs::remove_file(dir.join("frames/chelsea.png")).unwrap();
    wait_for(Duration::from_secs(30), || camera_state(&tty) == 3, || format!("never down again\n{}", log_of(&config)));
    std::fs::copy(golden_image(), dir.join("frames/chelsea.png")).unwrap();
    wait_for(Duration::from_secs(30), || camera_state(&tty) == 1, || format!("never back\n{}", log_of(&config)));
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon died");
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(60)).success(), "{}", log_of(&config));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sighup_keeps_a_broken_config_out_and_restarts_with_a_good_one() {
    let dir = scratch("reload");
    std::fs::copy(golden_image(), dir.join("frames/chelsea.png")).unwrap();
    let config = config(&dir, false, 1000);
    let mut daemon = Daemon::start(&config);
    let tty = dir.join("tty");
    wait_for(
        Duration::from_secs(180),
        || image::image_dimensions(dir.join("display.png")).is_ok_and(|d| d == (400, 300)),
        || format!("no first picture\n{}", log_of(&config)),
    );
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("queue_capacity", "queue_capacty")).unwrap();
    daemon.signal("HUP");
    wait_for(Duration::from_secs(10), || log_of(&config).contains("keeping the running configuration"), || log_of(&config));
    assert!(log_of(&config).contains("queue_capacty"), "the log names the bad key:\n{}", log_of(&config));
    assert_eq!(log_of(&config).matches("maskd ready").count(), 1, "a broken config restarted the daemon");
    assert!(camera_state(&tty) <= 2, "still serving");
    std::fs::write(&config, good.replace("height = 300", "height = 200")).unwrap();
    daemon.signal("HUP");
    // The same process (pid) comes back with the new display size.
    wait_for(
        Duration::from_secs(180),
        || image::image_dimensions(dir.join("display.png")).is_ok_and(|d| d == (400, 200)),
        || format!("no restart with the new display size\n{}", log_of(&config)),
    );
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon exited instead of restarting");
    assert_eq!(log_of(&config).matches("maskd ready").count(), 2, "{}", log_of(&config));
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(60)).success(), "{}", log_of(&config));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn stdin_prompts_get_json_answers() {
    let dir = scratch("stdin");
    std::fs::copy(golden_image(), dir.join("frames/chelsea.png")).unwrap();
    let config = config(&dir, false, 1000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(["run", "--stdin", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(config.with_extension("log")).unwrap()))
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for the first embedding: until then the answer is "no frame".
    let until = Instant::now() + Duration::from_secs(120);
    let answer = loop {
        writeln!(stdin, "255,180").unwrap();
        let line = lines.next().expect("an answer line").unwrap();
        let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
        if answer.get("error").is_none_or(|e| !e.as_str().unwrap().contains("no frame")) {
            break answer;
        }
        assert!(Instant::now() < until, "no frame embedded\n{}", log_of(&config));
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(answer["frame_id"], 1, "{answer}");
    assert!(answer["area"].as_u64().unwrap() > 50_000, "{answer}");
    assert!(answer["grasp"].is_array(), "{answer}");
    writeln!(stdin, "255,180 box=1,2").unwrap();
    let bad: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(bad["error"].as_str().unwrap().contains("box=1,2"), "{bad}");
    writeln!(stdin, "9999,5").unwrap();
    let outside: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(outside["error"].as_str().unwrap().contains("invalid prompt"), "{outside}");
    // After a frame and prompts, its threads still share glibc's main heap.
    assert_eq!(thread_arenas(child.id()), 0, "{}", log_of(&config));
    Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success(), "{}", log_of(&config));
    std::fs::remove_dir_all(dir).unwrap();
}

/// The glibc thread arenas of process `pid`: anonymous mappings that start on
/// a 64 MiB boundary and, with the reserved (`---p`) rest that follows, span
/// exactly 64 MiB (glibc's heap size for thread arenas on 64-bit).
fn thread_arenas(pid: u32) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let regions: Vec<(u64, u64, String, bool)> = maps
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (start, end) = fields[0].split_once('-').unwrap();
            let hex = |s| u64::from_str_radix(s, 16).unwrap();
            (hex(start), hex(end), fields[1].to_string(), fields.len() == 5)
        })
        .collect();
    const HEAP: u64 = 64 << 20;
    regions
        .iter()
        .enumerate()
        .filter(|(ix, (start, end, perms, anonymous))| {
            let reserved_end = regions
                .get(ix + 1)
                .filter(|next| next.0 == *end && next.2 == "---p")
                .map_or(*end, |next| next.1);
            *anonymous && perms.starts_with("rw") && start % HEAP == 0 && reserved_end - start == HEAP
        })
        .count()
}

/// Reads frames from `link` for `within`, handing each to `seen`; dropped
/// frames (a frame the daemon cut short when the line was full) are skipped.
fn read_for<T: std::io::Read + std::io::Write>(
    link: &mut maskd::serial::Link<T>,
    within: Duration,
    mut seen: impl FnMut(maskd::serial::Frame) -> bool,
) -> bool {
    use maskd::serial::LinkError;
    let until = Instant::now() + within;
    while Instant::now() < until {
        match link.recv() {
            Ok(frame) => {
                if seen(frame) {
                    return true;
                }
            }
            Err(LinkError::Frame(_)) => {}
            Err(LinkError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the pty: {e}"),
        }
    }
    false
}

#[test]
fn a_line_nobody_reads_fills_up_and_is_served_again_once_drained() {
    use maskd::serial::{EverythingRequest, FrameSelector, Hello, Label, Link, MaskEncoding, Message, Output, Point, SegmentRequest};
    let dir = scratch("stall");
    std::fs::copy(golden_image(), dir.join("frames/chelsea.png")).unwrap();
    let config = config(&dir, false, 100);
    let mut daemon = Daemon::start(&config);
    let tty = dir.join("tty");
    let mut link = Link::new(maskd::serial::open_port(tty.to_str().unwrap(), 115_200).unwrap());
    link.resync().unwrap();
    let prompt = SegmentRequest {
        points: vec![Point { x: 255, y: 180, label: Label::Foreground }],
        box_prompt: None,
        frame: FrameSelector::Latest,
        output: Output { mask: MaskEncoding::None, downscale: 1 },
    };
    let mut request_id = 1;
    wait_for(
        Duration::from_secs(180),
        || {
            request_id += 1;
            link.send(request_id, Message::SegmentRequest(prompt.clone()), false).unwrap();
            read_for(&mut link, Duration::from_secs(10), |f| f.request_id == request_id && matches!(f.message, Message::SegmentResult(_)))
        },
        || format!("no frame embedded\n{}", log_of(&config)),
    );

    // Ask for long answers (every object's full-resolution mask) and read
    // nothing, until the pseudo-terminal's buffer is full and writes time out.
    let masks = Output { mask: MaskEncoding::Rle, downscale: 1 };
    wait_for(
        Duration::from_secs(120),
        || {
            request_id += 1;
            let job = EverythingRequest { frame: FrameSelector::Latest, points_per_side: 4, max_objects: 0, output: masks };
            link.send(request_id, Message::EverythingRequest(job), false).unwrap();
            std::thread::sleep(Duration::from_secs(1));
            log_of(&config).contains("the line takes no bytes")
        },
        || format!("the line never filled up\n{}", log_of(&config)),
    );
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon died");

    // A reader comes back: it drains what was kept, then is answered at once.
    read_for(&mut link, Duration::from_secs(2), |_| false);
    wait_for(Duration::from_secs(5), || log_of(&config).contains("the line drains again"), || log_of(&config));
    link.send(9001, Message::Hello(Hello { client: "after the stall".into() }), false).unwrap();
    let answered = read_for(&mut link, Duration::from_secs(2), |f| f.request_id == 9001 && matches!(f.message, Message::Capabilities(_)));
    assert!(answered, "no Capabilities after the line drained\n{}", log_of(&config));
    link.send(9002, Message::SegmentRequest(prompt), false).unwrap();
    let answered = read_for(&mut link, Duration::from_secs(60), |f| f.request_id == 9002 && matches!(f.message, Message::SegmentResult(_)));
    assert!(answered, "no SegmentResult after the line drained\n{}", log_of(&config));

    // Status counts what the stall dropped, as the log does.
    let mut unsent = None;
    link.send(9003, Message::GetStatus, false).unwrap();
    read_for(&mut link, Duration::from_secs(2), |f| match &f.message {
        Message::Status(status) if f.request_id == 9003 => {
            unsent = Some(status.unsent);
            true
        }
        _ => false,
    });
    let unsent = unsent.unwrap_or_else(|| panic!("no Status after the line drained\n{}", log_of(&config)));
    let logged = logged_drops(&log_of(&config));
    println!("dropped while nobody read: {unsent:?}, logged {logged:?}");
    // The stall began with a write that timed out: an answer's frame or a heartbeat.
    assert!(unsent.answers + unsent.heartbeats >= 1, "{unsent:?}");
    assert_eq!((unsent.answers, unsent.heartbeats), logged);

    // Heartbeats are back on their period: no gap of 3 periods (a dead line, by the spec).
    let mut beats = Vec::new();
    read_for(&mut link, Duration::from_secs(3), |f| {
        if f.request_id == 0 && matches!(f.message, Message::Status(_)) {
            beats.push(Instant::now());
        }
        false
    });
    let mut gaps: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    println!("heartbeats after the stall: {} in 3 s, gap p50 {:?}, max {:?}", beats.len(), gaps.get(gaps.len() / 2), gaps.last());
    assert!(beats.len() >= 20 && gaps.last().is_some_and(|g| *g < Duration::from_millis(300)), "heartbeat gaps {gaps:?}");
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(60)).success(), "{}", log_of(&config));
    std::fs::remove_dir_all(dir).unwrap();
}

/// The answers and heartbeats the daemon's log says each stall dropped, summed.
fn logged_drops(log: &str) -> (u32, u32) {
    log.lines()
        .filter_map(|line| {
            let (_, tail) = line.split_once("s; ")?;
            let words: Vec<&str> = tail.split(' ').collect();
            match words[..] {
                [answers, "answers", "and", heartbeats, "heartbeats", "were", "dropped", "meanwhile"] => {
                    Some((answers.parse::<u32>().ok()?, heartbeats.parse::<u32>().ok()?))
                }
                _ => None,
            }
        })
        .fold((0, 0), |(a, h), (da, dh)| (a + da, h + dh))
}

/// The serial soak (tests/soak/serial_soak.py) for 90 s: steady prompts and
/// everything jobs from a reader that leaves the line unread until the pty
/// fills, then comes back; every request answered once, heartbeats on time,
/// memory flat. Run it by hand for longer (its docstring).
#[test]
fn serial_soak_with_readers_that_come_and_go() {
    let dir = scratch("soak");
    std::fs::copy(golden_image(), dir.join("frames/chelsea.png")).unwrap();
    let config = config(&dir, true, 250);
    let mut daemon = Daemon::start(&config);
    let (tty, pid) = (dir.join("tty"), daemon.0.id().to_string());
    let args = ["--port", utf8(&tty), "--daemon-pid", &pid, "--seconds", "90", "--heartbeat-ms", "250"];
    run_client("tests/soak/serial_soak.py", &args, &config);
    let log = log_of(&config);
    assert!(log.contains("the line takes no bytes") && log.contains("the line drains again"), "the line never filled up:\n{log}");
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(60)).success(), "{}", log_of(&config));
    std::fs::remove_dir_all(dir).unwrap();
}
