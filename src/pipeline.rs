//! The whole decision for one request, with no I/O: which endpoint, then for a webhook
//! delivery verify, parse, route and normalize, ending in a [`Plan`] of writes for the
//! shell to carry out. Each step returns the [`Rejection`] that ends the request.

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::Config;
use crate::event;
use crate::normalize::{normalize, SCHEMA};
use crate::outcome::{EventRef, Rejection};
use crate::route::Destination;
use crate::signature::{verify_with_tags, TAG_BYTES};

/// The paths the worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Webhook,
    Health,
}

/// Picks the endpoint for a method and path (the path without its query string).
///
/// Fails with [`Rejection::UnknownPath`] or [`Rejection::MethodNotAllowed`].
pub fn endpoint(method: &str, path: &str) -> Result<Endpoint, Rejection> {
    match (path, method) {
        ("/webhook" | "/webhook/", "POST") => Ok(Endpoint::Webhook),
        ("/webhook" | "/webhook/", _) => Err(Rejection::MethodNotAllowed("POST")),
        ("/health" | "/health/", "GET" | "HEAD") => Ok(Endpoint::Health),
        ("/health" | "/health/", _) => Err(Rejection::MethodNotAllowed("GET, HEAD")),
        _ => Err(Rejection::UnknownPath),
    }
}

/// Turns a declared `Content-Length` that is already over the limit into a 413 before
/// the body is read.
pub fn check_declared_length(
    config: &Config,
    content_length: Option<&str>,
) -> Result<(), Rejection> {
    let declared = content_length.and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > config.max_body_bytes as u64 => Err(Rejection::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// The metadata stored beside each event in KV, readable by `list` without fetching
/// values. A typed struct rather than a JSON value: the wasm binding serializes it with
/// its own serializer, which does not understand serde_json's exact-number form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvMetadata {
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
}

/// One write the shell must perform.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Put the normalized event into the `EVENTS` namespace.
    Kv {
        key: String,
        metadata: KvMetadata,
        ttl_seconds: u64,
    },
    /// POST the normalized event to an origin.
    Origin {
        label: String,
        url: String,
        headers: Vec<(String, String)>,
        timeout_seconds: u64,
    },
}

impl Write {
    pub fn label(&self) -> &str {
        match self {
            Write::Kv { .. } => "kv",
            Write::Origin { label, .. } => label,
        }
    }
}

/// What to do with a verified event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No rule matched: acknowledge and log.
    Ignore(EventRef),
    /// Write `body` (the normalized event) to every destination.
    Deliver {
        event: EventRef,
        body: Vec<u8>,
        writes: Vec<Write>,
    },
}

