//! The Worker shell: the only module that names `worker::`. It reads the request, the clock
//! and the env, asks [`crate::pipeline`] what to do, performs the KV writes and origin
//! POSTs the plan lists, and turns every result into a response and one log line. No error
//! escapes `fetch`: each is mapped to a status here.

use std::pin::pin;
use std::time::Duration;

use futures_util::future::{join_all, select, Either};
use futures_util::StreamExt;
use wasm_bindgen::JsCast;
use worker::js_sys::{global, Array, Function, Object, Promise, Reflect, Uint8Array, JSON};
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{
    console_error, console_log, durable_object, event, AbortController, Context, Date, Delay,
    DurableObject, Env, Fetch, Headers, Method, ObjectNamespace, Request, RequestInit,
    RequestRedirect, Response, State,
};

use crate::config::{names, Config};
use crate::ledger::{Claim, LedgerRequest, Record, RETENTION_MS};
use crate::outcome::{DestinationResult, EventRef, Outcome, Rejection};
use crate::pipeline::{self, Decision, Endpoint, KvMetadata, Write};
use crate::signature::{parse_header, TAG_BYTES};

/// The KV namespace binding named in `wrangler.toml`.
const KV_BINDING: &str = "EVENTS";
/// The Durable Object namespace of the dedupe ledger.
const LEDGER_BINDING: &str = "LEDGER";

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let started_ms = Date::now().as_millis();
    let path = req.path();
    let config = Config::from_lookup(|name| lookup(&env, name));

    let outcome = match pipeline::endpoint(req.method().as_ref(), &path) {
        Err(rejection) => Outcome::rejected(rejection),
        Ok(Endpoint::Health) => {
            let kv_bound = env.kv(KV_BINDING).is_ok();
            Outcome::Health(pipeline::health(&config, kv_bound))
        }
        Ok(Endpoint::Webhook) => match &config {
            Ok(config) => webhook(&mut req, &env, config, started_ms).await,
            Err(problems) => {
                for problem in problems {
                    console_error!("{}", config_problem_line(problem));
                }
                Outcome::rejected(Rejection::ConfigInvalid)
            }
        },
    };

    let duration_ms = Date::now().as_millis().saturating_sub(started_ms);
    let warnings: Vec<String> = match &config {
        Ok(config) => config
            .secret_problems
            .iter()
            .map(ToString::to_string)
            .collect(),
        Err(_) => Vec::new(),
    };
    let line = outcome.log_line(&path, duration_ms, &warnings);
    if outcome.status() >= 500 {
        console_error!("{line}");
    } else {
        console_log!("{line}");
    }
    // Building a response fails only when the runtime itself is broken.
    respond(&outcome)
}

/// Handles one delivery: read the body, decide, write to every destination.
async fn webhook(req: &mut Request, env: &Env, config: &Config, started_ms: u64) -> Outcome {
    let content_length = header(req, "content-length");
    if let Err(rejection) = pipeline::check_declared_length(config, content_length.as_deref()) {
        return Outcome::rejected(rejection);
    }
    let body = match read_body(req, config.max_body_bytes).await {
        Ok(body) => body,
        Err(rejection) => return Outcome::rejected(rejection),
    };
    let signature = header(req, "stripe-signature");
    let now = i64::try_from(started_ms / 1000).unwrap_or(i64::MAX);

    let tags = web_crypto_tags(config, signature.as_deref(), &body).await;
    match pipeline::decide_with_tags(config, signature.as_deref(), &body, now, tags.as_deref()) {
        Err(rejection) => Outcome::rejected(rejection),
        Ok(Decision::Ignore(event)) => Outcome::Ignored { event },
        Ok(Decision::Deliver {
            event,
            body,
            writes,
        }) => deliver(env, event, &body, &writes).await,
    }
}

