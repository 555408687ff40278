//! Step 2 of the pipeline: read a verified body as a Stripe event. Both shapes Stripe sends
//! are understood: snapshot events (`"object": "event"`, the API object inside
//! `data.object`) and thin events (`"object": "v2.core.event"`, a pointer in
//! `related_object`). The body is parsed once, here, and its parts are moved, not copied,
//! into the normalized event.

use serde_json::{Map, Value};

use crate::outcome::Rejection;
use crate::signature::Verified;
use crate::time::parse_rfc3339_seconds;

/// Longest event id accepted. Stripe's ids are about 30 bytes; the id becomes a KV key
/// (at most 512 bytes) and an HTTP header, so a bound keeps both valid.
const MAX_EVENT_ID_BYTES: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `"object": "event"`: the API object is in `data.object`.
    Snapshot,
    /// `"object": "v2.core.event"`: only a reference to the changed object.
    Thin,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Snapshot => "snapshot",
            EventKind::Thin => "thin",
        }
    }
}

/// A Stripe event, with the fields every consumer needs pulled out of the JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    pub kind: EventKind,
    /// Unix seconds, whatever form the event carried it in.
    pub created: i64,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// The Connect account the event belongs to, if any.
    pub account: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// `data.object` unchanged for snapshot events; `Value::Null` for thin ones.
    pub data: Value,
    pub previous_attributes: Value,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// Parses a verified body.
///
/// Fails with [`Rejection::NotAnEvent`] when the bytes are not a JSON object, when `object`
/// is neither `event` nor `v2.core.event`, or when the fields every event of that kind has
/// (`id`, `type`, `created`, and `data.object` for snapshots) are missing or mistyped.
pub fn parse(verified: &Verified<'_>) -> Result<StripeEvent, Rejection> {
    let value: Value =
        serde_json::from_slice(verified.body()).map_err(|_| Rejection::NotAnEvent)?;
    let Value::Object(mut root) = value else {
        return Err(Rejection::NotAnEvent);
    };
    let id = optional_str(&root, "id").filter(|id| is_usable_id(id));
    let event_type = optional_str(&root, "type").filter(|t| !t.is_empty());
    let (Some(id), Some(event_type)) = (id, event_type) else {
        return Err(Rejection::NotAnEvent);
    };
    let livemode = root
        .get("livemode")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    match root.get("object").and_then(Value::as_str) {
        Some("event") => snapshot(&mut root, id, event_type, livemode),
        Some("v2.core.event") => thin(&root, id, event_type, livemode),
        _ => Err(Rejection::NotAnEvent),
    }
}

fn snapshot(
    root: &mut Map<String, Value>,
    id: String,
    event_type: String,
    livemode: bool,
) -> Result<StripeEvent, Rejection> {
    let created = root
        .get("created")
        .and_then(Value::as_i64)
        .ok_or(Rejection::NotAnEvent)?;
    let Some(Value::Object(mut data)) = root.remove("data") else {
        return Err(Rejection::NotAnEvent);
    };
    let object = match data.remove("object") {
        Some(object @ Value::Object(_)) => object,
        _ => return Err(Rejection::NotAnEvent),
    };
    let previous_attributes = data.remove("previous_attributes").unwrap_or(Value::Null);

    // Before API version 2017-05-25 `request` was a bare id string.
    let (request_id, idempotency_key) = match root.get("request") {
        Some(Value::String(id)) => (Some(id.clone()), None),
        Some(Value::Object(request)) => (
            optional_str(request, "id"),
            optional_str(request, "idempotency_key"),
        ),
        _ => (None, None),
    };

    Ok(StripeEvent {
        id,
        event_type,
        kind: EventKind::Snapshot,
        created,
        livemode,
        api_version: optional_str(root, "api_version"),
        account: optional_str(root, "account"),
        object_type: optional_str_in(&object, "object"),
        object_id: optional_str_in(&object, "id"),
        data: object,
        previous_attributes,
        request_id,
        idempotency_key,
    })
}

fn thin(
    root: &Map<String, Value>,
    id: String,
    event_type: String,
    livemode: bool,
) -> Result<StripeEvent, Rejection> {
    let created = root
        .get("created")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339_seconds)
        .ok_or(Rejection::NotAnEvent)?;
    let related = root.get("related_object").and_then(Value::as_object);
    let request = root
        .get("reason")
        .and_then(|reason| reason.get("request"))
        .and_then(Value::as_object);

    Ok(StripeEvent {
        id,
        event_type,
        kind: EventKind::Thin,
        created,
        livemode,
        api_version: None,
        account: optional_str(root, "context"),
        object_type: related.and_then(|r| optional_str(r, "type")),
        object_id: related.and_then(|r| optional_str(r, "id")),
        data: Value::Null,
        previous_attributes: Value::Null,
        request_id: request.and_then(|r| optional_str(r, "id")),
        idempotency_key: request.and_then(|r| optional_str(r, "idempotency_key")),
    })
}