/// Decides what to do with one delivery to `/webhook`, given its raw body, its
/// `Stripe-Signature` header and the current unix time.
///
/// Fails with the [`Rejection`] of the first step that refused it: payload size,
/// a missing secret, the signature checks, or a body that is not an event.
pub fn decide(
    config: &Config,
    signature_header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<Decision, Rejection> {
    decide_with_tags(config, signature_header, body, now, None)
}

/// [`decide`], with the signature tags optionally computed by the caller (see
/// [`verify_with_tags`]).
pub fn decide_with_tags(
    config: &Config,
    signature_header: Option<&str>,
    body: &[u8],
    now: i64,
    tags: Option<&[[u8; TAG_BYTES]]>,
) -> Result<Decision, Rejection> {
    if body.len() > config.max_body_bytes {
        return Err(Rejection::PayloadTooLarge);
    }

    let verified = verify_with_tags(
        signature_header,
        body,
        &config.secrets,
        config.tolerance_seconds,
        now,
        tags,
    )?;
    let event = event::parse(&verified)?;

    let matched = config.routes.matching(&event.event_type);
    let event_ref = EventRef {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        routes: matched.rule_names.clone(),
    };
    if matched.destinations.is_empty() {
        return Ok(Decision::Ignore(event_ref));
    }

    let kv_metadata = KvMetadata {
        event_type: event.event_type.clone(),
        created: event.created,
        livemode: event.livemode,
    };
    let normalized = normalize(event, matched.rule_names, now);
    // Serializing a tree of JSON values with string keys cannot fail.
    let body = serde_json::to_vec(&normalized).unwrap_or_default();

    let writes = matched
        .destinations
        .iter()
        .map(|destination| match destination {
            Destination::Kv => Write::Kv {
                key: event_ref.id.clone(),
                metadata: kv_metadata.clone(),
                ttl_seconds: config.kv_ttl_seconds,
            },
            Destination::Origin { label, url } => Write::Origin {
                label: label.clone(),
                url: url.clone(),
                headers: origin_headers(config, &event_ref, &body, now),
                timeout_seconds: config.origin_timeout_seconds,
            },
        })
        .collect();
    Ok(Decision::Deliver {
        event: event_ref,
        body,
        writes,
    })
}

/// Headers for the hop to an origin. The origin dedupes on `Idempotency-Key` (the Stripe
/// event id) and, when `FORWARD_SIGNING_SECRET` is set, verifies `Stripe-Edge-Signature`
/// exactly as it would verify Stripe's own header.
fn origin_headers(
    config: &Config,
    event: &EventRef,
    body: &[u8],
    now: i64,
) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        (
            "User-Agent".to_owned(),
            format!("stripe-edge/{}", crate::VERSION),
        ),
        ("Idempotency-Key".to_owned(), event.id.clone()),
        ("Stripe-Edge-Event-Id".to_owned(), event.id.clone()),
        (
            "Stripe-Edge-Event-Type".to_owned(),
            event.event_type.clone(),
        ),
        ("Stripe-Edge-Schema".to_owned(), SCHEMA.to_owned()),
    ];
    if let Some(secret) = &config.forward_secret {
        headers.push((
            "Stripe-Edge-Signature".to_owned(),
            secret.sign_header(now, body),
        ));
    }
    headers
}

