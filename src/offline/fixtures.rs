//! The project's own example events, one per event type, embedded in the binary so the
//! offline sender works from any directory. Each is a complete event as Stripe delivers it;
//! [`fresh_event`] gives it a new id and timestamp the way `stripe trigger` creates a new
//! event each time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::time::format_rfc3339;

/// One example event.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    pub event_type: &'static str,
    pub json: &'static str,
    /// Whether the default `wrangler.toml` routes this type.
    pub routed_by_default: bool,
}

macro_rules! fixture {
    ($name:literal, $routed:literal) => {
        Fixture {
            event_type: $name,
            json: include_str!(concat!("../../fixtures/events/", $name, ".json")),
            routed_by_default: $routed,
        }
    };
}

/// Every fixture: first the fifteen types the default routes name, then the extras that
/// exercise Connect and thin events.
pub const FIXTURES: &[Fixture] = &[
    fixture!("transfer.created", true),
    fixture!("payment_intent.succeeded", true),
    fixture!("charge.succeeded", true),
    fixture!("charge.pending", true),
    fixture!("payment_intent.processing", true),
    fixture!("payment_intent.created", true),
    fixture!("payment_intent.requires_action", true),
    fixture!("customer.subscription.updated", true),
    fixture!("invoice.created", true),
    fixture!("customer.updated", true),
    fixture!("customer.subscription.deleted", true),
    fixture!("invoice.updated", true),
    fixture!("invoice.voided", true),
    fixture!("invoice.paid", true),
    fixture!("invoice.finalized", true),
    fixture!("account.updated", false),
    fixture!("v1.billing.meter.error_report_triggered", false),
];

/// The fixture for `event_type`, if the project ships one.
pub fn find(event_type: &str) -> Option<&'static Fixture> {
    FIXTURES.iter().find(|f| f.event_type == event_type)
}

/// A new, unique event id in Stripe's style (`evt_` and 24 characters).
pub fn new_event_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    format!("evt_1Edge{}", &hex::encode(hasher.finalize())[..19])
}

/// The fixture as a new event: `id` replaced, `created` set to `created` (unix seconds for
/// snapshot events, RFC 3339 for thin ones), pretty-printed as Stripe sends it.
pub fn fresh_event(fixture: &Fixture, id: &str, created: i64) -> Vec<u8> {
    // The fixtures are checked by tests to be JSON objects, so these cannot fail at run time.
    let mut event: Value = serde_json::from_str(fixture.json).unwrap_or(Value::Null);
    if let Some(object) = event.as_object_mut() {
        let thin = object.get("object").and_then(Value::as_str) == Some("v2.core.event");
        object.insert("id".into(), Value::from(id));
        let created = if thin {
            Value::from(format_rfc3339(created))
        } else {
            Value::from(created)
        };
        object.insert("created".into(), created);
    }
    serde_json::to_vec_pretty(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_is_an_event_of_its_own_type() {
        let mut names: Vec<&str> = FIXTURES.iter().map(|f| f.event_type).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIXTURES.len());
        for fixture in FIXTURES {
            let value: Value = serde_json::from_str(fixture.json).expect(fixture.event_type);
            assert_eq!(value["type"], fixture.event_type);
            assert!(matches!(
                value["object"].as_str(),
                Some("event" | "v2.core.event")
            ));
        }
        assert_eq!(FIXTURES.iter().filter(|f| f.routed_by_default).count(), 15);
    }

    #[test]
    fn fresh_events_get_new_ids_and_times() {
        let fixture = find("invoice.paid").expect("shipped");
        let first = new_event_id();
        assert_ne!(first, new_event_id());
        assert_eq!(first.len(), "evt_".len() + 24);
        let event: Value = serde_json::from_slice(&fresh_event(fixture, &first, 42)).expect("json");
        assert_eq!(
            (event["id"].as_str(), event["created"].as_i64()),
            (Some(first.as_str()), Some(42))
        );

        let thin = find("v1.billing.meter.error_report_triggered").expect("shipped");
        let event: Value = serde_json::from_slice(&fresh_event(thin, "evt_x", 0)).expect("json");
        assert_eq!(event["created"], "1970-01-01T00:00:00.000Z");
    }
}
