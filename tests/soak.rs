//! Load with faults: many signed events, sent concurrently by a Stripe-like sender that
//! retries every non-2xx answer with exponential backoff (and sometimes sends an event twice
//! at once), through the real worker, to an origin that fails the first attempt of a share of
//! events (500, 429 with Retry-After, connection reset, a hang past the timeout) and goes
//! down for a while in the middle of the run. Afterwards every event must have been accepted
//! by the worker and be at the origin exactly once: nothing lost, nothing doubled. Both
//! delivery modes run: direct (the sender's retries recover) and queue (the consumer's do).
//!
//! The test command runs 1,000 events per mode at 50 connections; `scripts/soak.sh` runs
//! 10,000. STRIPE_EDGE_SOAK_EVENTS, STRIPE_EDGE_SOAK_CONCURRENCY and STRIPE_EDGE_SOAK_MODE
//! (`direct`, `queue` or both when unset) set the size and the modes.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use stripe_edge::offline::fixtures::{fresh_event, new_event_id, FIXTURES};
use stripe_edge::offline::trigger::{now_seconds, send_signed};
use stripe_edge::signature::SigningSecret;
use support::{Origin, Worker};

const SECRET: &str = "whsec_soak_test_secret_000000000";
/// A Stripe-like sender gives up after this many attempts (Stripe itself goes on for days).
const MAX_ATTEMPTS: u32 = 10;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends one event until it is accepted, backing off like Stripe; returns each attempt's
/// latency and whether it was finally accepted.
fn deliver_like_stripe(url: &str, body: &[u8]) -> (Vec<Duration>, bool) {
    let secret = SigningSecret::new(SECRET);
    let mut latencies = Vec::new();
    let mut backoff = Duration::from_millis(50);
    for _ in 0..MAX_ATTEMPTS {
        let started = Instant::now();
        let answer = send_signed(url, &secret, now_seconds(), body);
        latencies.push(started.elapsed());
        if matches!(answer, Ok(ref response) if (200..300).contains(&response.status)) {
            return (latencies, true);
        }
        thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    (latencies, false)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn mode_selected(mode: &str) -> bool {
    std::env::var("STRIPE_EDGE_SOAK_MODE").map_or(true, |wanted| wanted == mode)
}

#[test]
fn direct_mode_delivers_every_accepted_event_exactly_once_under_load_and_faults() {
    if mode_selected("direct") {
        soak("direct");
    }
}

#[test]
fn queue_mode_delivers_every_accepted_event_exactly_once_under_load_and_faults() {
    if mode_selected("queue") {
        soak("queue");
    }
}

/// The two modes run one after the other, so each has the machine to itself.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn soak(mode: &str) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let events = setting("STRIPE_EDGE_SOAK_EVENTS", 1000);
    let concurrency = setting("STRIPE_EDGE_SOAK_CONCURRENCY", 50);
    let origin = Origin::start();
    origin.inject_faults(20);
    let vars = [
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("ORIGIN_URL", origin.url.as_str()),
        (
            "ROUTES",
            r#"[{"name":"all","events":["*"],"to":["origin"]}]"#,
        ),
        ("ORIGIN_TIMEOUT_SECONDS", "5"),
        ("RETRY_BASE_SECONDS", "1"),
        ("RETRY_MAX_SECONDS", "4"),
    ];
    let worker = if mode == "queue" {
        Worker::start_queue_batched(&vars, 20, 50)
    } else {
        Worker::start(&vars)
    };

    let routed: Vec<_> = FIXTURES.iter().filter(|f| f.routed_by_default).collect();
    let ids: Vec<String> = (0..events).map(|_| new_event_id()).collect();
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::new());
    let refused = Mutex::new(Vec::new());
    let url = worker.webhook();
    let started = Instant::now();
    thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(index) else { break };
                // A third of the way in, the origin goes down for three seconds.
                if index == events / 3 {
                    origin.outage(Duration::from_secs(3));
                }
                let body = fresh_event(routed[index % routed.len()], id, now_seconds());
                // One event in twenty arrives twice at once, as Stripe sometimes does.
                let (mut attempts, accepted) = if index.is_multiple_of(20) {
                    thread::scope(|inner| {
                        let copy = inner.spawn(|| deliver_like_stripe(&url, &body));
                        let (mut mine, ok) = deliver_like_stripe(&url, &body);
                        let (theirs, other_ok) = copy.join().expect("copy thread");
                        mine.extend(theirs);
                        (mine, ok && other_ok)
                    })
                } else {
                    deliver_like_stripe(&url, &body)
                };
                latencies.lock().expect("lock").append(&mut attempts);
                if !accepted {
                    refused.lock().expect("lock").push(id.clone());
                }
            });
        }
    });
    let sent = started.elapsed();
    // Queue mode answered before delivering: wait (bounded) for the consumer to finish.
    if mode == "queue" {
        worker.wait_until(
            "the queue consumer to deliver every event",
            Duration::from_secs(120 + events as u64 / 4),
            || origin.accepted().len() >= events,
        );
    }
    let elapsed = started.elapsed();

    let accepted_by_origin = origin.accepted();
    let lost: Vec<&String> = ids
        .iter()
        .filter(|id| !accepted_by_origin.contains_key(*id))
        .collect();
    let doubled: Vec<(&String, &usize)> =
        accepted_by_origin.iter().filter(|(_, n)| **n > 1).collect();
    let mut sorted = latencies.into_inner().expect("lock");
    sorted.sort_unstable();
    println!(
        "soak ({mode}): {events} events at {concurrency} connections, answered in {:.1} s, \
         all at the origin in {:.1} s: {:.0} events/s, {} requests, p50 {:.1} ms, \
         p99 {:.1} ms, abandoned by the worker {}, refused {}, lost {}, doubled {}",
        sent.as_secs_f64(),
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        sorted.len(),
        percentile(&sorted, 0.5).as_secs_f64() * 1000.0,
        percentile(&sorted, 0.99).as_secs_f64() * 1000.0,
        origin.abandoned(),
        refused.lock().expect("lock").len(),
        lost.len(),
        doubled.len(),
    );
    assert!(
        refused.lock().expect("lock").is_empty(),
        "events never accepted: {refused:?}"
    );
    assert!(lost.is_empty(), "accepted but not at the origin: {lost:?}");
    assert!(
        doubled.is_empty(),
        "at the origin more than once: {doubled:?}"
    );
    assert_eq!(accepted_by_origin.len(), events);
    // The faults really happened: more requests than events reached the origin.
    assert!(origin.received().len() > events, "no fault was injected");
}
