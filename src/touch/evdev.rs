//! A Linux touchscreen (/dev/input/eventN) as a [`TouchSource`]: single-touch
//! (ABS_X/ABS_Y + BTN_TOUCH) and multitouch type B (slots, tracking ids)
//! devices. Each lift of the first finger is a tap where it was last.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use ::evdev::raw_stream::RawDevice;
use ::evdev::{AbsInfo, AbsoluteAxisCode, EventType, KeyCode, SynchronizationCode};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use super::{Touch, TouchError, TouchSource};
use crate::model::Size;

/// Contacts beyond this many slots are ignored (only the first finger taps).
const MAX_SLOTS: usize = 16;

/// The `[touch]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouchSettings {
    /// The event device; a /dev/input/by-path/ or by-id/ link survives renumbering.
    pub device: PathBuf,
    /// The panel's X axis runs along the display's height (a panel mounted rotated by 90°).
    #[serde(default)]
    pub swap_xy: bool,
    /// Mirror horizontally, after any swap.
    #[serde(default)]
    pub invert_x: bool,
    /// Mirror vertically, after any swap.
    #[serde(default)]
    pub invert_y: bool,
}

/// One axis's raw range, from the device's absinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisRange {
    pub min: i32,
    pub max: i32,
}

impl AxisRange {
    /// Where `value` lies in the range, 0 at `min` to 1 at `max`, clamped.
    fn fraction(self, value: i32) -> f32 {
        let span = (i64::from(self.max) - i64::from(self.min)).max(1) as f32;
        ((i64::from(value) - i64::from(self.min)) as f32 / span).clamp(0.0, 1.0)
    }
}

/// Raw panel coordinates to display pixels: panel edges to the centres of the
/// display's edge pixels, with the settings' swap and mirrors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub x: AxisRange,
    pub y: AxisRange,
    pub display: Size,
    pub swap_xy: bool,
    pub invert_x: bool,
    pub invert_y: bool,
}

impl Calibration {
    pub fn to_display(&self, raw_x: i32, raw_y: i32) -> Touch {
        let (mut u, mut v) = (self.x.fraction(raw_x), self.y.fraction(raw_y));
        if self.swap_xy {
            (u, v) = (v, u);
        }
        if self.invert_x {
            u = 1.0 - u;
        }
        if self.invert_y {
            v = 1.0 - v;
        }
        let last = |side: u32| side.saturating_sub(1) as f32;
        Touch {
            x: u * last(self.display.width),
            y: v * last(self.display.height),
        }
    }
}

/// How the device reports contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// ABS_X/ABS_Y and BTN_TOUCH.
    SingleTouch,
    /// Multitouch type B: ABS_MT_SLOT, ABS_MT_TRACKING_ID, ABS_MT_POSITION_X/Y.
    MultiTouch,
}

/// The event state machine: fed raw (type, code, value) events, it returns the
/// raw position of each completed tap at the SYN_REPORT that ends it.
///
/// Positions persist across contacts because the kernel drops an axis event
/// that repeats the axis's last value: a second tap on the same spot carries no
/// position at all.
#[derive(Debug, Clone)]
pub struct TapTracker {
    protocol: Protocol,
    /// Single-touch: the position; multitouch: one per slot.
    positions: Vec<(i32, i32)>,
    slot: usize,
    /// Multitouch: the slot of the finger that came down first, while it is down.
    primary: Option<usize>,
    /// Multitouch: the slot whose first finger lifted in this report.
    released: Option<usize>,
    /// Single-touch: BTN_TOUCH as of the last report and as pending in this one.
    touching: bool,
    pending_touching: bool,
    /// Events are being dropped until the next SYN_REPORT (after SYN_DROPPED).
    resyncing: bool,
}