/// The `GET /health` body: the version, which destinations are configured, and every
/// configuration problem by name. Never a secret's value.
pub fn health(config: &Result<Config, Vec<String>>, kv_bound: bool) -> Value {
    let mut body = json!({
        "service": "stripe-edge",
        "version": crate::VERSION,
        "schema": SCHEMA,
    });
    match config {
        Ok(config) => {
            let mut problems: Vec<String> = config
                .secret_problems
                .iter()
                .map(ToString::to_string)
                .collect();
            if config.secrets.is_empty() {
                problems.push("STRIPE_WEBHOOK_SECRET is not set: every delivery gets a 500".into());
            }
            let routes_kv = config
                .routes
                .rules
                .iter()
                .any(|rule| rule.destinations.contains(&Destination::Kv));
            if routes_kv && !kv_bound {
                problems.push("a route names kv but the EVENTS binding is missing".into());
            }
            body["ok"] = json!(problems.is_empty());
            body["destinations"] = json!({
                "origin": config.origin_url.is_some(),
                "kv": kv_bound,
            });
            body["secrets"] = json!({
                "configured": config.secrets.len(),
            });
            body["forward_signing"] = json!(config.forward_secret.is_some());
            body["tolerance_seconds"] = json!(config.tolerance_seconds);
            body["routes"] = json!(config
                .routes
                .rules
                .iter()
                .map(|r| &r.name)
                .collect::<Vec<_>>());
            body["problems"] = json!(problems);
            body["notes"] = json!(config.notes);
        }
        Err(problems) => {
            body["ok"] = json!(false);
            body["problems"] = json!(problems);
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{verify, SigningSecret};
    use std::collections::HashMap;

    const NOW: i64 = 1_796_042_096;
    const SECRET: &str = "whsec_pipeline";

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("STRIPE_WEBHOOK_SECRET".into())
            .or_insert(SECRET.into());
        Config::from_lookup(|name| map.get(name).cloned()).expect("valid config")
    }

    fn signed(body: &str) -> String {
        SigningSecret::new(SECRET).sign_header(NOW, body.as_bytes())
    }

    const INVOICE_PAID: &str = r#"{"id":"evt_9","object":"event","created":1796040000,
        "type":"invoice.paid","livemode":false,"api_version":"2024-06-20",
        "data":{"object":{"id":"in_9","object":"invoice","total":700,"currency":"usd"}}}"#;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("POST", "/webhook"), Ok(Endpoint::Webhook));
        assert_eq!(endpoint("POST", "/webhook/"), Ok(Endpoint::Webhook));
        assert_eq!(
            endpoint("GET", "/webhook"),
            Err(Rejection::MethodNotAllowed("POST"))
        );
        assert_eq!(endpoint("GET", "/health"), Ok(Endpoint::Health));
        assert_eq!(endpoint("POST", "/webhooks"), Err(Rejection::UnknownPath));
        assert_eq!(endpoint("POST", "/"), Err(Rejection::UnknownPath));
    }

    #[test]
    fn delivers_to_every_destination_with_signed_origin_headers() {
        let config = config(&[
            ("ORIGIN_URL", "http://127.0.0.1:9/in"),
            ("FORWARD_SIGNING_SECRET", "whsec_forward"),
            (
                "ROUTES",
                r#"[{"name":"billing","events":["invoice.*"],"to":["kv","origin"]}]"#,
            ),
        ]);
        let decision = decide(
            &config,
            Some(&signed(INVOICE_PAID)),
            INVOICE_PAID.as_bytes(),
            NOW,
        )
        .expect("accepted");
        let Decision::Deliver {
            event,
            body,
            writes,
        } = decision
        else {
            panic!("expected a delivery");
        };
        assert_eq!(event.id, "evt_9");
        assert_eq!(event.routes, vec!["billing"]);
        let normalized: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(normalized["received_at"], NOW);
        assert_eq!(normalized["summary"]["amount"], 700);

        assert_eq!(
            writes[0],
            Write::Kv {
                key: "evt_9".into(),
                metadata: KvMetadata {
                    event_type: "invoice.paid".into(),
                    created: 1_796_040_000,
                    livemode: false
                },
                ttl_seconds: 2_592_000,
            }
        );
        let Write::Origin { headers, url, .. } = &writes[1] else {
            panic!("expected the origin second");
        };
        assert_eq!(url, "http://127.0.0.1:9/in");
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .expect(name)
        };
        assert_eq!(header("Idempotency-Key"), "evt_9");
        assert_eq!(header("Stripe-Edge-Event-Type"), "invoice.paid");
        // The hop's signature verifies with the same code that verifies Stripe.
        let forward = [SigningSecret::new("whsec_forward")];
        assert!(verify(
            Some(header("Stripe-Edge-Signature")),
            &body,
            &forward,
            0,
            NOW
        )
        .is_ok());
    }

    #[test]
    fn unmatched_types_are_ignored() {
        let config = config(&[("ROUTES", r#"[{"events":["charge.*"],"to":["kv"]}]"#)]);
        let decision = decide(
            &config,
            Some(&signed(INVOICE_PAID)),
            INVOICE_PAID.as_bytes(),
            NOW,
        );
        assert!(
            matches!(decision, Ok(Decision::Ignore(ref e)) if e.id == "evt_9"),
            "{decision:?}"
        );
    }

    #[test]
    fn size_is_checked_before_anything_else() {
        let config = config(&[("MAX_BODY_BYTES", "10"), ("STRIPE_WEBHOOK_SECRET", " ")]);
        assert_eq!(
            decide(&config, None, INVOICE_PAID.as_bytes(), NOW),
            Err(Rejection::PayloadTooLarge)
        );
        assert_eq!(
            check_declared_length(&config, Some("11")),
            Err(Rejection::PayloadTooLarge)
        );
        assert_eq!(check_declared_length(&config, Some("10")), Ok(()));
        assert_eq!(check_declared_length(&config, Some("junk")), Ok(()));
    }

    #[test]
    fn health_never_shows_a_secret() {
        let config = Config::from_lookup(|name| match name {
            "STRIPE_WEBHOOK_SECRET" => Some("sk_live_abcdef".into()),
            "FORWARD_SIGNING_SECRET" => Some("whsec_fwd_value".into()),
            _ => None,
        });
        let body = health(&config, true).to_string();
        assert!(
            !body.contains("abcdef") && !body.contains("fwd_value"),
            "{body}"
        );
        assert!(body.contains("secret API key"), "{body}");
        let value: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(value["ok"], false);
        assert_eq!(value["destinations"], json!({"origin": false, "kv": true}));
    }
}
