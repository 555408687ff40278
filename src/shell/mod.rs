//! The Worker shell: the only module that names `worker::`. It reads the request, the clock
//! and the env, asks [`crate::pipeline`] what to do, performs the KV writes and origin
//! POSTs the plan lists, and turns every result into a response and one log line. No error
//! escapes `fetch`: each is mapped to a status here.

use std::cell::OnceCell;
use std::rc::Rc;

use worker::js_sys::{Reflect, JSON};
use worker::wasm_bindgen::JsValue;
use worker::{console_error, console_log, event, Context, Date, Env, Headers, Request, Response};

use crate::config::{names, Config};
use crate::outcome::{Outcome, Rejection};
use crate::pipeline::{self, Decision, Endpoint};

mod deliver;
mod ledger;
mod request;

/// The KV namespace binding named in `wrangler.toml`.
pub(crate) const KV_BINDING: &str = "EVENTS";
/// The Durable Object namespace of the dedupe ledger.
pub(crate) const LEDGER_BINDING: &str = "LEDGER";

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let started_ms = Date::now().as_millis();
    let path = req.path();
    let config = isolate_config(&env);
    let config = config.as_ref();

    let outcome = match pipeline::endpoint(req.method().as_ref(), &path) {
        Err(rejection) => Outcome::rejected(rejection),
        Ok(Endpoint::Health) => {
            let kv_bound = env.kv(KV_BINDING).is_ok();
            Outcome::Health(pipeline::health(config, kv_bound))
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
    let body = match request::read_body(req, config.max_body_bytes).await {
        Ok(body) => body,
        Err(rejection) => return Outcome::rejected(rejection),
    };
    let signature = header(req, "stripe-signature");
    let now = i64::try_from(started_ms / 1000).unwrap_or(i64::MAX);

    let tags = request::web_crypto_tags(config, signature.as_deref(), &body).await;
    match pipeline::decide_with_tags(config, signature.as_deref(), &body, now, tags.as_deref()) {
        Err(rejection) => Outcome::rejected(rejection),
        Ok(Decision::Ignore(event)) => Outcome::Ignored { event },
        Ok(Decision::Deliver {
            event,
            body,
            writes,
        }) => deliver::deliver(env, event, &body, &writes).await,
    }
}

/// What [`Config::from_lookup`] made of this isolate's env, or its problems.
type ConfigResult = Result<Config, Vec<String>>;

thread_local! {
    /// The configuration, built on the isolate's first request and kept for its life: an
    /// isolate's env (vars and secrets) is fixed when it starts, and a new deployment or
    /// secret starts new isolates. Building it per request (eight env reads, `ROUTES`
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
