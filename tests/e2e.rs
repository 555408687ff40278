//! End-to-end: the real wasm bundle under real `wrangler dev` (workerd, local KV), a real
//! origin server on loopback, and deliveries signed exactly as Stripe signs them.

mod support;

use std::process::Command;

use serde_json::{json, Value};
use stripe_edge::offline::fixtures::{fresh_event, new_event_id, FIXTURES};
use stripe_edge::offline::trigger::{now_seconds, send_signed, trigger};
use stripe_edge::signature::{verify, SigningSecret};
use support::{sender, Origin, Worker};

const SECRET: &str = "whsec_e2e_primary_secret_value_1234";
const OLD_SECRET: &str = "whsec_e2e_rolled_out_secret_value_99";
const FORWARD_SECRET: &str = "whsec_e2e_forward_hop_secret_value";
const THIRTY_DAYS: i64 = 30 * 24 * 60 * 60;

fn secret() -> SigningSecret {
    SigningSecret::new(SECRET)
}

/// Everything a Stripe user relies on, against one worker with an origin and KV.
#[test]
fn default_routes_reach_origin_and_kv_and_bad_deliveries_are_refused() {
    let origin = Origin::start();
    let worker = Worker::start(&[
        ("STRIPE_WEBHOOK_SECRET", &format!("{OLD_SECRET},{SECRET}")),
        ("ORIGIN_URL", &origin.url),
        ("FORWARD_SIGNING_SECRET", FORWARD_SECRET),
        ("ORIGIN_TIMEOUT_SECONDS", "2"),
    ]);

    every_default_event_is_delivered(&worker, &origin);
    events_outside_the_routes_are_ignored(&worker, &origin);
    paths_and_methods(&worker);
    each_bad_delivery_has_its_own_code(&worker);
    a_failing_origin_gets_a_503_and_the_retry_succeeds(&worker, &origin);
    a_hanging_origin_times_out(&worker, &origin);
    a_redirecting_origin_is_not_followed(&worker, &origin);
    repeats_and_concurrent_arrivals_reach_each_destination_once(&worker, &origin);
    health_and_logs_hold_no_secrets(&worker);
}

