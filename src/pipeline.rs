//! The whole decision for one request, with no I/O: which endpoint, then for a webhook
//! delivery verify, parse, route and normalize, ending in a [`Plan`] of writes for the
//! shell to carry out. Each step returns the [`Rejection`] that ends the request.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{Config, DeliveryMode};
use crate::event::{self, StripeEvent};
use crate::normalize::{normalize, SCHEMA};
use crate::outcome::{EventRef, Rejection};
use crate::route::{Destination, StalePolicy};
use crate::signature::{verify_with_tags, TAG_BYTES};

/// The paths the worker serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Webhook,
    Health,
    /// Anything under `/admin`: which request, or why none (checked after the token, so the
    /// paths and methods are not revealed to a caller without it).
    Admin(Result<Admin, Rejection>),
}

/// The `/admin` requests, all behind `ADMIN_TOKEN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    /// `GET /admin/events`: the latest events.
    RecentEvents,
    /// `GET /admin/events/{id}`: what the ledger knows of one event.
    Event(String),
    /// `POST /admin/events/{id}/redeliver`: try its failing destinations again.
    Redeliver(String),
    /// `GET /admin/failed`: events some destination has not accepted.
    Failed,
    /// `POST /admin/failed/redeliver`: try every failing destination again.
    RedeliverFailed,
}

impl Admin {
    /// The name of the action in log lines.
    pub fn action(&self) -> &'static str {
        match self {
            Admin::RecentEvents => "admin_recent_events",
            Admin::Event(_) => "admin_event",
            Admin::Redeliver(_) => "admin_redeliver",
            Admin::Failed => "admin_failed",
            Admin::RedeliverFailed => "admin_redeliver_failed",
        }
    }
}

/// Picks the endpoint for a method and path (the path without its query string).
///
/// Fails with [`Rejection::UnknownPath`] or [`Rejection::MethodNotAllowed`].
pub fn endpoint(method: &str, path: &str) -> Result<Endpoint, Rejection> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed == "/admin" {
        return Ok(Endpoint::Admin(Err(Rejection::UnknownPath)));
    }
    if let Some(rest) = trimmed.strip_prefix("/admin/") {
        return Ok(Endpoint::Admin(admin_endpoint(method, rest)));
    }
    match (trimmed, method) {
        ("/webhook", "POST") => Ok(Endpoint::Webhook),
        ("/webhook", _) => Err(Rejection::MethodNotAllowed("POST")),
        ("/health", "GET" | "HEAD") => Ok(Endpoint::Health),
        ("/health", _) => Err(Rejection::MethodNotAllowed("GET, HEAD")),
        _ => Err(Rejection::UnknownPath),
    }
}

fn admin_endpoint(method: &str, rest: &str) -> Result<Admin, Rejection> {
    let segments: Vec<&str> = rest.split('/').collect();
    let (admin, allowed) = match segments.as_slice() {
        ["events"] => (Admin::RecentEvents, "GET"),
        ["failed"] => (Admin::Failed, "GET"),
        ["failed", "redeliver"] => (Admin::RedeliverFailed, "POST"),
        ["events", id] if event_id_shaped(id) => (Admin::Event((*id).to_owned()), "GET"),
        ["events", id, "redeliver"] if event_id_shaped(id) => {
            (Admin::Redeliver((*id).to_owned()), "POST")
        }
        _ => return Err(Rejection::UnknownPath),
    };
    if method == allowed || (allowed == "GET" && method == "HEAD") {
        Ok(admin)
    } else {
        Err(Rejection::MethodNotAllowed(allowed))
    }
}

/// Stripe event ids are short and URL-safe; anything else cannot name a kept event.
fn event_id_shaped(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
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
    Deliver(Plan),
}

/// A routed and normalized event: write `body` to every destination of `job`. Empty
/// `writes` with a non-empty `event.held` means every destination held the event back.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub event: EventRef,
    pub job: Job,
    pub body: Vec<u8>,
    pub writes: Vec<Write>,
}

