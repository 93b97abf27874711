//! Life under systemd: readiness and watchdog notifications, and logging
//! to the journal. Outside systemd every notification is a no-op.

use std::time::Duration;

use log::LevelFilter;
use sd_notify::NotifyState;

/// The service manager's view of the daemon.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// `WatchdogSec=` of the unit, when set.
    pub watchdog: Option<Duration>,
}

impl Service {
    pub fn detect() -> Service {
        Service { watchdog: sd_notify::watchdog_enabled() }
    }

    pub fn ready(&self, status: &str) {
        notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A new status line for `systemctl status`.
    pub fn status(&self, status: &str) {
        notify(&[NotifyState::Status(status)]);
    }

    /// Tells the watchdog the inference workers are alive.
    pub fn alive(&self) {
        notify(&[NotifyState::Watchdog]);
    }

    pub fn reloading(&self) {
        notify(&[NotifyState::Reloading, NotifyState::Status("reloading the configuration")]);
    }

    pub fn stopping(&self) {
        notify(&[NotifyState::Stopping, NotifyState::Status("answering the prompts in flight")]);
    }
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("notifying systemd: {e}");
    }
}

/// Logs to the journal when stderr is connected to it (a systemd service),
/// else to stderr. `level` applies to maskd's own messages; other crates
/// (tract's optimiser is chatty) log warnings only. `RUST_LOG` overrides both.
pub fn init_logging(level: LevelFilter) {
    let mut filter = env_filter::Builder::new();
    filter.filter_level(LevelFilter::Warn).filter_module("maskd", level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        filter.parse(&spec);
    }
    let filter = filter.build();
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(journal) = systemd_journal_logger::JournalLog::new() {
            log::set_max_level(filter.filter());
            if log::set_boxed_logger(Box::new(Filtered { filter, inner: journal })).is_ok() {
                return;
            }
        }
    }
    let _ = env_logger::Builder::new()
        .filter_level(LevelFilter::Warn)
        .filter_module("maskd", level)
        .parse_env(env_logger::Env::default())
        .format_timestamp_millis()
        .try_init();
}

/// The journal logger behind the same per-crate filter as stderr.
struct Filtered {
    filter: env_filter::Filter,
    inner: systemd_journal_logger::JournalLog,
}

impl log::Log for Filtered {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if self.filter.matches(record) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}
