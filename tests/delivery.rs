//! Delivery guarantees against the real worker under `wrangler dev` (workerd, local KV,
//! Durable Objects and queues) and a real origin on loopback that fails on purpose: queue
//! mode's retries, backoff, `Retry-After`, give-up and dead-letter queue, the `/admin`
//! replay, direct mode's give-up of a refused event, and "latest wins".

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use stripe_edge::offline::fixtures::{find, fresh_event, new_event_id};
use stripe_edge::offline::http::HttpResponse;
use stripe_edge::offline::trigger::{now_seconds, send_signed};
use stripe_edge::signature::SigningSecret;
use support::{Origin, Worker};

const SECRET: &str = "whsec_delivery_tests_secret_value_01";
const ADMIN_TOKEN: &str = "delivery-tests-admin-token-0123456789";
/// Long enough for the retries these tests wait through (at most a few seconds each).
const QUEUE_WAIT: Duration = Duration::from_secs(90);

fn send(worker: &Worker, event_type: &str, id: &str, created: i64) -> (HttpResponse, Value) {
    let fixture = find(event_type).expect("a fixture");
    let body = fresh_event(fixture, id, created);
    let response = send_signed(
        &worker.webhook(),
        &SigningSecret::new(SECRET),
        now_seconds(),
        &body,
    )
    .expect("delivery");
    let answer = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response, answer)
}

fn failed_ids(worker: &Worker) -> Vec<String> {
    let (status, body) = worker.admin("GET", "/admin/failed", ADMIN_TOKEN);
    assert_eq!(status, 200, "{body}");
    body["failed"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn queue_line<'a>(lines: &'a [Value], id: &str, outcome: &str) -> Option<&'a Value> {
    lines.iter().find(|line| {
        line["msg"] == "stripe-edge queue delivery"
            && line["event_id"] == id
            && line["outcome"] == outcome
    })
}