fn every_default_event_is_delivered(worker: &Worker, origin: &Origin) {
    let started = now_seconds();
    let mut sent_ids = Vec::new();
    for fixture in FIXTURES.iter().filter(|f| f.routed_by_default) {
        let sent = trigger(&worker.webhook(), &secret(), fixture).expect("delivery");
        let answer: Value = serde_json::from_slice(&sent.response.body).expect("JSON answer");
        assert_eq!(
            sent.response.status, 200,
            "{}: {answer}",
            fixture.event_type
        );
        assert_eq!(
            answer,
            json!({"received": true, "id": sent.event_id, "delivered": ["kv", "origin"]})
        );
        assert_eq!(
            sent.response.header("content-type"),
            Some("application/json")
        );

        // The origin got the normalized event once, with the agreed headers.
        let received = origin.received_for(&sent.event_id);
        assert_eq!(received.len(), 1, "{}", fixture.event_type);
        let hop = &received[0];
        assert_eq!(
            (hop.method.as_str(), hop.path.as_str()),
            ("POST", "/stripe/events")
        );
        assert_eq!(hop.header("Idempotency-Key"), Some(sent.event_id.as_str()));
        assert_eq!(
            hop.header("Stripe-Edge-Event-Type"),
            Some(fixture.event_type)
        );
        assert_eq!(hop.header("Content-Type"), Some("application/json"));
        let hop_signature = hop.header("Stripe-Edge-Signature").expect("hop is signed");
        let forward = [SigningSecret::new(FORWARD_SECRET)];
        verify(Some(hop_signature), &hop.body, &forward, 300, now_seconds())
            .expect("the hop's signature verifies like Stripe's");

        // The normalized shape carries the event unchanged in `data`.
        let original: Value = serde_json::from_slice(&sent.body).expect("fixture JSON");
        let normalized = hop.json();
        assert_eq!(normalized["schema"], "stripe-edge.event.v1");
        assert_eq!(normalized["id"], original["id"]);
        assert_eq!(normalized["type"], fixture.event_type);
        assert_eq!(normalized["kind"], "snapshot");
        assert_eq!(normalized["created"], original["created"]);
        assert_eq!(normalized["livemode"], original["livemode"]);
        assert_eq!(normalized["api_version"], original["api_version"]);
        assert_eq!(normalized["data"], original["data"]["object"]);
        assert_eq!(
            normalized["previous_attributes"],
            original["data"]
                .get("previous_attributes")
                .cloned()
                .unwrap_or(Value::Null)
        );
        assert_eq!(normalized["object"]["id"], original["data"]["object"]["id"]);
        assert_eq!(
            normalized["object"]["type"],
            original["data"]["object"]["object"]
        );
        assert_eq!(normalized["request"]["id"], original["request"]["id"]);
        let received_at = normalized["received_at"].as_i64().expect("received_at");
        assert!(received_at >= started && received_at <= now_seconds());
        let route = if fixture.event_type.starts_with("invoice.")
            || fixture.event_type.starts_with("customer.")
        {
            "billing"
        } else {
            "payments"
        };
        assert_eq!(normalized["route"], json!([route]));
        if let Some(status) = original["data"]["object"].get("status") {
            assert_eq!(&normalized["summary"]["status"], status);
        }
        sent_ids.push((sent.event_id, fixture.event_type, hop.body.clone()));
    }

    // KV holds the same bytes under the event id, with metadata and a 30-day expiry.
    let listed = worker.kv_list();
    for (id, event_type, origin_body) in &sent_ids {
        let entry = listed
            .iter()
            .find(|e| e["name"] == id.as_str())
            .expect("key in KV");
        assert_eq!(entry["metadata"]["type"], *event_type);
        assert_eq!(
            entry["metadata"]["created"],
            original_created(origin_body),
            "{entry}"
        );
        assert_eq!(entry["metadata"]["livemode"], false);
        let expiration = entry["expiration"].as_i64().expect("expiration");
        assert!(
            (expiration - (started + THIRTY_DAYS)).abs() < 600,
            "{entry}"
        );
        let stored = worker.kv_get(id).expect("value in KV");
        let stored: Value = serde_json::from_slice(&stored).expect("KV value is JSON");
        let hop: Value = serde_json::from_slice(origin_body).expect("json");
        assert_eq!(stored, hop, "{event_type}");
    }
}

fn original_created(normalized: &[u8]) -> Value {
    let value: Value = serde_json::from_slice(normalized).expect("json");
    assert!(value["created"].is_i64());
    value["created"].clone()
}

fn events_outside_the_routes_are_ignored(worker: &Worker, origin: &Origin) {
    for name in ["account.updated", "v1.billing.meter.error_report_triggered"] {
        let fixture = FIXTURES
            .iter()
            .find(|f| f.event_type == name)
            .expect("fixture");
        let sent = trigger(&worker.webhook(), &secret(), fixture).expect("delivery");
        assert_eq!(sent.response.status, 200);
        let answer: Value = serde_json::from_slice(&sent.response.body).expect("json");
        assert_eq!(
            answer,
            json!({"received": true, "id": sent.event_id, "ignored": true})
        );
        assert!(origin.received_for(&sent.event_id).is_empty());
        assert!(worker.kv_get(&sent.event_id).is_none());
    }
}

