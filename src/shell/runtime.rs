//! The runtime calls made on every delivery, each one call into `js/runtime.js` instead of
//! one wasm-bindgen crossing per header and per field: the origin POST, the requests to the
//! Durable Objects and the worker's answer.

use std::fmt::Write as _;

use serde::de::DeserializeOwned;

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsCast;
use worker::js_sys::{Array, Promise};
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys;

#[wasm_bindgen(module = "/js/runtime.js")]
extern "C" {
    #[wasm_bindgen(js_name = postOrigin)]
    fn post_origin_js(url: &str, header_lines: &str, body: &[u8], timeout_ms: f64) -> Promise;

    #[wasm_bindgen(js_name = callObject)]
    fn call_object_js(
        namespace: &JsValue,
        name: &str,
        method: &str,
        url: &str,
        body: &JsValue,
        job: &str,
    ) -> Promise;

    #[wasm_bindgen(js_name = respond, catch)]
    fn respond_js(
        status: u16,
        body: &str,
        header_lines: &str,
    ) -> Result<web_sys::Response, JsValue>;
}

/// How an origin POST ended without an answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PostError {
    Timeout,
    Network,
    /// A header or the URL the runtime refuses; nothing was sent.
    BadRequest,
}

impl PostError {
    pub(super) fn reason(&self) -> &'static str {
        match self {
            PostError::Timeout => "timeout",
            PostError::Network => "network",
            PostError::BadRequest => "bad_header",
        }
    }
}

/// The origin's answer: its status and `Retry-After`, if any.
pub(super) struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
}

/// POSTs `body` to `url` with `headers`, without following redirects, giving up after
/// `timeout_seconds`.
pub(super) async fn post_origin(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout_seconds: u64,
) -> Result<Answer, PostError> {
    let lines = header_lines(headers).ok_or(PostError::BadRequest)?;
    let timeout_ms = (timeout_seconds as f64) * 1000.0;
    let answer = JsFuture::from(post_origin_js(url, &lines, body, timeout_ms))
        .await
        .map_err(|error| match error.as_string().as_deref() {
            Some("timeout") => PostError::Timeout,
            Some("bad_request") => PostError::BadRequest,
            _ => PostError::Network,
        })?;
    let answer: Array = answer.dyn_into().map_err(|_| PostError::Network)?;
    let status = answer.get(0).as_f64().map_or(0, |s| s as u16);
    Ok(Answer {
        status,
        retry_after: answer.get(1).as_string(),
    })
}

/// What a Durable Object answered.
pub(super) struct ObjectAnswer {
    pub status: u16,
    pub text: String,
}

/// Sends one request to the Durable Object named `name` in `namespace` (its binding).
/// `body` is a JS string or bytes; `job` goes in the `stripe-edge-job` header when given.
pub(super) async fn call_object(
    namespace: &JsValue,
    name: &str,
    method: &str,
    url: &str,
    body: Option<&JsValue>,
    job: Option<&str>,
) -> worker::Result<ObjectAnswer> {
    let promise = call_object_js(
        namespace,
        name,
        method,
        url,
        body.unwrap_or(&JsValue::NULL),
        job.unwrap_or(""),
    );
    let answer: Array = JsFuture::from(promise).await?.dyn_into()?;
    Ok(ObjectAnswer {
        status: answer.get(0).as_f64().map_or(0, |s| s as u16),
        text: answer.get(1).as_string().unwrap_or_default(),
    })
}

/// The worker's answer with a JSON `body`.
pub(super) fn respond(
    status: u16,
    body: &str,
    headers: &[(&str, &str)],
) -> worker::Result<web_sys::Response> {
    let lines = header_lines(headers).ok_or_else(|| worker::Error::from("bad header"))?;
    respond_js(status, body, &lines).map_err(worker::Error::from)
}

/// `headers` as the "name\nvalue\n..." text `js/runtime.js` splits, or `None` if a name or
/// value holds a line break (no valid header does).
fn header_lines<S: AsRef<str>>(headers: &[(S, S)]) -> Option<String> {
    let mut lines = String::new();
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        if name.contains(['\n', '\r']) || value.contains(['\n', '\r']) {
            return None;
        }
        if !lines.is_empty() {
            lines.push('\n');
        }
        let _ = write!(lines, "{name}\n{value}");
    }
    Some(lines)
}

/// A Durable Object's JSON request, read as text in one piece and parsed here:
/// `Request::json` turns the runtime's parsed object into Rust field by field, one call
/// across the boundary each.
pub(super) async fn read_json<T: DeserializeOwned>(req: &mut worker::Request) -> worker::Result<T> {
    Ok(serde_json::from_str(&req.text().await?)?)
}
