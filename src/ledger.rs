//! Dedupe, step 5 of the pipeline: one ledger record per Stripe event id remembers which
//! destinations already have the event, so a retried, duplicated or concurrent delivery
//! reaches each destination once. The record lives in a Durable Object named after the event
//! id (strongly consistent and single-threaded per id, unlike KV); this module is its logic,
//! free of I/O, and the shell stores the record.
//!
//! Invariant: a destination is written to only while its attempt holds the lease, and is
//! listed as delivered only after it accepted the event.

use serde::{Deserialize, Serialize};

use crate::pipeline::Job;

/// How long one attempt may hold an event before another may take over. Longer than the
/// worst attempt (every destination timing out), so a slow attempt is never overlapped; an
/// attempt that died leaves the event to the next retry after this.
pub const LEASE_MS: u64 = 45_000;

/// How long a record is kept after the event is first seen: Stripe resends events for up to
/// 30 days, plus a day of margin.
pub const RETENTION_MS: u64 = 31 * 24 * 60 * 60 * 1000;

/// What the ledger knows of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Labels of the destinations that accepted the event.
    pub delivered: Vec<String>,
    /// Until when (unix ms) an attempt holds the event; 0 when none does.
    pub lease_until_ms: u64,
    /// An opaque id of the attempt holding the lease.
    pub lease_holder: String,
    pub first_seen_ms: u64,
    /// Destinations whose last attempt failed and that have not accepted the event since.
    #[serde(default)]
    pub failing: Vec<Failing>,
    /// Set when the event itself is kept (its body is stored beside the record), so it can
    /// be delivered again: always in queue mode, after a failure in direct mode.
    #[serde(default)]
    pub kept: Option<Job>,
    /// Destinations a "latest wins" rule held this (stale) event back from: never failing,
    /// never replayed.
    #[serde(default)]
    pub held: Vec<String>,
}

/// One destination that has not accepted the event yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failing {
    pub destination: String,
    /// A payload-free reason: `http_500`, `timeout`, `network`, `kv_write`.
    pub reason: String,
    /// Failed attempts since the event was first seen or last replayed.
    pub attempts: u32,
    pub last_failed_ms: u64,
    /// No more automatic attempts: the origin refused the event for good (a 4xx other than
    /// 408, 409 or 429), or the queue's retries ran out. Only a replay tries again.
    pub gave_up: bool,
}

/// How one destination failed, as an attempt reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    pub destination: String,
    /// Empty keeps the reason already on record (the dead-letter queue knows no new one).
    pub reason: String,
    pub give_up: bool,
}

/// The answer to an attempt asking to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "claim", rename_all = "snake_case")]
pub enum Claim {
    /// Deliver to `pending`; `already` were delivered by earlier attempts; `given_up`
    /// wait for a replay; `held` hold the event back ("latest wins": a newer event for the
    /// same object came first), so no queued copy or replay sends it there.
    Granted {
        pending: Vec<String>,
        already: Vec<String>,
        #[serde(default)]
        given_up: Vec<String>,
        #[serde(default)]
        held: Vec<String>,
    },
    /// Another attempt is delivering this event right now.
    Busy { retry_after_ms: u64 },
}

/// The answer to a settle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    /// Destinations that had been failing and accepted the event now.
    pub recovered: Vec<String>,
    /// What is still failing after this attempt.
    pub failing: Vec<Failing>,
}

impl Settled {
    /// The failed attempts that set the next retry's backoff: those of the most-failed
    /// destination still being retried (one given up no longer counts), at least 1.
    pub fn retry_attempts(&self) -> u32 {
        self.failing
            .iter()
            .filter(|f| !f.gave_up)
            .map(|f| f.attempts)
            .max()
            .unwrap_or(1)
    }
}

/// The answer to a replay: the kept event and the destinations to try again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayable {
    pub job: Option<Job>,
    pub destinations: Vec<String>,
}

/// A request from the worker to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LedgerRequest {
    Claim {
        attempt: String,
        destinations: Vec<String>,
    },
    Settle {
        attempt: String,
        delivered: Vec<String>,
        #[serde(default)]
        failed: Vec<FailureReport>,
    },
    /// The event turned out stale and these destinations hold it back.
    Hold { destinations: Vec<String> },
    /// Make failing destinations (all, or those named) eligible again, attempts reset.
    Replay { destinations: Option<Vec<String>> },
    /// The whole record, for the admin endpoints.
    Inspect,
    /// "Latest wins": is an event created at `created` stale for this object's clock?
    Observe { event: String, created: i64 },
}

