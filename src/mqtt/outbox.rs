//! The bounded queue of messages for the broker, sans I/O.
//!
//! The MQTT client library keeps what it has not sent in memory, and forgets
//! it when a reconnect starts a clean session; so messages stay here until
//! the broker has them: a QoS 1 message until its PUBACK, a QoS 0 one until
//! it is written. A connection takes at most `window` at a time; a broken
//! one gives back those it did not finish, which are sent again (in order)
//! on the next. While the broker is away messages wait, `limit` at most; at
//! a full queue the least valuable waiting one goes first (oldest status,
//! then snapshot, objects, answers, replies: see [`Stream`]), and every drop
//! is counted per stream. A retained message (a status, a snapshot)
//! replaces one still waiting for its topic: only the newest would stay on
//! the broker anyway, and an older one sent later would overwrite it.

use std::collections::VecDeque;

use serde::Serialize;

use super::settings::Qos;

/// What a message is, from least to most worth keeping when the queue is
/// full: a status is superseded by the next one (and refreshed on every
/// reconnect), a snapshot by the next picture; answers and replies are
/// results nobody can ask for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    Status,
    Snapshot,
    Objects,
    Answers,
    Replies,
    /// Home Assistant discovery configs, sent on connecting.
    Discovery,
}

/// One message for the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub stream: Stream,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: Qos,
    pub retain: bool,
    /// MQTT 5 content type.
    pub content_type: &'static str,
    /// MQTT 5 correlation data, echoed from a prompt.
    pub correlation: Option<Vec<u8>>,
}

/// Messages dropped from a full queue, by stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    pub status: u64,
    pub snapshot: u64,
    pub objects: u64,
    pub answers: u64,
    pub replies: u64,
    pub discovery: u64,
}

impl Drops {
    fn count(&mut self, stream: Stream) {
        let counter = match stream {
            Stream::Status => &mut self.status,
            Stream::Snapshot => &mut self.snapshot,
            Stream::Objects => &mut self.objects,
            Stream::Answers => &mut self.answers,
            Stream::Replies => &mut self.replies,
            Stream::Discovery => &mut self.discovery,
        };
        *counter += 1;
    }

    pub fn total(&self) -> u64 {
        self.status + self.snapshot + self.objects + self.answers + self.replies + self.discovery
    }
}

/// A message handed to the connection.
#[derive(Debug)]
struct InFlight {
    message: Message,
    /// The packet id the client gave it once written (0 for QoS 0).
    packet_id: Option<u16>,
}

/// The queue and the messages in flight.
#[derive(Debug)]
pub struct Outbox {
    limit: usize,
    window: usize,
    waiting: VecDeque<Message>,
    in_flight: VecDeque<InFlight>,
    drops: Drops,
    delivered: u64,
}

impl Outbox {
    /// Holds at most `limit` messages (at least 1); a connection takes at
    /// most `window` of them at a time.
    pub fn new(limit: usize, window: usize) -> Outbox {
        let limit = limit.max(1);
        Outbox {
            limit,
            window: window.clamp(1, limit),
            waiting: VecDeque::new(),
            in_flight: VecDeque::new(),
            drops: Drops::default(),
            delivered: 0,
        }
    }

    /// Queues `message` last; returns the stream of a message dropped to
    /// make room (maybe this one).
    pub fn push(&mut self, message: Message) -> Option<Stream> {
        if let Some(stream) = self.supersede(&message) {
            self.waiting.push_back(message);
            return Some(stream);
        }
        let dropped = self.make_room(message.stream);
        if dropped != Some(message.stream) || self.len() < self.limit {
            self.waiting.push_back(message);
        }
        dropped
    }

    /// Queues `message` first, whatever the limit: what a new connection
    /// must send before the backlog (the fresh status, a handful of
    /// discovery configs). Returns the stream of a waiting message it replaced.
    pub fn push_front(&mut self, message: Message) -> Option<Stream> {
        let replaced = self.supersede(&message);
        self.waiting.push_front(message);
        replaced
    }

    /// Drops the waiting message a retained `message` replaces, if any.
    fn supersede(&mut self, message: &Message) -> Option<Stream> {
        if !message.retain {
            return None;
        }
        let index = self.waiting.iter().position(|m| m.retain && m.topic == message.topic)?;
        let old = self.waiting.remove(index)?;
        self.drops.count(old.stream);
        Some(old.stream)
    }

