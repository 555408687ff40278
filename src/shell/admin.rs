//! The `/admin` endpoints, behind `ADMIN_TOKEN`: list the latest events and the failed
//! deliveries, look at one event, and deliver failed ones again. A replay goes through the
//! queue in queue mode and is attempted at once in direct mode.

use futures_util::future::join_all;
use serde_json::{json, Value};
use worker::{Env, Request};

use super::deliver::{attempt, Attempt, Body};
use super::journal::Journal;
use super::ledger::Ledger;
use super::QUEUE_BINDING;
use crate::config::{Config, DeliveryMode};
use crate::journal::{list_limit, FailedEvent, JournalRequest, SeenEvent};
use crate::ledger::{LedgerRequest, Record, Replayable};
use crate::outcome::{Outcome, Rejection};
use crate::pipeline::Admin;

/// How many failed events one `POST /admin/failed/redeliver` takes on. Direct mode
/// attempts each at once, so its batch is smaller, to stay inside one request's limits.
const REPLAY_BATCH_QUEUE: u32 = 100;
const REPLAY_BATCH_DIRECT: u32 = 5;

pub(super) async fn admin(
    req: &Request,
    env: &Env,
    config: &Config,
    action: Result<Admin, Rejection>,
) -> Outcome {
    // Without a token the endpoints do not exist.
    let Some(token) = &config.admin_token else {
        return Outcome::rejected(Rejection::UnknownPath);
    };
    let authorization = req.headers().get("authorization").ok().flatten();
    if !token.accepts(authorization.as_deref()) {
        return Outcome::rejected(Rejection::Unauthorized);
    }
    let action = match action {
        Ok(action) => action,
        Err(rejection) => return Outcome::rejected(rejection),
    };
    let name = action.action();
    // The query is read from the raw URL: parsing it with `Request::url` would pull a URL
    // parser and its Unicode tables (about 100 KB gzipped) into the bundle.
    let raw_url = req.inner().url();
    let limit = list_limit(raw_url.split_once('?').map(|(_, query)| query));
    let now = i64::try_from(worker::Date::now().as_millis() / 1000).unwrap_or(i64::MAX);
    let (Some(ledger), Some(journal)) = (Ledger::from_env(env), Journal::from_env(env)) else {
        return Outcome::rejected(Rejection::LedgerUnavailable);
    };

    let answer = match action {
        Admin::RecentEvents => journal
            .ask::<Vec<SeenEvent>>(&JournalRequest::Recent { limit })
            .await
            .map(|events| (200, json!({ "events": events }))),
        Admin::Failed => journal
            .ask::<Vec<FailedEvent>>(&JournalRequest::Failed { limit })
            .await
            .map(|failed| (200, json!({ "failed": failed }))),
        Admin::Event(id) => match ledger.ask::<Record>(&id, &LedgerRequest::Inspect).await {
            Ok(record) if record.first_seen_ms == 0 => {
                return Outcome::rejected(Rejection::EventNotKept)
            }
            Ok(record) => Ok((
                200,
                json!({
                    "id": id,
                    "delivered": record.delivered,
                    "failing": record.failing,
                    "kept": record.kept.is_some(),
                    "type": record.kept.map(|job| job.event_type),
                }),
            )),
            Err(error) => Err(error),
        },
        Admin::Redeliver(id) => match redeliver(env, &ledger, config, &id, now).await {
            Ok(body) => Ok((200, body)),
            Err(rejection) => return Outcome::rejected(rejection),
        },
        Admin::RedeliverFailed => {
            let batch = match config.delivery {
                DeliveryMode::Queue => REPLAY_BATCH_QUEUE,
                DeliveryMode::Direct => REPLAY_BATCH_DIRECT,
            };
            match journal
                .ask::<Vec<FailedEvent>>(&JournalRequest::Failed { limit: batch })
                .await
            {
                Ok(failed) => {
                    // Concurrently, so a hanging origin costs one timeout, not one per event.
                    let replays = failed.iter().map(|event| async {
                        match redeliver(env, &ledger, config, &event.id, now).await {
                            Ok(body) => body,
                            Err(rejection) => {
                                if rejection == Rejection::EventNotKept {
                                    // The ledger forgot it (31 days on): so does the journal.
                                    forget(&journal, event, now).await;
                                }
                                json!({"id": event.id, "error": rejection.code()})
                            }
                        }
                    });
                    let replays = join_all(replays).await;
                    Ok((200, json!({ "redelivered": replays, "batch_limit": batch })))
                }
                Err(error) => Err(error),
            }
        }
    };
    match answer {
        Ok((status, body)) => Outcome::Admin {
            action: name,
            status,
            body,
        },
        Err(_) => Outcome::rejected(Rejection::LedgerUnavailable),
    }
}

/// Removes an event the ledger no longer keeps from the journal's failed list.
async fn forget(journal: &Journal, event: &FailedEvent, now: i64) {
    let request = JournalRequest::Failing(FailedEvent {
        destinations: Vec::new(),
        updated_ms: u64::try_from(now).unwrap_or_default() * 1000,
        ..event.clone()
    });
    journal.tell(&request).await;
}

/// Makes the failing destinations of one kept event eligible again and delivers them:
/// enqueued in queue mode, attempted now in direct mode.
async fn redeliver(
    env: &Env,
    ledger: &Ledger,
    config: &Config,
    id: &str,
    now: i64,
) -> Result<Value, Rejection> {
    let replay = LedgerRequest::Replay { destinations: None };
    let Replayable { job, destinations } = ledger
        .ask::<Replayable>(id, &replay)
        .await
        .map_err(|_| Rejection::LedgerUnavailable)?;
    let Some(mut job) = job else {
        return Err(Rejection::EventNotKept);
    };
    if destinations.is_empty() {
        return Ok(json!({"id": id, "redelivered": [], "note": "no destination is failing"}));
    }
    job.destinations = destinations;
    match config.delivery {
        DeliveryMode::Queue => {
            let queue = env
                .queue(QUEUE_BINDING)
                .map_err(|_| Rejection::QueueUnavailable)?;
            let message = serde_json::to_string(&job).map_err(|_| Rejection::QueueUnavailable)?;
            queue
                .send(message)
                .await
                .map_err(|_| Rejection::QueueUnavailable)?;
            Ok(json!({"id": id, "queued": job.destinations}))
        }
        DeliveryMode::Direct => {
            match attempt(env, ledger, config, &job, Body::Kept, now, false).await {
                Attempt::Busy(_) => Err(Rejection::DeliveryInProgress),
                Attempt::LedgerUnavailable => Err(Rejection::LedgerUnavailable),
                Attempt::Done(report) => Ok(json!({"id": id, "results": report.results})),
            }
        }
    }
}
