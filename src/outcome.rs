//! The last step of the pipeline: what the worker answers and what it logs. Every way a
//! request can end is here, with its HTTP status, its stable error code and whether Stripe
//! retrying the same delivery could succeed, decided in one match.

use serde::Serialize;
use serde_json::{json, Value};

use crate::journal::SeenEvent;

/// Every reason the worker does not answer a delivery with 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A path the worker does not serve.
    UnknownPath,
    /// A method the path does not take; carries the `Allow` value.
    MethodNotAllowed(&'static str),
    /// The body is larger than `MAX_BODY_BYTES`.
    PayloadTooLarge,
    /// The body could not be read to its end (the sender went away mid-body).
    BodyUnreadable,
    /// No `Stripe-Signature` header, or an empty one.
    SignatureHeaderMissing,
    /// A `Stripe-Signature` header that cannot be read: no `t`, a `t` that is not a plain
    /// number, two different `t` values, or no `v1` element.
    SignatureHeaderMalformed,
    /// No `v1` matched any configured secret.
    SignatureMismatch,
    /// Signed, but longer ago than the tolerance.
    TimestampTooOld,
    /// Signed, but further in the future than the tolerance.
    TimestampInFuture,
    /// Signed, but not a Stripe event (not JSON, or missing the fields every event has).
    NotAnEvent,
    /// `STRIPE_WEBHOOK_SECRET` is not set.
    SecretMissing,
    /// The configuration cannot be used; the problems are logged by name.
    ConfigInvalid,
    /// At least one destination did not accept the event.
    DeliveryFailed,
    /// Another attempt is delivering the same event right now (a concurrent duplicate).
    DeliveryInProgress,
    /// Queue mode could not keep or enqueue the event (a binding is missing or failed).
    QueueUnavailable,
    /// The ledger or the journal could not be asked (an `/admin` request).
    LedgerUnavailable,
    /// An `/admin` request without the right `Authorization: Bearer` token.
    Unauthorized,
    /// An `/admin` request for an event the ledger does not keep.
    EventNotKept,
}

impl Rejection {
    pub fn status(self) -> u16 {
        match self {
            Rejection::UnknownPath => 404,
            Rejection::MethodNotAllowed(_) => 405,
            Rejection::PayloadTooLarge => 413,
            Rejection::SignatureHeaderMissing
            | Rejection::SignatureHeaderMalformed
            | Rejection::SignatureMismatch
            | Rejection::TimestampTooOld
            | Rejection::TimestampInFuture
            | Rejection::NotAnEvent
            | Rejection::BodyUnreadable => 400,
            Rejection::SecretMissing | Rejection::ConfigInvalid => 500,
            Rejection::DeliveryFailed
            | Rejection::QueueUnavailable
            | Rejection::LedgerUnavailable => 503,
            Rejection::DeliveryInProgress => 409,
            Rejection::Unauthorized => 401,
            Rejection::EventNotKept => 404,
        }
    }

    /// The stable code in the response body and the log line. Users count rejections by
    /// it, so a code never changes meaning once published.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::UnknownPath => "not_found",
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::PayloadTooLarge => "payload_too_large",
            Rejection::BodyUnreadable => "body_unreadable",
            Rejection::SignatureHeaderMissing => "signature_header_missing",
            Rejection::SignatureHeaderMalformed => "signature_header_malformed",
            Rejection::SignatureMismatch => "signature_mismatch",
            Rejection::TimestampTooOld => "timestamp_too_old",
            Rejection::TimestampInFuture => "timestamp_in_future",
            Rejection::NotAnEvent => "not_a_stripe_event",
            Rejection::SecretMissing => "secret_not_configured",
            Rejection::ConfigInvalid => "config_invalid",
            Rejection::DeliveryFailed => "delivery_failed",
            Rejection::DeliveryInProgress => "delivery_in_progress",
            Rejection::QueueUnavailable => "queue_unavailable",
            Rejection::LedgerUnavailable => "ledger_unavailable",
            Rejection::Unauthorized => "unauthorized",
            Rejection::EventNotKept => "event_not_kept",
        }
    }

    /// Whether the same delivery, sent again unchanged, could succeed later. Stripe retries
    /// every non-2xx answer regardless; this tells the operator which failures are theirs
    /// to fix (a missing secret, a down origin) and which are the sender's.
    pub fn retry_can_succeed(self) -> bool {
        matches!(
            self,
            Rejection::SecretMissing
                | Rejection::ConfigInvalid
                | Rejection::DeliveryFailed
                | Rejection::DeliveryInProgress
                | Rejection::QueueUnavailable
                | Rejection::LedgerUnavailable
        )
    }

    /// How loudly to log: the operator must act on 5xx, while 4xx is the sender's problem.
    fn level(self) -> &'static str {
        if self.status() >= 500 {
            "error"
        } else {
            "warn"
        }
    }
}

