//! Step 2 of the pipeline: read a verified body as a Stripe event. Both shapes Stripe sends
//! are understood: snapshot events (`"object": "event"`, the API object inside
//! `data.object`) and thin events (`"object": "v2.core.event"`, a pointer in
//! `related_object`). The body is parsed once, here, and its parts are moved, not copied,
//! into the normalized event.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::normalize::{ObjectFields, Summary};
use crate::outcome::Rejection;
use crate::signature::Verified;
use crate::time::parse_rfc3339_seconds;

/// Longest event id accepted. Stripe's ids are about 30 bytes; the id becomes a KV key
/// (at most 512 bytes) and an HTTP header, so a bound keeps both valid.
const MAX_EVENT_ID_BYTES: usize = 255;
/// Longest event type accepted; Stripe's longest are under 80 bytes. The type becomes an
/// HTTP header and a log field.
const MAX_EVENT_TYPE_BYTES: usize = 128;

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

/// A Stripe event, with the fields every consumer needs pulled out. `data` and
/// `previous_attributes` borrow the exact JSON text Stripe sent, so they are forwarded
/// byte for byte, never re-encoded.
#[derive(Debug, Clone)]
pub struct StripeEvent<'b> {
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
    /// Amount, currency, status and customer, where `data.object` has them.
    pub summary: Summary,
    /// `data.object` as sent, for snapshot events; `None` for thin ones.
    pub data: Option<&'b RawValue>,
    pub previous_attributes: Option<&'b RawValue>,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The envelope of both event kinds, as sent. Unknown fields are skipped without being
/// built into a tree.
#[derive(Deserialize)]
struct Envelope<'b> {
    id: Option<String>,
    object: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    created: Option<Created>,
    livemode: Option<bool>,
    api_version: Option<String>,
    account: Option<String>,
    #[serde(borrow)]
    data: Option<Data<'b>>,
    request: Option<RequestField>,
    // Thin events only.
    context: Option<String>,
    related_object: Option<Related>,
    reason: Option<Reason>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Created {
    Unix(i64),
    Text(String),
}

#[derive(Deserialize)]
struct Data<'b> {
    #[serde(borrow)]
    object: Option<&'b RawValue>,
    #[serde(borrow)]
    previous_attributes: Option<&'b RawValue>,
}

/// `request` is an object since API version 2017-05-25 and a bare id string before.
#[derive(Deserialize)]
#[serde(untagged)]
enum RequestField {
    Id(String),
    Object {
        id: Option<String>,
        idempotency_key: Option<String>,
    },
}

#[derive(Deserialize)]
struct Related {
    id: Option<String>,
    #[serde(rename = "type")]
    object_type: Option<String>,
}

#[derive(Deserialize)]
struct Reason {
    request: Option<ThinRequest>,
}

#[derive(Deserialize)]
struct ThinRequest {
    id: Option<String>,
    idempotency_key: Option<String>,
}