/// Queue mode: Stripe is answered 202 at once, and the consumer delivers through every
/// kind of origin failure, each event exactly once.
#[test]
fn queue_mode_retries_backs_off_gives_up_and_replays() {
    let origin = Origin::start();
    let worker = Worker::start_queue(
        &[
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("ORIGIN_URL", &origin.url),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("ORIGIN_TIMEOUT_SECONDS", "2"),
            ("RETRY_BASE_SECONDS", "1"),
            ("RETRY_MAX_SECONDS", "2"),
        ],
        2,
    );
    let now = now_seconds();
    let [flaky, limited, refused, down, hanging, calm] =
        std::array::from_fn::<String, 6, _>(|_| new_event_id());
    origin.fail_next(&flaky, 500, None, 2);
    origin.fail_next(&limited, 429, Some(3), 1);
    origin.answer(&refused, 400);
    origin.answer(&down, 503);
    origin.fail_next(&hanging, support::HANG, None, 1);

    // Every delivery is answered 202 while the origin is failing or hanging.
    for id in [&flaky, &limited, &refused, &down, &hanging, &calm] {
        let (response, answer) = send(&worker, "invoice.paid", id, now);
        assert_eq!(response.status, 202, "{answer}");
        assert_eq!(
            answer,
            json!({"received": true, "id": id, "queued": ["kv", "origin"]})
        );
    }
    // A Stripe duplicate and concurrent copies, while the first is still queued.
    let copies: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| send(&worker, "invoice.paid", &calm, now).0.status))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(copies.iter().all(|s| *s == 202 || *s == 200), "{copies:?}");

    // Transient failures are retried until they succeed.
    for id in [&flaky, &limited, &hanging, &calm] {
        worker.wait_until("a retried delivery", QUEUE_WAIT, || {
            origin.accepted_count(id) == 1
        });
    }
    let lines = worker.log_lines();
    let retried = queue_line(&lines, &limited, "retry").expect("the 429 was retried");
    assert_eq!(
        retried["retry_in_seconds"], 3,
        "Retry-After outweighs the 1 s backoff: {retried}"
    );
    assert_eq!(retried["destinations"][1]["error"], "http_429");
    let timed_out = queue_line(&lines, &hanging, "retry").expect("the hang was retried");
    assert_eq!(timed_out["destinations"][1]["error"], "timeout");

    // A 400 is given up at once; a 503 forever ends in the dead-letter queue. Both are
    // listed, and KV still has them.
    worker.wait_until("the refused event listed", QUEUE_WAIT, || {
        failed_ids(&worker).contains(&refused)
    });
    worker.wait_until("the dead letter listed", QUEUE_WAIT, || {
        let (_, body) = worker.admin("GET", &format!("/admin/events/{down}"), ADMIN_TOKEN);
        body["failing"][0]["gave_up"] == true
    });
    // Stripe resending a given-up event changes nothing and enqueues nothing.
    let (response, answer) = send(&worker, "invoice.paid", &refused, now);
    assert_eq!(response.status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"received": true, "id": refused, "delivered": ["kv"], "gave_up": ["origin"]})
    );
    let lines = worker.log_lines();
    let gave_up = queue_line(&lines, &refused, "gave_up").expect("given up");
    assert_eq!(gave_up["destinations"][1]["gave_up"], true);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["event_id"] == refused.as_str() && l["outcome"] == "retry")
            .count(),
        0,
        "a 400 is never retried"
    );
    assert!(queue_line(&lines, &down, "dead_letter").is_some());
    let (status, event) = worker.admin("GET", &format!("/admin/events/{down}"), ADMIN_TOKEN);
    assert_eq!(status, 200);
    assert_eq!(event["delivered"], json!(["kv"]));
    assert_eq!(event["failing"][0]["reason"], "http_503");
    assert_eq!(event["kept"], true);
    assert!(worker.kv_get(&down).is_some());

    // The origin is fixed: replay one, then all that failed; each arrives once.
    origin.answer(&refused, 200);
    origin.answer(&down, 200);
    let (status, replay) = worker.admin(
        "POST",
        &format!("/admin/events/{refused}/redeliver"),
        ADMIN_TOKEN,
    );
    assert_eq!(
        (status, &replay["queued"]),
        (200, &json!(["origin"])),
        "{replay}"
    );
    let (status, replay) = worker.admin("POST", "/admin/failed/redeliver", ADMIN_TOKEN);
    assert_eq!(status, 200, "{replay}");
    for id in [&refused, &down] {
        worker.wait_until("a replayed delivery", QUEUE_WAIT, || {
            origin.accepted_count(id) == 1
        });
    }
    worker.wait_until("the failed list to empty", QUEUE_WAIT, || {
        failed_ids(&worker).is_empty()
    });

    // Nothing lost, nothing doubled, and the admin endpoints are closed without the token.
    for id in [&flaky, &limited, &refused, &down, &hanging, &calm] {
        assert_eq!(origin.accepted_count(id), 1, "{id}");
    }
    assert_eq!(worker.admin("GET", "/admin/failed", "wrong-token").0, 401);
    // Without the token nothing is revealed, not even which methods a path takes.
    assert_eq!(
        worker.admin("DELETE", "/admin/failed", "wrong-token").0,
        401
    );
    assert_eq!(
        worker.admin("GET", "/admin/nothing-here", "wrong-token").0,
        401
    );
    let (status, recent) = worker.admin("GET", "/admin/events?limit=3", ADMIN_TOKEN);
    assert_eq!(status, 200);
    assert_eq!(recent["events"].as_array().map(Vec::len), Some(3));
}

/// Direct mode: a refused event is kept and listed instead of being retried by Stripe for
/// days; a transient failure is a 503 and listed until Stripe's retry delivers it.
#[test]
fn direct_mode_keeps_refused_events_for_replay() {
    let origin = Origin::start();
    let worker = Worker::start(&[
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("ORIGIN_URL", &origin.url),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
    ]);
    let now = now_seconds();
    let (refused, flaky) = (new_event_id(), new_event_id());
    origin.answer(&refused, 422);
    origin.fail_next(&flaky, 500, None, 1);

    let (response, answer) = send(&worker, "charge.succeeded", &refused, now);
    assert_eq!(response.status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"received": true, "id": refused, "delivered": ["kv"], "gave_up": ["origin"]})
    );
    // Stripe resending it changes nothing: the destination waits for a replay.
    let (response, answer) = send(&worker, "charge.succeeded", &refused, now);
    assert_eq!(response.status, 200, "{answer}");
    assert_eq!(origin.received_for(&refused).len(), 1);

    let (response, _) = send(&worker, "charge.succeeded", &flaky, now);
    assert_eq!(response.status, 503);
    let listed = failed_ids(&worker);
    assert!(
        listed.contains(&refused) && listed.contains(&flaky),
        "{listed:?}"
    );
    let (response, _) = send(&worker, "charge.succeeded", &flaky, now);
    assert_eq!(response.status, 200, "Stripe's retry delivers it");
    assert!(!failed_ids(&worker).contains(&flaky));

    origin.answer(&refused, 200);
    let (status, replay) = worker.admin(
        "POST",
        &format!("/admin/events/{refused}/redeliver"),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 200, "{replay}");
    assert_eq!(
        replay["results"],
        json!([{"destination": "origin", "ok": true}]),
        "only the failing destination is tried again"
    );
    assert!(failed_ids(&worker).is_empty());
    assert_eq!(origin.accepted_count(&refused), 1);
    let logged = worker.wait_for_log_line(|l| l["outcome"] == "admin_redeliver");
    assert_eq!(logged["result"]["id"], refused.as_str(), "{logged}");
    assert_eq!(origin.accepted_count(&flaky), 1);

    // The same body, once more, is delivered nowhere: it is a duplicate.
    let (_, answer) = send(&worker, "charge.succeeded", &refused, now);
    assert_eq!(answer["duplicate"], true, "{answer}");
    let (status, _) = worker.admin("GET", "/admin/events/evt_never_seen", ADMIN_TOKEN);
    assert_eq!(status, 404);
    assert_eq!(
        worker
            .admin("GET", "/admin/events?limit=1", "bearer-is-not-a-token")
            .0,
        401
    );
}