    /// At a full queue, drops the oldest waiting message of the least
    /// valuable stream, if it is worth no more than one of `incoming`;
    /// else the incoming one is the drop.
    fn make_room(&mut self, incoming: Stream) -> Option<Stream> {
        if self.len() < self.limit {
            return None;
        }
        let victim = self
            .waiting
            .iter()
            .enumerate()
            .min_by_key(|(index, m)| (m.stream, *index))
            .filter(|(_, m)| m.stream <= incoming)
            .map(|(index, _)| index);
        let dropped = match victim {
            Some(index) => self.waiting.remove(index).map_or(incoming, |m| m.stream),
            None => incoming,
        };
        self.drops.count(dropped);
        Some(dropped)
    }

    /// The next message for the connection, if its window has room; it
    /// stays in flight until [`Outbox::written`] and [`Outbox::acked`].
    pub fn hand_over(&mut self) -> Option<Message> {
        if self.in_flight.len() >= self.window {
            return None;
        }
        let message = self.waiting.pop_front()?;
        self.in_flight.push_back(InFlight { message: message.clone(), packet_id: None });
        Some(message)
    }

    /// The last message handed over did not reach the client: it waits first again.
    pub fn take_back(&mut self) {
        if let Some(in_flight) = self.in_flight.pop_back() {
            self.waiting.push_front(in_flight.message);
        }
    }

    /// The client wrote the oldest message it had not written yet, with
    /// `packet_id` (0 for QoS 0, which is then done).
    pub fn written(&mut self, packet_id: u16) {
        let Some(index) = self.in_flight.iter().position(|f| f.packet_id.is_none()) else {
            return;
        };
        if packet_id == 0 {
            self.in_flight.remove(index);
            self.delivered += 1;
        } else {
            self.in_flight[index].packet_id = Some(packet_id);
        }
    }

    /// The broker acknowledged `packet_id`: the oldest message with it is done.
    pub fn acked(&mut self, packet_id: u16) {
        if let Some(index) = self.in_flight.iter().position(|f| f.packet_id == Some(packet_id)) {
            self.in_flight.remove(index);
            self.delivered += 1;
        }
    }

    /// The connection broke: what was in flight waits first again, in order,
    /// to be resent on the next connection. The queue may have grown past
    /// its limit meanwhile: the least valuable messages go.
    pub fn requeue(&mut self) {
        while let Some(in_flight) = self.in_flight.pop_back() {
            self.waiting.push_front(in_flight.message);
        }
        while self.len() > self.limit {
            let Some(index) = self.waiting.iter().enumerate().min_by_key(|(i, m)| (m.stream, *i)).map(|(i, _)| i) else {
                break;
            };
            if let Some(message) = self.waiting.remove(index) {
                self.drops.count(message.stream);
            }
        }
    }

    /// How many messages a connection may have in flight (a broker's
    /// receive maximum may lower it).
    pub fn set_window(&mut self, window: usize) {
        self.window = window.clamp(1, self.limit);
    }