/// Reads a field as `T` when it has that type, and as absent otherwise, so one oddly typed
/// field in an API object never makes a genuine event unreadable.
pub(crate) fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// Parses a verified body.
///
/// Fails with [`Rejection::NotAnEvent`] when the bytes are not a JSON object of the event
/// envelope's shape, when `object` is neither `event` nor `v2.core.event`, or when the
/// fields every event of that kind has (`id`, `type`, `created`, and an object in
/// `data.object` for snapshots) are missing or mistyped.
pub fn parse<'b>(verified: &Verified<'b>) -> Result<StripeEvent<'b>, Rejection> {
    let envelope: Envelope<'b> =
        serde_json::from_slice(verified.body()).map_err(|_| Rejection::NotAnEvent)?;
    let id = envelope.id.filter(|id| is_token(id, MAX_EVENT_ID_BYTES));
    let event_type = envelope
        .event_type
        .filter(|t| is_token(t, MAX_EVENT_TYPE_BYTES));
    let (Some(id), Some(event_type)) = (id, event_type) else {
        return Err(Rejection::NotAnEvent);
    };
    let livemode = envelope.livemode.unwrap_or(false);

    match (envelope.object.as_deref(), envelope.created) {
        (Some("event"), Some(Created::Unix(created))) => {
            let data = envelope.data.ok_or(Rejection::NotAnEvent)?;
            let object = data.object.filter(|raw| raw.get().starts_with('{'));
            let object = object.ok_or(Rejection::NotAnEvent)?;
            // The one pass over `data.object`: its name and its summary fields.
            let fields: ObjectFields =
                serde_json::from_str(object.get()).map_err(|_| Rejection::NotAnEvent)?;
            let (request_id, idempotency_key) = match envelope.request {
                Some(RequestField::Id(id)) => (Some(id), None),
                Some(RequestField::Object {
                    id,
                    idempotency_key,
                }) => (id, idempotency_key),
                None => (None, None),
            };
            Ok(StripeEvent {
                id,
                event_type,
                kind: EventKind::Snapshot,
                created,
                livemode,
                api_version: envelope.api_version,
                account: envelope.account,
                summary: fields.summary(),
                object_type: fields.object,
                object_id: fields.id,
                data: Some(object),
                previous_attributes: data.previous_attributes.filter(|raw| raw.get() != "null"),
                request_id,
                idempotency_key,
            })
        }
        (Some("v2.core.event"), Some(Created::Text(created))) => {
            let created = parse_rfc3339_seconds(&created).ok_or(Rejection::NotAnEvent)?;
            let related = envelope.related_object;
            let request = envelope.reason.and_then(|reason| reason.request);
            let (object_type, object_id) = match related {
                Some(related) => (related.object_type, related.id),
                None => (None, None),
            };
            let (request_id, idempotency_key) = match request {
                Some(request) => (request.id, request.idempotency_key),
                None => (None, None),
            };
            Ok(StripeEvent {
                id,
                event_type,
                kind: EventKind::Thin,
                created,
                livemode,
                api_version: None,
                account: envelope.context,
                object_type,
                object_id,
                summary: Summary::default(),
                data: None,
                previous_attributes: None,
                request_id,
                idempotency_key,
            })
        }
        _ => Err(Rejection::NotAnEvent),
    }
}

/// Ids and types travel in KV keys, HTTP headers and log lines: printable ASCII only,
/// bounded in length.
fn is_token(text: &str, max_bytes: usize) -> bool {
    !text.is_empty() && text.len() <= max_bytes && text.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{verify, SigningSecret};

    const NOW: i64 = 1_796_042_096;

    /// Parses a body signed by the test itself.
    fn parse_body(body: &str) -> Result<StripeEvent<'_>, Rejection> {
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
        let data: Value = serde_json::from_str(event.data.expect("data").get()).expect("json");
        assert_eq!(data["name"], "Zoë");
        assert_eq!(
            event.previous_attributes.map(RawValue::get),
            Some(r#"{"name":"Zoe"}"#)
        );
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
        assert!(event.previous_attributes.is_none());
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
        assert!(event.data.is_none());
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
            r#"{"id":"evt_1","object":"event","type":"a\r\nX: 1","created":1,"data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"event","type":"invoice.pâid","created":1,"data":{"object":{}}}"#,
            r#"{"id":5,"object":"event","type":"x","created":1,"data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"v2.core.event","type":"x","created":1}"#,
            r#"{"id":"evt_1","object":"v2.core.event","type":"x","created":"yesterday"}"#,
            // A thin envelope with a snapshot's integer `created`, and the reverse.
            r#"{"id":"evt_1","object":"v2.core.event","type":"x","created":1700000000,"data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"event","type":"x","created":"2026-11-30T12:34:56Z","data":{"object":{}}}"#,
            r#"{"id":"evt_1","object":"event","type":"x","created":1,"related_object":{"id":"mtr_1"}}"#,
        ];
        for body in cases {
            assert_eq!(
                parse_body(body).err(),
                Some(Rejection::NotAnEvent),
                "{body}"
            );
        }
    }

    #[test]
    fn non_utf8_body_is_not_an_event() {
        let body = b"{\"id\":\"\xff\"}";
        let secret = SigningSecret::new("whsec_event_tests");
        let header = secret.sign_header(NOW, body);
        let verified = verify(Some(&header), body, &[secret], 300, NOW).expect("signed");
        assert_eq!(parse(&verified).err(), Some(Rejection::NotAnEvent));
    }
}
