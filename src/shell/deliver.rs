//! Carrying out writes. One [`attempt`] claims the event in its ledger, writes to the
//! destinations still pending, keeps the event when something failed, and settles what
//! happened; the webhook (direct mode), the queue consumer and the admin replay all use it.

use futures_util::future::join_all;
use worker::{console_error, Env};

use super::journal::Journal;
use super::ledger::{attempt_id, Ledger};
use super::runtime;
use super::KV_BINDING;
use crate::config::Config;
use crate::journal::{FailedEvent, JournalRequest};
use crate::ledger::{Claim, FailureReport, LedgerRequest, Settled};
use crate::outcome::{DestinationResult, EventRef, Outcome, Rejection};
use crate::pipeline::{writes_for, Job, KvMetadata, Write};
use crate::retry::{judge_origin_answer, WriteFailure};

/// Where an attempt finds the event's body.
pub(super) enum Body<'a> {
    /// In hand: the webhook just normalized it and planned its writes.
    Here { body: &'a [u8], writes: &'a [Write] },
    /// Kept in the ledger: read only when something is pending.
    Kept,
}

/// How an attempt ended.
pub(super) enum Attempt {
    /// Another attempt holds the event's lease, for this many more milliseconds.
    Busy(u64),
    /// The ledger could not be asked; nothing was written.
    LedgerUnavailable,
    Done(Report),
}

/// What one attempt did, destination by destination.
pub(super) struct Report {
    /// In the job's destination order, including those delivered or given up before.
    pub results: Vec<DestinationResult>,
    /// This attempt's failures, for the consumer's retry decision.
    pub failures: Vec<(String, WriteFailure)>,
    /// The ledger's view after settling; `None` if the settle was lost.
    pub settled: Option<Settled>,
}

/// Direct mode: delivers while Stripe waits and answers with the outcome. Without the
/// `LEDGER` binding, every destination gets every delivery and nothing is kept.
pub(super) async fn deliver_now(
    env: &Env,
    config: &Config,
    event: EventRef,
    job: &Job,
    body: &[u8],
    writes: &[Write],
    now: i64,
) -> Outcome {
    let Some(ledger) = Ledger::from_env(env) else {
        let performed = join_all(writes.iter().map(|w| perform(env, w, body, now))).await;
        let results = performed
            .into_iter()
            .map(|(label, result)| to_result(&label, result))
            .collect();
        return Outcome::from_deliveries(event, results);
    };
    match attempt(
        env,
        &ledger,
        config,
        job,
        Body::Here { body, writes },
        now,
        true,
    )
    .await
    {
        Attempt::Busy(_) => Outcome::Rejected {
            reason: Rejection::DeliveryInProgress,
            event: Some(event),
            results: Vec::new(),
        },
        Attempt::LedgerUnavailable => {
            let failed = DestinationResult::new("ledger", Err("ledger_unavailable".to_owned()));
            Outcome::from_deliveries(event, vec![failed])
        }
        Attempt::Done(report) => Outcome::from_deliveries(event, report.results),
    }
}

