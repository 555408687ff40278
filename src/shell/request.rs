//! Request-side I/O: reading the body stream under its size cap, and hashing large bodies
//! with the runtime's Web Crypto so the core only compares tags.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;
use wasm_bindgen::JsCast;
use worker::js_sys::{global, Array, Function, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys;

use crate::config::Config;
use crate::outcome::Rejection;
use crate::signature::{parse_header, TAG_BYTES};

/// Bodies at least this large are hashed by the runtime's Web Crypto instead of in wasm:
/// below it, the promise round trip costs more than the hashing it saves. With the keys
/// imported once per isolate (see [`WEB_CRYPTO`]) the crossover is a few KiB: at 10 KiB the
/// pure-Rust `sha2` in wasm was the largest wasm item of the CPU profile, and moving it to
/// Web Crypto took about 0.5-0.7 ms of workerd CPU off each request (bench/notes.md).
const WEB_CRYPTO_MIN_BYTES: usize = 4 * 1024;

/// `crypto.subtle`, its `sign` method and every configured secret imported as an HMAC key,
/// in `Config::secrets` order.
struct WebCrypto {
    subtle: JsValue,
    sign: Function,
    keys: Vec<JsValue>,
}

thread_local! {
    /// Made on the isolate's first large body and kept for its life, like the configuration
    /// it comes from (see `super::isolate_config`): one `importKey` per secret per isolate
    /// instead of one per request.
    static WEB_CRYPTO: RefCell<Option<Rc<WebCrypto>>> = const { RefCell::new(None) };
}

/// The isolate's [`WebCrypto`], importing the keys on first use. `None` if the runtime has
/// no usable `crypto.subtle`.
async fn web_crypto(config: &Config) -> Option<Rc<WebCrypto>> {
    if let Some(cached) = WEB_CRYPTO.with(|cell| cell.borrow().clone()) {
        return Some(cached);
    }
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
    let mut keys = Vec::with_capacity(config.secrets.len());
    for secret in &config.secrets {
        let key_bytes: JsValue = Uint8Array::from(secret.key()).into();
        let import_args = Array::of5(
            &"raw".into(),
            &key_bytes,
            &algorithm,
            &false.into(),
            &usages,
        );
        keys.push(await_promise(import_key.apply(&subtle, &import_args).ok()?).await?);
    }
    // Two first requests may both get here; either result is the same keys.
    let made = Rc::new(WebCrypto { subtle, sign, keys });
    WEB_CRYPTO.with(|cell| *cell.borrow_mut() = Some(Rc::clone(&made)));
    Some(made)
}

/// For a large body, the expected `v1` tag under each secret, computed by `crypto.subtle`
/// (native code) rather than by the pure-Rust HMAC in wasm. `None` leaves the hashing to the
/// core: for small bodies, unparsable headers, or if Web Crypto fails for any reason.
pub(super) async fn web_crypto_tags(
    config: &Config,
    signature: Option<&str>,
    body: &[u8],
) -> Option<Vec<[u8; TAG_BYTES]>> {
    if body.len() < WEB_CRYPTO_MIN_BYTES || body.len() > config.max_body_bytes {
        return None;
    }
    let parsed = parse_header(signature?).ok()?;
    let crypto = web_crypto(config).await?;
    if crypto.keys.len() != config.secrets.len() {
        return None;
    }
    let mut message = Vec::with_capacity(parsed.timestamp_text.len() + 1 + body.len());
    message.extend_from_slice(parsed.timestamp_text.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let message = Uint8Array::from(message.as_slice());

    // Every secret's HMAC is started before the first is awaited.
    let mut pending = Vec::with_capacity(crypto.keys.len());
    for key in &crypto.keys {
        pending.push(
            crypto
                .sign
                .call3(&crypto.subtle, &"HMAC".into(), key, &message)
                .ok()?,
        );
    }
    let mut tags = Vec::with_capacity(pending.len());
    for promise in pending {
        let signed = await_promise(promise).await?;
        tags.push(Uint8Array::new(&signed).to_vec().try_into().ok()?);
    }
    Some(tags)
}

async fn await_promise(value: JsValue) -> Option<JsValue> {
    JsFuture::from(value.dyn_into::<Promise>().ok()?).await.ok()
}

/// The path of a request URL as the runtime serializes it (`scheme://host[:port]/path?query`),
/// without the query or fragment: a special-scheme URL always has a path starting at the
/// first `/` after the host, and `?` and `#` inside the path are always percent-encoded.
pub(super) fn path(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let Some(start) = rest.find('/') else {
        return "/".to_owned();
    };
    let path = &rest[start..];
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].to_owned()
}

/// Reads the body, keeping at most `max_bytes`.
///
/// With a `Content-Length` within the limit (what Stripe sends; the caller has already
/// answered 413 to a larger one), the runtime holds exactly that many bytes, so the body is
/// taken whole with `arrayBuffer()`: one promise and one copy into wasm. Streaming it
/// instead cost a reader, a `read()` promise per chunk and a `releaseLock`, which the CPU
/// profile showed as the largest single item of a 1 KiB request.
pub(super) async fn read_body(
    req: &web_sys::Request,
    max_bytes: usize,
) -> Result<Vec<u8>, Rejection> {
    if req.body().is_none() {
        return Ok(Vec::new());
    }
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length <= max_bytes as u64 => {
            let promise = req.array_buffer().map_err(|_| Rejection::BodyUnreadable)?;
            let buffer = JsFuture::from(promise)
                .await
                .map_err(|_| Rejection::BodyUnreadable)?;
            let body = Uint8Array::new(&buffer).to_vec();
            // The runtime frames the body by its Content-Length; checked again all the same.
            if body.len() > max_bytes {
                return Err(Rejection::PayloadTooLarge);
            }
            Ok(body)
        }
        _ => read_stream(req, max_bytes).await,
    }
}

/// Reads the body stream, keeping at most `max_bytes`: once a body sent without
/// `Content-Length` passes the limit, the rest is read and dropped and the answer is 413, so
/// the worker never holds more than the limit in memory.
async fn read_stream(req: &web_sys::Request, max_bytes: usize) -> Result<Vec<u8>, Rejection> {
    // Only here is the request wrapped as a `worker::Request` (which reads `cf`), for its
    // byte stream.
    let mut stream = worker::Request::from(Clone::clone(req))
        .stream()
        .map_err(|_| Rejection::BodyUnreadable)?;
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
