//! Encoder offload against a real NVIDIA Triton Inference Server, started
//! by `models/triton/serve.sh` on loopback ports (no mock of the protocol):
//! the remote masks are the local ones, the daemon serves through the
//! server, falls back to its own encoder when the server dies and goes
//! back when it returns, and wrong or stalling servers are named or timed out.
//! The tests fail (never skip) when the server cannot start.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cases, make_certificates, model_dir};
use maskd::model::{Compute, Mask, Precision, Sam};
use maskd::offload::{self, Fallback, RemoteSettings};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maskd-offload-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn golden_image() -> PathBuf {
    repo().join("tests/golden/images/chelsea.png")
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Triton server from models/triton/serve.sh, killed when dropped.
struct Triton {
    child: Child,
    grpc: u16,
    http: u16,
    log: PathBuf,
    repository: Option<PathBuf>,
    /// More options of serve.sh, such as TLS.
    extra: Vec<String>,
}

impl Triton {
    /// Serves the exported encoders (or `repository`) on fresh loopback
    /// ports; waits until the server says it is ready.
    fn start(scratch: &Path, repository: Option<&Path>) -> Triton {
        Triton::start_on(scratch, repository, free_port(), free_port(), &[])
    }

    fn start_on(scratch: &Path, repository: Option<&Path>, grpc: u16, http: u16, extra: &[String]) -> Triton {
        let log = scratch.join(format!("triton-{grpc}.log"));
        let mut command = Command::new(repo().join("models/triton/serve.sh"));
        command
            .args(["--grpc-port", &grpc.to_string(), "--http-port", &http.to_string(), "--threads", "2"])
            .arg("--model-dir")
            .arg(model_dir());
        if let Some(repository) = repository {
            command.arg("--repository").arg(repository);
        }
        command.args(extra);
        let child = command
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .expect("starting models/triton/serve.sh");
        let mut triton =
            Triton { child, grpc, http, log, repository: repository.map(Path::to_path_buf), extra: extra.to_vec() };
        // The first start on a machine makes the server's venv.
        let until = Instant::now() + Duration::from_secs(600);
        while !triton.ready() {
            if let Some(status) = triton.child.try_wait().unwrap() {
                panic!("Triton exited ({status}) before it was ready:\n{}", triton.log_text());
            }
            assert!(Instant::now() < until, "Triton not ready after 600 s:\n{}", triton.log_text());
            std::thread::sleep(Duration::from_millis(250));
        }
        triton
    }

    /// `GET /v2/health/ready` answers 200.
    fn ready(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.http)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.http);
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }

    fn url(&self, model: &str) -> String {
        format!("grpc://127.0.0.1:{}/{model}", self.grpc)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server at once, as a crash or a power cut would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The same server again, on the same ports.
    fn restart(&mut self, scratch: &Path) {
        self.kill();
        let again = Triton::start_on(scratch, self.repository.as_deref(), self.grpc, self.http, &self.extra);
        *self = again;
    }
}

impl Drop for Triton {
    fn drop(&mut self) {
        self.kill();
    }
}

fn maskd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskd")).args(args).env("MASKD_MODEL", model_dir()).output().unwrap()
}