fn paths_and_methods(worker: &Worker) {
    let get = worker.get("/webhook");
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    assert_eq!(get.body_text(), r#"{"error":"method_not_allowed"}"#);
    assert_eq!(worker.get("/").status, 404);
    assert_eq!(worker.post("/webhooks", &[], b"{}").status, 404);

    // The trailing slash and a query string reach the same endpoint.
    let fixture = &FIXTURES[0];
    for path in ["/webhook/", "/webhook?source=stripe"] {
        let id = new_event_id();
        let now = now_seconds();
        let body = fresh_event(fixture, &id, now);
        let response = send_signed(&worker.url(path), &secret(), now, &body).expect("sent");
        assert_eq!(response.status, 200, "{path}: {}", response.body_text());
    }
}

fn each_bad_delivery_has_its_own_code(worker: &Worker) {
    let now = now_seconds();
    let fixture = &FIXTURES[1];
    let body = fresh_event(fixture, &new_event_id(), now);
    let good = secret().sign_header(now, &body);
    let wrong_secret = SigningSecret::new("whsec_not_the_one").sign_header(now, &body);
    let stale = secret().sign_header(now - 400, &body);
    let future = secret().sign_header(now + 400, &body);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let not_event = b"this is signed but it is not JSON";
    let not_event_header = secret().sign_header(now, not_event);
    // Each is a 400 with its own code.
    let cases: Vec<(&str, Option<String>, &[u8], &str)> = vec![
        ("no header", None, &body, "signature_header_missing"),
        (
            "garbage header",
            Some("nonsense".into()),
            &body,
            "signature_header_malformed",
        ),
        (
            "no t",
            Some(good.split(',').nth(1).expect("v1").into()),
            &body,
            "signature_header_malformed",
        ),
        (
            "wrong secret",
            Some(wrong_secret),
            &body,
            "signature_mismatch",
        ),
        (
            "tampered body",
            Some(good.clone()),
            &tampered,
            "signature_mismatch",
        ),
        ("stale", Some(stale), &body, "timestamp_too_old"),
        ("future", Some(future), &body, "timestamp_in_future"),
        (
            "not an event",
            Some(not_event_header),
            not_event,
            "not_a_stripe_event",
        ),
    ];
    for (name, header, body, code) in cases {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(header) = &header {
            headers.push(("Stripe-Signature", header));
        }
        let response = worker.post("/webhook", &headers, body);
        assert_eq!(response.status, 400, "{name}");
        assert_eq!(
            response.body_text(),
            json!({"error": code}).to_string(),
            "{name}"
        );
    }

    // Over MAX_BODY_BYTES (2 MiB by default): refused before the signature is looked at.
    let huge = vec![b' '; 2 * 1024 * 1024 + 1];
    let response = worker.post("/webhook", &[("Stripe-Signature", &good)], &huge);
    assert_eq!(response.status, 413);
    assert_eq!(response.body_text(), r#"{"error":"payload_too_large"}"#);

    // Without Content-Length (chunked), the limit stops the read as soon as it is passed.
    let chunk = vec![b'x'; 64 * 1024];
    let status = support::post_chunked(
        &worker.webhook(),
        &[("Stripe-Signature", &good)],
        &chunk,
        64,
    );
    assert_eq!(status, 413);
}

fn a_failing_origin_gets_a_503_and_the_retry_succeeds(worker: &Worker, origin: &Origin) {
    let fixture = FIXTURES
        .iter()
        .find(|f| f.event_type == "invoice.paid")
        .expect("fixture");
    let id = new_event_id();
    origin.answer(&id, 500);
    let now = now_seconds();
    let body = fresh_event(fixture, &id, now);
    let first = send_signed(&worker.webhook(), &secret(), now, &body).expect("sent");
    assert_eq!(first.status, 503);
    assert_eq!(
        first.body_text(),
        json!({"error": "delivery_failed", "id": id}).to_string()
    );

    // Stripe retries the same bytes later; the origin is back.
    origin.answer(&id, 200);
    let retry = send_signed(&worker.webhook(), &secret(), now, &body).expect("sent");
    assert_eq!(retry.status, 200, "{}", retry.body_text());
    assert_eq!(
        origin.received_for(&id).len(),
        2,
        "one failed attempt, one delivered"
    );
    assert!(worker.kv_get(&id).is_some());

    let failure =
        worker.wait_for_log_line(|line| line["event_id"] == id.as_str() && line["status"] == 503);
    assert_eq!(failure["code"], "delivery_failed");
    assert_eq!(failure["destinations"][1]["error"], "http_500");
}

fn repeats_and_concurrent_arrivals_reach_each_destination_once(worker: &Worker, origin: &Origin) {
    let fixture = FIXTURES
        .iter()
        .find(|f| f.event_type == "invoice.paid")
        .expect("fixture");

    // A plain repeat (Stripe resending a delivered event).
    let id = new_event_id();
    let now = now_seconds();
    let body = fresh_event(fixture, &id, now);
    let first = send_signed(&worker.webhook(), &secret(), now, &body).expect("sent");
    assert_eq!(first.status, 200);
    let repeat = send_signed(&worker.webhook(), &secret(), now_seconds(), &body).expect("sent");
    assert_eq!(repeat.status, 200);
    let answer: Value = serde_json::from_slice(&repeat.body).expect("json");
    assert_eq!(
        answer,
        json!({"received": true, "id": id, "delivered": ["kv", "origin"], "duplicate": true})
    );
    assert_eq!(origin.received_for(&id).len(), 1);

    // Eight copies at once while the origin is slow: one delivers, the others are told to
    // come back (409) or, if they arrive after it finished, that it is a duplicate.
    let id = new_event_id();
    origin.slow(&id);
    let now = now_seconds();
    let body = fresh_event(fixture, &id, now);
    let url = worker.webhook();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    send_signed(&url, &secret(), now, &body)
                        .expect("sent")
                        .status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&409),
        "the copies overlapped the slow delivery: {statuses:?}"
    );
    // Stripe retries the 409s later; every retry is then a duplicate.
    for _ in statuses.iter().filter(|s| **s == 409) {
        let retry = send_signed(&url, &secret(), now_seconds(), &body).expect("sent");
        assert_eq!(retry.status, 200, "{}", retry.body_text());
    }
    assert_eq!(origin.received_for(&id).len(), 1, "one event, one delivery");
    let busy = worker.wait_for_log_line(|l| l["event_id"] == id.as_str() && l["status"] == 409);
    assert_eq!(busy["code"], "delivery_in_progress");
}