/// Everything needed to write a kept event to its destinations again, without the body:
/// what the queue carries and what the ledger keeps beside a kept body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    #[serde(default)]
    pub stale: bool,
    pub routes: Vec<String>,
    /// Destination labels, in route order.
    pub destinations: Vec<String>,
}

impl Job {
    pub fn event_ref(&self) -> EventRef {
        EventRef {
            id: self.id.clone(),
            event_type: self.event_type.clone(),
            routes: self.routes.clone(),
            stale: self.stale,
            held: Vec::new(),
        }
    }
}

/// A verified, parsed and routed event, waiting for the stale check (when a route asks
/// for one) before it is normalized.
pub struct Routed<'b> {
    event: StripeEvent<'b>,
    pub event_ref: EventRef,
    destinations: Vec<(Destination, StalePolicy)>,
    /// The object whose event order matters, when some destination checks staleness.
    pub stale_check: Option<StaleCheck>,
}

/// Which object and moment the ledger's clock for "latest wins" compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleCheck {
    pub object_id: String,
    pub created: i64,
}

/// The first half of [`decide`]: verify, parse and route, stopping before normalizing.
pub enum Routing<'b> {
    Ignore(EventRef),
    Deliver(Box<Routed<'b>>),
}

/// Decides what to do with one delivery to `/webhook`, given its raw body, its
/// `Stripe-Signature` header and the current unix time, with no stale check.
///
/// Fails with the [`Rejection`] of the first step that refused it: payload size,
/// a missing secret, the signature checks, or a body that is not an event.
pub fn decide(
    config: &Config,
    signature_header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<Decision, Rejection> {
    Ok(match route(config, signature_header, body, now, None)? {
        Routing::Ignore(event) => Decision::Ignore(event),
        Routing::Deliver(routed) => Decision::Deliver(plan(config, *routed, false, now)),
    })
}

/// Verifies, parses and routes one delivery. `tags` are the expected signature tags when
/// the caller computed them (see [`verify_with_tags`]).
///
/// Fails like [`decide`].
pub fn route<'b>(
    config: &Config,
    signature_header: Option<&str>,
    body: &'b [u8],
    now: i64,
    tags: Option<&[[u8; TAG_BYTES]]>,
) -> Result<Routing<'b>, Rejection> {
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
        stale: false,
        held: Vec::new(),
    };
    if matched.destinations.is_empty() {
        return Ok(Routing::Ignore(event_ref));
    }
    // Without an object id there is nothing to order by; such events are never stale.
    let stale_check = match (&event.object_id, matched.checks_staleness()) {
        (Some(object_id), true) => Some(StaleCheck {
            object_id: object_id.clone(),
            created: event.created,
        }),
        _ => None,
    };
    Ok(Routing::Deliver(Box::new(Routed {
        destinations: matched
            .destinations
            .iter()
            .map(|(d, policy)| ((*d).clone(), *policy))
            .collect(),
        event,
        event_ref,
        stale_check,
    })))
}

/// The second half of [`decide`]: normalize and list the writes. A `stale` event keeps only
/// the destinations whose rules flag rather than hold it.
pub fn plan(config: &Config, routed: Routed<'_>, stale: bool, now: i64) -> Plan {
    let Routed {
        event,
        mut event_ref,
        destinations,
        ..
    } = routed;
    event_ref.stale = stale;
    let (held, kept): (Vec<_>, Vec<_>) = destinations
        .into_iter()
        .partition(|(_, policy)| stale && *policy == StalePolicy::Hold);
    event_ref.held = held.iter().map(|(d, _)| d.label().to_owned()).collect();

    let job = Job {
        id: event_ref.id.clone(),
        event_type: event_ref.event_type.clone(),
        created: event.created,
        livemode: event.livemode,
        stale,
        routes: event_ref.routes.clone(),
        destinations: kept.iter().map(|(d, _)| d.label().to_owned()).collect(),
    };
    let normalized = normalize(event, event_ref.routes.clone(), now, stale);
    // Serializing a tree of JSON values with string keys cannot fail.
    let body = serde_json::to_vec(&normalized).unwrap_or_default();
    let writes = kept
        .iter()
        .map(|(destination, _)| write_to(config, destination, &job, &body, now))
        .collect();
    Plan {
        event: event_ref,
        job,
        body,
        writes,
    }
}

