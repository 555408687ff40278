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
use crate::config::{Config, MAX_QUEUE_DELAY_SECONDS};
use crate::ledger::{FailureReport, LedgerRequest, Settled};
use crate::outcome::{DestinationResult, EventRef, Outcome, Rejection};
use crate::pipeline::Job;
use crate::retry::backoff_seconds;

/// Webhook side: keep the event, then enqueue it. The answer is 202 once both hold; a
/// repeat of an event with nothing left to attempt is answered at once.
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
    // Nothing left to attempt (every destination has it, or was given up and waits for a
    // replay): answer as direct mode would, without a message.
    let given_up = |d: &String| {
        record
            .failing
            .iter()
            .any(|f| &f.destination == d && f.gave_up)
    };
    if job
        .destinations
        .iter()
        .all(|d| record.delivered.contains(d) || given_up(d))
    {
        let results = job
            .destinations
            .iter()
            .map(|d| match given_up(d) {
                true => DestinationResult::failed(d, "given_up", true),
                false => DestinationResult::earlier(d),
            })
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

/// How long a message waits when the ledger could not be asked about it.
const LEDGER_RETRY_SECONDS: u32 = 60;

/// What to do with one message after handling it.
enum Verdict {
    Ack,
    RetryIn(u32),
}

#[event(queue)]
async fn consume(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let config = super::isolate_config(&env);
    let Ok(config) = config.as_ref() else {
        // Retrying would only spend the messages' retries (and then lose them from the
        // dead-letter queue) while the configuration stays wrong. Each event is kept in its
        // ledger already: give its destinations up, so it is listed under /admin/failed and
        // replayed once the configuration is fixed. The fetch handler logs the problems.
        let now = i64::try_from(Date::now().as_millis() / 1000).unwrap_or(i64::MAX);
        for message in batch.raw_iter() {
            let verdict = match (read_job(&message), Ledger::from_env(&env)) {
                (Some(job), Some(ledger)) => {
                    give_up(&env, &ledger, &job, "config_invalid", now).await
                }
                (None, _) => Verdict::Ack,
                (Some(_), None) => Verdict::RetryIn(MAX_QUEUE_DELAY_SECONDS),
            };
            settle_message(&message, verdict);
        }
        return Ok(());
    };
    let dead_letters = batch.queue() == config.dead_letter_queue;
    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    let env = &env;
    let handled = messages.iter().map(|message| async move {
        let verdict = handle(env, config, message, dead_letters).await;
        (message, verdict)
    });
    for (message, verdict) in join_all(handled).await {
        settle_message(message, verdict);
    }
    Ok(())
}

fn settle_message(message: &RawMessage, verdict: Verdict) {
    match verdict {
        Verdict::Ack => message.ack(),
        Verdict::RetryIn(seconds) => message.retry_with_options(
            &QueueRetryOptionsBuilder::new()
                .with_delay_seconds(seconds)
                .build(),
        ),
    }
}

fn read_job(message: &RawMessage) -> Option<Job> {
    let job = message
        .body()
        .as_string()
        .and_then(|text| serde_json::from_str::<Job>(&text).ok());
    if job.is_none() {
        // Not a message this worker sent; retrying cannot make it readable.
        console_error!(
            "{}",
            serde_json::json!({"level": "error", "msg": "stripe-edge queue message unreadable", "code": "message_unreadable"})
        );
    }
    job
}

async fn handle(env: &Env, config: &Config, message: &RawMessage, dead_letters: bool) -> Verdict {
    let Some(job) = read_job(message) else {
        return Verdict::Ack;
    };
    let Some(ledger) = Ledger::from_env(env) else {
        log(&job, "ledger_missing", &[], None);
        return Verdict::RetryIn(config.retry_max_seconds);
    };
    let now = i64::try_from(Date::now().as_millis() / 1000).unwrap_or(i64::MAX);
    if dead_letters {
        return give_up(env, &ledger, &job, "", now).await;
    }

    match attempt(env, &ledger, config, &job, Body::Kept, now, false).await {
        // Another attempt holds the lease: come back when it ends. Acknowledging instead
        // would lose the event if that attempt died holding the lease.
        Attempt::Busy(retry_after_ms) => {
            let wait = u32::try_from(retry_after_ms.div_ceil(1000) + 1).unwrap_or(u32::MAX);
            log(&job, "in_progress", &[], Some(wait));
            Verdict::RetryIn(wait)
        }
        Attempt::LedgerUnavailable => {
            let wait = backoff_seconds(config, 1, None, spread_permille());
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
                let outcome = if report.results.iter().any(|r| r.gave_up) {
                    "gave_up"
                } else {
                    "delivered"
                };
                log(&job, outcome, &report.results, None);
                return Verdict::Ack;
            }
            let attempts = report.settled.as_ref().map_or(1, Settled::retry_attempts);
            let retry_after = retryable
                .iter()
                .filter_map(|(_, f)| f.retry_after_seconds)
                .max();
            let wait = backoff_seconds(config, attempts, retry_after, spread_permille());
            log(&job, "retry", &report.results, Some(wait));
            Verdict::RetryIn(wait)
        }
    }
}

/// A dead letter (the queue's retries ran out; `reason` empty keeps the last one) or a
/// paused consumer: every destination that still lacks the event is given up, so it is
/// listed under `/admin/failed` and waits for a replay.
async fn give_up(env: &Env, ledger: &Ledger, job: &Job, reason: &str, now: i64) -> Verdict {
    let settle = LedgerRequest::Settle {
        attempt: "dead-letter".to_owned(),
        delivered: Vec::new(),
        failed: job
            .destinations
            .iter()
            .map(|d| FailureReport {
                destination: d.clone(),
                reason: reason.to_owned(),
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
            log(job, "retry", &[], Some(LEDGER_RETRY_SECONDS));
            Verdict::RetryIn(LEDGER_RETRY_SECONDS)
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

/// A random 0-999 for [`backoff_seconds`]'s spread; 0 (no spread) if randomness fails.
fn spread_permille() -> u32 {
    let mut bytes = [0u8; 2];
    if getrandom::getrandom(&mut bytes).is_err() {
        return 0;
    }
    u32::from(u16::from_le_bytes(bytes)) % 1000
}