fn a_hanging_origin_times_out(worker: &Worker, origin: &Origin) {
    let fixture = FIXTURES
        .iter()
        .find(|f| f.event_type == "charge.succeeded")
        .expect("fixture");
    let id = new_event_id();
    origin.hang(&id);
    let now = now_seconds();
    let body = fresh_event(fixture, &id, now);
    let response = send_signed(&worker.webhook(), &secret(), now, &body).expect("sent");
    assert_eq!(response.status, 503, "{}", response.body_text());
    let line =
        worker.wait_for_log_line(|line| line["event_id"] == id.as_str() && line["status"] == 503);
    assert_eq!(line["destinations"][1]["error"], "timeout", "{line}");
}

fn a_redirecting_origin_is_not_followed(worker: &Worker, origin: &Origin) {
    let fixture = FIXTURES
        .iter()
        .find(|f| f.event_type == "charge.succeeded")
        .expect("fixture");
    for status in [302, 307] {
        let id = new_event_id();
        origin.answer(&id, status);
        let now = now_seconds();
        let body = fresh_event(fixture, &id, now);
        let response = send_signed(&worker.webhook(), &secret(), now, &body).expect("sent");
        assert_eq!(response.status, 503, "{}", response.body_text());
        let line = worker
            .wait_for_log_line(|line| line["event_id"] == id.as_str() && line["status"] == 503);
        assert_eq!(
            line["destinations"][1]["error"],
            format!("http_{status}"),
            "{line}"
        );
        let received = origin.received_for(&id);
        assert_eq!(received.len(), 1, "the redirect was not followed");
        assert_ne!(received[0].path, support::REDIRECT_PATH);
        let agent = received[0].header("User-Agent").unwrap_or_default();
        assert!(agent.starts_with("stripe-edge/"), "User-Agent {agent:?}");
    }
    assert!(
        origin
            .received()
            .iter()
            .all(|r| r.path != support::REDIRECT_PATH),
        "nothing reached the redirect's target"
    );
}

fn health_and_logs_hold_no_secrets(worker: &Worker) {
    let health = worker.get("/health");
    assert_eq!(health.status, 200);
    let body: Value = serde_json::from_slice(&health.body).expect("health JSON");
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["destinations"], json!({"origin": true, "kv": true}));
    assert_eq!(body["secrets"]["configured"], 2);

    worker.wait_for_log_line(|line| line["path"] == "/health");
    let log = worker.log_text();
    let lines = worker.log_lines();
    assert!(lines.len() >= 20, "one structured line per request:\n{log}");
    for line in &lines {
        assert!(
            line["outcome"].is_string() && line["duration_ms"].is_u64(),
            "{line}"
        );
    }
    for secret in [
        SECRET,
        OLD_SECRET,
        FORWARD_SECRET,
        "v1=",
        "Zoë",
        "@example.com",
        "Ångström",
    ] {
        assert!(
            !log.contains(secret) && !health.body_text().contains(secret),
            "{secret:?} leaked"
        );
    }
}

