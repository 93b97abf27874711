//! A one-slot mailbox where a new value replaces an unread one: the
//! hand-off between a producer that must never wait and a slower consumer.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Holds at most one value; [`Latest::put`] overwrites, [`Latest::take`] empties.
#[derive(Debug, Default)]
pub struct Latest<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    closed: bool,
    /// Bumped by every put, so that readers can tell new values from seen ones.
    version: u64,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot { value: None, closed: false, version: 0 }
    }
}

impl<T> Latest<T> {
    pub fn new() -> Latest<T> {
        Latest { slot: Mutex::new(Slot::default()), ready: Condvar::new() }
    }

    /// Stores `value`; returns true when it replaced one nobody took.
    pub fn put(&self, value: T) -> bool {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.version += 1;
        let replaced = slot.value.replace(value).is_some();
        self.ready.notify_all();
        replaced
    }

    /// Waits up to `timeout` for a value and takes it. `None` on timeout or
    /// once closed.
    pub fn take(&self, timeout: Duration) -> Option<T> {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.value.is_none() && !s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        if slot.closed {
            return None;
        }
        slot.value.take()
    }

    /// Wakes every waiter for good.
    pub fn close(&self) {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.ready.notify_all();
    }
}

impl<T: Clone> Latest<T> {
    /// Waits up to `timeout` for a value newer than version `seen` and
    /// returns a copy with its version, leaving it in place for other readers.
    pub fn peek_newer(&self, seen: u64, timeout: Duration) -> Option<(u64, T)> {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let (slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.version <= seen && !s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        if slot.closed || slot.version <= seen {
            return None;
        }
        slot.value.clone().map(|v| (slot.version, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_new_value_replaces_an_unread_one() {
        let latest = Latest::new();
        assert!(!latest.put(1));
        assert!(latest.put(2));
        assert_eq!(latest.take(Duration::ZERO), Some(2));
        assert_eq!(latest.take(Duration::from_millis(1)), None);
    }

    #[test]
    fn take_waits_for_a_value_from_another_thread() {
        let latest = Arc::new(Latest::new());
        let producer = {
            let latest = latest.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                latest.put("frame")
            })
        };
        assert_eq!(latest.take(Duration::from_secs(5)), Some("frame"));
        producer.join().unwrap();
    }

    #[test]
    fn close_wakes_waiters_with_nothing() {
        let latest: Arc<Latest<u8>> = Arc::new(Latest::new());
        let waiter = {
            let latest = latest.clone();
            std::thread::spawn(move || latest.take(Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        latest.close();
        assert_eq!(waiter.join().unwrap(), None);
    }

    #[test]
    fn peek_newer_sees_each_version_once_and_leaves_the_value() {
        let latest = Latest::new();
        latest.put('a');
        let (v1, a) = latest.peek_newer(0, Duration::ZERO).unwrap();
        assert_eq!(a, 'a');
        assert_eq!(latest.peek_newer(v1, Duration::from_millis(1)), None);
        latest.put('b');
        assert_eq!(latest.peek_newer(v1, Duration::ZERO).map(|(_, c)| c), Some('b'));
        assert_eq!(latest.take(Duration::ZERO), Some('b'));
    }
}