/// One attempt at `job`'s destinations. `keep_on_failure` keeps the event in the ledger
/// before a failure is settled (direct mode; queue mode kept it on arrival). A failure that
/// cannot be kept is never given up, so Stripe's retry brings the event back.
pub(super) async fn attempt(
    env: &Env,
    ledger: &Ledger,
    config: &Config,
    job: &Job,
    body: Body<'_>,
    now: i64,
    keep_on_failure: bool,
) -> Attempt {
    let attempt = attempt_id();
    let claim = LedgerRequest::Claim {
        attempt: attempt.clone(),
        destinations: job.destinations.clone(),
    };
    let (pending, already, given_up, held) = match ledger.ask::<Claim>(&job.id, &claim).await {
        Ok(Claim::Granted {
            pending,
            already,
            given_up,
            held,
        }) => (pending, already, given_up, held),
        Ok(Claim::Busy { retry_after_ms }) => return Attempt::Busy(retry_after_ms),
        Err(_) => return Attempt::LedgerUnavailable,
    };
    let mut results: Vec<DestinationResult> = already
        .iter()
        .map(|d| DestinationResult::earlier(d))
        .chain(
            given_up
                .iter()
                .map(|d| DestinationResult::failed(d, "given_up", true)),
        )
        .chain(held.iter().map(|d| DestinationResult::held(d)))
        .collect();
    if pending.is_empty() {
        sort_by_job(&mut results, job);
        return Attempt::Done(Report {
            results,
            failures: Vec::new(),
            settled: None,
        });
    }

    let kept_body;
    let (body, planned) = match body {
        Body::Here { body, writes } => (Some(body), Some(writes)),
        Body::Kept => {
            kept_body = ledger.body(&job.id).await;
            match &kept_body {
                Ok(Some(body)) => (Some(body.as_slice()), None),
                Ok(None) => (None, None),
                // Nothing was written; the lease runs out and a retry finds the body.
                Err(_) => return Attempt::LedgerUnavailable,
            }
        }
    };
    let pending_job = Job {
        destinations: pending,
        ..job.clone()
    };
    let mut failures: Vec<(String, WriteFailure)> = Vec::new();
    let mut delivered = Vec::new();
    match body {
        Some(body) => {
            // The pending destinations are written concurrently, so an attempt lasts about
            // as long as its slowest destination, well inside the lease.
            // Writes planned by the webhook are reused (an origin's forward signature is
            // computed once); a kept event's are made from today's configuration.
            // A pending destination without a planned write (which plan() never leaves)
            // falls back to the configuration, where it is reported as removed if it is gone.
            let planned = planned.filter(|planned| {
                pending_job
                    .destinations
                    .iter()
                    .all(|d| planned.iter().any(|w| w.label() == d))
            });
            let made;
            let (writes, gone): (Vec<&Write>, Vec<String>) = match planned {
                Some(planned) => (
                    planned
                        .iter()
                        .filter(|w| pending_job.destinations.iter().any(|d| d == w.label()))
                        .collect(),
                    Vec::new(),
                ),
                None => {
                    let (writes, gone) = writes_for(config, &pending_job, body, now);
                    made = writes;
                    (made.iter().collect(), gone)
                }
            };
            for label in gone {
                failures.push((label, gave_up("destination_removed")));
            }
            for (label, result) in
                join_all(writes.into_iter().map(|w| perform(env, w, body, now))).await
            {
                match result {
                    Ok(()) => delivered.push(label),
                    Err(failure) => failures.push((label, failure)),
                }
            }
            if !failures.is_empty() && keep_on_failure && ledger.keep(job, body).await.is_err() {
                for (_, failure) in &mut failures {
                    failure.give_up = false;
                }
            }
        }
        // Kept events always have a body; a missing one cannot be delivered by retrying.
        None => {
            for label in &pending_job.destinations {
                failures.push((label.clone(), gave_up("body_missing")));
            }
        }
    }

    let settle = LedgerRequest::Settle {
        attempt,
        delivered: delivered.clone(),
        failed: failures
            .iter()
            .map(|(label, failure)| FailureReport {
                destination: label.clone(),
                reason: failure.reason.clone(),
                give_up: failure.give_up,
            })
            .collect(),
    };
    let settled = match ledger.ask::<Settled>(&job.id, &settle).await {
        Ok(settled) => Some(settled),
        Err(_) => {
            // The writes happened and the event is safe; only dedupe of a later repeat is at
            // risk, and every destination tolerates a repeat (KV overwrites, origins get
            // Idempotency-Key). The lease still runs out on its own.
            console_error!(
                "{}",
                serde_json::json!({"level": "error", "msg": "stripe-edge ledger settle failed", "event_id": job.id})
            );
            None
        }
    };
    if let Some(settled) = &settled {
        if !failures.is_empty() || !settled.recovered.is_empty() {
            journal_failing(env, job, settled, now).await;
        }
    }

    results.extend(delivered.iter().map(|d| DestinationResult::new(d, Ok(()))));
    results.extend(failures.iter().map(|(label, failure)| {
        DestinationResult::failed(label, &failure.reason, failure.give_up)
    }));
    sort_by_job(&mut results, job);
    Attempt::Done(Report {
        results,
        failures,
        settled,
    })
}

/// Tells the journal what is still failing for `job`'s event (nothing removes it).
pub(super) async fn journal_failing(env: &Env, job: &Job, settled: &Settled, now: i64) {
    if let Some(journal) = Journal::from_env(env) {
        let request = JournalRequest::Failing(FailedEvent {
            id: job.id.clone(),
            event_type: job.event_type.clone(),
            destinations: settled.failing.clone(),
            updated_ms: u64::try_from(now).unwrap_or_default() * 1000,
        });
        journal.tell(&request).await;
    }
}

fn gave_up(reason: &str) -> WriteFailure {
    WriteFailure {
        give_up: true,
        ..WriteFailure::transient(reason)
    }
}

/// Report in the routes' order, whichever attempt delivered where.
fn sort_by_job(results: &mut [DestinationResult], job: &Job) {
    results.sort_by_key(|r| job.destinations.iter().position(|d| *d == r.destination));
}

fn to_result(label: &str, result: Result<(), WriteFailure>) -> DestinationResult {
    match result {
        Ok(()) => DestinationResult::new(label, Ok(())),
        Err(failure) => DestinationResult::failed(label, &failure.reason, failure.give_up),
    }
}

/// Carries out one write and reports it without any payload or secret in the reason.
async fn perform(
    env: &Env,
    write: &Write,
    body: &[u8],
    now: i64,
) -> (String, Result<(), WriteFailure>) {
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
        } => post_origin(url, headers, body, *timeout_seconds, now).await,
    };
    (write.label().to_owned(), result)
}

async fn put_kv(
    env: &Env,
    key: &str,
    metadata: &KvMetadata,
    ttl_seconds: u64,
    body: &[u8],
) -> Result<(), WriteFailure> {
    let failed = |reason: &str| WriteFailure::transient(reason);
    let store = env
        .kv(KV_BINDING)
        .map_err(|_| failed("kv_binding_missing"))?;
    let put = store
        .put_bytes(key, body)
        .and_then(|put| put.metadata(metadata))
        .map_err(|_| failed("kv_write"))?;
    put.expiration_ttl(ttl_seconds)
        .execute()
        .await
        .map_err(|_| failed("kv_write"))
}

async fn post_origin(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout_seconds: u64,
    now: i64,
) -> Result<(), WriteFailure> {
    // A late origin is abandoned and counts as failed; a redirect answer is not a delivery
    // (POST bodies must not be replayed elsewhere), so none is followed.
    let answer = runtime::post_origin(url, headers, body, timeout_seconds)
        .await
        .map_err(|error| match error {
            // Headers or a URL the runtime refuses would be refused on every retry too.
            runtime::PostError::BadRequest => gave_up(error.reason()),
            runtime::PostError::Timeout | runtime::PostError::Network => {
                WriteFailure::transient(error.reason())
            }
        })?;
    judge_origin_answer(answer.status, answer.retry_after.as_deref(), now)
}