/// What one destination did with the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationResult {
    /// The destination's label: `kv`, `origin`, or `origin:<host>`.
    pub destination: String,
    pub ok: bool,
    /// A short, payload-free reason when `ok` is false: `http_500`, `network`, `kv_write`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when an earlier attempt already delivered the event here, so this one did not.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub earlier: bool,
    /// True when the destination refused the event for good (a 4xx other than 408, 409 and
    /// 429) or earlier retries ran out: it is kept, listed as failed and waits for a replay.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gave_up: bool,
    /// True when "latest wins" holds the event back from this destination: a newer event
    /// for the same object came first. Nothing is sent and nothing waits.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

impl DestinationResult {
    pub fn new(destination: &str, result: Result<(), String>) -> Self {
        DestinationResult {
            destination: destination.to_owned(),
            ok: result.is_ok(),
            error: result.err(),
            earlier: false,
            gave_up: false,
            held: false,
        }
    }

    /// A destination that failed, given up when `gave_up`.
    pub fn failed(destination: &str, reason: &str, gave_up: bool) -> Self {
        DestinationResult {
            gave_up,
            ..DestinationResult::new(destination, Err(reason.to_owned()))
        }
    }

    /// A destination that holds the event back (the `held` field).
    pub fn held(destination: &str) -> Self {
        DestinationResult {
            held: true,
            ..DestinationResult::new(destination, Ok(()))
        }
    }

    /// A destination an earlier attempt delivered to.
    pub fn earlier(destination: &str) -> Self {
        DestinationResult {
            earlier: true,
            ..DestinationResult::new(destination, Ok(()))
        }
    }
}

/// How a request ended, with what the log line needs to say about it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every destination accepted the event.
    Delivered {
        event: EventRef,
        results: Vec<DestinationResult>,
    },
    /// A valid event that no route matched.
    Ignored { event: EventRef },
    /// Queue mode: the event is kept and enqueued for `destinations`.
    Queued {
        event: EventRef,
        destinations: Vec<String>,
    },
    /// An `/admin` request that succeeded; `action` names it in the log.
    Admin {
        action: &'static str,
        status: u16,
        body: Value,
    },
    /// A delivery that could not be (fully) accepted.
    Rejected {
        reason: Rejection,
        event: Option<EventRef>,
        results: Vec<DestinationResult>,
    },
    /// `GET /health`.
    Health(Value),
}

/// The parts of an event that are safe to log: never its payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventRef {
    pub id: String,
    pub event_type: String,
    pub routes: Vec<String>,
    /// A newer event for the same object arrived first (only checked for routes that ask).
    pub stale: bool,
    /// Destinations that held this stale event back.
    pub held: Vec<String>,
}

impl Outcome {
    /// A rejection before any event was read.
    pub fn rejected(reason: Rejection) -> Self {
        Outcome::Rejected {
            reason,
            event: None,
            results: Vec::new(),
        }
    }

    /// Folds per-destination results into delivered-or-503. A destination that gave up
    /// does not fail the delivery: the event is kept for a replay, and Stripe retrying
    /// would meet the same refusal.
    pub fn from_deliveries(event: EventRef, results: Vec<DestinationResult>) -> Self {
        if results.iter().all(|r| r.ok || r.gave_up) {
            Outcome::Delivered { event, results }
        } else {
            Outcome::Rejected {
                reason: Rejection::DeliveryFailed,
                event: Some(event),
                results,
            }
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Outcome::Delivered { .. } | Outcome::Ignored { .. } | Outcome::Health(_) => 200,
            Outcome::Queued { .. } => 202,
            Outcome::Admin { status, .. } => *status,
            Outcome::Rejected { reason, .. } => reason.status(),
        }
    }