    /// Messages waiting or in flight.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn drops(&self) -> Drops {
        self.drops
    }

    /// Messages the broker has (acknowledged, or written at QoS 0).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(stream: Stream, n: u32) -> Message {
        Message {
            stream,
            topic: format!("t/{n}"),
            payload: n.to_le_bytes().to_vec(),
            qos: Qos::AtLeastOnce,
            retain: false,
            content_type: "application/json",
            correlation: None,
        }
    }

    fn topics(outbox: &mut Outbox) -> Vec<String> {
        std::iter::from_fn(|| outbox.hand_over()).map(|m| m.topic).collect()
    }

    #[test]
    fn messages_wait_in_order_up_to_the_limit() {
        let mut outbox = Outbox::new(4, 16);
        for n in 0..4 {
            assert_eq!(outbox.push(message(Stream::Answers, n)), None);
        }
        assert_eq!(topics(&mut outbox), ["t/0", "t/1", "t/2", "t/3"]);
        assert_eq!(outbox.drops(), Drops::default());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_status_first_then_the_oldest_answer() {
        let mut outbox = Outbox::new(4, 16);
        outbox.push(message(Stream::Answers, 0));
        outbox.push(message(Stream::Status, 1));
        outbox.push(message(Stream::Status, 2));
        outbox.push(message(Stream::Answers, 3));
        assert_eq!(outbox.push(message(Stream::Answers, 4)), Some(Stream::Status));
        assert_eq!(outbox.push(message(Stream::Replies, 5)), Some(Stream::Status));
        assert_eq!(outbox.push(message(Stream::Answers, 6)), Some(Stream::Answers));
        assert_eq!(topics(&mut outbox), ["t/3", "t/4", "t/5", "t/6"]);
        assert_eq!((outbox.drops().status, outbox.drops().answers, outbox.drops().total()), (2, 1, 3));
    }

    #[test]
    fn a_message_worth_less_than_all_waiting_ones_is_the_drop() {
        let mut outbox = Outbox::new(2, 16);
        outbox.push(message(Stream::Answers, 0));
        outbox.push(message(Stream::Replies, 1));
        assert_eq!(outbox.push(message(Stream::Status, 2)), Some(Stream::Status));
        assert_eq!(topics(&mut outbox), ["t/0", "t/1"]);
    }

    #[test]
    fn a_connection_s_first_message_goes_even_at_a_full_queue() {
        let mut outbox = Outbox::new(2, 16);
        outbox.push(message(Stream::Answers, 0));
        outbox.push(message(Stream::Answers, 1));
        assert_eq!(outbox.push_front(message(Stream::Status, 2)), None);
        assert_eq!(topics(&mut outbox), ["t/2", "t/0"], "a window as wide as the limit");
        outbox.written(1);
        outbox.acked(1);
        assert_eq!(topics(&mut outbox), ["t/1"]);
        assert_eq!(outbox.drops(), Drops::default());
    }

    #[test]
    fn a_retained_message_replaces_the_one_waiting_for_its_topic() {
        let mut outbox = Outbox::new(8, 8);
        let status = |n| Message { retain: true, topic: "b/status".into(), ..message(Stream::Status, n) };
        outbox.push(status(0));
        outbox.push(message(Stream::Answers, 1));
        assert_eq!(outbox.push(status(2)), Some(Stream::Status));
        assert_eq!(outbox.push_front(status(3)), Some(Stream::Status));
        let sent: Vec<Message> = std::iter::from_fn(|| outbox.hand_over()).collect();
        assert_eq!(sent.iter().map(|m| m.payload[0]).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(outbox.drops().status, 2);
    }

    #[test]
    fn messages_stay_until_acknowledged_and_a_broken_connection_gives_them_back_in_order() {
        let mut outbox = Outbox::new(8, 2);
        for n in 0..4 {
            outbox.push(message(Stream::Answers, n));
        }
        assert_eq!(topics(&mut outbox), ["t/0", "t/1"], "the window holds two");
        outbox.written(1);
        outbox.written(2);
        outbox.acked(1);
        assert_eq!(outbox.len(), 3);
        assert_eq!(topics(&mut outbox), ["t/2"]);
        outbox.requeue();
        assert_eq!(outbox.delivered(), 1);
        assert_eq!(topics(&mut outbox), ["t/1", "t/2"], "unacknowledged ones go first again");
        outbox.written(1);
        outbox.written(2);
        outbox.acked(2);
        outbox.acked(1);
        assert_eq!(topics(&mut outbox), ["t/3"]);
    }

    #[test]
    fn qos_0_is_done_once_written() {
        let mut outbox = Outbox::new(4, 4);
        outbox.push(Message { qos: Qos::AtMostOnce, ..message(Stream::Snapshot, 0) });
        outbox.push(message(Stream::Answers, 1));
        assert_eq!(topics(&mut outbox).len(), 2);
        outbox.written(0);
        outbox.written(7);
        assert_eq!((outbox.len(), outbox.delivered()), (1, 1));
        outbox.acked(7);
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_message_the_client_refused_waits_first_again() {
        let mut outbox = Outbox::new(4, 4);
        outbox.push(message(Stream::Answers, 0));
        outbox.push(message(Stream::Answers, 1));
        assert_eq!(outbox.hand_over().unwrap().topic, "t/0");
        outbox.take_back();
        assert_eq!(topics(&mut outbox), ["t/0", "t/1"]);
    }

    #[test]
    fn requeueing_past_the_limit_drops_the_least_valuable() {
        let mut outbox = Outbox::new(3, 3);
        outbox.push(message(Stream::Answers, 0));
        outbox.push(message(Stream::Answers, 1));
        outbox.push(message(Stream::Answers, 2));
        assert_eq!(topics(&mut outbox).len(), 3);
        outbox.requeue();
        assert_eq!(outbox.push(message(Stream::Status, 3)), Some(Stream::Status));
        assert_eq!(outbox.len(), 3);
        outbox.set_window(1);
        assert_eq!(topics(&mut outbox), ["t/0"]);
    }
}