/// The README's first-run path: no origin configured, events land in KV, sent by the
/// offline sender's command line reading `.dev.vars`.
#[test]
fn offline_sender_fills_kv_without_an_origin() {
    // The second value is an API key pasted by mistake: reported, never printed.
    let pasted = "sk_test_pasted_by_mistake_4242";
    let worker = Worker::start(&[("STRIPE_WEBHOOK_SECRET", &format!("{SECRET}, {pasted}"))]);
    let output = Command::new(sender())
        .args(["trigger", "--all", "--forward-to", &worker.webhook()])
        .current_dir(&worker.dir)
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .output()
        .expect("sender runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("<-- [200]").count(), 15, "{stdout}");
    assert_eq!(
        stdout.matches(r#""delivered":["kv"]"#).count(),
        15,
        "{stdout}"
    );
    assert_eq!(worker.kv_list().len(), 15);

    // A wrong secret makes the sender fail loudly.
    let output = Command::new(sender())
        .args([
            "trigger",
            "invoice.paid",
            "--secret",
            "whsec_wrong",
            "--forward-to",
            &worker.webhook(),
        ])
        .output()
        .expect("sender runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("signature_mismatch"));

    let health: Value = serde_json::from_slice(&worker.get("/health").body).expect("json");
    assert_eq!(health["destinations"], json!({"origin": false, "kv": true}));
    assert_eq!(
        health["notes"].as_array().map(Vec::len),
        Some(2),
        "{health}"
    );
    assert_eq!(health["ok"], false);
    assert_eq!(
        health["problems"],
        json!(["secret #2 looks like a secret API key (sk_...), not a webhook signing secret (whsec_...)"])
    );
    let warned = worker.wait_for_log_line(|line| line["warnings"].is_array());
    assert!(warned["warnings"][0]
        .as_str()
        .is_some_and(|w| w.contains("secret #2")));
    assert!(!worker.log_text().contains(pasted));
}

/// Missing or unusable configuration is a 500 with a clear code, so Stripe keeps the
/// event and retries once the operator fixes it.
#[test]
fn configuration_problems_answer_500() {
    let no_secret = Worker::start(&[]);
    let fixture = &FIXTURES[0];
    let now = now_seconds();
    let body = fresh_event(fixture, &new_event_id(), now);
    let response = send_signed(&no_secret.webhook(), &secret(), now, &body).expect("sent");
    assert_eq!(response.status, 500);
    assert_eq!(response.body_text(), r#"{"error":"secret_not_configured"}"#);
    let health: Value = serde_json::from_slice(&no_secret.get("/health").body).expect("json");
    assert_eq!(health["ok"], false);
    no_secret.wait_for_log_line(|l| l["code"] == "secret_not_configured" && l["level"] == "error");
    drop(no_secret);

    let bad_routes = Worker::start(&[
        ("STRIPE_WEBHOOK_SECRET", "sk_test_pasted_the_wrong_key"),
        (
            "ROUTES",
            r#"[{"name":"broken","events":["invoice*"],"to":["kv"]}]"#,
        ),
    ]);
    let response = send_signed(&bad_routes.webhook(), &secret(), now, &body).expect("sent");
    assert_eq!(response.status, 500);
    assert_eq!(response.body_text(), r#"{"error":"config_invalid"}"#);
    let health = bad_routes.get("/health").body_text();
    assert!(
        health.contains("broken") && !health.contains("sk_test_pasted"),
        "{health}"
    );
    bad_routes.wait_for_log_line(|l| l["code"] == "config_invalid");
    let problem = bad_routes.wait_for_log_line(|l| l["msg"] == "stripe-edge configuration problem");
    assert!(
        problem["problem"]
            .as_str()
            .is_some_and(|p| p.contains("broken")),
        "{problem}"
    );
    assert!(!bad_routes.log_text().contains("sk_test_pasted"));
}
