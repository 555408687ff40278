//! The dedupe ledger's Durable Object and the worker's side of talking to it. The record
//! logic itself is in [`crate::ledger`], free of I/O.

use std::time::Duration;

use worker::wasm_bindgen::JsValue;
use worker::{
    durable_object, Date, DurableObject, Env, Method, ObjectNamespace, Request, RequestInit,
    Response, State,
};

use crate::ledger::{Claim, LedgerRequest, Record, RETENTION_MS};

/// Sends one request to the ledger of `event_id` and returns its answer.
pub(super) async fn ask_ledger(
    namespace: &ObjectNamespace,
    event_id: &str,
    request: &LedgerRequest,
) -> worker::Result<Option<Claim>> {
    let stub = namespace.id_from_name(event_id)?.get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&serde_json::to_string(request)?)));
    let mut response = stub
        .fetch_with_request(Request::new_with_init("https://ledger/", &init)?)
        .await?;
    if response.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "ledger answered {}",
            response.status_code()
        )));
    }
    response.json().await
}

/// A random id for one delivery attempt, so the ledger can tell attempts apart.
pub(super) fn attempt_id() -> String {
    let mut bytes = [0u8; 12];
    // Should randomness fail, every attempt shares one id and a concurrent copy may take
    // over the lease; that is still safe, as each destination tolerates a repeat.
    let _ = getrandom::getrandom(&mut bytes);
    hex::encode(bytes)
}

/// Where the ledger keeps its record inside each event's Durable Object.
const RECORD_KEY: &str = "record";

/// The dedupe ledger: one Durable Object per Stripe event id, holding a [`Record`]. It
/// deletes itself [`RETENTION_MS`] after the event was first seen.
#[durable_object(alarm)]
pub struct EventLedger {
    state: State,
}

impl DurableObject for EventLedger {
    fn new(state: State, _env: Env) -> Self {
        EventLedger { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Ok(request) = req.json::<LedgerRequest>().await else {
            return Response::error("not a ledger request", 400);
        };
        let storage = self.state.storage();
        let stored: Option<String> = storage.get(RECORD_KEY).await?;
        let mut record: Record = stored
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let first_time = record.first_seen_ms == 0;
        let answer = record.apply(&request, Date::now().as_millis());
        storage
            .put(RECORD_KEY, serde_json::to_string(&record)?)
            .await?;
        if first_time {
            storage
                .set_alarm(Duration::from_millis(RETENTION_MS))
                .await?;
        }
        Response::from_json(&answer)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.state.storage().delete_all().await?;
        Response::empty()
    }
}