/// Delivers to every destination that does not have the event yet. With the `LEDGER`
/// binding (the default), the event's ledger decides which those are and keeps a concurrent
/// duplicate out while this attempt runs; without it, every destination gets every delivery.
async fn deliver(env: &Env, event: EventRef, body: &[u8], writes: &[Write]) -> Outcome {
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

/// Sends one request to the ledger of `event_id` and returns its answer.
async fn ask_ledger(
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
fn attempt_id() -> String {
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

/// Bodies at least this large are hashed by the runtime's Web Crypto instead of in wasm:
/// below it, the two promise round trips cost more than the hashing they save.
const WEB_CRYPTO_MIN_BYTES: usize = 64 * 1024;

/// For a large body, the expected `v1` tag under each secret, computed by `crypto.subtle`
/// (native code) rather than by the pure-Rust HMAC in wasm. `None` leaves the hashing to the
/// core: for small bodies, unparsable headers, or if Web Crypto fails for any reason.
async fn web_crypto_tags(
    config: &Config,
    signature: Option<&str>,
    body: &[u8],
) -> Option<Vec<[u8; TAG_BYTES]>> {
    if body.len() < WEB_CRYPTO_MIN_BYTES || body.len() > config.max_body_bytes {
        return None;
    }
    let parsed = parse_header(signature?).ok()?;
    let mut message = Vec::with_capacity(parsed.timestamp_text.len() + 1 + body.len());
    message.extend_from_slice(parsed.timestamp_text.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let message = Uint8Array::from(message.as_slice());

    let subtle = Reflect::get(
        &Reflect::get(&global(), &"crypto".into()).ok()?,
        &"subtle".into(),
    )
    .ok()?;
    let import_key: Function = Reflect::get(&subtle, &"importKey".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let sign: Function = Reflect::get(&subtle, &"sign".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let algorithm = Object::new();
    Reflect::set(&algorithm, &"name".into(), &"HMAC".into()).ok()?;
    Reflect::set(&algorithm, &"hash".into(), &"SHA-256".into()).ok()?;
    let usages = Array::of1(&"sign".into());

    let mut tags = Vec::with_capacity(config.secrets.len());
    for secret in &config.secrets {
        let key_bytes: JsValue = Uint8Array::from(secret.key()).into();
        let import_args = Array::of5(
            &"raw".into(),
            &key_bytes,
            &algorithm,
            &false.into(),
            &usages,
        );
        let key = await_promise(import_key.apply(&subtle, &import_args).ok()?).await?;
        let signed =
            await_promise(sign.call3(&subtle, &"HMAC".into(), &key, &message).ok()?).await?;
        tags.push(Uint8Array::new(&signed).to_vec().try_into().ok()?);
    }
    Some(tags)
}

async fn await_promise(value: JsValue) -> Option<JsValue> {
    JsFuture::from(value.dyn_into::<Promise>().ok()?).await.ok()
}

/// Reads the body stream, keeping at most `max_bytes`: once a body sent without
/// `Content-Length` passes the limit, the rest is read and dropped and the answer is 413, so
/// the worker never holds more than the limit in memory.
async fn read_body(req: &mut Request, max_bytes: usize) -> Result<Vec<u8>, Rejection> {
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    let mut stream = req.stream().map_err(|_| Rejection::BodyUnreadable)?;
    let mut body = Vec::new();
    let mut too_large = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Rejection::BodyUnreadable)?;
        too_large |= body.len() + chunk.len() > max_bytes;
        if too_large {
            // Answering before the sender finishes upsets some HTTP stacks (wrangler dev's
            // proxy restarts the worker), so the remainder is drained, not kept.
            // FIXME: a sender that streams forever keeps the request busy until the runtime's
            // own limits end it; a cap on drained bytes would answer sooner.
            body = Vec::new();
            continue;
        }
        body.extend_from_slice(&chunk);
    }
    if too_large {
        return Err(Rejection::PayloadTooLarge);
    }
    Ok(body)
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

/// Reads one setting from the env. Secrets and string vars come through as strings;
/// structured vars (such as `ROUTES` written as TOML tables) come through as objects and
/// are turned back into JSON text for the core to parse.
fn lookup(env: &Env, name: &str) -> Option<String> {
    debug_assert!(names::ALL.contains(&name));
    let value = Reflect::get(env.as_ref(), &JsValue::from_str(name)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    if let Some(text) = value.as_string() {
        return Some(text);
    }
    JSON::stringify(&value).ok()?.as_string()
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn config_problem_line(problem: &str) -> String {
    serde_json::json!({
        "level": "error",
        "msg": "stripe-edge configuration problem",
        "problem": problem,
    })
    .to_string()
}

fn respond(outcome: &Outcome) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    if let Some(allow) = outcome.allow() {
        headers.set("allow", allow)?;
    }
    let body = outcome.body().to_string().into_bytes();
    Ok(Response::from_bytes(body)?
        .with_status(outcome.status())
        .with_headers(headers))
}
