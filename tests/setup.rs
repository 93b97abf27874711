//! The set-up a newcomer runs: the README's two commands, the CI entry point
//! that runs the second, and `setup.sh` installing only what is missing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The one-line `sh` blocks of the README's Quick start, in order.
fn quick_start_commands() -> Vec<String> {
    let readme = read("README.md");
    let start = readme.find("## Quick start").expect("a Quick start section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let mut commands = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").map(str::trim).collect();
            assert_eq!(block.len(), 1, "each Quick start command is one line a user pastes: {block:?}");
            commands.push(block[0].to_string());
        }
    }
    commands
}

#[test]
fn the_ci_runs_the_readme_test_command_step_by_step() {
    let commands = quick_start_commands();
    assert_eq!(commands.len(), 2, "the Quick start has the main job and the tests: {commands:?}");
    assert!(commands[0].starts_with("./setup.sh && "), "the first command installs what is missing: {}", commands[0]);
    assert!(commands[0].contains("cargo run --release -- segment"), "the first command runs the main job: {}", commands[0]);
    let steps: Vec<String> = read(".ci/run")
        .lines()
        .filter_map(|line| line.strip_prefix("stage "))
        .map(|rest| {
            // `stage "name" COMMAND...`
            let (_, command) = rest.trim_start_matches('"').split_once("\" ").expect("stage \"NAME\" COMMAND");
            command.to_string()
        })
        .collect();
    assert_eq!(steps.join(" && "), commands[1], ".ci/run's stages are not the README's test command");
}

/// A folder of stand-ins for system commands, put first on PATH; each
/// records its arguments in `calls.log` and then does what the test says.
struct Shims {
    dir: PathBuf,
}

impl Shims {
    fn new(test: &str) -> Shims {
        let dir = std::env::temp_dir().join(format!("maskd-setup-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Shims { dir }
    }

    fn add(&self, name: &str, body: &str) -> &Shims {
        let path = self.dir.join(name);
        let log = self.dir.join("calls.log");
        std::fs::write(&path, format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n", log.display())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    fn setup(&self, args: &[&str]) -> Output {
        let path = format!("{}:{}", self.dir.display(), std::env::var("PATH").unwrap_or_default());
        Command::new(repo().join("setup.sh")).args(args).env("PATH", path).output().expect("running setup.sh")
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("calls.log")).unwrap_or_default()
    }
}

impl Drop for Shims {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn with_everything_present_setup_installs_nothing() {
    // The README's test command ran `./setup.sh --tests` first: a second
    // run must find every package and never reach apt-get.
    let shims = Shims::new("present");
    shims.add("apt-get", "exit 1").add("sudo", "exit 1");
    let out = shims.setup(&["--tests"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("installing"), "{}", text(&out));
    assert!(!shims.calls().contains("apt-get"), "{}", shims.calls());
}

#[test]
fn a_missing_package_is_installed_through_sudo_with_a_message() {
    let shims = Shims::new("missing");
    // libclang-dev is missing; everything else is installed.
    shims
        .add("dpkg-query", r#"case "$*" in *libclang-dev*) exit 1 ;; *) printf 'install ok installed' ;; esac"#)
        .add("id", "echo 1000")
        .add("sudo", r#"exec "$@""#)
        .add("apt-get", "exit 0");
    let out = shims.setup(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("installing libclang-dev with sudo apt-get"), "{}", text(&out));
    let calls = shims.calls();
    assert!(calls.contains("sudo apt-get update"), "{calls}");
    assert!(calls.contains("apt-get install -y -qq --no-install-recommends libclang-dev\n"), "{calls}");
}

#[test]
fn without_sudo_setup_names_the_command_to_run_as_root() {
    let shims = Shims::new("nosudo");
    shims
        .add("dpkg-query", r#"case "$*" in *mosquitto*) exit 1 ;; *) printf 'install ok installed' ;; esac"#)
        .add("id", "echo 1000")
        .add("apt-get", "exit 1");
    // PATH holds the shims and only the tools setup.sh needs: no sudo.
    let bin = shims.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["bash", "python3", "grep"] {
        let found = which(tool).unwrap_or_else(|| panic!("{tool} is not on PATH"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let path = format!("{}:{}", shims.dir.display(), bin.display());
    let out = Command::new(bin.join("bash")).arg(repo().join("setup.sh")).arg("--tests").env("PATH", path).output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let text = text(&out);
    assert!(
        text.contains("run as root") && text.contains("apt-get install --no-install-recommends mosquitto mosquitto-clients"),
        "{text}"
    );
    assert!(!shims.calls().contains("apt-get"), "{}", shims.calls());
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(tool)).find(|p| p.is_file())
}

#[test]
fn an_unknown_argument_is_named() {
    let out = Command::new(repo().join("setup.sh")).arg("--test").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unknown argument: --test"), "{}", text(&out));
}
