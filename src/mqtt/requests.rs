//! Remote prompts recently seen, by request id, so that a client that
//! retries (it saw no reply in time, or its broker redelivered) gets the
//! first answer again instead of a second decoder run: the rule the serial
//! line follows (docs/PROTOCOL.md, section 6).

use std::collections::VecDeque;

use super::payload::Outcome;

/// Request ids remembered with their outcome.
pub const REQUESTS_KEPT: usize = 64;

/// What to do with a prompt's id.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Run it.
    New,
    /// Its first copy is still being decoded: its reply will come.
    InFlight,
    /// Answered already: reply with this again.
    Answered(Outcome),
}

/// The last [`REQUESTS_KEPT`] request ids, oldest first.
#[derive(Debug, Default)]
pub struct RecentRequests {
    requests: VecDeque<(String, Option<Outcome>)>,
}

impl RecentRequests {
    /// Looks `id` up, and remembers it as in flight when new.
    pub fn seen(&mut self, id: &str) -> Seen {
        match self.requests.iter().find(|(known, _)| known == id) {
            Some((_, Some(outcome))) => Seen::Answered(outcome.clone()),
            Some((_, None)) => Seen::InFlight,
            None => {
                if self.requests.len() == REQUESTS_KEPT {
                    // The oldest answered one goes; requests in flight stay.
                    if let Some(i) = self.requests.iter().position(|(_, outcome)| outcome.is_some()) {
                        self.requests.remove(i);
                    }
                }
                self.requests.push_back((id.to_string(), None));
                Seen::New
            }
        }
    }

    /// `id`'s final outcome, for its duplicates.
    pub fn finish(&mut self, id: &str, outcome: &Outcome) {
        if let Some(slot) = self.requests.iter_mut().find(|(known, _)| known == id) {
            slot.1 = Some(outcome.clone());
        }
    }

    /// Forgets `id` (it was not run: busy), so that a retry runs it.
    pub fn forget(&mut self, id: &str) {
        self.requests.retain(|(known, _)| known != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::payload::ErrorCode;

    #[test]
    fn a_duplicate_gets_the_first_outcome_and_one_in_flight_is_left_alone() {
        let mut recent = RecentRequests::default();
        assert_eq!(recent.seen("a"), Seen::New);
        assert_eq!(recent.seen("a"), Seen::InFlight);
        let outcome = Outcome::error(ErrorCode::NoFrame, "no frame embedded yet");
        recent.finish("a", &outcome);
        assert_eq!(recent.seen("a"), Seen::Answered(outcome));
    }

    #[test]
    fn a_busy_request_is_forgotten_so_that_its_retry_runs() {
        let mut recent = RecentRequests::default();
        assert_eq!(recent.seen("b"), Seen::New);
        recent.forget("b");
        assert_eq!(recent.seen("b"), Seen::New);
    }

    #[test]
    fn the_oldest_answered_id_goes_first_and_those_in_flight_stay() {
        let mut recent = RecentRequests::default();
        recent.seen("in flight");
        let outcome = Outcome::error(ErrorCode::Busy, "x");
        for i in 0..REQUESTS_KEPT - 1 {
            recent.seen(&i.to_string());
            recent.finish(&i.to_string(), &outcome);
        }
        assert_eq!(recent.seen("new"), Seen::New);
        assert_eq!(recent.seen("0"), Seen::New, "the oldest answered id was forgotten");
        assert_eq!(recent.seen("in flight"), Seen::InFlight);
    }
}
