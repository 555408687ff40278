//! The ledger's Durable Object and the worker's side of talking to it. One object per
//! Stripe event id holds its [`Record`] and, when the event is kept, its normalized body;
//! one object per Stripe object (named `object:<id>`) holds the [`ObjectClock`] of "latest
//! wins". The logic of both is in [`crate::ledger`], free of I/O.

use std::cell::Cell;
use std::time::Duration;

use serde::de::DeserializeOwned;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::{
    durable_object, Date, DurableObject, Env, Method, ObjectNamespace, Request, Response, State,
};

use super::runtime;

use crate::ledger::{text_pieces, LedgerRequest, ObjectClock, Record, RETENTION_MS};
use crate::pipeline::Job;

/// Where the ledger keeps its record inside each event's Durable Object.
const RECORD_KEY: &str = "record";
/// Where an object's clock keeps its state.
const CLOCK_KEY: &str = "clock";
/// A kept body is stored in pieces of at most this size under `body:0`, `body:1`, ...:
/// Durable Object storage limits the size of one value.
const BODY_CHUNK_BYTES: usize = 96 * 1024;
/// The header that carries a kept event's [`Job`] beside its body.
const JOB_HEADER: &str = "stripe-edge-job";

/// The worker's handle on the ledger namespace.
pub(super) struct Ledger(ObjectNamespace);

impl Ledger {
    /// `None` when the `LEDGER` binding is missing.
    pub(super) fn from_env(env: &Env) -> Option<Ledger> {
        env.durable_object(super::LEDGER_BINDING).ok().map(Ledger)
    }

    /// One request to the ledger object `name`; its answer's text when it is 200.
    async fn call(
        &self,
        name: &str,
        method: &str,
        path: &str,
        body: Option<&JsValue>,
        job: Option<&str>,
    ) -> worker::Result<runtime::ObjectAnswer> {
        let url = format!("https://ledger{path}");
        let answer = runtime::call_object(self.0.as_ref(), name, method, &url, body, job).await?;
        match answer.status {
            200 | 404 => Ok(answer),
            status => Err(worker::Error::RustError(format!(
                "ledger answered {status}"
            ))),
        }
    }

    /// Sends one request to the ledger of `event_id` and returns its answer.
    pub(super) async fn ask<T: DeserializeOwned>(
        &self,
        event_id: &str,
        request: &LedgerRequest,
    ) -> worker::Result<T> {
        let body = JsValue::from_str(&serde_json::to_string(request)?);
        let answer = self.call(event_id, "POST", "/", Some(&body), None).await?;
        parse_answer(&answer)
    }

    /// Keeps the event (its job and normalized body) unless it is kept already, and
    /// returns the record.
    pub(super) async fn keep(&self, job: &Job, body: &[u8]) -> worker::Result<Record> {
        let job_json = serde_json::to_string(job)?;
        let body = Uint8Array::from(body).into();
        let answer = self
            .call(&job.id, "PUT", "/keep", Some(&body), Some(&job_json))
            .await?;
        parse_answer(&answer)
    }

    /// The kept body of `event_id`, or `None` when the event is not kept.
    pub(super) async fn body(&self, event_id: &str) -> worker::Result<Option<Vec<u8>>> {
        let answer = self.call(event_id, "GET", "/body", None, None).await?;
        Ok((answer.status == 200).then(|| answer.text.into_bytes()))
    }

    /// Whether `event`, created at `created`, is older than one already seen for the same
    /// Stripe object.
    pub(super) async fn is_stale(
        &self,
        object_id: &str,
        event: &str,
        created: i64,
    ) -> worker::Result<bool> {
        let request = LedgerRequest::Observe {
            event: event.to_owned(),
            created,
        };
        let body = JsValue::from_str(&serde_json::to_string(&request)?);
        let name = format!("object:{object_id}");
        let answer = self
            .call(&name, "POST", "/clock", Some(&body), None)
            .await?;
        parse_answer(&answer)
    }
}

/// A 200 answer's JSON; a 404 is an error everywhere but [`Ledger::body`].
fn parse_answer<T: DeserializeOwned>(answer: &runtime::ObjectAnswer) -> worker::Result<T> {
    if answer.status != 200 {
        return Err(worker::Error::RustError(format!(
            "ledger answered {}",
            answer.status
        )));
    }
    Ok(serde_json::from_str(&answer.text)?)
}