/// `maskd segment --json` on the golden image's cat; returns the report and the mask.
fn segment(dir: &Path, name: &str, extra: &[&str]) -> (serde_json::Value, Mask) {
    let (overlay, mask) = (dir.join(format!("{name}_overlay.png")), dir.join(format!("{name}.png")));
    let image = golden_image();
    let mut args = vec!["segment", "--json", "--image", image.to_str().unwrap(), "--point", "255,180"];
    args.extend(["--out", overlay.to_str().unwrap(), "--mask-out", mask.to_str().unwrap()]);
    args.extend(extra);
    let out = maskd(&args);
    assert!(out.status.success(), "maskd {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    let report = serde_json::from_slice(&out.stdout).unwrap();
    (report, Mask::from_gray(&image::open(&mask).unwrap().to_luma8(), 127))
}

/// The local model and one whose encoder is `url`, with no fallback.
fn remote_sam(url: &str) -> Sam {
    let settings = RemoteSettings {
        fallback: Fallback::None,
        deadline: Duration::from_secs(120),
        ..RemoteSettings::new(url.parse().unwrap())
    };
    offload::load(&model_dir(), Precision::F32, Compute::F32, settings).unwrap().0
}

#[test]
fn masks_through_triton_are_the_local_ones() {
    let dir = scratch("masks");
    let triton = Triton::start(&dir, None);

    // The command line, as a user runs it.
    let (local, local_mask) = segment(&dir, "local", &[]);
    let url = triton.url("mobile_sam_encoder");
    let (remote, remote_mask) = segment(&dir, "remote", &["--encoder-url", &url, "--encoder-fallback", "none"]);
    assert_eq!(local["model"]["encoded"], "local");
    assert_eq!(remote["model"]["encoded"], "remote", "{remote}");
    assert_eq!(remote["model"]["encoder"], "remote-mobile_sam_encoder");
    assert_eq!(local_mask.iou(&remote_mask), 1.0, "the f32 embedding from Triton gives another mask");

    // Every golden prompt (but refinements) on two photos, against both of the server's encoders.
    let local = Sam::load(model_dir(), Precision::F32).unwrap();
    let remotes = [("mobile_sam_encoder", 1.0), ("mobile_sam_encoder_f16", 0.99)].map(|(model, gate)| (model, gate, remote_sam(&triton.url(model)), 1.0f64));
    let mut remotes = remotes;
    let mut prompts = 0;
    for photo in ["chelsea.png", "astronaut.png"] {
        let image = image::open(repo().join("tests/golden/images").join(photo)).unwrap().to_rgb8();
        let cases: Vec<_> = cases().into_iter().filter(|c| c.image.ends_with(photo) && c.mask_input_from.is_none()).collect();
        let local_embedding = local.embed(&image).unwrap();
        let want: Vec<_> = cases.iter().map(|c| local.decode(&local_embedding, &c.prompt()).unwrap()).collect();
        prompts += cases.len();
        for (model, _, remote, worst) in &mut remotes {
            let embedding = remote.embed(&image).unwrap();
            assert_eq!(remote.encoder_state(), maskd::model::EncoderState::Remote, "{model}");
            for (case, want) in cases.iter().zip(&want) {
                let got = remote.decode(&embedding, &case.prompt()).unwrap();
                for (w, g) in want.candidates.iter().zip(&got.candidates) {
                    *worst = worst.min(w.mask.iou(&g.mask));
                }
            }
        }
    }
    assert!(prompts >= 5, "golden prompts: {prompts}");
    for (model, gate, _, worst) in remotes {
        println!("{model}: lowest IoU against the local masks over {prompts} prompts: {worst:.5}");
        assert!(worst >= gate, "{model}: IoU {worst} below {gate}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A model repository of misfits: one that takes f32 pixels, one whose
/// embedding has another model's shape, and one that never answers.
fn misfit_repository(dir: &Path) -> PathBuf {
    let root = dir.join("misfits");
    let model = |name: &str, input: &str, output_dims: &str, body: &str| {
        std::fs::create_dir_all(root.join(name).join("1")).unwrap();
        let config = format!(
            "name: \"{name}\"\nbackend: \"python\"\nmax_batch_size: 0\n\
             input [ {{ name: \"image\" data_type: {input} dims: [ 1, 3, -1, -1 ] }} ]\n\
             output [ {{ name: \"image_embeddings\" data_type: TYPE_FP32 dims: {output_dims} }} ]\n\
             instance_group [ {{ kind: KIND_CPU count: 1 }} ]\n"
        );
        std::fs::write(root.join(name).join("config.pbtxt"), config).unwrap();
        let code = format!(
            "import time\nimport numpy as np\nimport triton_python_backend_utils as pb_utils\n\n\
             class TritonPythonModel:\n    def execute(self, requests):\n{body}"
        );
        std::fs::write(root.join(name).join("1/model.py"), code).unwrap();
    };
    let answer = "        return [pb_utils.InferenceResponse([pb_utils.Tensor(\"image_embeddings\", \
                  np.zeros((1, 256, 64, 64), np.float32))]) for _ in requests]\n";
    model("takes_f32", "TYPE_FP32", "[ 1, 256, 64, 64 ]", answer);
    model("small_embedding", "TYPE_UINT8", "[ 1, 256, 32, 32 ]", answer);
    model("stalls", "TYPE_UINT8", "[ 1, 256, 64, 64 ]", &format!("        time.sleep(3600)\n{answer}"));
    root
}

#[test]
fn wrong_models_are_named_and_a_stalled_server_falls_back_after_the_deadline() {
    let dir = scratch("misfits");
    let triton = Triton::start(&dir, Some(&misfit_repository(&dir)));
    let image = golden_image();
    let fails = |url: &str| {
        let out = maskd(&["segment", "--image", image.to_str().unwrap(), "--point", "255,180", "--out", "/dev/null", "--encoder-url", url]);
        assert!(!out.status.success(), "{url} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Wrong models are configuration errors, refused at start even with a fallback.
    let err = fails(&triton.url("takes_f32"));
    assert!(err.contains("input \"image\" has datatype FP32") && err.contains("UINT8"), "{err}");
    let err = fails(&triton.url("small_embedding"));
    assert!(err.contains("output \"image_embeddings\" has shape [1, 256, 32, 32]") && err.contains("[1, 256, 64, 64]"), "{err}");
    let err = fails(&triton.url("not_served"));
    assert!(err.contains("does not serve this model"), "{err}");

    // A server that accepts and never answers: the deadline, then this machine's encoder.
    let (local, local_mask) = segment(&dir, "local", &[]);
    let started = Instant::now();
    let url = triton.url("stalls");
    let (stalled, mask) = segment(&dir, "stalled", &["--encoder-url", &url, "--encoder-deadline-ms", "1500"]);
    println!("stalled server: answered by the fallback in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(stalled["model"]["encoded"], "fallback", "{stalled}");
    assert_eq!(mask.iou(&local_mask), 1.0, "the fallback's mask is the local one");
    let encode_ms = stalled["timings_ms"]["encode"].as_f64().unwrap();
    let local_ms = local["timings_ms"]["encode"].as_f64().unwrap();
    assert!(encode_ms >= 1500.0, "fell back before the deadline: {encode_ms} ms");
    println!("encode: local {local_ms:.0} ms, stalled server then fallback {encode_ms:.0} ms");
    // Without a fallback the stall is an error that names the deadline.
    let out = maskd(&[
        "segment", "--image", image.to_str().unwrap(), "--point", "255,180", "--out", "/dev/null",
        "--encoder-url", &url, "--encoder-deadline-ms", "1500", "--encoder-fallback", "none",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("1500 ms deadline"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn grpcs_checks_the_servers_certificate_against_the_ca_file() {
    let dir = scratch("tls");
    make_certificates(&dir);
    let tls = ["--tls-cert", "server.pem", "--tls-key", "server.key"].map(|a| match a.ends_with(".pem") || a.ends_with(".key") {
        true => dir.join(a).to_str().unwrap().to_string(),
        false => a.to_string(),
    });
    let triton = Triton::start_on(&dir, None, free_port(), free_port(), &tls);
    // Triton does not check tokens (a gateway in front of it would): here the token file is only read.
    std::fs::write(dir.join("token"), "board-7-secret\n").unwrap();
    let (ca, token) = (dir.join("ca.pem"), dir.join("token"));
    let url = format!("grpcs://localhost:{}/mobile_sam_encoder_f16", triton.grpc);
    let (report, _) = segment(&dir, "tls", &[
        "--encoder-url", &url, "--encoder-fallback", "none",
        "--encoder-ca-file", ca.to_str().unwrap(), "--encoder-token-file", token.to_str().unwrap(),
    ]);
    assert_eq!(report["model"]["encoded"], "remote", "{report}");
    // The system's CAs do not know the test CA: the certificate is refused, and said so.
    let image = golden_image();
    let out = maskd(&["segment", "--image", image.to_str().unwrap(), "--point", "255,180", "--out", "/dev/null",
        "--encoder-url", &url, "--encoder-fallback", "none"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.to_lowercase().contains("certificate"), "{err}");
    // Plain HTTP/2 to the TLS port does not get through either.
    let plain = format!("grpc://127.0.0.1:{}/mobile_sam_encoder_f16", triton.grpc);
    let out = maskd(&["segment", "--image", image.to_str().unwrap(), "--point", "255,180", "--out", "/dev/null",
        "--encoder-url", &plain, "--encoder-fallback", "none", "--encoder-deadline-ms", "3000"]);
    assert!(!out.status.success(), "plain gRPC to a TLS port was answered");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_listener_that_never_speaks_grpc_times_out_into_the_fallback() {
    // Accepts connections and never answers: no HTTP/2 handshake at all.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    std::thread::spawn({
        let held = held.clone();
        move || {
            for stream in listener.incoming().flatten() {
                held.lock().unwrap().push(stream);
            }
        }
    });
    let url = format!("grpc://127.0.0.1:{port}/mobile_sam_encoder");
    let settings = RemoteSettings { deadline: Duration::from_millis(800), fallback: Fallback::None, ..RemoteSettings::new(url.parse().unwrap()) };
    let started = Instant::now();
    let err = format!("{:#}", offload::load(&model_dir(), Precision::F32, Compute::F32, settings.clone()).unwrap_err());
    assert!(err.contains("800 ms deadline"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    // With the fallback the model loads, and encodes on this machine.
    let settings = RemoteSettings { fallback: Fallback::Local, ..settings };
    let (sam, _) = offload::load(&model_dir(), Precision::F32, Compute::F32, settings).unwrap();
    assert_eq!(sam.encoder_state(), maskd::model::EncoderState::Fallback);
    let image = image::open(golden_image()).unwrap().to_rgb8();
    sam.embed(&image).unwrap();
    assert_eq!(sam.encoder_state(), maskd::model::EncoderState::Fallback);
}

/// A daemon whose encoder is `url` with the local fallback and two frames
/// in flight, frames from a looping folder, the line on a pty.
fn daemon_config(dir: &Path, url: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    std::fs::copy(golden_image(), dir.join("frames/chelsea.png")).unwrap();
    let text = format!(
        r#"
[model]
dir = "{model}"
threads = 1

[encoder]
mode = "remote"
url = "{url}"
deadline_ms = 20000
fallback = "local"
in_flight = 2

[source]
kind = "files"
paths = ["frames"]
loop = true
fps = 1.0

[serial]
device = "pty"
pty_link = "tty"
heartbeat_ms = 1000

[log]
level = "info"
"#,
        model = model_dir().display()
    );
    let path = dir.join("maskd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The daemon's answers over its pty, asked with the crate's own link.
struct Line(maskd::serial::Link<Box<dyn serialport::SerialPort>>, u32);

impl Line {
    fn open(tty: &Path) -> Line {
        let mut link = maskd::serial::Link::new(maskd::serial::open_port(tty.to_str().unwrap(), 115_200).unwrap());
        link.resync().unwrap();
        Line(link, 100)
    }

    fn ask(&mut self, message: maskd::serial::Message, within: Duration) -> Option<maskd::serial::Message> {
        self.1 += 1;
        let id = self.1;
        self.0.send(id, message, false).unwrap();
        let until = Instant::now() + within;
        while Instant::now() < until {
            match self.0.recv() {
                Ok(frame) if frame.request_id == id => return Some(frame.message),
                _ => {}
            }
        }
        None
    }

    fn encoder_state(&mut self) -> maskd::serial::EncoderState {
        match self.ask(maskd::serial::Message::GetStatus, Duration::from_secs(10)) {
            Some(maskd::serial::Message::Status(status)) => status.encoder,
            other => panic!("no Status: {other:?}"),
        }
    }

    /// A click on the cat: its SegmentResult's frame id and area.
    fn segment(&mut self) -> (u32, u32) {
        use maskd::serial::{FrameSelector, Label, MaskEncoding, Message, Output, Point, SegmentRequest};
        let request = SegmentRequest {
            points: vec![Point { x: 255, y: 180, label: Label::Foreground }],
            box_prompt: None,
            frame: FrameSelector::Latest,
            output: Output { mask: MaskEncoding::None, downscale: 1 },
        };
        // The first frame may still be on its way to the encoder.
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            match self.ask(Message::SegmentRequest(request.clone()), Duration::from_secs(60)) {
                Some(Message::SegmentResult(result)) => return (result.frame_id, result.area),
                Some(Message::Error(e)) if e.code == maskd::serial::ErrorCode::NoFrame && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => panic!("no SegmentResult: {other:?}"),
            }
        }
    }
}

fn wait_for(within: Duration, mut ready: impl FnMut() -> bool, what: impl Fn() -> String) {
    let until = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < until, "{}", what());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_daemon_encodes_on_triton_falls_back_when_it_dies_and_returns_to_it() {
    use maskd::serial::EncoderState;
    let dir = scratch("daemon");
    let mut triton = Triton::start(&dir, None);
    let config = daemon_config(&dir, &triton.url("mobile_sam_encoder"));
    let log = || std::fs::read_to_string(dir.join("maskd.log")).unwrap_or_default();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::from(std::fs::File::create(dir.join("maskd.log")).unwrap()))
        .spawn()
        .unwrap();
    let _stop = KillOnDrop(&mut daemon);
    wait_for(Duration::from_secs(60), || dir.join("tty").exists(), log);
    let mut line = Line::open(&dir.join("tty"));
    assert_eq!(line.encoder_state(), EncoderState::Remote, "{}", log());
    let (remote_frame, remote_area) = line.segment();

    // The server dies: the next frames are encoded here, and prompts are answered.
    triton.kill();
    wait_for(Duration::from_secs(60), || line.encoder_state() == EncoderState::Fallback, || format!("no fallback\n{}", log()));
    // Prompts are answered all along, on the newest embedded frame: soon one the fallback encoded.
    let (mut fallback_frame, mut fallback_area) = line.segment();
    let until = Instant::now() + Duration::from_secs(60);
    while fallback_frame <= remote_frame {
        assert!(Instant::now() < until, "no frame after {remote_frame} embedded by the fallback\n{}", log());
        (fallback_frame, fallback_area) = line.segment();
    }
    assert_eq!(fallback_area, remote_area, "the same photo gives the same mask either way");
    assert!(log().contains("this machine encodes the frames until it answers again"), "{}", log());

    // It comes back on the same address: frames go there again.
    triton.restart(&dir);
    wait_for(Duration::from_secs(90), || line.encoder_state() == EncoderState::Remote, || format!("never back\n{}", log()));
    assert!(log().contains("answers again"), "{}", log());
    let (mut back_frame, mut back_area) = line.segment();
    let until = Instant::now() + Duration::from_secs(60);
    while back_frame <= fallback_frame {
        assert!(Instant::now() < until, "no frame after {fallback_frame} embedded by the server\n{}", log());
        (back_frame, back_area) = line.segment();
    }
    assert_eq!(back_area, remote_area);
    println!("frames: remote {remote_frame}, fallback {fallback_frame}, remote again {back_frame}; area {remote_area}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Kills the daemon when the test ends, however it ends.
struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
