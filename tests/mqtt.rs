//! `maskd run` as an MQTT client, against a real Mosquitto started here on
//! free loopback ports (with a config, a password file and a TLS CA written
//! here), checked by Mosquitto's own clients (`mosquitto_sub`,
//! `mosquitto_pub`) and, for the load figures, paho-mqtt: never by the
//! client library under test. The serial side is board/maskd_client.py.
//! Without `mosquitto`, `mosquitto_sub`, `mosquitto_pub`,
//! `mosquitto_passwd` and `openssl` (./setup.sh --tests) these tests fail.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{make_certificates, model_dir};
use serde_json::Value;

/// Messages the daemon keeps for an absent broker.
const QUEUE_LIMIT: usize = 8;
/// Answers asked for beyond the limit during the second outage.
const BEYOND: usize = 3;
const DEVICE: &str = "board-1";
const USER: &str = "board";
const PASSWORD: &str = "s3cret";
const WATCHER: (&str, &str) = ("watcher", "w4tch");

/// One test at a time: each runs a model, and the load test prints timings.
static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maskd-mqtt-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    std::fs::create_dir_all(dir.join("broker-db")).unwrap();
    std::fs::copy(repo().join("tests/golden/images/chelsea.png"), dir.join("frames/chelsea.png")).unwrap();
    dir
}