impl Record {
    /// Asks to deliver the event to `destinations` at `now_ms`. Grants the lease when no
    /// other attempt holds it (or its lease ran out) and some destination still lacks the
    /// event and has not been given up; a grant with nothing pending takes no lease.
    pub fn claim(&mut self, attempt: &str, destinations: &[String], now_ms: u64) -> Claim {
        if self.first_seen_ms == 0 {
            self.first_seen_ms = now_ms;
        }
        let mut already = Vec::new();
        let mut given_up = Vec::new();
        let mut held = Vec::new();
        let mut pending = Vec::new();
        for destination in destinations {
            if self.delivered.contains(destination) {
                already.push(destination.clone());
            } else if self.held.contains(destination) {
                held.push(destination.clone());
            } else if self.gave_up_on(destination) {
                given_up.push(destination.clone());
            } else {
                pending.push(destination.clone());
            }
        }
        if pending.is_empty() {
            return Claim::Granted {
                pending,
                already,
                given_up,
                held,
            };
        }
        let held_by_other = self.lease_until_ms > now_ms && self.lease_holder != attempt;
        if held_by_other {
            return Claim::Busy {
                retry_after_ms: self.lease_until_ms - now_ms,
            };
        }
        self.lease_until_ms = now_ms + LEASE_MS;
        self.lease_holder = attempt.to_owned();
        Claim::Granted {
            pending,
            already,
            given_up,
            held,
        }
    }

    fn gave_up_on(&self, destination: &str) -> bool {
        self.failing
            .iter()
            .any(|f| f.destination == destination && f.gave_up)
    }

    /// Records what an attempt delivered and what failed, and releases its lease. A settle
    /// from an attempt that no longer holds the lease still counts: its writes happened.
    pub fn settle(
        &mut self,
        attempt: &str,
        delivered: &[String],
        failed: &[FailureReport],
        now_ms: u64,
    ) -> Settled {
        let mut recovered = Vec::new();
        for destination in delivered {
            if !self.delivered.contains(destination) {
                self.delivered.push(destination.clone());
            }
            if self.stop_failing(destination) {
                recovered.push(destination.clone());
            }
        }
        for report in failed {
            if self.delivered.contains(&report.destination) {
                continue;
            }
            match self
                .failing
                .iter_mut()
                .find(|f| f.destination == report.destination)
            {
                Some(failing) => {
                    // An empty reason is the dead-letter queue's verdict, not an attempt.
                    if !report.reason.is_empty() {
                        failing.attempts += 1;
                    }
                    if !report.reason.is_empty() {
                        failing.reason = report.reason.clone();
                    }
                    failing.last_failed_ms = now_ms;
                    failing.gave_up |= report.give_up;
                }
                None => self.failing.push(Failing {
                    destination: report.destination.clone(),
                    reason: if report.reason.is_empty() {
                        "retries_exhausted".to_owned()
                    } else {
                        report.reason.clone()
                    },
                    attempts: 1,
                    last_failed_ms: now_ms,
                    gave_up: report.give_up,
                }),
            }
        }
        if self.lease_holder == attempt {
            self.lease_until_ms = 0;
            self.lease_holder.clear();
        }
        Settled {
            recovered,
            failing: self.failing.clone(),
        }
    }

    /// Drops `destination` from the failing list; true when it was there.
    fn stop_failing(&mut self, destination: &str) -> bool {
        let before = self.failing.len();
        self.failing.retain(|f| f.destination != destination);
        self.failing.len() != before
    }

    /// Records that `destinations` hold the event back as stale: they stop failing, so no
    /// replay sends them an event a newer one overtook. Returns the failing that remain.
    pub fn hold(&mut self, destinations: &[String]) -> Settled {
        let mut recovered = Vec::new();
        for destination in destinations {
            if !self.held.contains(destination) {
                self.held.push(destination.clone());
            }
            if self.stop_failing(destination) {
                recovered.push(destination.clone());
            }
        }
        Settled {
            recovered,
            failing: self.failing.clone(),
        }
    }

