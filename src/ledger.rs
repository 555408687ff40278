//! Dedupe, step 5 of the pipeline: one ledger record per Stripe event id remembers which
//! destinations already have the event, so a retried, duplicated or concurrent delivery
//! reaches each destination once. The record lives in a Durable Object named after the event
//! id (strongly consistent and single-threaded per id, unlike KV); this module is its logic,
//! free of I/O, and the shell stores the record.
//!
//! Invariant: a destination is written to only while its attempt holds the lease, and is
//! listed as delivered only after it accepted the event.

use serde::{Deserialize, Serialize};

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
}

/// The answer to an attempt asking to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "claim", rename_all = "snake_case")]
pub enum Claim {
    /// Deliver to `pending`; `already` were delivered by earlier attempts.
    Granted {
        pending: Vec<String>,
        already: Vec<String>,
    },
    /// Another attempt is delivering this event right now.
    Busy { retry_after_ms: u64 },
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
    },
}

impl Record {
    /// Asks to deliver the event to `destinations` at `now_ms`. Grants the lease when no
    /// other attempt holds it (or its lease ran out) and some destination still lacks the
    /// event; a grant with nothing pending takes no lease.
    pub fn claim(&mut self, attempt: &str, destinations: &[String], now_ms: u64) -> Claim {
        if self.first_seen_ms == 0 {
            self.first_seen_ms = now_ms;
        }
        let (already, pending): (Vec<String>, Vec<String>) = destinations
            .iter()
            .cloned()
            .partition(|d| self.delivered.contains(d));
        if pending.is_empty() {
            return Claim::Granted { pending, already };
        }
        let held_by_other = self.lease_until_ms > now_ms && self.lease_holder != attempt;
        if held_by_other {
            return Claim::Busy {
                retry_after_ms: self.lease_until_ms - now_ms,
            };
        }
        self.lease_until_ms = now_ms + LEASE_MS;
        self.lease_holder = attempt.to_owned();
        Claim::Granted { pending, already }
    }

    /// Records what an attempt delivered and releases its lease. A settle from an attempt
    /// that no longer holds the lease still records its deliveries: they happened.
    pub fn settle(&mut self, attempt: &str, delivered: &[String]) {
        for destination in delivered {
            if !self.delivered.contains(destination) {
                self.delivered.push(destination.clone());
            }
        }
        if self.lease_holder == attempt {
            self.lease_until_ms = 0;
            self.lease_holder.clear();
        }
    }

    /// Applies one request and returns the JSON answer for it.
    pub fn apply(&mut self, request: &LedgerRequest, now_ms: u64) -> Option<Claim> {
        match request {
            LedgerRequest::Claim {
                attempt,
                destinations,
            } => Some(self.claim(attempt, destinations, now_ms)),
            LedgerRequest::Settle { attempt, delivered } => {
                self.settle(attempt, delivered);
                None
            }
        }
    }
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
                already: vec![]
            }
        );
        record.settle("a", &all);
        assert_eq!(record.lease_until_ms, 0);
        assert_eq!(
            record.claim("b", &all, 2_000),
            Claim::Granted {
                pending: vec![],
                already: all
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
        record.settle("a", &labels(&["kv"]));
        assert_eq!(
            record.claim("b", &all, 2_000),
            Claim::Granted {
                pending: labels(&["origin"]),
                already: labels(&["kv"])
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
        record.settle("a", &all);
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
        let answer = record.apply(&request, 5).expect("a claim answers");
        let text = serde_json::to_string(&answer).expect("json");
        assert_eq!(text, r#"{"claim":"granted","pending":["kv"],"already":[]}"#);
    }
}