    /// The `Allow` header value, for 405 answers.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            Outcome::Rejected {
                reason: Rejection::MethodNotAllowed(allow),
                ..
            } => Some(allow),
            _ => None,
        }
    }

    /// The small JSON body of the answer.
    pub fn body(&self) -> Value {
        match self {
            Outcome::Delivered { event, results } => {
                let labels = |gave_up: bool| -> Vec<&str> {
                    results
                        .iter()
                        .filter(|r| r.gave_up == gave_up)
                        .map(|r| r.destination.as_str())
                        .collect()
                };
                let mut body = json!({
                    "received": true,
                    "id": event.id,
                    "delivered": labels(false),
                });
                if !results.is_empty() && results.iter().all(|r| r.earlier) {
                    body["duplicate"] = json!(true);
                }
                let gave_up = labels(true);
                if !gave_up.is_empty() {
                    body["gave_up"] = json!(gave_up);
                }
                stale_fields(&mut body, event);
                body
            }
            Outcome::Queued {
                event,
                destinations,
            } => {
                let mut body = json!({"received": true, "id": event.id, "queued": destinations});
                stale_fields(&mut body, event);
                body
            }
            Outcome::Admin { body, .. } => body.clone(),
            Outcome::Ignored { event } => json!({
                "received": true,
                "id": event.id,
                "ignored": true,
            }),
            Outcome::Rejected { reason, event, .. } => match event {
                Some(event) => json!({ "error": reason.code(), "id": event.id }),
                None => json!({ "error": reason.code() }),
            },
            Outcome::Health(value) => value.clone(),
        }
    }

    /// The journal's entry for a request that carried an event, at `at_ms`.
    pub fn journal_entry(&self, at_ms: u64) -> Option<SeenEvent> {
        let (event, outcome) = match self {
            Outcome::Delivered { event, results } if results.is_empty() => (event, "held"),
            Outcome::Delivered { event, results } if results.iter().all(|r| r.earlier) => {
                (event, "duplicate")
            }
            Outcome::Delivered { event, results } if results.iter().any(|r| r.gave_up) => {
                (event, "gave_up")
            }
            Outcome::Delivered { event, .. } => (event, "delivered"),
            Outcome::Ignored { event } => (event, "ignored"),
            Outcome::Queued { event, .. } => (event, "queued"),
            Outcome::Rejected {
                reason,
                event: Some(event),
                ..
            } => (event, reason.code()),
            _ => return None,
        };
        Some(SeenEvent {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            outcome: outcome.to_owned(),
            at_ms,
        })
    }

    /// The one structured log line for this request. It names the event and what happened
    /// to it; it never holds a secret, a signature header or any part of the payload.
    /// `warnings` are configuration problems that do not stop the worker, such as a
    /// secret that looks like an API key; they are described, never quoted.
    /// The log line's level: `error` for a destination given up and for every answer of
    /// 500 or more (a write failed, or the worker cannot work), `warn` for a refused
    /// delivery (bad signature, bad body), `info` otherwise.
    pub fn level(&self) -> &'static str {
        match self {
            Outcome::Delivered { results, .. } if results.iter().any(|r| r.gave_up) => "error",
            Outcome::Rejected { reason, .. } => reason.level(),
            _ => "info",
        }
    }

    pub fn log_line(&self, path: &str, duration_ms: u64, warnings: &[String]) -> String {
        let (outcome, code, event, results) = match self {
            Outcome::Delivered { event, results } if results.is_empty() => {
                ("held", None, Some(event), results.as_slice())
            }
            Outcome::Delivered { event, results } => {
                ("delivered", None, Some(event), results.as_slice())
            }
            Outcome::Queued { event, .. } => ("queued", None, Some(event), &[][..]),
            Outcome::Admin { action, .. } => (*action, None, None, &[][..]),
            Outcome::Ignored { event } => ("ignored", None, Some(event), &[][..]),
            Outcome::Rejected {
                reason,
                event,
                results,
            } => (
                "rejected",
                Some(*reason),
                event.as_ref(),
                results.as_slice(),
            ),
            Outcome::Health(_) => ("health", None, None, &[][..]),
        };
        let mut line = json!({
            "level": self.level(),
            "msg": "stripe-edge request",
            "path": path,
            "outcome": outcome,
            "status": self.status(),
            "duration_ms": duration_ms,
        });
        if let Some(reason) = code {
            line["code"] = json!(reason.code());
            line["retry_can_succeed"] = json!(reason.retry_can_succeed());
        }
        if let Some(event) = event {
            line["event_id"] = json!(event.id);
            line["event_type"] = json!(event.event_type);
            line["route"] = json!(event.routes);
            stale_fields(&mut line, event);
        }
        if let Outcome::Queued { destinations, .. } = self {
            line["queued"] = json!(destinations);
        }
        // A replay's answer names events and destinations only; the log keeps it.
        if let Outcome::Admin { action, body, .. } = self {
            if action.starts_with("admin_redeliver") {
                line["result"] = body.clone();
            }
        }
        if !results.is_empty() {
            line["destinations"] = json!(results);
        }
        if !warnings.is_empty() {
            line["warnings"] = json!(warnings);
        }
        line.to_string()
    }
}

