//! The Worker shell: the only module that names `worker::`. It reads the request, the clock
//! and the env, asks [`crate::pipeline`] what to do, performs the KV writes and origin
//! POSTs the plan lists, and turns every result into a response and one log line. No error
//! escapes `fetch`: each is mapped to a status here.

use std::cell::OnceCell;
use std::rc::Rc;

use worker::js_sys::{Reflect, JSON};
use worker::wasm_bindgen::JsValue;
use worker::worker_sys::web_sys;
use worker::{console_error, console_log, console_warn, event, Context, Date, Env, Request};

use crate::config::{names, Config, DeliveryMode};
use crate::journal::JournalRequest;
use crate::ledger::{LedgerRequest, Settled};
use crate::outcome::{Outcome, Rejection};
use crate::pipeline::{self, Endpoint, Job, Plan, Routing};

mod admin;
mod deliver;
mod journal;
mod ledger;
mod queue;
mod request;
mod runtime;

/// The KV namespace binding named in `wrangler.toml`.
pub(crate) const KV_BINDING: &str = "EVENTS";
/// The Durable Object namespace of the ledger (dedupe, kept events, object clocks).
pub(crate) const LEDGER_BINDING: &str = "LEDGER";
/// The Durable Object namespace of the journal behind `/admin`.
pub(crate) const JOURNAL_BINDING: &str = "JOURNAL";
/// The queue producer of queue mode.
pub(crate) const QUEUE_BINDING: &str = "DELIVERIES";

// The runtime's own request object, not `worker::Request`: converting to that reads
// `request.cf`, which workerd builds from JSON on every access, and the CPU profile showed it
// as one of the larger items of a small request. Only `/admin` gets a `worker::Request`.
#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let started_ms = Date::now().as_millis();
    let path = request::path(&req.url());
    let config = isolate_config(&env);
    let config = config.as_ref();

    let outcome = match (pipeline::endpoint(&req.method(), &path), config) {
        (Err(rejection), _) => Outcome::rejected(rejection),
        (Ok(Endpoint::Health), _) => Outcome::Health(pipeline::health(config, &bindings(&env))),
        (Ok(_), Err(problems)) => {
            for problem in problems {
                console_error!("{}", config_problem_line(problem));
            }
            Outcome::rejected(Rejection::ConfigInvalid)
        }
        (Ok(Endpoint::Webhook), Ok(config)) => webhook(&req, &env, config, started_ms).await,
        (Ok(Endpoint::Admin(action)), Ok(config)) => {
            let req = Request::from(Clone::clone(&req));
            admin::admin(&req, &env, config, action).await
        }
    };

    // The journal lists the latest events for `/admin`; it is written after the answer.
    if let (Some(seen), Some(journal)) = (
        outcome.journal_entry(started_ms),
        journal::Journal::from_env(&env),
    ) {
        ctx.wait_until(async move { journal.tell(&JournalRequest::Seen(seen)).await });
    }

    let duration_ms = Date::now().as_millis().saturating_sub(started_ms);
    let warnings: Vec<String> = match config {
        Ok(config) => config
            .secret_problems
            .iter()
            .map(ToString::to_string)
            .collect(),
        Err(_) => Vec::new(),
    };
    let line = outcome.log_line(&path, duration_ms, &warnings);
    match outcome.level() {
        "error" => console_error!("{line}"),
        "warn" => console_warn!("{line}"),
        _ => console_log!("{line}"),
    }
    // Building a response fails only when the runtime itself is broken.
    respond(&outcome)
}

/// Records in the ledger that `held` hold this stale event back, so an earlier failure there
/// is no longer listed or replayed.
async fn hold(env: &Env, ledger: &ledger::Ledger, job: &Job, held: &[String], now: i64) {
    let request = LedgerRequest::Hold {
        destinations: held.to_vec(),
    };
    match ledger.ask::<Settled>(&job.id, &request).await {
        Ok(settled) if !settled.recovered.is_empty() => {
            deliver::journal_failing(env, job, &settled, now).await;
        }
        Ok(_) => {}
        Err(_) => console_error!(
            "{}",
            serde_json::json!({"level": "error", "msg": "stripe-edge ledger hold failed", "event_id": job.id})
        ),
    }
}

