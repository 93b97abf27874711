//! board/install.sh, run into temporary roots: a package staging directory
//! and an OS root with its own account files. The script is copied into a
//! bundle laid out as board/cross/build.sh lays it out, with stand-in board
//! profiles, service and model, so these tests check the script's own work.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SERVICE: &str = "[Service]\nExecStart=/usr/local/bin/maskd run --config /etc/maskd/maskd.toml\n";
const ALPHA: &str = "# alpha board\n";
const BETA: &str = "# beta board\n";

/// A bundle (binary, model, board/) and an empty install root, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("maskd-install-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let board = dir.join("bundle/board");
        fs::create_dir_all(&board).unwrap();
        let repo_board = Path::new(env!("CARGO_MANIFEST_DIR")).join("board");
        for file in ["install.sh", "99-maskd.rules"] {
            fs::copy(repo_board.join(file), board.join(file)).unwrap();
        }
        fs::write(board.join("maskd.service"), SERVICE).unwrap();
        fs::write(board.join("alpha.toml"), ALPHA).unwrap();
        fs::write(board.join("beta.toml"), BETA).unwrap();
        // Any ELF file will do outside a live install: this test binary.
        fs::copy(std::env::current_exe().unwrap(), dir.join("bundle/maskd")).unwrap();
        let model = dir.join("bundle/models/mobile_sam");
        fs::create_dir_all(&model).unwrap();
        fs::write(model.join("manifest.json"), "{}").unwrap();
        fs::write(model.join("encoder.onnx"), "weights v1").unwrap();
        fs::create_dir_all(dir.join("root")).unwrap();
        Scratch { dir }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Runs the bundle's install.sh with `--destdir root` and `args`.
    fn install(&self, args: &[&str]) -> Output {
        let script = self.bundle().join("board/install.sh");
        let mut command = if is_root() {
            Command::new("bash")
        } else {
            // useradd writes account files only as root: a user namespace
            // maps the caller to root for it, inside the temporary root only.
            let mut unshare = Command::new("unshare");
            unshare.args(["--user", "--map-root-user", "bash"]);
            unshare
        };
        command.arg(script).arg("--destdir").arg(self.root()).args(args).env_remove("DESTDIR").output().unwrap()
    }

    fn read(&self, path: &str) -> String {
        let path = self.root().join(path);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// Every file below the root with its content, for comparing two runs.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, files);
                } else {
                    files.insert(path.clone(), fs::read(&path).unwrap());
                }
            }
        }
        let mut files = BTreeMap::new();
        walk(&self.root(), &mut files);
        files
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "install.sh failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn failed_with(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "install.sh should have failed; stderr:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{stderr}");
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn staging_installs_every_file_and_declares_the_account() {
    let scratch = Scratch::new("stage");
    succeeded(&scratch.install(&["--board", "alpha"]));

    let binary = scratch.root().join("usr/local/bin/maskd");
    assert_eq!(fs::read(&binary).unwrap(), fs::read(scratch.bundle().join("maskd")).unwrap());
    assert_eq!(mode(&binary), 0o755);
    assert_eq!(scratch.read("usr/local/share/maskd/models/mobile_sam/encoder.onnx"), "weights v1");
    assert_eq!(scratch.read("usr/local/share/maskd/models/mobile_sam/manifest.json"), "{}");
    assert_eq!(scratch.read("usr/local/share/maskd/board/beta.toml"), BETA);
    assert_eq!(scratch.read("etc/maskd/maskd.toml"), ALPHA);
    assert_eq!(scratch.read("etc/systemd/system/maskd.service"), SERVICE);
    let rules = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("board/99-maskd.rules")).unwrap();
    assert_eq!(scratch.read("etc/udev/rules.d/99-maskd.rules"), rules);
    let sysusers = scratch.read("usr/lib/sysusers.d/maskd.conf");
    assert!(sysusers.starts_with("u maskd "), "{sysusers}");
    for group in ["video", "dialout", "input"] {
        assert!(sysusers.contains(&format!("\nm maskd {group}\n")), "{sysusers}");
    }
    assert!(!scratch.root().join("etc/passwd").exists(), "a staging root gets no account files");
}

