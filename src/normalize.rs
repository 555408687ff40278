//! Step 4 of the pipeline: turn a Stripe event into the one JSON shape every destination
//! receives, whatever the event type or kind. The shape is versioned by [`SCHEMA`]; fields
//! are only ever added within a version, never renamed or removed.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::{lenient, StripeEvent};

/// The version tag of the normalized shape, carried in its `schema` field.
pub const SCHEMA: &str = "stripe-edge.event.v1";

/// The normalized event, serialized in this field order.
#[derive(Debug, Serialize)]
pub struct Normalized<'b> {
    pub schema: &'static str,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub kind: &'static str,
    pub created: i64,
    pub livemode: bool,
    pub api_version: Option<String>,
    pub account: Option<String>,
    pub object: ObjectRef,
    pub data: Option<&'b RawValue>,
    pub previous_attributes: Option<&'b RawValue>,
    pub request: RequestRef,
    pub summary: Summary,
    pub received_at: i64,
    pub route: Vec<String>,
    /// True when a route asked for "latest wins" and a newer event for the same object
    /// arrived first; false otherwise.
    pub stale: bool,
}

#[derive(Debug, Serialize)]
pub struct ObjectRef {
    #[serde(rename = "type")]
    pub object_type: Option<String>,
    pub id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RequestRef {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The few fields most consumers look for first, lifted out of `data` when the object has
/// them; always present, `null` when it does not.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub status: Option<String>,
    pub customer: Option<String>,
}

/// The fields of `data.object` the pipeline reads, taken in the one pass over it: its name
/// (`object`, `id`) and what the summary lifts. Payment intents, charges, transfers and
/// refunds carry `amount`; Checkout Sessions `amount_total`; invoices `total`.
#[derive(Deserialize, Default)]
pub struct ObjectFields {
    #[serde(default, deserialize_with = "lenient")]
    pub object: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    amount: Option<i64>,
    #[serde(default, deserialize_with = "lenient")]
    amount_total: Option<i64>,
    #[serde(default, deserialize_with = "lenient")]
    total: Option<i64>,
    #[serde(default, deserialize_with = "lenient")]
    currency: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    customer: Option<Customer>,
}

/// `customer` is an id, or the whole customer when the field was expanded.
#[derive(Deserialize)]
#[serde(untagged)]
enum Customer {
    Id(String),
    Expanded { id: String },
}

impl ObjectFields {
    /// The summary of the object these fields came from.
    pub fn summary(&self) -> Summary {
        // A customer object is its own customer.
        let customer = match &self.customer {
            Some(Customer::Id(id) | Customer::Expanded { id }) => Some(id.clone()),
            None if self.object.as_deref() == Some("customer") => self.id.clone(),
            None => None,
        };
        Summary {
            amount: self.amount.or(self.amount_total).or(self.total),
            currency: self.currency.clone(),
            status: self.status.clone(),
            customer,
        }
    }
}

/// Builds the normalized event. `routes` names the rules that matched and `received_at`
/// is the worker's clock, in unix seconds.
pub fn normalize(
    event: StripeEvent<'_>,
    routes: Vec<String>,
    received_at: i64,
    stale: bool,
) -> Normalized<'_> {
    Normalized {
        schema: SCHEMA,
        id: event.id,
        event_type: event.event_type,
        kind: event.kind.as_str(),
        created: event.created,
        livemode: event.livemode,
        api_version: event.api_version,
        account: event.account,
        object: ObjectRef {
            object_type: event.object_type,
            id: event.object_id,
        },
        data: event.data,
        previous_attributes: event.previous_attributes,
        request: RequestRef {
            id: event.request_id,
            idempotency_key: event.idempotency_key,
        },
        summary: event.summary,
        received_at,
        route: routes,
        stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use serde_json::{json, Value};

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).expect("valid JSON")
    }

    fn event(data: &RawValue) -> StripeEvent<'_> {
        let value: Value = serde_json::from_str(data.get()).expect("json");
        let fields: ObjectFields = serde_json::from_str(data.get()).expect("object");
        StripeEvent {
            summary: fields.summary(),
            id: "evt_1".into(),
            event_type: "invoice.paid".into(),
            kind: EventKind::Snapshot,
            created: 10,
            livemode: false,
            api_version: Some("2024-06-20".into()),
            account: None,
            object_type: value.get("object").and_then(Value::as_str).map(Into::into),
            object_id: value.get("id").and_then(Value::as_str).map(Into::into),
            data: Some(data),
            previous_attributes: None,
            request_id: None,
            idempotency_key: None,
        }
    }

    #[test]
    fn shape_field_order_and_data_kept_byte_for_byte() {
        let text = r#"{"id": "in_1", "object": "invoice", "total": 500, "currency": "eur",
            "status": "paid", "customer": "cus_1", "big": 12345678901234567890123, "f": 1.10,
            "e": "caf\u00e9 \/"}"#;
        let data = raw(text);
        let normalized = normalize(event(data), vec!["billing".into()], 20, false);
        let out = serde_json::to_string(&normalized).expect("serializes");
        assert!(
            out.contains(text),
            "data must be forwarded unchanged: {out}"
        );
        let key_order = [
            "schema",
            "id",
            "type",
            "kind",
            "created",
            "livemode",
            "api_version",
            "account",
            "object",
            "data",
            "previous_attributes",
            "request",
            "summary",
            "received_at",
            "route",
        ];
        let positions: Vec<usize> = key_order
            .iter()
            .map(|key| out.find(&format!("\"{key}\":")).expect(key))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
        let value: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(value["object"], json!({"type": "invoice", "id": "in_1"}));
        assert_eq!(
            value["summary"],
            json!({"amount": 500, "currency": "eur", "status": "paid", "customer": "cus_1"})
        );
        assert_eq!(
            value["request"],
            json!({"id": null, "idempotency_key": null})
        );
        assert_eq!(value["previous_attributes"], Value::Null);
    }

    #[test]
    fn summaries() {
        let cases = [
            (
                r#"{"object": "payment_intent", "id": "pi_1", "amount": 2000,
                   "amount_received": 2000, "currency": "usd", "status": "succeeded",
                   "customer": {"id": "cus_2", "object": "customer"}}"#,
                Summary {
                    amount: Some(2000),
                    currency: Some("usd".into()),
                    status: Some("succeeded".into()),
                    customer: Some("cus_2".into()),
                },
            ),
            (
                r#"{"object": "customer", "id": "cus_3", "currency": null}"#,
                Summary {
                    customer: Some("cus_3".into()),
                    ..Summary::default()
                },
            ),
            (
                r#"{"object": "subscription", "id": "sub_1", "status": "canceled",
                   "customer": "cus_4", "currency": "gbp"}"#,
                Summary {
                    currency: Some("gbp".into()),
                    status: Some("canceled".into()),
                    customer: Some("cus_4".into()),
                    ..Summary::default()
                },
            ),
            (
                r#"{"object": "checkout.session", "amount_total": 990, "status": {"odd": true},
                   "amount": "not a number"}"#,
                Summary {
                    amount: Some(990),
                    ..Summary::default()
                },
            ),
            (r#"{"object": "thing"}"#, Summary::default()),
        ];
        for (text, expected) in cases {
            let fields: ObjectFields = serde_json::from_str(text).expect("object");
            assert_eq!(fields.summary(), expected, "{text}");
        }
    }
}