impl TapTracker {
    /// A tracker for `protocol`, starting from the device's current `position`
    /// (and, for multitouch, its current `slot`).
    pub fn new(protocol: Protocol, position: (i32, i32), slot: usize) -> TapTracker {
        let slots = match protocol {
            Protocol::SingleTouch => 1,
            Protocol::MultiTouch => MAX_SLOTS,
        };
        TapTracker {
            protocol,
            positions: vec![position; slots],
            slot: if slot < slots { slot } else { 0 },
            primary: None,
            released: None,
            touching: false,
            pending_touching: false,
            resyncing: false,
        }
    }

    /// Takes one event; returns a tap's raw position when this event completes one.
    pub fn push(&mut self, kind: u16, code: u16, value: i32) -> Option<(i32, i32)> {
        if kind == EventType::SYNCHRONIZATION.0 {
            return self.synchronize(code);
        }
        if self.resyncing {
            return None;
        }
        match (self.protocol, kind) {
            (Protocol::SingleTouch, k) if k == EventType::ABSOLUTE.0 => self.position(
                code,
                value,
                AbsoluteAxisCode::ABS_X,
                AbsoluteAxisCode::ABS_Y,
                0,
            ),
            (Protocol::SingleTouch, k) if k == EventType::KEY.0 && code == KeyCode::BTN_TOUCH.0 => {
                self.pending_touching = value != 0;
            }
            (Protocol::MultiTouch, k) if k == EventType::ABSOLUTE.0 => self.multitouch(code, value),
            _ => {}
        }
        None
    }

    fn synchronize(&mut self, code: u16) -> Option<(i32, i32)> {
        if code == SynchronizationCode::SYN_DROPPED.0 {
            // The state is unknown until the next report: lose this tap rather than invent one.
            self.resyncing = true;
            self.primary = None;
            self.released = None;
            self.touching = false;
            self.pending_touching = false;
            return None;
        }
        if code != SynchronizationCode::SYN_REPORT.0 {
            return None;
        }
        if self.resyncing {
            self.resyncing = false;
            return None;
        }
        match self.protocol {
            Protocol::SingleTouch => {
                let released = self.touching && !self.pending_touching;
                self.touching = self.pending_touching;
                released.then_some(self.positions[0])
            }
            Protocol::MultiTouch => self.released.take().map(|slot| self.positions[slot]),
        }
    }

    fn position(
        &mut self,
        code: u16,
        value: i32,
        x: AbsoluteAxisCode,
        y: AbsoluteAxisCode,
        slot: usize,
    ) {
        if code == x.0 {
            self.positions[slot].0 = value;
        } else if code == y.0 {
            self.positions[slot].1 = value;
        }
    }

    fn multitouch(&mut self, code: u16, value: i32) {
        if code == AbsoluteAxisCode::ABS_MT_SLOT.0 {
            self.slot = usize::try_from(value).unwrap_or(MAX_SLOTS);
            return;
        }
        if self.slot >= MAX_SLOTS {
            return;
        }
        if code == AbsoluteAxisCode::ABS_MT_TRACKING_ID.0 {
            match (value >= 0, self.primary) {
                (true, None) => self.primary = Some(self.slot),
                (false, Some(primary)) if primary == self.slot => {
                    self.primary = None;
                    self.released = Some(primary);
                }
                _ => {}
            }
        } else {
            let slot = self.slot;
            self.position(
                code,
                value,
                AbsoluteAxisCode::ABS_MT_POSITION_X,
                AbsoluteAxisCode::ABS_MT_POSITION_Y,
                slot,
            );
        }
    }
}

/// A touchscreen event device.
pub struct EvdevTouch {
    path: PathBuf,
    device: RawDevice,
    tracker: TapTracker,
    calibration: Calibration,
    taps: VecDeque<Touch>,
}