/// Which bindings the worker has, for `/health`.
fn bindings(env: &Env) -> pipeline::Bindings {
    pipeline::Bindings {
        kv: env.kv(KV_BINDING).is_ok(),
        ledger: env.durable_object(LEDGER_BINDING).is_ok(),
        journal: env.durable_object(JOURNAL_BINDING).is_ok(),
        queue: env.queue(QUEUE_BINDING).is_ok(),
    }
}

/// Handles one delivery: read the body, verify, route, check staleness when a route asks,
/// normalize, then deliver (direct mode) or keep and enqueue (queue mode).
async fn webhook(req: &web_sys::Request, env: &Env, config: &Config, started_ms: u64) -> Outcome {
    let content_length = header(req, "content-length");
    if let Err(rejection) = pipeline::check_declared_length(config, content_length.as_deref()) {
        return Outcome::rejected(rejection);
    }
    let body = match request::read_body(req, config.max_body_bytes).await {
        Ok(body) => body,
        Err(rejection) => return Outcome::rejected(rejection),
    };
    let signature = header(req, "stripe-signature");
    let now = i64::try_from(started_ms / 1000).unwrap_or(i64::MAX);

    let tags = request::web_crypto_tags(config, signature.as_deref(), &body).await;
    let routed = match pipeline::route(config, signature.as_deref(), &body, now, tags.as_deref()) {
        Err(rejection) => return Outcome::rejected(rejection),
        Ok(Routing::Ignore(event)) => return Outcome::Ignored { event },
        Ok(Routing::Deliver(routed)) => routed,
    };

    // "Latest wins": ask the object's clock whether a newer event for it came first.
    // FIXME: this is decided on arrival, while the queue consumer's retries and /admin
    // replays can still deliver an event overtaken while it waited (unflagged: its kept body
    // says "stale": false). Carrying the object id and each destination's stale policy in
    // the Job, and asking the clock again just before writing, would hold or flag it.
    let ledger = ledger::Ledger::from_env(env);
    let stale = match (&routed.stale_check, &ledger) {
        (Some(check), Some(ledger)) => {
            match ledger
                .is_stale(&check.object_id, &routed.event_ref.id, check.created)
                .await
            {
                Ok(stale) => stale,
                Err(_) => {
                    return Outcome::Rejected {
                        reason: Rejection::LedgerUnavailable,
                        event: Some(routed.event_ref.clone()),
                        results: Vec::new(),
                    }
                }
            }
        }
        _ => false,
    };

    let Plan {
        event,
        job,
        body,
        writes,
    } = pipeline::plan(config, *routed, stale, now);
    if !event.held.is_empty() {
        if let Some(ledger) = &ledger {
            hold(env, ledger, &job, &event.held, now).await;
        }
    }
    if writes.is_empty() {
        // Every destination held the stale event back.
        return Outcome::from_deliveries(event, Vec::new());
    }
    match config.delivery {
        DeliveryMode::Direct => {
            deliver::deliver_now(env, config, event, &job, &body, &writes, now).await
        }
        DeliveryMode::Queue => queue::enqueue(env, event, &job, &body).await,
    }
}

/// What [`Config::from_lookup`] made of this isolate's env, or its problems.
type ConfigResult = Result<Config, Vec<String>>;

thread_local! {
    /// The configuration, built on the isolate's first request and kept for its life: an
    /// isolate's env (vars and secrets) is fixed when it starts, and a new deployment or
    /// secret starts new isolates. Building it per request (thirteen env reads, `ROUTES`
    /// through `JSON.stringify` and parsed again) was measurable at small payloads.
    static CONFIG: OnceCell<Rc<ConfigResult>> = const { OnceCell::new() };
}

/// The isolate's configuration, built from `env` the first time it is asked for.
fn isolate_config(env: &Env) -> Rc<ConfigResult> {
    CONFIG.with(|cell| {
        Rc::clone(cell.get_or_init(|| Rc::new(Config::from_lookup(|name| lookup(env, name)))))
    })
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

fn header(req: &web_sys::Request, name: &str) -> Option<String> {
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

fn respond(outcome: &Outcome) -> worker::Result<web_sys::Response> {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
    ];
    if let Some(allow) = outcome.allow() {
        headers.push(("allow", allow));
    }
    if outcome.status() == 401 {
        headers.push(("www-authenticate", "Bearer"));
    }
    runtime::respond(outcome.status(), &outcome.body().to_string(), &headers)
}