/// Adds `stale` and `held` when the stale check found the event stale.
fn stale_fields(target: &mut Value, event: &EventRef) {
    if event.stale {
        target["stale"] = json!(true);
    }
    if !event.held.is_empty() {
        target["held"] = json!(event.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> EventRef {
        EventRef {
            id: "evt_1".into(),
            event_type: "invoice.paid".into(),
            routes: vec!["billing".into()],
            ..EventRef::default()
        }
    }

    fn result(destination: &str, ok: bool) -> DestinationResult {
        let result = if ok {
            Ok(())
        } else {
            Err("http_500".to_owned())
        };
        DestinationResult::new(destination, result)
    }

    #[test]
    fn log_levels_say_who_must_act() {
        let delivered = |results| Outcome::from_deliveries(event(), results);
        assert_eq!(delivered(vec![result("origin", true)]).level(), "info");
        assert_eq!(delivered(vec![result("origin", false)]).level(), "error");
        let given_up = DestinationResult::failed("origin", "http_400", true);
        assert_eq!(
            delivered(vec![result("kv", true), given_up]).level(),
            "error"
        );
        assert_eq!(
            Outcome::rejected(Rejection::SignatureMismatch).level(),
            "warn"
        );
        assert_eq!(Outcome::rejected(Rejection::ConfigInvalid).level(), "error");
        let line = Outcome::rejected(Rejection::SignatureMismatch).log_line("/webhook", 1, &[]);
        assert!(line.contains(r#""level":"warn""#), "{line}");
    }

    #[test]
    fn a_repeat_of_a_delivered_event_says_so() {
        let repeat = Outcome::from_deliveries(event(), vec![DestinationResult::earlier("kv")]);
        assert_eq!(
            repeat.body(),
            json!({"received": true, "id": "evt_1", "delivered": ["kv"], "duplicate": true})
        );
        let mixed = Outcome::from_deliveries(
            event(),
            vec![DestinationResult::earlier("kv"), result("origin", true)],
        );
        assert_eq!(mixed.body().get("duplicate"), None);
        let busy = Outcome::rejected(Rejection::DeliveryInProgress);
        assert_eq!(
            (busy.status(), busy.body()),
            (409, json!({"error": "delivery_in_progress"}))
        );
    }

    #[test]
    fn every_rejection_has_a_distinct_code_and_an_error_status() {
        let all = [
            Rejection::UnknownPath,
            Rejection::MethodNotAllowed("POST"),
            Rejection::PayloadTooLarge,
            Rejection::BodyUnreadable,
            Rejection::SignatureHeaderMissing,
            Rejection::SignatureHeaderMalformed,
            Rejection::SignatureMismatch,
            Rejection::TimestampTooOld,
            Rejection::TimestampInFuture,
            Rejection::NotAnEvent,
            Rejection::SecretMissing,
            Rejection::ConfigInvalid,
            Rejection::DeliveryFailed,
            Rejection::DeliveryInProgress,
            Rejection::QueueUnavailable,
            Rejection::LedgerUnavailable,
            Rejection::Unauthorized,
            Rejection::EventNotKept,
        ];
        let mut codes: Vec<&str> = all.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|r| r.status() >= 400));
    }

    #[test]
    fn all_destinations_ok_is_delivered_one_failure_is_503() {
        let ok = Outcome::from_deliveries(event(), vec![result("kv", true)]);
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.body()["delivered"], json!(["kv"]));

        let partial =
            Outcome::from_deliveries(event(), vec![result("kv", true), result("origin", false)]);
        assert_eq!(partial.status(), 503);
        assert_eq!(
            partial.body(),
            json!({"error": "delivery_failed", "id": "evt_1"})
        );
    }

    #[test]
    fn log_line_names_the_event_and_results_and_nothing_else() {
        let outcome =
            Outcome::from_deliveries(event(), vec![result("kv", true), result("origin", false)]);
        let warnings = ["secret #2 looks like a secret API key".to_owned()];
        let line: Value =
            serde_json::from_str(&outcome.log_line("/webhook", 7, &warnings)).expect("json");
        assert_eq!(line["warnings"][0], warnings[0]);
        assert_eq!(line["level"], "error");
        assert_eq!(line["code"], "delivery_failed");
        assert_eq!(line["event_id"], "evt_1");
        assert_eq!(line["destinations"][1]["error"], "http_500");
        assert_eq!(line["duration_ms"], 7);
        let keys: Vec<&String> = line.as_object().expect("object").keys().collect();
        for forbidden in ["body", "payload", "signature", "data"] {
            assert!(!keys.iter().any(|k| k.contains(forbidden)), "{forbidden}");
        }
    }

    #[test]
    fn a_destination_that_gave_up_does_not_fail_the_delivery() {
        let outcome = Outcome::from_deliveries(
            event(),
            vec![
                result("kv", true),
                DestinationResult::failed("origin", "http_400", true),
            ],
        );
        assert_eq!(outcome.status(), 200);
        assert_eq!(
            outcome.body(),
            json!({"received": true, "id": "evt_1", "delivered": ["kv"], "gave_up": ["origin"]})
        );
        let line: Value =
            serde_json::from_str(&outcome.log_line("/webhook", 1, &[])).expect("json");
        assert_eq!(line["level"], "error", "an operator must look at it");
        assert_eq!(line["destinations"][1]["gave_up"], true);

        let mixed = Outcome::from_deliveries(
            event(),
            vec![
                DestinationResult::failed("kv", "kv_write", false),
                DestinationResult::failed("origin", "http_400", true),
            ],
        );
        assert_eq!(
            mixed.status(),
            503,
            "a transient failure still asks Stripe to retry"
        );
    }

    #[test]
    fn held_and_queued_answers() {
        let mut stale = event();
        stale.stale = true;
        stale.held = vec!["origin".into()];
        let held = Outcome::from_deliveries(stale.clone(), Vec::new());
        assert_eq!(held.status(), 200);
        assert_eq!(
            held.body(),
            json!({"received": true, "id": "evt_1", "delivered": [], "stale": true, "held": ["origin"]})
        );
        let line: Value = serde_json::from_str(&held.log_line("/webhook", 1, &[])).expect("json");
        assert_eq!(line["outcome"], "held");
        let queued = Outcome::Queued {
            event: event(),
            destinations: vec!["kv".into()],
        };
        assert_eq!(queued.status(), 202);
        assert_eq!(
            queued.body(),
            json!({"received": true, "id": "evt_1", "queued": ["kv"]})
        );
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let outcome = Outcome::rejected(Rejection::MethodNotAllowed("POST"));
        assert_eq!(outcome.status(), 405);
        assert_eq!(outcome.allow(), Some("POST"));
    }
}