/// The writes for a kept event, looked up by label in today's configuration. Labels no
/// route names any more are returned apart, for the caller to report.
pub fn writes_for(config: &Config, job: &Job, body: &[u8], now: i64) -> (Vec<Write>, Vec<String>) {
    let mut writes = Vec::new();
    let mut gone = Vec::new();
    for label in &job.destinations {
        let destination = config
            .routes
            .rules
            .iter()
            .flat_map(|rule| rule.destinations.iter())
            .find(|d| d.label() == label);
        match destination {
            Some(destination) => writes.push(write_to(config, destination, job, body, now)),
            None => gone.push(label.clone()),
        }
    }
    (writes, gone)
}

fn write_to(config: &Config, destination: &Destination, job: &Job, body: &[u8], now: i64) -> Write {
    match destination {
        Destination::Kv => Write::Kv {
            key: job.id.clone(),
            metadata: KvMetadata {
                event_type: job.event_type.clone(),
                created: job.created,
                livemode: job.livemode,
            },
            ttl_seconds: config.kv_ttl_seconds,
        },
        Destination::Origin { label, url } => Write::Origin {
            label: label.clone(),
            url: url.clone(),
            headers: origin_headers(config, job, body, now),
            timeout_seconds: config.origin_timeout_seconds,
        },
    }
}

/// Headers for the hop to an origin. The origin dedupes on `Idempotency-Key` (the Stripe
/// event id) and, when `FORWARD_SIGNING_SECRET` is set, verifies `Stripe-Edge-Signature`
/// exactly as it would verify Stripe's own header.
fn origin_headers(config: &Config, event: &Job, body: &[u8], now: i64) -> Vec<(String, String)> {
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
    if event.stale {
        headers.push(("Stripe-Edge-Stale".to_owned(), "true".to_owned()));
    }
    if let Some(secret) = &config.forward_secret {
        headers.push((
            "Stripe-Edge-Signature".to_owned(),
            secret.sign_header(now, body),
        ));
    }
    headers
}

/// Which of its bindings the worker found in its env.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bindings {
    pub kv: bool,
    pub ledger: bool,
    pub journal: bool,
    pub queue: bool,
}