fn is_usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EVENT_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

fn optional_str(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn optional_str_in(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{verify, SigningSecret};

    const NOW: i64 = 1_796_042_096;

    fn parse_body(body: &str) -> Result<StripeEvent, Rejection> {
        let secret = SigningSecret::new("whsec_event_tests");
        let header = secret.sign_header(NOW, body.as_bytes());
        let verified = verify(Some(&header), body.as_bytes(), &[secret], 300, NOW)
            .expect("signed by the test itself");
        parse(&verified)
    }

    #[test]
    fn snapshot_event_fields() {
        let event = parse_body(
            r#"{"id":"evt_1","object":"event","api_version":"2024-06-20","created":1700000000,
            "account":"acct_9","livemode":true,"type":"customer.updated",
            "request":{"id":"req_1","idempotency_key":"ik_1"},
            "data":{"object":{"id":"cus_1","object":"customer","name":"Zoë"},
                    "previous_attributes":{"name":"Zoe"}}}"#,
        )
        .expect("valid");
        assert_eq!(event.kind, EventKind::Snapshot);
        assert_eq!(event.created, 1_700_000_000);
        assert!(event.livemode);
        assert_eq!(event.account.as_deref(), Some("acct_9"));
        assert_eq!(event.object_type.as_deref(), Some("customer"));
        assert_eq!(event.object_id.as_deref(), Some("cus_1"));
        assert_eq!(event.data["name"], "Zoë");
        assert_eq!(event.previous_attributes["name"], "Zoe");
        assert_eq!(event.request_id.as_deref(), Some("req_1"));
        assert_eq!(event.idempotency_key.as_deref(), Some("ik_1"));
    }

    #[test]
    fn old_style_request_string() {
        let event = parse_body(
            r#"{"id":"evt_1","object":"event","created":1,"type":"x","request":"req_old",
            "data":{"object":{"id":"ch_1","object":"charge"}}}"#,
        )
        .expect("valid");
        assert_eq!(event.request_id.as_deref(), Some("req_old"));
        assert_eq!(event.idempotency_key, None);
        assert_eq!(event.previous_attributes, Value::Null);
    }

    #[test]
    fn thin_event_fields() {
        let event = parse_body(
            r#"{"id":"evt_test_65R","object":"v2.core.event",
            "type":"v1.billing.meter.error_report_triggered","livemode":false,
            "created":"2026-11-30T12:34:56.789Z","context":"acct_2",
            "related_object":{"id":"mtr_1","type":"billing.meter","url":"/v1/billing/meters/mtr_1"},
            "reason":{"type":"request","request":{"id":"req_9","idempotency_key":"ik_9"}}}"#,
        )
        .expect("valid");
        assert_eq!(event.kind, EventKind::Thin);
        assert_eq!(event.created, NOW);
        assert_eq!(event.account.as_deref(), Some("acct_2"));
        assert_eq!(event.object_type.as_deref(), Some("billing.meter"));
        assert_eq!(event.object_id.as_deref(), Some("mtr_1"));
        assert_eq!(event.data, Value::Null);
        assert_eq!(event.request_id.as_deref(), Some("req_9"));
    }

    #[test]
    fn bodies_that_are_not_events() {
        let cases = [
            "",
            "not json",
            "[]",
            "null",
            r#"{"object":"event"}"#,
            r#"{"id":"evt_1","object":"charge","type":"x","created":1,"data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"event","type":"x","data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"event","type":"x","created":"1","data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"event","type":"x","created":1,"data":{}}"#,
            r#"{"id":"evt_1","object":"event","type":"x","created":1,"data":{"object":[]}}"#,
            r#"{"id":"","object":"event","type":"x","created":1,"data":{"object":{}}}"#,
            r#"{"id":"evt 1","object":"event","type":"x","created":1,"data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"event","type":"","created":1,"data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"v2.core.event","type":"x","created":1}"#,
            r#"{"id":"evt_1","object":"v2.core.event","type":"x","created":"yesterday"}"#,
            // A thin envelope with a snapshot's integer `created`, and the reverse.
            r#"{"id":"evt_1","object":"v2.core.event","type":"x","created":1700000000,"data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"event","type":"x","created":"2026-11-30T12:34:56Z","data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"event","type":"x","created":1,"related_object":{"id":"mtr_1"}}"#,
        ];
        for body in cases {
            assert_eq!(parse_body(body), Err(Rejection::NotAnEvent), "{body}");
        }
    }

    #[test]
    fn non_utf8_body_is_not_an_event() {
        let body = b"{\"id\":\"\xff\"}";
        let secret = SigningSecret::new("whsec_event_tests");
        let header = secret.sign_header(NOW, body);
        let verified = verify(Some(&header), body, &[secret], 300, NOW).expect("signed");
        assert_eq!(parse(&verified), Err(Rejection::NotAnEvent));
    }
}
