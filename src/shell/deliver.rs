//! Carrying out a plan's writes: the ledger claim, the KV puts and origin POSTs, and the
//! settle that records what was delivered.

use std::pin::pin;
use std::time::Duration;

use futures_util::future::{join_all, select, Either};
use worker::js_sys::Uint8Array;
use worker::{
    console_error, AbortController, Delay, Env, Fetch, Headers, Method, Request, RequestInit,
    RequestRedirect,
};

use super::ledger::{ask_ledger, attempt_id};
use super::{KV_BINDING, LEDGER_BINDING};
use crate::ledger::{Claim, LedgerRequest};
use crate::outcome::{DestinationResult, EventRef, Outcome, Rejection};
use crate::pipeline::{KvMetadata, Write};

/// Delivers to every destination that does not have the event yet. With the `LEDGER`
/// binding (the default), the event's ledger decides which those are and keeps a concurrent
/// duplicate out while this attempt runs; without it, every destination gets every delivery.
pub(super) async fn deliver(env: &Env, event: EventRef, body: &[u8], writes: &[Write]) -> Outcome {
    let Ok(namespace) = env.durable_object(LEDGER_BINDING) else {
        let results = join_all(writes.iter().map(|write| perform(env, write, body))).await;
        return Outcome::from_deliveries(event, results);
    };

    let attempt = attempt_id();
    let claim = LedgerRequest::Claim {
        attempt: attempt.clone(),
        destinations: writes.iter().map(|w| w.label().to_owned()).collect(),
    };
    let (pending, already) = match ask_ledger(&namespace, &event.id, &claim).await {
        Ok(Some(Claim::Granted { pending, already })) => (pending, already),
        Ok(Some(Claim::Busy { .. })) => {
            return Outcome::Rejected {
                reason: Rejection::DeliveryInProgress,
                event: Some(event),
                results: Vec::new(),
            }
        }
        Ok(None) | Err(_) => {
            let failed = DestinationResult::new("ledger", Err("ledger_unavailable".to_owned()));
            return Outcome::from_deliveries(event, vec![failed]);
        }
    };

    // The pending destinations are written concurrently, so an attempt lasts about as long
    // as its slowest destination, well inside the lease.
    let mut results: Vec<DestinationResult> = already
        .iter()
        .map(|d| DestinationResult::earlier(d))
        .collect();
    let to_write = writes
        .iter()
        .filter(|w| pending.iter().any(|p| p == w.label()));
    results.extend(join_all(to_write.map(|write| perform(env, write, body))).await);
    // Report in the routes' order, whichever attempt delivered where.
    results.sort_by_key(|r| writes.iter().position(|w| w.label() == r.destination));
    let delivered = results
        .iter()
        .filter(|r| r.ok && !r.earlier)
        .map(|r| r.destination.clone())
        .collect();
    let settle = LedgerRequest::Settle { attempt, delivered };
    if ask_ledger(&namespace, &event.id, &settle).await.is_err() {
        // The writes happened and the event is safe; only dedupe of a later repeat is at
        // risk, and every destination tolerates a repeat (KV overwrites, origins get
        // Idempotency-Key). The lease still runs out on its own.
        console_error!(
            "{}",
            serde_json::json!({"level": "error", "msg": "stripe-edge ledger settle failed", "event_id": event.id})
        );
    }
    Outcome::from_deliveries(event, results)
}

/// Carries out one write and reports it without any payload or secret in the reason.
async fn perform(env: &Env, write: &Write, body: &[u8]) -> DestinationResult {
    let result = match write {
        Write::Kv {
            key,
            metadata,
            ttl_seconds,
        } => put_kv(env, key, metadata, *ttl_seconds, body).await,
        Write::Origin {
            url,
            headers,
            timeout_seconds,
            ..
        } => post_origin(url, headers, body, *timeout_seconds).await,
    };
    DestinationResult::new(write.label(), result)
}

async fn put_kv(
    env: &Env,
    key: &str,
    metadata: &KvMetadata,
    ttl_seconds: u64,
    body: &[u8],
) -> Result<(), String> {
    let store = env
        .kv(KV_BINDING)
        .map_err(|_| "kv_binding_missing".to_owned())?;
    let put = store
        .put_bytes(key, body)
        .and_then(|put| put.metadata(metadata))
        .map_err(|_| "kv_write".to_owned())?;
    put.expiration_ttl(ttl_seconds)
        .execute()
        .await
        .map_err(|_| "kv_write".to_owned())
}

async fn post_origin(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout_seconds: u64,
) -> Result<(), String> {
    let request_headers = Headers::new();
    for (name, value) in headers {
        request_headers
            .set(name, value)
            .map_err(|_| "bad_header".to_owned())?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(request_headers)
        // A redirect answer is not a delivery: POST bodies must not be replayed elsewhere.
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(Uint8Array::from(body).into()));
    let request = Request::new_with_init(url, &init).map_err(|_| "bad_url".to_owned())?;

    // Race the request against its timeout; a late origin is aborted and counts as failed.
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let send = pin!(fetch.send_with_signal(&signal));
    let timer = pin!(Delay::from(Duration::from_secs(timeout_seconds)));
    let response = match select(send, timer).await {
        Either::Left((response, _)) => response.map_err(|_| "network".to_owned())?,
        Either::Right(_) => {
            controller.abort();
            return Err("timeout".to_owned());
        }
    };
    match response.status_code() {
        200..=299 => Ok(()),
        status => Err(format!("http_{status}")),
    }
}