impl EvdevTouch {
    /// Opens `settings.device` and maps its axes onto a display of `display` pixels.
    ///
    /// # Errors
    /// The device is missing, not accessible, or reports no absolute position.
    pub fn open(settings: &TouchSettings, display: Size) -> Result<EvdevTouch> {
        let path = &settings.device;
        let device = RawDevice::open(path).map_err(|e| explain_open(path, &e))?;
        let name = device.name().unwrap_or("unnamed").to_owned();
        let axes: Vec<(AbsoluteAxisCode, AbsInfo)> = device
            .get_absinfo()
            .with_context(|| format!("reading the axes of {}", path.display()))?
            .collect();
        let axis = |code: AbsoluteAxisCode| axes.iter().find(|(c, _)| *c == code).map(|(_, i)| *i);
        let (protocol, x, y) = match (
            axis(AbsoluteAxisCode::ABS_MT_POSITION_X),
            axis(AbsoluteAxisCode::ABS_MT_POSITION_Y),
            axis(AbsoluteAxisCode::ABS_MT_SLOT),
        ) {
            (Some(x), Some(y), Some(_)) => (Protocol::MultiTouch, x, y),
            _ => match (axis(AbsoluteAxisCode::ABS_X), axis(AbsoluteAxisCode::ABS_Y)) {
                (Some(x), Some(y)) => (Protocol::SingleTouch, x, y),
                _ => bail!(
                    "{} ({name}) reports no absolute position: not a touchscreen; check touch.device \
                     (evtest lists the input devices)",
                    path.display()
                ),
            },
        };
        let range = |info: AbsInfo, axis: &str| -> Result<AxisRange> {
            if info.minimum() >= info.maximum() {
                bail!(
                    "{} ({name}) has an empty {axis} range {}..{}",
                    path.display(),
                    info.minimum(),
                    info.maximum()
                );
            }
            Ok(AxisRange {
                min: info.minimum(),
                max: info.maximum(),
            })
        };
        let calibration = Calibration {
            x: range(x, "x")?,
            y: range(y, "y")?,
            display,
            swap_xy: settings.swap_xy,
            invert_x: settings.invert_x,
            invert_y: settings.invert_y,
        };
        let slot = axis(AbsoluteAxisCode::ABS_MT_SLOT)
            .map_or(0, |info| usize::try_from(info.value()).unwrap_or(0));
        log::info!(
            "touch {} ({name}): {protocol:?}, x {}..{}, y {}..{}",
            path.display(),
            calibration.x.min,
            calibration.x.max,
            calibration.y.min,
            calibration.y.max
        );
        Ok(EvdevTouch {
            path: path.clone(),
            device,
            tracker: TapTracker::new(protocol, (x.value(), y.value()), slot),
            calibration,
            taps: VecDeque::new(),
        })
    }
}

impl TouchSource for EvdevTouch {
    fn next_touch(&mut self) -> Result<Touch, TouchError> {
        loop {
            if let Some(tap) = self.taps.pop_front() {
                return Ok(tap);
            }
            let events = self.device.fetch_events().map_err(|error| {
                TouchError::Device(anyhow!("reading {}: {error}", self.path.display()))
            })?;
            for event in events {
                if let Some((x, y)) =
                    self.tracker
                        .push(event.event_type().0, event.code(), event.value())
                {
                    self.taps.push_back(self.calibration.to_display(x, y));
                }
            }
        }
    }
}