/// A random id for one delivery attempt, so the ledger can tell attempts apart.
pub(super) fn attempt_id() -> String {
    let mut bytes = [0u8; 12];
    // Should randomness fail, every attempt shares one id and a concurrent copy may take
    // over the lease; that is still safe, as each destination tolerates a repeat.
    let _ = getrandom::getrandom(&mut bytes);
    hex::encode(bytes)
}

/// The ledger: one Durable Object per Stripe event id (or per object, for clocks). It
/// deletes itself [`RETENTION_MS`] after it was first written.
#[durable_object(alarm)]
pub struct EventLedger {
    state: State,
    /// Whether this instance has seen the retention alarm set; until then every request
    /// checks. Asking once per instance instead of once per request saves a storage read on
    /// the claim and settle of every delivery, which the same instance usually serves.
    alarm_set: Cell<bool>,
}

impl DurableObject for EventLedger {
    fn new(state: State, _env: Env) -> Self {
        EventLedger {
            state,
            alarm_set: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let storage = self.state.storage();
        if !self.alarm_set.get() {
            if storage.get_alarm().await?.is_none() {
                storage
                    .set_alarm(Duration::from_millis(RETENTION_MS))
                    .await?;
            }
            self.alarm_set.set(true);
        }
        match (req.method(), req.path().as_str()) {
            (Method::Get, "/body") => self.read_body().await,
            (Method::Put, "/keep") => {
                let job = req
                    .headers()
                    .get(JOB_HEADER)?
                    .and_then(|text| serde_json::from_str::<Job>(&text).ok());
                let Some(job) = job else {
                    return Response::error("no job", 400);
                };
                let body = req.bytes().await?;
                self.keep(job, &body).await
            }
            (Method::Post, "/clock") => {
                let Ok(LedgerRequest::Observe { event, created }) =
                    runtime::read_json(&mut req).await
                else {
                    return Response::error("not a clock request", 400);
                };
                let mut clock: ObjectClock = load(&storage, CLOCK_KEY).await?;
                let stale = clock.observe(&event, created);
                storage
                    .put(CLOCK_KEY, serde_json::to_string(&clock)?)
                    .await?;
                Response::from_json(&stale)
            }
            (Method::Post, "/") => {
                let Ok(request) = runtime::read_json::<LedgerRequest>(&mut req).await else {
                    return Response::error("not a ledger request", 400);
                };
                let mut record: Record = load(&storage, RECORD_KEY).await?;
                let answer = record.apply(&request, Date::now().as_millis());
                if request != LedgerRequest::Inspect {
                    storage
                        .put(RECORD_KEY, serde_json::to_string(&record)?)
                        .await?;
                }
                Response::from_json(&answer)
            }
            _ => Response::error("unknown ledger request", 404),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.state.storage().delete_all().await?;
        // A later request to this instance starts a new retention period.
        self.alarm_set.set(false);
        Response::empty()
    }
}

impl EventLedger {
    async fn keep(&self, job: Job, body: &[u8]) -> worker::Result<Response> {
        let storage = self.state.storage();
        let mut record: Record = load(&storage, RECORD_KEY).await?;
        if record.kept.is_none() {
            // The normalized body is JSON, so UTF-8 text, cut at character boundaries.
            let Ok(text) = std::str::from_utf8(body) else {
                return Response::error("body is not UTF-8", 400);
            };
            let pieces = text_pieces(text, BODY_CHUNK_BYTES);
            for (index, piece) in pieces.iter().enumerate() {
                storage.put(&format!("body:{index}"), *piece).await?;
            }
            storage.put("body_pieces", pieces.len()).await?;
            record.kept = Some(job);
            if record.first_seen_ms == 0 {
                record.first_seen_ms = Date::now().as_millis();
            }
            storage
                .put(RECORD_KEY, serde_json::to_string(&record)?)
                .await?;
        }
        Response::from_json(&record)
    }

    async fn read_body(&self) -> worker::Result<Response> {
        let storage = self.state.storage();
        let Some(pieces) = storage.get::<usize>("body_pieces").await? else {
            return Response::error("not kept", 404);
        };
        let mut body = String::new();
        for index in 0..pieces {
            let piece: Option<String> = storage.get(&format!("body:{index}")).await?;
            body.push_str(&piece.unwrap_or_default());
        }
        Response::from_bytes(body.into_bytes())
    }
}

/// Reads a JSON value stored as text, or its default when there is none (or it cannot be
/// read, which only a change of format could cause).
async fn load<T: DeserializeOwned + Default>(
    storage: &worker::Storage,
    key: &str,
) -> worker::Result<T> {
    let stored: Option<String> = storage.get(key).await?;
    Ok(stored
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}
