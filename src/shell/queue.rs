//! Queue mode. The webhook keeps the event in its ledger and enqueues its [`Job`]; this
//! consumer (the same worker) writes it, retrying with backoff until the queue's
//! `max_retries` run out and the message moves to the dead-letter queue, whose consumer
//! (also here) marks the destinations given up so they are listed and can be replayed.

use futures_util::future::join_all;
use worker::{
    console_error, console_log, event, Context, Date, Env, MessageBatch, MessageExt,
    QueueRetryOptionsBuilder, RawMessage,
};

use super::deliver::{attempt, journal_failing, Attempt, Body};
use super::ledger::Ledger;
use super::QUEUE_BINDING;
use crate::config::Config;
use crate::ledger::{FailureReport, LedgerRequest, Settled};
use crate::outcome::{DestinationResult, EventRef, Outcome, Rejection};
use crate::pipeline::Job;
use crate::retry::backoff_seconds;

/// Webhook side: keep the event, then enqueue it. The answer is 202 once both hold; a
/// repeat of an event every destination has is answered as a duplicate.
pub(super) async fn enqueue(env: &Env, event: EventRef, job: &Job, body: &[u8]) -> Outcome {
    let unavailable = |event: EventRef| Outcome::Rejected {
        reason: Rejection::QueueUnavailable,
        event: Some(event),
        results: Vec::new(),
    };
    let (Some(ledger), Ok(queue)) = (Ledger::from_env(env), env.queue(QUEUE_BINDING)) else {
        return unavailable(event);
    };
    let Ok(record) = ledger.keep(job, body).await else {
        return unavailable(event);
    };
    if job
        .destinations
        .iter()
        .all(|d| record.delivered.contains(d))
    {
        let results = job
            .destinations
            .iter()
            .map(|d| DestinationResult::earlier(d))
            .collect();
        return Outcome::from_deliveries(event, results);
    }
    let Ok(message) = serde_json::to_string(job) else {
        return unavailable(event);
    };
    if queue.send(message).await.is_err() {
        return unavailable(event);
    }
    Outcome::Queued {
        event,
        destinations: job.destinations.clone(),
    }
}

/// What to do with one message after handling it.
enum Verdict {
    Ack,
    RetryIn(u32),
}

#[event(queue)]
async fn consume(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let config = super::isolate_config(&env);
    let config = match config.as_ref() {
        Ok(config) => config,
        Err(_) => {
            // The fetch handler logs the problems by name on every request; the messages
            // wait for a fixed configuration.
            console_error!(
                "{}",
                serde_json::json!({"level": "error", "msg": "stripe-edge queue paused: configuration invalid", "code": "config_invalid"})
            );
            batch.retry_all_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(60)
                    .build(),
            );
            return Ok(());
        }
    };
    let dead_letters = batch.queue() == config.dead_letter_queue;
    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    let env = &env;
    let handled = messages.iter().map(|message| async move {
        let verdict = handle(env, config, message, dead_letters).await;
        (message, verdict)
    });
    for (message, verdict) in join_all(handled).await {
        match verdict {
            Verdict::Ack => message.ack(),
            Verdict::RetryIn(seconds) => message.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(seconds)
                    .build(),
            ),
        }
    }
    Ok(())
}

async fn handle(env: &Env, config: &Config, message: &RawMessage, dead_letters: bool) -> Verdict {
    let job = message
        .body()
        .as_string()
        .and_then(|text| serde_json::from_str::<Job>(&text).ok());
    let Some(job) = job else {
        // Not a message this worker sent; retrying cannot make it readable.
        console_error!(
            "{}",
            serde_json::json!({"level": "error", "msg": "stripe-edge queue message unreadable", "code": "message_unreadable"})
        );
        return Verdict::Ack;
    };
    let Some(ledger) = Ledger::from_env(env) else {
        log(&job, "ledger_missing", &[], None);
        return Verdict::RetryIn(config.retry_max_seconds);
    };
    let now = i64::try_from(Date::now().as_millis() / 1000).unwrap_or(i64::MAX);
    if dead_letters {
        return give_up(env, &ledger, config, &job, now).await;
    }

    match attempt(env, &ledger, config, &job, Body::Kept, now, false).await {
        // The attempt holding the lease has its own message, which ends the job.
        Attempt::Busy => {
            log(&job, "in_progress", &[], None);
            Verdict::Ack
        }
        Attempt::LedgerUnavailable => {
            let wait = backoff_seconds(config, 1, None);
            log(&job, "retry", &[], Some(wait));
            Verdict::RetryIn(wait)
        }
        Attempt::Done(report) => {
            let retryable: Vec<_> = report
                .failures
                .iter()
                .filter(|(_, failure)| !failure.give_up)
                .collect();
            if retryable.is_empty() {
                let outcome = if report.failures.is_empty() {
                    "delivered"
                } else {
                    "gave_up"
                };
                log(&job, outcome, &report.results, None);
                return Verdict::Ack;
            }
            // Back off by the most-failed pending destination, and never sooner than any
            // destination's Retry-After.
            let attempts = report
                .settled
                .as_ref()
                .and_then(|s| s.failing.iter().map(|f| f.attempts).max())
                .unwrap_or(1);
            let retry_after = retryable
                .iter()
                .filter_map(|(_, f)| f.retry_after_seconds)
                .max();
            let wait = backoff_seconds(config, attempts, retry_after);
            log(&job, "retry", &report.results, Some(wait));
            Verdict::RetryIn(wait)
        }
    }
}

/// A dead letter: the queue's retries ran out. Every destination that still lacks the
/// event is given up, so it is listed under `/admin/failed` and waits for a replay.
async fn give_up(env: &Env, ledger: &Ledger, config: &Config, job: &Job, now: i64) -> Verdict {
    let settle = LedgerRequest::Settle {
        attempt: "dead-letter".to_owned(),
        delivered: Vec::new(),
        failed: job
            .destinations
            .iter()
            .map(|d| FailureReport {
                destination: d.clone(),
                reason: String::new(),
                give_up: true,
            })
            .collect(),
    };
    match ledger.ask::<Settled>(&job.id, &settle).await {
        Ok(settled) => {
            journal_failing(env, job, &settled, now).await;
            let results: Vec<DestinationResult> = settled
                .failing
                .iter()
                .map(|f| DestinationResult::failed(&f.destination, &f.reason, true))
                .collect();
            log(job, "dead_letter", &results, None);
            Verdict::Ack
        }
        Err(_) => {
            let wait = backoff_seconds(config, 1, None);
            log(job, "retry", &[], Some(wait));
            Verdict::RetryIn(wait)
        }
    }
}

/// One structured line per message: the event and what happened to it, never its payload.
fn log(job: &Job, outcome: &str, results: &[DestinationResult], retry_in: Option<u32>) {
    let failed = outcome != "delivered" && outcome != "in_progress";
    let mut line = serde_json::json!({
        "level": if failed { "warn" } else { "info" },
        "msg": "stripe-edge queue delivery",
        "outcome": outcome,
        "event_id": job.id,
        "event_type": job.event_type,
    });
    if !results.is_empty() {
        line["destinations"] = serde_json::json!(results);
    }
    if let Some(seconds) = retry_in {
        line["retry_in_seconds"] = serde_json::json!(seconds);
    }
    if outcome == "gave_up" || outcome == "dead_letter" {
        line["level"] = serde_json::json!("error");
        console_error!("{line}");
    } else {
        console_log!("{line}");
    }
}