fn run_checked(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e} (./setup.sh --tests installs it)"));
    assert!(out.status.success(), "{command:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for<T>(within: Duration, what: impl Fn() -> String, mut ready: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(Instant::now() < until, "{}", what());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mosquitto with a plain and a TLS listener, passwords required, and
/// persistence saved every second (so that a subscriber's session survives
/// a SIGKILL of the broker).
struct Broker {
    dir: PathBuf,
    plain: u16,
    tls: u16,
    child: Option<Child>,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        make_certificates(dir);
        let passwd = dir.join("passwd");
        run_checked(Command::new("mosquitto_passwd").args(["-b", "-c"]).arg(&passwd).args([USER, PASSWORD]));
        run_checked(Command::new("mosquitto_passwd").arg("-b").arg(&passwd).args([WATCHER.0, WATCHER.1]));
        let (plain, tls) = (free_port(), free_port());
        let user = run_checked(Command::new("id").arg("-un"));
        let d = dir.display();
        let config = format!(
            "# Run as root, mosquitto would switch to its own user, which cannot read this folder.\n\
             user {user}\nper_listener_settings false\nallow_anonymous false\npassword_file {d}/passwd\n\
             persistence true\npersistence_location {d}/broker-db/\nautosave_interval 1\nmax_queued_messages 1000\nset_tcp_nodelay true\n\
             log_dest file {d}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             listener {plain} 127.0.0.1\nlistener {tls} 127.0.0.1\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
            user = user.trim()
        );
        std::fs::write(dir.join("mosquitto.conf"), config).unwrap();
        let mut broker = Broker { dir: dir.to_path_buf(), plain, tls, child: None };
        broker.restart();
        broker
    }

    /// Starts the broker (again, on the same ports) and waits until it listens.
    fn restart(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(self.dir.join("mosquitto.stderr")).unwrap()))
            .spawn()
            .expect("starting mosquitto (./setup.sh --tests installs it)");
        self.child = Some(child);
        let (plain, tls) = (self.plain, self.tls);
        wait_for(
            Duration::from_secs(10),
            || format!("mosquitto did not listen on {plain} and {tls}:\n{}", self.log()),
            || (TcpStream::connect(("127.0.0.1", plain)).is_ok() && TcpStream::connect(("127.0.0.1", tls)).is_ok()).then_some(()),
        );
    }

    /// SIGKILL: the broker dies without a word to its clients.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("mosquitto.stderr"), read("mosquitto.log"))
    }

    fn auth(&self) -> Vec<String> {
        ["-h", "127.0.0.1", "-p", &self.plain.to_string(), "-u", WATCHER.0, "-P", WATCHER.1].map(String::from).to_vec()
    }

    /// `mosquitto_pub` with `args`, as the watcher.
    fn publish(&self, args: &[&str]) {
        run_checked(Command::new("mosquitto_pub").args(self.auth()).args(args));
    }

    /// The retained message of `topic`, if any.
    fn retained(&self, topic: &str) -> Option<Vec<u8>> {
        let out = Command::new("mosquitto_sub")
            .args(self.auth())
            .args(["-t", topic, "--retained-only", "-C", "1", "-W", "1", "-N"])
            .output()
            .unwrap();
        (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
    }

    /// The retained status as JSON, if any.
    fn status(&self) -> Option<Value> {
        self.retained(&format!("maskd/{DEVICE}/status")).and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `mosquitto_sub` in the background, its messages collected as
/// `topic [correlation data] payload` lines.
struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    /// Subscribes to `topics` with MQTT 5 and `extra` options; returns once the broker acknowledged.
    fn start(broker: &Broker, topics: &[&str], extra: &[&str]) -> Subscriber {
        // Line-buffered: the SUBACK and each message show as they come, not when the pipe's buffer fills.
        let mut command = Command::new("stdbuf");
        command
            .args(["-oL", "mosquitto_sub"])
            .args(broker.auth())
            .args(["-V", "mqttv5", "-d", "-F", "MSG> %t [%D] %p"])
            .args(extra);
        for topic in topics {
            command.args(["-t", topic]);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("starting mosquitto_sub");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let subscriber = Subscriber { child, lines };
        wait_for(
            Duration::from_secs(10),
            || "mosquitto_sub got no SUBACK".into(),
            || subscriber.lines.lock().unwrap().iter().any(|l| l.contains("received SUBACK")).then_some(()),
        );
        subscriber
    }

    /// Messages so far on `topic`: (correlation data, payload).
    fn messages(&self, topic: &str) -> Vec<(String, String)> {
        let prefix = format!("MSG> {topic} [");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| rest.split_once("] ").map(|(c, p)| (c.to_string(), p.to_string())))
            .collect()
    }

    /// Waits for the `n`th message on `topic` (counting from 1).
    fn wait_messages(&self, topic: &str, n: usize, within: Duration) -> Vec<(String, String)> {
        wait_for(
            within,
            || format!("fewer than {n} messages on {topic}: {:#?}", self.lines.lock().unwrap()),
            || {
                let messages = self.messages(topic);
                (messages.len() >= n).then_some(messages)
            },
        )
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon, killed if a test fails before stopping it; its systemd
/// status lines arrive on `notify`.
struct Daemon {
    child: Child,
    config: PathBuf,
    notify: UnixDatagram,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let socket = config.with_extension("notify");
        let _ = std::fs::remove_file(&socket);
        let notify = UnixDatagram::bind(&socket).unwrap();
        notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_maskd"))
            .args(["run", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", &socket)
            .stderr(Stdio::from(std::fs::File::create(config.with_extension("log")).unwrap()))
            .spawn()
            .expect("starting maskd run");
        let daemon = Daemon { child, config: config.to_path_buf(), notify };
        let tty = config.parent().unwrap().join("tty");
        wait_for(Duration::from_secs(30), || format!("no {}\n{}", tty.display(), daemon.log()), || tty.exists().then_some(()));
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_extension("log")).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        assert!(Command::new("kill").args(["-s", signal, &self.child.id().to_string()]).status().unwrap().success());
    }

    /// Waits for a systemd status line containing `text`.
    fn wait_notified(&self, text: &str, within: Duration) -> String {
        let mut seen = Vec::new();
        let until = Instant::now() + within;
        let mut buffer = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = self.notify.recv(&mut buffer) {
                let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                if message.contains(text) {
                    return message;
                }
                seen.push(message);
            }
        }
        panic!("no systemd status with {text:?}; got {seen:#?}\n{}", self.log());
    }

    /// board/maskd_client.py's answers to one prompt per point, in order.
    fn serial_prompts(&self, points: &[String]) -> Vec<Value> {
        let tty = self.config.parent().unwrap().join("tty");
        let out = run_checked(
            Command::new(common::client_python())
                .arg(repo().join("tests/e2e/mqtt_e2e.py"))
                .args(["serial", "--port"])
                .arg(&tty)
                .args(points),
        );
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's config: board/demo.toml's shape (the sample photo as a
/// camera, the serial line on a pty) plus an `[mqtt]` block.
fn write_config(dir: &Path, queue_limit: usize, mqtt: &str) -> PathBuf {
    let text = format!(
        r#"
[model]
dir = "{model}"
precision = "int8"
threads = 1

[source]
kind = "files"
paths = ["frames"]
loop = false
fps = 1.0

[pipeline]
embeddings_kept = 4
queue_capacity = 4

[serial]
device = "pty"
pty_link = "tty"
heartbeat_ms = 1000

[log]
level = "info"

[mqtt]
device_id = "{DEVICE}"
username = "{USER}"
keep_alive_s = 5
queue_limit = {queue_limit}
status_every_s = 1
backoff_min_ms = 100
backoff_max_ms = 500
{mqtt}
"#,
        model = model_dir().display()
    );
    let path = dir.join("maskd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The mask a reply's COCO RLE holds.
fn rle_mask(mask: &Value) -> maskd::model::Mask {
    let segmentation = &mask["segmentation"];
    let size = [segmentation["size"][0].as_u64().unwrap() as u32, segmentation["size"][1].as_u64().unwrap() as u32];
    maskd::model::Rle::from_coco_string(size, segmentation["counts"].as_str().unwrap()).unwrap().to_mask().unwrap()
}

/// The serial client's mask (`segment --rle --ascii`): the SegmentResult,
/// then the mask's rows from its header's corner.
fn serial_mask(output: &str, width: u32, height: u32) -> (Value, maskd::model::Mask) {
    let mut lines = output.lines();
    let result = json(lines.next().unwrap());
    let header = &result["mask"];
    let (x0, y0) = (header["x0"].as_u64().unwrap() as u32, header["y0"].as_u64().unwrap() as u32);
    let rows: Vec<Vec<bool>> = lines.map(|l| l.chars().map(|c| c == '#').collect()).collect();
    let mask = maskd::model::Mask::from_fn(width, height, |x, y| {
        x >= x0 && y >= y0 && rows.get((y - y0) as usize).and_then(|r| r.get((x - x0) as usize)).copied().unwrap_or(false)
    });
    (result, mask)
}

#[test]
fn a_board_publishes_takes_prompts_and_survives_its_broker() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let dir = scratch("board");
    let mut broker = Broker::start(&dir);
    let status_topic = format!("maskd/{DEVICE}/status");
    let answers_topic = format!("maskd/{DEVICE}/answers");
    let prompt_topic = format!("maskd/{DEVICE}/prompt");
    let reply_topic = format!("maskd/{DEVICE}/prompt/reply");

    // A wrong password: a clear error in the log and the service status, and the line still answers.
    let plain_url = format!("url = \"mqtt://127.0.0.1:{}\"", broker.plain);
    let config = write_config(&dir, QUEUE_LIMIT, &format!("{plain_url}\npassword = \"wrong\"\n"));
    let daemon = Daemon::start(&config);
    // Mosquitto refuses a wrong password as "not authorized" (MQTT 5 reason 0x87).
    let refused = daemon.wait_notified("user name or password", Duration::from_secs(60));
    assert!(refused.contains("mqtt.password"), "{refused}");
    wait_for(
        Duration::from_secs(10),
        || daemon.log(),
        || daemon.log().contains("refused the connection: not authorized: a wrong user name or password").then_some(()),
    );
    assert_eq!(daemon.serial_prompts(&["255,180".into()]).len(), 1, "the line answers");
    assert!(broker.status().is_none(), "no status from a refused board");
    println!("wrong password: refused and still serving at {:.1} s", started.elapsed().as_secs_f64());

    // The right password, over TLS with the test CA; SIGHUP restarts with it.
    // Everything snapshots too (a 2x2 grid, once: the frame does not change).
    let objects_topic = format!("maskd/{DEVICE}/objects");
    let objects = Subscriber::start(&broker, &[&objects_topic], &[]);
    let tls_block = format!(
        "url = \"mqtts://localhost:{}\"\nca_file = \"ca.pem\"\npassword = \"{PASSWORD}\"\n\
         [mqtt.publish]\nanswer_masks = true\nsnapshot_every_s = 1\nhome_assistant = true\n\
         [everything]\npoints_per_side = 2\n[everything.snapshots]\nevery_s = 1\ndir = \"snapshots\"\n",
        broker.tls
    );
    write_config(&dir, QUEUE_LIMIT, &tls_block);
    daemon.signal("HUP");
    let online = wait_for(
        Duration::from_secs(60),
        || format!("no online status\n{}", daemon.log()),
        || broker.status().filter(|s| s["state"] == "online"),
    );
    assert_eq!(online["schema"], 1);
    assert_eq!(online["device_id"], DEVICE);
    assert_eq!(online["mqtt"]["broker"], format!("mqtts://localhost:{}", broker.tls));
    assert_eq!(online["model"], "mobile_sam");
    daemon.wait_notified("mqtt: connected to mqtts://", Duration::from_secs(10));
    let discovery = Command::new("mosquitto_sub")
        .args(broker.auth())
        .args(["-t", "homeassistant/#", "--retained-only", "-W", "2", "-v"])
        .output()
        .unwrap();
    let discovery = String::from_utf8_lossy(&discovery.stdout);
    let fps = discovery.lines().find(|l| l.starts_with("homeassistant/sensor/maskd_board-1/fps/config ")).expect(&discovery);
    let fps = json(fps.split_once(' ').unwrap().1);
    assert_eq!(
        (fps["state_topic"].as_str(), fps["availability_topic"].as_str()),
        (Some(status_topic.as_str()), Some(status_topic.as_str()))
    );
    // The snapshot's objects: the records of its JSON file.
    let (_, found) = objects.wait_messages(&objects_topic, 1, Duration::from_secs(60)).remove(0);
    let found = json(&found);
    // The objects go out when the job ends; the snapshot thread writes its
    // files after that, so the file may still be on its way.
    let file = wait_for(Duration::from_secs(10), || "no snapshot JSON file 10 s after the objects were published".into(), || {
        std::fs::read_dir(dir.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
    });
    let records = json(&std::fs::read_to_string(file).unwrap());
    assert_eq!((found["schema"].as_u64(), found["prompts"].as_u64()), (Some(1), Some(4)), "{found}");
    assert!(!records.as_array().unwrap().is_empty());
    assert_eq!(found["objects"], records, "the objects topic carries the snapshot's SAM records");
    drop(objects);
    println!("TLS, retained online status, discovery, objects at {:.1} s", started.elapsed().as_secs_f64());

    // Watchers: one for replies (its own topic for MQTT 5 response topics, and
    // the default reply topic), and a persistent session for answers.
    let replies = Subscriber::start(&broker, &["test/replies", &reply_topic], &[]);
    // MQTT 3.1.1: there, -c keeps the session (and queues for it) while the watcher is away.
    let watcher_args = ["-V", "mqttv311", "-c", "-i", "answers-watcher", "-q", "1"];
    let answers = Subscriber::start(&broker, &[&answers_topic], &watcher_args);

    // The same point over the line and over MQTT, on the same frame: the same mask.
    let (width, height) = (451, 300);
    let tty = dir.join("tty");
    let serial = run_checked(
        Command::new(common::client_python())
            .arg(repo().join("board/maskd_client.py"))
            .arg("--port")
            .arg(&tty)
            .args(["segment", "255,180", "--rle", "--ascii"]),
    );
    let (serial_result, serial_mask) = serial_mask(&serial, width, height);
    let frame = serial_result["frame_id"].as_u64().unwrap();
    let prompt = format!(r#"{{"schema":1,"id":"same-1","points":[[255,180]],"frame":{frame}}}"#);
    broker.publish(&[
        "-V",
        "mqttv5",
        "-t",
        &prompt_topic,
        "-q",
        "1",
        "-D",
        "publish",
        "response-topic",
        "test/replies",
        "-D",
        "publish",
        "correlation-data",
        "ask-1",
        "-m",
        &prompt,
    ]);
    let (correlation, reply) = replies.wait_messages("test/replies", 1, Duration::from_secs(30)).remove(0);
    let reply = json(&reply);
    assert_eq!(
        (correlation.as_str(), reply["id"].as_str(), reply["status"].as_str()),
        ("ask-1", Some("same-1"), Some("ok")),
        "{reply}"
    );
    assert_eq!(reply["frame_id"].as_u64(), Some(frame));
    assert_eq!(reply["mask"]["area"], serial_result["area"]);
    assert_eq!(reply["mask"]["predicted_iou"].as_f64().unwrap() as f32, serial_result["predicted_iou"].as_f64().unwrap() as f32);
    let mqtt_mask = rle_mask(&reply["mask"]);
    assert_eq!(mqtt_mask.area(), serial_mask.area());
    assert_eq!(mqtt_mask.iou(&serial_mask), 1.0, "the same mask over MQTT and serial");

    // A prompt without MQTT 5 properties (an MQTT 3.1.1 client) is answered on
    // the reply topic; a duplicate id gets the first reply again, decoded once.
    let v311 = r#"{"id":"old-client","points":[[120,100]],"mask":"none"}"#;
    broker.publish(&["-V", "mqttv311", "-t", &prompt_topic, "-q", "1", "-m", v311]);
    broker.publish(&["-V", "mqttv311", "-t", &prompt_topic, "-q", "1", "-m", v311]);
    let old = replies.wait_messages(&reply_topic, 2, Duration::from_secs(30));
    assert_eq!(old[0].1, old[1].1, "a duplicate gets the same reply");
    assert_eq!(json(&old[0].1)["status"], "ok");
    assert!(json(&old[0].1)["mask"].get("segmentation").is_none(), "mask none: no RLE");

    // Malformed and invalid prompts: replies that name what is wrong; the pipeline carries on.
    for (payload, code, words) in [
        ("segment 255,180", "malformed", "not JSON"),
        (r#"{"id":"bad-1","points":[[1]]}"#, "malformed", "points[0]"),
        (r#"{"id":"bad-2","pints":[[1,2]]}"#, "malformed", "unknown field \"pints\""),
        (r#"{"id":"bad-3","points":[[9999,5]]}"#, "invalid_prompt", "outside the 451x300 image"),
        (r#"{"id":"bad-4","points":[[10,10]],"frame":424242}"#, "no_frame", "frame 424242"),
    ] {
        let before = replies.messages(&reply_topic).len();
        broker.publish(&["-t", &prompt_topic, "-q", "1", "-m", payload]);
        let (_, reply) = replies.wait_messages(&reply_topic, before + 1, Duration::from_secs(30)).pop().unwrap();
        let reply = json(&reply);
        assert_eq!(reply["status"], "error", "{payload}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{payload}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains(words), "{payload}: {reply}");
    }
    assert_eq!(daemon.serial_prompts(&["200,150".into()]).len(), 1, "the line still answers");

    // Every answer, whoever asked, is on the answers topic (with its RLE here).
    let all = answers.wait_messages(&answers_topic, 4, Duration::from_secs(30));
    let asked: Vec<Vec<f64>> = all
        .iter()
        .map(|(_, p)| json(p)["prompt"]["points"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
        .collect();
    assert_eq!(
        asked,
        [vec![255.0, 180.0, 1.0], vec![255.0, 180.0, 1.0], vec![120.0, 100.0, 1.0], vec![200.0, 150.0, 1.0]],
        "one answer per decoded prompt"
    );
    assert_eq!(rle_mask(&json(&all[0].1)["mask"]).iou(&serial_mask), 1.0);

    // The snapshot: a JPEG of the newest answer, retained.
    let jpeg = broker.retained(&format!("maskd/{DEVICE}/snapshot")).expect("a retained snapshot");
    assert_eq!(maskd::picture::decode_rgb(&jpeg).unwrap().dimensions(), (width, height));
    println!("prompts, replies, answers, snapshot at {:.1} s", started.elapsed().as_secs_f64());

    // Broker killed: the line keeps answering; queued answers arrive after the
    // restart, none lost up to the queue limit.
    drop(answers);
    std::thread::sleep(Duration::from_millis(2500)); // the watcher's session is saved (autosave every second)
    let outage = |broker: &mut Broker, base: usize, count: usize| -> Vec<String> {
        broker.kill();
        let points: Vec<String> = (0..count).map(|i| format!("{},{}", 20 + 10 * (base + i), 60)).collect();
        let answered = daemon.serial_prompts(&points);
        assert_eq!(answered.len(), count, "every serial prompt answered with the broker down");
        wait_for(Duration::from_secs(10), || daemon.log(), || daemon.log().contains("cannot reach the broker").then_some(()));
        broker.restart();
        points
    };
    let reconnects = |s: &Value| s["mqtt"]["reconnects"].as_u64().unwrap_or(0);
    let within = QUEUE_LIMIT - 2; // the queue also holds a status and a snapshot
    let points = outage(&mut broker, 0, within);
    let back = wait_for(
        Duration::from_secs(30),
        || format!("no reconnect\n{}", daemon.log()),
        || broker.status().filter(|s| s["state"] == "online" && reconnects(s) >= 1 && s["mqtt"]["queued"] == 0),
    );
    assert_eq!(back["mqtt"]["dropped"]["answers"], 0, "{back}");
    let answers = Subscriber::start(&broker, &[&answers_topic], &watcher_args);
    let got = answers.wait_messages(&answers_topic, within, Duration::from_secs(30));
    let got_points: Vec<String> = got
        .iter()
        .map(|(_, p)| {
            let point = &json(p)["prompt"]["points"][0];
            format!("{},{}", point[0].as_f64().unwrap(), point[1].as_f64().unwrap())
        })
        .collect();
    assert_eq!(got_points, points, "every answer from the outage, in order");
    drop(answers);
    println!("outage within the limit: {within} answers delivered after the restart at {:.1} s", started.elapsed().as_secs_f64());

    // Beyond the limit: the oldest answers are dropped, counted in the status and logged.
    std::thread::sleep(Duration::from_millis(2500));
    let points = outage(&mut broker, within, QUEUE_LIMIT + BEYOND);
    let back = wait_for(
        Duration::from_secs(30),
        || format!("no second reconnect\n{}", daemon.log()),
        || broker.status().filter(|s| reconnects(s) >= 2 && s["mqtt"]["queued"] == 0),
    );
    assert_eq!(back["mqtt"]["dropped"]["answers"], BEYOND, "{back}");
    assert!(daemon.log().contains("dropping Answers messages"), "{}", daemon.log());
    let answers = Subscriber::start(&broker, &[&answers_topic], &watcher_args);
    let got = answers.wait_messages(&answers_topic, QUEUE_LIMIT, Duration::from_secs(30));
    let got_points: Vec<String> = got
        .iter()
        .map(|(_, p)| {
            let point = &json(p)["prompt"]["points"][0];
            format!("{},{}", point[0].as_f64().unwrap(), point[1].as_f64().unwrap())
        })
        .collect();
    assert_eq!(got_points, points[BEYOND..], "the newest {QUEUE_LIMIT} answers kept");
    println!("outage beyond the limit: {BEYOND} answers dropped and counted at {:.1} s", started.elapsed().as_secs_f64());

    // SIGKILL: the broker publishes the Last Will, offline.
    let mut daemon = daemon;
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let offline =
        wait_for(Duration::from_secs(20), || "no Last Will".into(), || broker.status().filter(|s| s["state"] == "offline"));
    assert_eq!(offline, serde_json::json!({"schema": 1, "state": "offline", "device_id": DEVICE, "reason": "connection lost"}));
    println!("Last Will after SIGKILL at {:.1} s", started.elapsed().as_secs_f64());
    drop(broker);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_daemon_that_stops_says_offline_itself() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("stop");
    let broker = Broker::start(&dir);
    let config =
        write_config(&dir, QUEUE_LIMIT, &format!("url = \"mqtt://127.0.0.1:{}\"\npassword = \"{PASSWORD}\"\n", broker.plain));
    let mut daemon = Daemon::start(&config);
    wait_for(Duration::from_secs(60), || daemon.log(), || broker.status().filter(|s| s["state"] == "online"));
    daemon.signal("TERM");
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "{status}\n{}", daemon.log());
    let offline = broker.status().unwrap();
    assert_eq!((offline["state"].as_str(), offline["reason"].as_str()), (Some("offline"), Some("stopped")), "{offline}");
    drop(broker);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The Python with paho-mqtt and pyserial for tests/e2e/mqtt_e2e.py load:
/// `$MASKD_MQTT_PYTHON`, else a venv in `${MASKD_CACHE:-~/.cache/maskd}/venv-mqtt`,
/// made here when missing.
fn mqtt_python() -> PathBuf {
    if let Some(python) = std::env::var_os("MASKD_MQTT_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("MASKD_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME or MASKD_CACHE must be set")).join(".cache/maskd")
    });
    let venv = cache.join("venv-mqtt");
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        python.exists() && Command::new(python).args(["-c", "import paho.mqtt, serial"]).status().is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        run_checked(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run_checked(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(repo().join("tests/e2e/requirements-mqtt.txt")),
        );
        assert!(ready(&python), "paho-mqtt or pyserial missing from {}", venv.display());
    }
    python
}

/// Figures, not a timed test: prompt round trips over MQTT and serial, and
/// messages lost (none below the queue limit), with stand-ins for 7 more
/// boards publishing at a daemon's rates.
#[test]
fn load_one_daemon_and_seven_stand_in_boards() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let dir = scratch("load");
    let broker = Broker::start(&dir);
    let mqtt = format!(
        "url = \"mqtt://127.0.0.1:{}\"\npassword = \"{PASSWORD}\"\n[mqtt.publish]\nanswer_masks = true\nsnapshot_every_s = 1\n",
        broker.plain
    );
    // The default queue limit: no outage here, nothing may be lost.
    let config = write_config(&dir, 256, &mqtt);
    let daemon = Daemon::start(&config);
    wait_for(Duration::from_secs(60), || daemon.log(), || broker.status().filter(|s| s["state"] == "online"));
    // A real answer (with its RLE), as the stand-ins' answers.
    let answers_topic = format!("maskd/{DEVICE}/answers");
    let answers = Subscriber::start(&broker, &[&answers_topic], &[]);
    let prompt = r#"{"points":[[255,180]]}"#;
    let (_, answer) = wait_for(
        Duration::from_secs(60),
        || daemon.log(),
        || {
            broker.publish(&["-t", &format!("maskd/{DEVICE}/prompt"), "-q", "1", "-m", prompt]);
            std::thread::sleep(Duration::from_millis(500));
            answers.messages(&answers_topic).pop()
        },
    );
    drop(answers);
    let answer_file = dir.join("answer.json");
    std::fs::write(&answer_file, &answer).unwrap();
    let mut load = Command::new(mqtt_python())
        .arg(repo().join("tests/e2e/mqtt_e2e.py"))
        .args(["load", "--port"])
        .arg(dir.join("tty"))
        .args([
            "--broker",
            &format!("127.0.0.1:{}", broker.plain),
            "--user",
            WATCHER.0,
            "--password",
            WATCHER.1,
            "--device",
            DEVICE,
        ])
        .arg("--answer")
        .arg(&answer_file)
        .args(["--prompts", "100", "--boards", "7"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    load.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = load.wait().unwrap();
    println!("{out}");
    assert!(status.success(), "the load run failed: {out}\n{}", daemon.log());
    let summary = json(out.lines().last().unwrap());
    assert_eq!(summary["daemon_answers"], summary["expected_answers"], "answers lost below the queue limit");
    assert_eq!(summary["boards_lost"], 0, "stand-in messages lost");
    let status = broker.status().unwrap();
    assert_eq!(status["mqtt"]["dropped"]["answers"], 0, "{status}");
    println!("load test wall time {:.1} s", started.elapsed().as_secs_f64());
    drop(daemon);
    drop(broker);
    std::fs::remove_dir_all(dir).unwrap();
}