#[test]
fn a_second_run_upgrades_the_program_and_keeps_edited_files() {
    let scratch = Scratch::new("upgrade");
    succeeded(&scratch.install(&["--board", "alpha"]));
    let config = scratch.root().join("etc/maskd/maskd.toml");
    let rules = scratch.root().join("etc/udev/rules.d/99-maskd.rules");
    fs::write(&config, "# edited on the board\n").unwrap();
    fs::write(&rules, "# edited ids\n").unwrap();
    fs::write(scratch.bundle().join("models/mobile_sam/encoder.onnx"), "weights v2").unwrap();
    fs::write(scratch.bundle().join("maskd"), b"\x7fELF new build").unwrap();

    let stdout = succeeded(&scratch.install(&["--board", "beta"]));
    assert!(stdout.contains("kept /etc/maskd/maskd.toml"), "{stdout}");
    assert!(stdout.contains("kept /etc/udev/rules.d/99-maskd.rules"), "{stdout}");
    assert_eq!(scratch.read("etc/maskd/maskd.toml"), "# edited on the board\n");
    assert_eq!(scratch.read("etc/udev/rules.d/99-maskd.rules"), "# edited ids\n");
    assert_eq!(scratch.read("usr/local/share/maskd/models/mobile_sam/encoder.onnx"), "weights v2");
    assert_eq!(fs::read(scratch.root().join("usr/local/bin/maskd")).unwrap(), b"\x7fELF new build");
    let models: Vec<_> = fs::read_dir(scratch.root().join("usr/local/share/maskd/models")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(models, ["mobile_sam"], "the copy's staging directory is gone");

    // Without --board, an existing configuration is enough; nothing changes.
    let before = scratch.snapshot();
    succeeded(&scratch.install(&[]));
    assert_eq!(scratch.snapshot(), before);
}

#[test]
fn an_os_root_gets_one_maskd_account_in_the_device_groups() {
    let scratch = Scratch::new("osroot");
    let etc = scratch.root().join("etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    // No input group: the script creates it.
    fs::write(etc.join("group"), "root:x:0:\nvideo:x:44:pi\ndialout:x:20:pi\n").unwrap();
    fs::write(etc.join("gshadow"), "root:*::\nvideo:!::pi\ndialout:!::pi\n").unwrap();

    succeeded(&scratch.install(&["--board", "alpha"]));
    let first = (scratch.read("etc/passwd"), scratch.read("etc/group"));
    succeeded(&scratch.install(&["--board", "alpha"]));
    assert_eq!((scratch.read("etc/passwd"), scratch.read("etc/group")), first, "a second run changes no account");

    let passwd = scratch.read("etc/passwd");
    let maskd: Vec<&str> = passwd.lines().filter(|l| l.starts_with("maskd:")).collect();
    assert_eq!(maskd.len(), 1, "{passwd}");
    assert!(maskd[0].ends_with(":/var/lib/maskd:/usr/sbin/nologin"), "{}", maskd[0]);
    let group = scratch.read("etc/group");
    for name in ["video", "dialout", "input"] {
        let line = group.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or_else(|| panic!("no group {name}:\n{group}"));
        let members: Vec<&str> = line.rsplit(':').next().unwrap().split(',').collect();
        assert_eq!(members.iter().filter(|m| **m == "maskd").count(), 1, "{line}");
    }
    assert!(group.contains("\nvideo:x:44:pi,maskd\n"), "existing members stay:\n{group}");
    assert!(!scratch.root().join("usr/lib/sysusers.d/maskd.conf").exists(), "the account exists: nothing to declare");
}

#[test]
fn bad_arguments_are_named() {
    let scratch = Scratch::new("errors");
    failed_with(&scratch.install(&["--board", "pi9"]), &["no profile 'pi9'", "alpha beta"]);
    failed_with(&scratch.install(&[]), &["choose a board profile with --board NAME"]);
    failed_with(&scratch.install(&["--board", "alpha", "--config", "x.toml"]), &["not both"]);
    failed_with(&scratch.install(&["--board", "alpha", "--models", "/nonexistent"]), &["/nonexistent", "models/export.sh"]);
    failed_with(&scratch.install(&["--board", "alpha", "--binary", "/nonexistent"]), &["/nonexistent", "board/cross/build.sh"]);
    let text = scratch.bundle().join("models/mobile_sam/manifest.json");
    failed_with(&scratch.install(&["--board", "alpha", "--binary", text.to_str().unwrap()]), &["is not an ELF executable"]);
    assert!(scratch.snapshot().is_empty(), "a rejected run installs nothing");
}