/// Without `ADMIN_TOKEN`, `/admin` does not exist, whatever the method.
#[test]
fn admin_is_absent_without_a_token() {
    let worker = Worker::start(&[("STRIPE_WEBHOOK_SECRET", SECRET)]);
    for (method, path) in [
        ("GET", "/admin/events"),
        ("DELETE", "/admin/failed"),
        ("GET", "/admin"),
    ] {
        let (status, body) = worker.admin(method, path, ADMIN_TOKEN);
        assert_eq!(
            (status, body),
            (404, json!({"error": "not_found"})),
            "{method} {path}"
        );
    }
}

/// "Latest wins": an older event for an object that arrives after a newer one is held back
/// from the origin and flagged in KV.
#[test]
fn latest_wins_holds_or_flags_stale_events() {
    let origin = Origin::start();
    let worker = Worker::start(&[
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("ORIGIN_URL", &origin.url),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        (
            "ROUTES",
            r#"[{"name":"store","events":["customer.subscription.*"],"to":["kv"],"stale":"flag"},
                {"name":"app","events":["customer.subscription.*"],"to":["origin"],"stale":"hold"}]"#,
        ),
    ]);
    let now = now_seconds();
    let (newer, older) = (new_event_id(), new_event_id());
    // The older event first fails at the origin, so it is listed as failing...
    origin.fail_next(&older, 500, None, 1);
    let (response, _) = send(&worker, "customer.subscription.deleted", &older, now - 60);
    assert_eq!(response.status, 503);
    let (response, answer) = send(&worker, "customer.subscription.updated", &newer, now - 10);
    assert_eq!(response.status, 200, "{answer}");
    assert_eq!(answer.get("stale"), None);

    let (response, answer) = send(&worker, "customer.subscription.deleted", &older, now - 60);
    assert_eq!(response.status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "received": true, "id": older, "delivered": ["kv"], "duplicate": true,
            "stale": true, "held": ["origin"]
        })
    );
    // ...and, once overtaken, is held back: its retry does not reach the origin, and it is
    // no longer listed, so no replay sends it there.
    assert_eq!(origin.accepted_count(&older), 0, "held back");
    let (status, event) = worker.admin("GET", &format!("/admin/events/{older}"), ADMIN_TOKEN);
    assert_eq!(status, 200);
    assert_eq!(event["failing"], json!([]), "{event}");
    assert_eq!(failed_ids(&worker), Vec::<String>::new());
    assert_eq!(origin.received_for(&newer).len(), 1);
    // KV took the older event on its first arrival, before it was overtaken; one that
    // arrives already overtaken is stored flagged.
    let oldest = new_event_id();
    let (_, answer) = send(&worker, "customer.subscription.deleted", &oldest, now - 120);
    assert_eq!(answer["delivered"], json!(["kv"]), "{answer}");
    let stored = |id: &str| -> Value {
        serde_json::from_slice(&worker.kv_get(id).expect("in KV")).expect("JSON")
    };
    assert_eq!(stored(&oldest)["stale"], true);
    assert_eq!(stored(&older)["stale"], false);
    assert_eq!(stored(&newer)["stale"], false);
    assert_eq!(origin.accepted_count(&oldest), 0);
    let line = worker.wait_for_log_line(|l| l["event_id"] == oldest.as_str());
    assert_eq!(
        (line["stale"].clone(), line["held"].clone()),
        (json!(true), json!(["origin"]))
    );
}