fn explain_open(path: &Path, error: &io::Error) -> anyhow::Error {
    let path = path.display();
    match error.kind() {
        io::ErrorKind::NotFound => anyhow!(
            "touch device {path} does not exist: check touch.device (ls -l /dev/input/by-path/; evtest lists the devices)"
        ),
        io::ErrorKind::PermissionDenied => anyhow!(
            "no permission to open touch device {path}: the daemon's user needs the group that owns it, usually `input` (usermod -aG input USER)"
        ),
        _ => anyhow!("cannot open touch device {path}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: u16 = EventType::SYNCHRONIZATION.0;
    const KEY: u16 = EventType::KEY.0;
    const ABS: u16 = EventType::ABSOLUTE.0;
    const REPORT: (u16, u16, i32) = (SYN, SynchronizationCode::SYN_REPORT.0, 0);

    fn abs(axis: AbsoluteAxisCode, value: i32) -> (u16, u16, i32) {
        (ABS, axis.0, value)
    }

    fn touch(value: i32) -> (u16, u16, i32) {
        (KEY, KeyCode::BTN_TOUCH.0, value)
    }

    fn taps(tracker: &mut TapTracker, events: &[(u16, u16, i32)]) -> Vec<(i32, i32)> {
        events
            .iter()
            .filter_map(|&(kind, code, value)| tracker.push(kind, code, value))
            .collect()
    }

    fn mt_down(slot: i32, id: i32, x: i32, y: i32) -> Vec<(u16, u16, i32)> {
        vec![
            abs(AbsoluteAxisCode::ABS_MT_SLOT, slot),
            abs(AbsoluteAxisCode::ABS_MT_TRACKING_ID, id),
            abs(AbsoluteAxisCode::ABS_MT_POSITION_X, x),
            abs(AbsoluteAxisCode::ABS_MT_POSITION_Y, y),
        ]
    }

    #[test]
    fn single_touch_tap_reports_on_release() {
        let mut tracker = TapTracker::new(Protocol::SingleTouch, (0, 0), 0);
        let down = [
            touch(1),
            abs(AbsoluteAxisCode::ABS_X, 100),
            abs(AbsoluteAxisCode::ABS_Y, 200),
            REPORT,
        ];
        assert_eq!(taps(&mut tracker, &down), []);
        assert_eq!(taps(&mut tracker, &[touch(0), REPORT]), [(100, 200)]);
        // The same spot again: the kernel sends no position, the last one holds.
        assert_eq!(
            taps(&mut tracker, &[touch(1), REPORT, touch(0), REPORT]),
            [(100, 200)]
        );
    }

    #[test]
    fn a_drag_reports_where_it_was_released() {
        let mut tracker = TapTracker::new(Protocol::SingleTouch, (0, 0), 0);
        let mut events = vec![
            touch(1),
            abs(AbsoluteAxisCode::ABS_X, 10),
            abs(AbsoluteAxisCode::ABS_Y, 10),
            REPORT,
        ];
        for step in 1..=5 {
            events.extend([abs(AbsoluteAxisCode::ABS_X, 10 + 50 * step), REPORT]);
        }
        events.extend([abs(AbsoluteAxisCode::ABS_Y, 90), touch(0), REPORT]);
        assert_eq!(taps(&mut tracker, &events), [(260, 90)]);
    }

    #[test]
    fn multitouch_tap_reports_the_first_finger_on_its_release() {
        let mut tracker = TapTracker::new(Protocol::MultiTouch, (0, 0), 0);
        let mut events = mt_down(0, 7, 300, 400);
        events.push(REPORT);
        // A second finger comes and goes: no tap, and it does not move the first.
        events.extend(mt_down(1, 8, 5, 5));
        events.extend([
            REPORT,
            abs(AbsoluteAxisCode::ABS_MT_TRACKING_ID, -1),
            REPORT,
        ]);
        assert_eq!(taps(&mut tracker, &events), []);
        let lift = [
            abs(AbsoluteAxisCode::ABS_MT_SLOT, 0),
            abs(AbsoluteAxisCode::ABS_MT_POSITION_X, 310),
            REPORT,
            abs(AbsoluteAxisCode::ABS_MT_TRACKING_ID, -1),
            REPORT,
        ];
        assert_eq!(taps(&mut tracker, &lift), [(310, 400)]);
    }

    #[test]
    fn multitouch_starts_in_the_devices_current_slot() {
        // The kernel sends ABS_MT_SLOT only when it changes, so the first
        // contact after opening may arrive in slot 2 with no slot event.
        let mut tracker = TapTracker::new(Protocol::MultiTouch, (0, 0), 2);
        let events = [
            abs(AbsoluteAxisCode::ABS_MT_TRACKING_ID, 1),
            abs(AbsoluteAxisCode::ABS_MT_POSITION_X, 40),
            abs(AbsoluteAxisCode::ABS_MT_POSITION_Y, 50),
            REPORT,
            abs(AbsoluteAxisCode::ABS_MT_TRACKING_ID, -1),
            REPORT,
        ];
        assert_eq!(taps(&mut tracker, &events), [(40, 50)]);
    }

    #[test]
    fn dropped_events_lose_the_tap_rather_than_invent_one() {
        let mut tracker = TapTracker::new(Protocol::SingleTouch, (0, 0), 0);
        let events = [
            touch(1),
            abs(AbsoluteAxisCode::ABS_X, 5),
            REPORT,
            (SYN, SynchronizationCode::SYN_DROPPED.0, 0),
            touch(0),
            REPORT,
            touch(0),
            REPORT,
        ];
        assert_eq!(taps(&mut tracker, &events), []);
        assert_eq!(
            taps(&mut tracker, &[touch(1), REPORT, touch(0), REPORT]),
            [(5, 0)]
        );
    }

    fn calibration(swap_xy: bool, invert_x: bool, invert_y: bool) -> Calibration {
        Calibration {
            x: AxisRange { min: 0, max: 4000 },
            y: AxisRange {
                min: 100,
                max: 2100,
            },
            display: Size::new(801, 481),
            swap_xy,
            invert_x,
            invert_y,
        }
    }

    #[test]
    fn raw_ranges_scale_to_display_pixels() {
        let plain = calibration(false, false, false);
        assert_eq!(plain.to_display(0, 100), Touch { x: 0.0, y: 0.0 });
        assert_eq!(plain.to_display(4000, 2100), Touch { x: 800.0, y: 480.0 });
        assert_eq!(plain.to_display(1000, 1600), Touch { x: 200.0, y: 360.0 });
        // Outside the advertised range: clamped to the screen.
        assert_eq!(plain.to_display(-50, 9000), Touch { x: 0.0, y: 480.0 });
    }

    #[test]
    fn swap_and_invert_map_rotated_panels() {
        // Raw (1000, 1600) is 1/4 along x, 3/4 along y.
        assert_eq!(
            calibration(false, true, false).to_display(1000, 1600),
            Touch { x: 600.0, y: 360.0 }
        );
        assert_eq!(
            calibration(false, false, true).to_display(1000, 1600),
            Touch { x: 200.0, y: 120.0 }
        );
        assert_eq!(
            calibration(true, false, false).to_display(1000, 1600),
            Touch { x: 600.0, y: 120.0 }
        );
        // Swap first, then mirror: a panel rotated by 90 degrees.
        assert_eq!(
            calibration(true, true, false).to_display(1000, 1600),
            Touch { x: 200.0, y: 120.0 }
        );
    }

    #[test]
    fn opening_a_missing_device_names_it_and_what_to_check() {
        let settings = TouchSettings {
            device: "/dev/input/event-maskd-absent".into(),
            swap_xy: false,
            invert_x: false,
            invert_y: false,
        };
        let error = EvdevTouch::open(&settings, Size::new(800, 480))
            .err()
            .expect("absent")
            .to_string();
        assert!(
            error.contains("/dev/input/event-maskd-absent does not exist"),
            "{error}"
        );
        assert!(error.contains("touch.device"), "{error}");
    }

    #[test]
    fn permission_problems_point_at_the_input_group() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let error = explain_open(Path::new("/dev/input/event3"), &denied).to_string();
        assert!(
            error.contains("/dev/input/event3") && error.contains("`input`"),
            "{error}"
        );
    }

    #[test]
    fn settings_need_a_device_and_reject_unknown_keys() {
        let settings: TouchSettings =
            toml::from_str("device = \"/dev/input/event1\"\nswap_xy = true").expect("parses");
        assert!(settings.swap_xy && !settings.invert_x && !settings.invert_y);
        assert!(toml::from_str::<TouchSettings>("swap_xy = true").is_err());
        let error = toml::from_str::<TouchSettings>("device = \"/dev/input/event1\"\nrotate = 90")
            .expect_err("typo");
        assert!(error.to_string().contains("rotate"), "{error}");
    }
}
