//! The journal's Durable Object (one instance, named `journal`) and the worker's side of
//! talking to it. It keeps the latest events and the events some destination has not
//! accepted, in SQLite tables, for the `/admin` endpoints; it decides nothing.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{
    console_error, durable_object, DurableObject, Env, ObjectNamespace, Request, Response,
    SqlStorage, State,
};

use super::runtime;

use crate::journal::{FailedEvent, JournalRequest, SeenEvent, RECENT_EVENTS_KEPT};
use crate::ledger::RETENTION_MS;

/// The one instance every request talks to.
const INSTANCE: &str = "journal";

/// The worker's handle on the journal.
#[derive(Clone)]
pub(super) struct Journal(ObjectNamespace);

impl Journal {
    /// `None` when the `JOURNAL` binding is missing: nothing is journaled and the admin
    /// lists answer 503.
    pub(super) fn from_env(env: &Env) -> Option<Journal> {
        env.durable_object(super::JOURNAL_BINDING).ok().map(Journal)
    }

    pub(super) async fn ask<T: DeserializeOwned>(
        &self,
        request: &JournalRequest,
    ) -> worker::Result<T> {
        let body = JsValue::from_str(&serde_json::to_string(request)?);
        let answer = runtime::call_object(
            self.0.as_ref(),
            INSTANCE,
            "POST",
            "https://journal/",
            Some(&body),
            None,
        )
        .await?;
        if answer.status != 200 {
            return Err(worker::Error::RustError(format!(
                "journal answered {}",
                answer.status
            )));
        }
        Ok(serde_json::from_str(&answer.text)?)
    }

    /// Records without waiting for an answer worth reading; a failure is logged, as the
    /// journal only reports and the ledger still holds the truth.
    pub(super) async fn tell(&self, request: &JournalRequest) {
        if self.ask::<serde_json::Value>(request).await.is_err() {
            console_error!(
                "{}",
                serde_json::json!({"level": "error", "msg": "stripe-edge journal write failed"})
            );
        }
    }
}

#[durable_object]
pub struct DeliveryJournal {
    state: State,
}

impl DurableObject for DeliveryJournal {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // Creating tables that exist is a no-op, so every start may run this.
        let created = sql
            .exec(
                "CREATE TABLE IF NOT EXISTS recent (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
                 id TEXT NOT NULL, type TEXT NOT NULL, outcome TEXT NOT NULL, at_ms INTEGER NOT NULL)",
                None,
            )
            .and_then(|_| {
                sql.exec(
                    "CREATE TABLE IF NOT EXISTS failed (id TEXT PRIMARY KEY, type TEXT NOT NULL, \
                     destinations TEXT NOT NULL, updated_ms INTEGER NOT NULL)",
                    None,
                )
            });
        if created.is_err() {
            console_error!(
                "{}",
                serde_json::json!({"level": "error", "msg": "stripe-edge journal tables not created"})
            );
        }
        DeliveryJournal { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Ok(request) = runtime::read_json::<JournalRequest>(&mut req).await else {
            return Response::error("not a journal request", 400);
        };
        let sql = self.state.storage().sql();
        match request {
            JournalRequest::Seen(seen) => {
                sql.exec(
                    "INSERT INTO recent (id, type, outcome, at_ms) VALUES (?, ?, ?, ?)",
                    vec![
                        seen.id.into(),
                        seen.event_type.into(),
                        seen.outcome.into(),
                        millis(seen.at_ms),
                    ],
                )?;
                sql.exec(
                    "DELETE FROM recent WHERE seq <= (SELECT MAX(seq) FROM recent) - ?",
                    vec![i64::from(RECENT_EVENTS_KEPT).into()],
                )?;
                Response::from_json(&true)
            }
            JournalRequest::Failing(failed) => {
                // Events the ledgers have forgotten (31 days on) leave the list too.
                let expired = failed.updated_ms.saturating_sub(RETENTION_MS);
                sql.exec(
                    "DELETE FROM failed WHERE updated_ms < ?",
                    vec![millis(expired)],
                )?;
                if failed.destinations.is_empty() {
                    sql.exec("DELETE FROM failed WHERE id = ?", vec![failed.id.into()])?;
                } else {
                    sql.exec(
                        "INSERT OR REPLACE INTO failed (id, type, destinations, updated_ms) \
                         VALUES (?, ?, ?, ?)",
                        vec![
                            failed.id.into(),
                            failed.event_type.into(),
                            serde_json::to_string(&failed.destinations)?.into(),
                            millis(failed.updated_ms),
                        ],
                    )?;
                }
                Response::from_json(&true)
            }
            JournalRequest::Recent { limit } => Response::from_json(&recent(&sql, limit)?),
            JournalRequest::Failed { limit } => Response::from_json(&failed(&sql, limit)?),
        }
    }
}

fn millis(ms: u64) -> worker::SqlStorageValue {
    i64::try_from(ms).unwrap_or(i64::MAX).into()
}

/// Rows come back from SQLite through JavaScript, so numbers arrive as floats.
#[derive(Deserialize)]
struct RecentRow {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    outcome: String,
    at_ms: f64,
}

fn recent(sql: &SqlStorage, limit: u32) -> worker::Result<Vec<SeenEvent>> {
    let rows: Vec<RecentRow> = sql
        .exec(
            "SELECT id, type, outcome, at_ms FROM recent ORDER BY seq DESC LIMIT ?",
            vec![i64::from(limit).into()],
        )?
        .to_array()?;
    Ok(rows
        .into_iter()
        .map(|row| SeenEvent {
            id: row.id,
            event_type: row.event_type,
            outcome: row.outcome,
            at_ms: row.at_ms as u64,
        })
        .collect())
}

#[derive(Deserialize)]
struct FailedRow {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    destinations: String,
    updated_ms: f64,
}

fn failed(sql: &SqlStorage, limit: u32) -> worker::Result<Vec<FailedEvent>> {
    let rows: Vec<FailedRow> = sql
        .exec(
            "SELECT id, type, destinations, updated_ms FROM failed ORDER BY updated_ms ASC LIMIT ?",
            vec![i64::from(limit).into()],
        )?
        .to_array()?;
    Ok(rows
        .into_iter()
        .map(|row| FailedEvent {
            id: row.id,
            event_type: row.event_type,
            destinations: serde_json::from_str(&row.destinations).unwrap_or_default(),
            updated_ms: row.updated_ms as u64,
        })
        .collect())
}
