//! Fan-out of results to any number of adapters, each with a bounded buffer
//! of its own: a slow or stuck reader loses only its own oldest-unread
//! items (counted), never holds up the decoder, and never costs other
//! readers anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

/// The sending side, held by the pipeline.
#[derive(Debug)]
pub struct Broadcast<T> {
    subscribers: Mutex<Vec<Feed<T>>>,
}

#[derive(Debug)]
struct Feed<T> {
    sender: Sender<T>,
    /// The receiver too, so that a full buffer can give up its oldest item.
    receiver: Receiver<T>,
    dropped: Arc<AtomicU64>,
}

/// One reader's end: every item sent after [`Broadcast::subscribe`], in
/// order, except those dropped while its buffer was full.
#[derive(Debug)]
pub struct Subscription<T> {
    receiver: Receiver<T>,
    /// Shared with the broadcast, which forgets the reader once it holds the only count.
    dropped: Arc<AtomicU64>,
}

impl<T> Default for Broadcast<T> {
    fn default() -> Self {
        Broadcast { subscribers: Mutex::new(Vec::new()) }
    }
}

impl<T: Clone> Broadcast<T> {
    /// A new reader holding at most `capacity` unread items (at least 1).
    pub fn subscribe(&self, capacity: usize) -> Subscription<T> {
        let (sender, receiver) = bounded(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let feed = Feed { sender, receiver: receiver.clone(), dropped: dropped.clone() };
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner).push(feed);
        Subscription { receiver, dropped }
    }

    /// Hands `item` to every reader without waiting: a full buffer drops its
    /// oldest item to make room. Readers that went away are forgotten.
    pub fn send(&self, item: &T) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        subscribers.retain(|feed| Arc::strong_count(&feed.dropped) > 1);
        for feed in subscribers.iter() {
            let mut item = item.clone();
            loop {
                match feed.sender.try_send(item) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        if feed.receiver.try_recv().is_ok() {
                            feed.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        item = back;
                    }
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
        }
    }
}

impl<T> Subscription<T> {
    /// The next item, waiting up to `timeout`; `None` on timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        self.receiver.recv_timeout(timeout).ok()
    }

    /// The channel itself, for `select!` with other inputs.
    pub fn receiver(&self) -> &Receiver<T> {
        &self.receiver
    }

    /// Items lost to a full buffer since subscribing.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reader_gets_every_item_in_order() {
        let broadcast = Broadcast::default();
        let (a, b) = (broadcast.subscribe(8), broadcast.subscribe(8));
        for i in 0..5 {
            broadcast.send(&i);
        }
        for reader in [&a, &b] {
            let got: Vec<i32> = std::iter::from_fn(|| reader.recv_timeout(Duration::ZERO)).collect();
            assert_eq!(got, [0, 1, 2, 3, 4]);
            assert_eq!(reader.dropped(), 0);
        }
    }

    #[test]
    fn a_full_reader_loses_its_oldest_items_and_counts_them() {
        let broadcast = Broadcast::default();
        let (slow, fast) = (broadcast.subscribe(2), broadcast.subscribe(16));
        for i in 0..6 {
            broadcast.send(&i);
            assert_eq!(fast.recv_timeout(Duration::ZERO), Some(i));
        }
        assert_eq!(slow.recv_timeout(Duration::ZERO), Some(4));
        assert_eq!(slow.recv_timeout(Duration::ZERO), Some(5));
        assert_eq!(slow.recv_timeout(Duration::from_millis(1)), None);
        assert_eq!((slow.dropped(), fast.dropped()), (4, 0));
    }

    #[test]
    fn readers_that_went_away_are_forgotten_and_late_ones_see_only_new_items() {
        let broadcast = Broadcast::default();
        let gone = broadcast.subscribe(4);
        broadcast.send(&1);
        drop(gone);
        let late = broadcast.subscribe(4);
        broadcast.send(&2);
        assert_eq!(broadcast.subscribers.lock().unwrap().len(), 1);
        assert_eq!(late.recv_timeout(Duration::ZERO), Some(2));
    }

    #[test]
    fn a_reader_on_another_thread_wakes_for_an_item() {
        let broadcast = Arc::new(Broadcast::default());
        let reader = broadcast.subscribe(1);
        let sender = {
            let broadcast = broadcast.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                broadcast.send(&"answer");
            })
        };
        assert_eq!(reader.recv_timeout(Duration::from_secs(5)), Some("answer"));
        sender.join().unwrap();
    }
}