    /// Makes the failing destinations (all, or those in `only`) eligible again with their
    /// attempt counts reset, and returns them with the kept event.
    pub fn replay(&mut self, only: Option<&[String]>) -> Replayable {
        let mut destinations = Vec::new();
        for failing in &mut self.failing {
            if only.is_some_and(|only| !only.contains(&failing.destination)) {
                continue;
            }
            failing.gave_up = false;
            failing.attempts = 0;
            destinations.push(failing.destination.clone());
        }
        Replayable {
            job: self.kept.clone(),
            destinations,
        }
    }

    /// Applies one request and returns the JSON answer for it.
    pub fn apply(&mut self, request: &LedgerRequest, now_ms: u64) -> serde_json::Value {
        let answer = match request {
            LedgerRequest::Claim {
                attempt,
                destinations,
            } => serde_json::to_value(self.claim(attempt, destinations, now_ms)),
            LedgerRequest::Settle {
                attempt,
                delivered,
                failed,
            } => serde_json::to_value(self.settle(attempt, delivered, failed, now_ms)),
            LedgerRequest::Hold { destinations } => {
                // An event held back everywhere is still one the ledger has seen.
                if self.first_seen_ms == 0 {
                    self.first_seen_ms = now_ms;
                }
                serde_json::to_value(self.hold(destinations))
            }
            LedgerRequest::Replay { destinations } => {
                serde_json::to_value(self.replay(destinations.as_deref()))
            }
            LedgerRequest::Inspect => serde_json::to_value(&*self),
            // Clocks live in their own objects; the shell sends this to an object clock.
            LedgerRequest::Observe { .. } => Ok(serde_json::Value::Null),
        };
        // These types serialize to JSON without fail: strings, numbers, lists.
        answer.unwrap_or_default()
    }
}

/// "Latest wins" for one Stripe object: the newest event seen for it. Stripe's `created`
/// counts seconds, so two events in the same second are never stale to each other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectClock {
    pub latest_created: i64,
    pub latest_event: String,
}

impl ObjectClock {
    /// Records that `event`, created at `created`, arrived, and says whether it is stale: a
    /// different event for the object, created later, arrived before it.
    pub fn observe(&mut self, event: &str, created: i64) -> bool {
        if self.latest_event.is_empty() || created > self.latest_created {
            self.latest_created = created;
            self.latest_event = event.to_owned();
            return false;
        }
        created < self.latest_created && event != self.latest_event
    }
}