/// The `GET /health` body: the version, which destinations are configured, and every
/// configuration problem by name. Never a secret's value.
pub fn health(config: &Result<Config, Vec<String>>, bindings: &Bindings) -> Value {
    let kv_bound = bindings.kv;
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
            if config.delivery == DeliveryMode::Queue && !(bindings.queue && bindings.ledger) {
                problems.push(
                    "DELIVERY is queue but the DELIVERIES queue or the LEDGER binding is missing: \
                     every delivery gets a 503"
                        .into(),
                );
            }
            let checks_staleness = config
                .routes
                .rules
                .iter()
                .any(|rule| rule.stale != StalePolicy::Deliver);
            if checks_staleness && !bindings.ledger {
                problems.push("a route sets stale but the LEDGER binding is missing".into());
            }
            if config.admin_token.is_some() && !(bindings.ledger && bindings.journal) {
                problems
                    .push("ADMIN_TOKEN is set but the LEDGER or JOURNAL binding is missing".into());
            }
            body["ok"] = json!(problems.is_empty());
            body["destinations"] = json!({
                "origin": config.origin_url.is_some(),
                "kv": kv_bound,
            });
            body["secrets"] = json!({
                "configured": config.secrets.len(),
            });
            body["delivery"] = json!(config.delivery.as_str());
            body["dedupe"] = json!(bindings.ledger);
            body["admin"] = json!(config.admin_token.is_some());
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
        assert_eq!(
            endpoint("GET", "/admin/events"),
            Ok(Endpoint::Admin(Ok(Admin::RecentEvents)))
        );
        assert_eq!(
            endpoint("GET", "/admin/events/evt_1"),
            Ok(Endpoint::Admin(Ok(Admin::Event("evt_1".into()))))
        );
        assert_eq!(
            endpoint("POST", "/admin/events/evt_1/redeliver"),
            Ok(Endpoint::Admin(Ok(Admin::Redeliver("evt_1".into()))))
        );
        assert_eq!(
            endpoint("GET", "/admin/events/evt_1/redeliver"),
            Ok(Endpoint::Admin(Err(Rejection::MethodNotAllowed("POST"))))
        );
        assert_eq!(
            endpoint("POST", "/admin/failed/redeliver/"),
            Ok(Endpoint::Admin(Ok(Admin::RedeliverFailed)))
        );
        assert_eq!(
            endpoint("DELETE", "/admin/failed"),
            Ok(Endpoint::Admin(Err(Rejection::MethodNotAllowed("GET"))))
        );
        for unknown in [
            "/admin",
            "/admin/",
            "/admin/events/a%20b",
            "/admin/x",
            "/admin/events//redeliver",
        ] {
            assert_eq!(
                endpoint("GET", unknown),
                Ok(Endpoint::Admin(Err(Rejection::UnknownPath))),
                "{unknown}"
            );
        }
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
        let Decision::Deliver(Plan {
            event,
            job,
            body,
            writes,
        }) = decision
        else {
            panic!("expected a delivery");
        };
        assert_eq!(event.id, "evt_9");
        assert_eq!(job.destinations, ["kv", "origin"]);
        assert!(!job.stale);
        // A kept event is written again exactly as it was planned.
        let (again, gone) = writes_for(&config, &job, &body, NOW);
        assert!(gone.is_empty());
        assert_eq!(again, writes);
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
    fn a_stale_event_is_flagged_or_held_per_destination() {
        let config = config(&[
            ("ORIGIN_URL", "http://127.0.0.1:9/in"),
            (
                "ROUTES",
                r#"[{"name":"store","events":["invoice.*"],"to":["kv"],"stale":"flag"},
                    {"name":"app","events":["invoice.*"],"to":["origin"],"stale":"hold"}]"#,
            ),
        ]);
        let header = signed(INVOICE_PAID);
        let routed = |config: &Config| match route(
            config,
            Some(&header),
            INVOICE_PAID.as_bytes(),
            NOW,
            None,
        ) {
            Ok(Routing::Deliver(routed)) => routed,
            _ => panic!("expected a delivery"),
        };
        let check = routed(&config).stale_check.clone().expect("a route asks");
        assert_eq!(
            check,
            StaleCheck {
                object_id: "in_9".into(),
                created: 1_796_040_000
            }
        );

        let Plan {
            event,
            job,
            body,
            writes,
        } = plan(&config, *routed(&config), true, NOW);
        assert!(event.stale && job.stale);
        assert_eq!(event.held, ["origin"]);
        assert_eq!(job.destinations, ["kv"]);
        assert_eq!(writes.len(), 1);
        let normalized: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(normalized["stale"], true);

        let Plan { body, writes, .. } = plan(&config, *routed(&config), false, NOW);
        assert_eq!(writes.len(), 2);
        let normalized: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(normalized["stale"], false);

        // A flagged origin gets the header too.
        let flag_only = self::config(&[
            ("ORIGIN_URL", "http://127.0.0.1:9/in"),
            (
                "ROUTES",
                r#"[{"events":["*"],"to":["origin"],"stale":"flag"}]"#,
            ),
        ]);
        let Plan { writes, .. } = plan(&flag_only, *routed(&flag_only), true, NOW);
        let Write::Origin { headers, .. } = &writes[0] else {
            panic!("an origin write");
        };
        assert!(headers.contains(&("Stripe-Edge-Stale".to_owned(), "true".to_owned())));
        // Without a stale rule, nothing is checked.
        let plain = self::config(&[("ROUTES", r#"[{"events":["*"],"to":["kv"]}]"#)]);
        assert!(routed(&plain).stale_check.is_none());
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
        let bindings = Bindings {
            kv: true,
            ..Bindings::default()
        };
        let body = health(&config, &bindings).to_string();
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
