//! Step 4 of the pipeline: turn a Stripe event into the one JSON shape every destination
//! receives, whatever the event type or kind. The shape is versioned by [`SCHEMA`]; fields
//! are only ever added within a version, never renamed or removed.

use serde::Serialize;
use serde_json::Value;

use crate::event::StripeEvent;

/// The version tag of the normalized shape, carried in its `schema` field.
pub const SCHEMA: &str = "stripe-edge.event.v1";

/// The normalized event, serialized in this field order.
#[derive(Debug, Serialize)]
pub struct Normalized {
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
    pub data: Value,
    pub previous_attributes: Value,
    pub request: RequestRef,
    pub summary: Summary,
    pub received_at: i64,
    pub route: Vec<String>,
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
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub status: Option<String>,
    pub customer: Option<String>,
}

/// Amount fields in order of preference: payment intents, charges, transfers and refunds
/// carry `amount`; Checkout Sessions `amount_total`; invoices `total`.
const AMOUNT_FIELDS: [&str; 3] = ["amount", "amount_total", "total"];

impl Summary {
    pub fn of(object_type: Option<&str>, object_id: Option<&str>, data: &Value) -> Summary {
        let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
        // `customer` is an id, or the whole customer when the field was expanded; a
        // customer object is its own customer.
        let customer = match data.get("customer") {
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Object(expanded)) => expanded
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ if object_type == Some("customer") => object_id.map(str::to_owned),
            _ => None,
        };
        Summary {
            amount: AMOUNT_FIELDS
                .iter()
                .find_map(|key| data.get(*key).and_then(Value::as_i64)),
            currency: text("currency"),
            status: text("status"),
            customer,
        }
    }
}

/// Builds the normalized event. `routes` names the rules that matched and `received_at`
/// is the worker's clock, in unix seconds.
pub fn normalize(event: StripeEvent, routes: Vec<String>, received_at: i64) -> Normalized {
    let summary = Summary::of(
        event.object_type.as_deref(),
        event.object_id.as_deref(),
        &event.data,
    );
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
        summary,
        received_at,
        route: routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use serde_json::json;

    fn event(data: Value) -> StripeEvent {
        StripeEvent {
            id: "evt_1".into(),
            event_type: "invoice.paid".into(),
            kind: EventKind::Snapshot,
            created: 10,
            livemode: false,
            api_version: Some("2024-06-20".into()),
            account: None,
            object_type: data.get("object").and_then(Value::as_str).map(Into::into),
            object_id: data.get("id").and_then(Value::as_str).map(Into::into),
            data,
            previous_attributes: Value::Null,
            request_id: None,
            idempotency_key: None,
        }
    }

    #[test]
    fn shape_and_field_order() {
        let data = json!({"id": "in_1", "object": "invoice", "total": 500, "currency": "eur",
                          "status": "paid", "customer": "cus_1", "amount_due": 500});
        let normalized = normalize(event(data.clone()), vec!["billing".into()], 20);
        let text = serde_json::to_string(&normalized).expect("serializes");
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .expect("object")
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
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
                "route"
            ]
        );
        let value: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["data"], data);
        assert_eq!(value["object"], json!({"type": "invoice", "id": "in_1"}));
        assert_eq!(
            value["summary"],
            json!({"amount": 500, "currency": "eur", "status": "paid", "customer": "cus_1"})
        );
        assert_eq!(
            value["request"],
            json!({"id": null, "idempotency_key": null})
        );
    }

    #[test]
    fn summaries() {
        let cases = [
            (
                json!({"object": "payment_intent", "id": "pi_1", "amount": 2000,
                       "amount_received": 2000, "currency": "usd", "status": "succeeded",
                       "customer": {"id": "cus_2", "object": "customer"}}),
                Summary {
                    amount: Some(2000),
                    currency: Some("usd".into()),
                    status: Some("succeeded".into()),
                    customer: Some("cus_2".into()),
                },
            ),
            (
                json!({"object": "customer", "id": "cus_3", "currency": null}),
                Summary {
                    customer: Some("cus_3".into()),
                    ..Summary::default()
                },
            ),
            (
                json!({"object": "subscription", "id": "sub_1", "status": "canceled",
                       "customer": "cus_4", "currency": "gbp"}),
                Summary {
                    currency: Some("gbp".into()),
                    status: Some("canceled".into()),
                    customer: Some("cus_4".into()),
                    ..Summary::default()
                },
            ),
            (json!({"object": "thing"}), Summary::default()),
        ];
        for (data, expected) in cases {
            let object_type = data.get("object").and_then(Value::as_str);
            let id = data.get("id").and_then(Value::as_str);
            assert_eq!(Summary::of(object_type, id, &data), expected, "{data}");
        }
    }
}