/// Splits `text` into pieces of at most `max_bytes` (at least 4, so any character fits),
/// never inside a character: how a kept body is stored, as storage limits one value's size.
pub fn text_pieces(text: &str, max_bytes: usize) -> Vec<&str> {
    let max_bytes = max_bytes.max(4);
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max_bytes);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn first_attempt_gets_everything_and_a_repeat_gets_nothing() {
        let mut record = Record::default();
        let all = labels(&["kv", "origin"]);
        assert_eq!(
            record.claim("a", &all, 1_000),
            Claim::Granted {
                pending: all.clone(),
                already: vec![],
                given_up: vec![],
                held: vec![]
            }
        );
        record.settle("a", &all, &[], 1_500);
        assert_eq!(record.lease_until_ms, 0);
        assert_eq!(
            record.claim("b", &all, 2_000),
            Claim::Granted {
                pending: vec![],
                already: all,
                given_up: vec![],
                held: vec![]
            }
        );
        assert_eq!(record.first_seen_ms, 1_000);
    }

    #[test]
    fn a_concurrent_attempt_is_told_to_come_back() {
        let mut record = Record::default();
        let all = labels(&["origin"]);
        assert!(matches!(
            record.claim("a", &all, 1_000),
            Claim::Granted { .. }
        ));
        assert_eq!(
            record.claim("b", &all, 1_500),
            Claim::Busy {
                retry_after_ms: LEASE_MS - 500
            }
        );
        // The same attempt asking again keeps its lease.
        assert!(matches!(
            record.claim("a", &all, 1_600),
            Claim::Granted { .. }
        ));
    }

    #[test]
    fn a_partial_failure_leaves_only_the_failed_destination() {
        let mut record = Record::default();
        let all = labels(&["kv", "origin"]);
        record.claim("a", &all, 1_000);
        record.settle("a", &labels(&["kv"]), &[], 1_500);
        assert_eq!(
            record.claim("b", &all, 2_000),
            Claim::Granted {
                pending: labels(&["origin"]),
                already: labels(&["kv"]),
                given_up: vec![],
                held: vec![]
            }
        );
    }

    #[test]
    fn a_dead_attempts_lease_runs_out() {
        let mut record = Record::default();
        let all = labels(&["origin"]);
        record.claim("a", &all, 1_000);
        assert!(matches!(
            record.claim("b", &all, 1_000 + LEASE_MS - 1),
            Claim::Busy { .. }
        ));
        assert!(matches!(
            record.claim("b", &all, 1_000 + LEASE_MS),
            Claim::Granted { .. }
        ));
        // The late settle of the dead attempt still counts, and does not free b's lease.
        record.settle("a", &all, &[], 1_500);
        assert_eq!(record.lease_holder, "b");
        assert_eq!(record.delivered, all);
    }

    #[test]
    fn requests_round_trip_as_json() {
        let request = LedgerRequest::Claim {
            attempt: "a".into(),
            destinations: labels(&["kv"]),
        };
        let text = serde_json::to_string(&request).expect("json");
        assert_eq!(
            text,
            r#"{"op":"claim","attempt":"a","destinations":["kv"]}"#
        );
        assert_eq!(
            serde_json::from_str::<LedgerRequest>(&text).expect("parse"),
            request
        );
        let mut record = Record::default();
        let answer = record.apply(&request, 5);
        assert_eq!(
            answer.to_string(),
            r#"{"already":[],"claim":"granted","given_up":[],"held":[],"pending":["kv"]}"#
        );
        let settle: LedgerRequest =
            serde_json::from_str(r#"{"op":"settle","attempt":"a","delivered":["kv"]}"#)
                .expect("failed defaults to none");
        let settled: Settled = serde_json::from_value(record.apply(&settle, 6)).expect("settled");
        assert_eq!(settled, Settled::default());
    }

    fn failure(destination: &str, reason: &str, give_up: bool) -> FailureReport {
        FailureReport {
            destination: destination.into(),
            reason: reason.into(),
            give_up,
        }
    }

    #[test]
    fn failures_are_counted_until_the_destination_recovers() {
        let mut record = Record::default();
        let all = labels(&["kv", "origin"]);
        record.claim("a", &all, 1_000);
        let settled = record.settle(
            "a",
            &labels(&["kv"]),
            &[failure("origin", "http_500", false)],
            1_100,
        );
        assert_eq!(settled.failing.len(), 1);
        record.claim("b", &all, 2_000);
        let settled = record.settle("b", &[], &[failure("origin", "timeout", false)], 2_100);
        assert_eq!(
            settled.failing,
            vec![Failing {
                destination: "origin".into(),
                reason: "timeout".into(),
                attempts: 2,
                last_failed_ms: 2_100,
                gave_up: false
            }]
        );
        record.claim("c", &all, 3_000);
        let settled = record.settle("c", &labels(&["origin"]), &[], 3_100);
        assert_eq!(settled.recovered, labels(&["origin"]));
        assert!(settled.failing.is_empty() && record.failing.is_empty());
        // A failure reported for a destination that has the event is stale news.
        record.settle("d", &[], &[failure("kv", "kv_write", false)], 4_000);
        assert!(record.failing.is_empty());
    }

    /// A record whose first attempt delivered to kv and failed at the origin.
    fn kv_delivered_origin_failed(reason: &str, give_up: bool) -> (Record, Vec<String>) {
        let mut record = Record::default();
        let all = labels(&["kv", "origin"]);
        record.claim("a", &all, 1_000);
        let failed = [failure("origin", reason, give_up)];
        record.settle("a", &labels(&["kv"]), &failed, 1_100);
        (record, all)
    }

    #[test]
    fn retries_back_off_by_the_destinations_still_retried() {
        let mut record = Record::default();
        let all = labels(&["kv", "origin"]);
        let attempt = |record: &mut Record, failed: &[FailureReport], at: u64| {
            record.claim("a", &all, at);
            record.settle("a", &[], failed, at + 1)
        };
        for at in [1_000, 2_000, 3_000] {
            attempt(&mut record, &[failure("origin", "http_503", false)], at);
        }
        let settled = attempt(
            &mut record,
            &[
                failure("origin", "http_400", true),
                failure("kv", "kv_write", false),
            ],
            4_000,
        );
        // origin failed four times but is given up; kv, failing once, sets the pace.
        assert_eq!(settled.retry_attempts(), 1);
        let settled = attempt(&mut record, &[failure("kv", "kv_write", false)], 5_000);
        assert_eq!(settled.retry_attempts(), 2);
        assert_eq!(Settled::default().retry_attempts(), 1);
    }

    #[test]
    fn an_event_held_everywhere_is_still_seen() {
        let mut record = Record::default();
        let hold = LedgerRequest::Hold {
            destinations: labels(&["kv", "origin"]),
        };
        record.apply(&hold, 7_000);
        assert_eq!(record.first_seen_ms, 7_000);
    }

    #[test]
    fn a_held_destination_is_not_claimed_by_a_queued_copy_or_a_replay() {
        let mut record = Record::default();
        let all = labels(&["kv", "origin"]);
        record.hold(&labels(&["origin"]));
        assert_eq!(
            record.claim("queued", &all, 1_000),
            Claim::Granted {
                pending: labels(&["kv"]),
                already: vec![],
                given_up: vec![],
                held: labels(&["origin"]),
            }
        );
        record.settle("queued", &labels(&["kv"]), &[], 1_500);
        assert_eq!(
            record.claim("replay", &all, 2_000),
            Claim::Granted {
                pending: vec![],
                already: labels(&["kv"]),
                given_up: vec![],
                held: labels(&["origin"]),
            }
        );
    }

    #[test]
    fn a_given_up_destination_waits_for_a_replay() {
        let (mut record, all) = kv_delivered_origin_failed("http_400", true);
        assert_eq!(
            record.claim("b", &all, 2_000),
            Claim::Granted {
                pending: vec![],
                already: labels(&["kv"]),
                given_up: labels(&["origin"]),
                held: vec![]
            }
        );
        assert_eq!(record.lease_until_ms, 0, "nothing to do takes no lease");

        let replay = record.replay(Some(&labels(&["kv"])));
        assert!(replay.destinations.is_empty(), "kv is not failing");
        let replay = record.replay(None);
        assert_eq!(replay.destinations, labels(&["origin"]));
        assert_eq!(record.failing[0].attempts, 0);
        assert!(matches!(
            record.claim("c", &all, 3_000),
            Claim::Granted { ref pending, .. } if *pending == labels(&["origin"])
        ));
    }

    #[test]
    fn a_held_destination_stops_failing_and_is_not_replayed() {
        let (mut record, _) = kv_delivered_origin_failed("http_500", false);
        let settled = record.hold(&labels(&["origin"]));
        assert_eq!(settled.recovered, labels(&["origin"]));
        assert!(settled.failing.is_empty());
        assert!(record.replay(None).destinations.is_empty());
        assert_eq!(record.held, labels(&["origin"]));
    }

    #[test]
    fn the_dead_letter_verdict_keeps_the_last_reason_and_count() {
        let mut record = Record::default();
        record.settle("a", &[], &[failure("origin", "http_503", false)], 1_000);
        record.settle("dead-letter", &[], &[failure("origin", "", true)], 2_000);
        assert_eq!(
            (
                record.failing[0].reason.as_str(),
                record.failing[0].attempts,
                record.failing[0].gave_up
            ),
            ("http_503", 1, true)
        );
        record.settle("dead-letter", &[], &[failure("kv", "", true)], 2_000);
        assert_eq!(record.failing[1].reason, "retries_exhausted");
    }

    #[test]
    fn the_object_clock_flags_older_events_that_arrive_late() {
        let mut clock = ObjectClock::default();
        assert!(!clock.observe("evt_new", 200));
        assert!(clock.observe("evt_old", 100), "older, arrived after");
        assert!(clock.observe("evt_old", 100), "and so is its retry");
        assert!(!clock.observe("evt_new", 200), "a repeat of the newest");
        assert!(
            !clock.observe("evt_same_second", 200),
            "same second: no order"
        );
        assert!(!clock.observe("evt_newer", 300));
        assert!(clock.observe("evt_new", 200), "overtaken since");
        assert_eq!(clock.latest_event, "evt_newer");
    }

    #[test]
    fn bodies_are_cut_into_pieces_at_character_boundaries() {
        let text = "aé€😀".repeat(1000);
        for max in [1, 4, 5, 7, 96 * 1024] {
            let pieces = text_pieces(&text, max);
            assert_eq!(pieces.concat(), text, "{max}");
            assert!(pieces
                .iter()
                .all(|p| !p.is_empty() && p.len() <= max.max(4)));
        }
        assert!(text_pieces("", 8).is_empty());
        assert_eq!(text_pieces("abcdef", 4), ["abcd", "ef"]);
    }
}
