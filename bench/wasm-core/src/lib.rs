//! stripe-edge's core timed inside wasm, in the runtime: a worker that runs one step of the
//! core `n` times over the request body and answers when done. `bench/run.mjs` serves it
//! under workerd and reads the workerd process's CPU time around each request, so
//! (CPU at `n` − CPU at 0) / `n` is one step's CPU per event in wasm, with the request's own
//! handling and the copy of the body into wasm subtracted. The steps match `bench/native`:
//!
//! - `hmac`: HMAC-SHA256 over `t.body` with the pure-Rust `hmac`/`sha2` (the floor);
//! - `verify`: `signature::verify` (header parsing, HMAC, constant-time compare, tolerance);
//! - `parse`: verify, then `event::parse`;
//! - `decide`: `pipeline::decide` (verify, parse, route, normalize, serialize, headers);
//! - `webcrypto`: the same HMAC by the runtime's `crypto.subtle.sign`, awaited, with the key
//!   imported once, as the product does for bodies of 4 KiB and more (src/shell/request.rs);
//! - `decide_tags`: `pipeline::route` + `pipeline::plan` given the expected tag, which is
//!   what the product's wasm does once Web Crypto has hashed the body.
//!
//! `POST /?step=decide&n=1000` with the event as the body; the answer is `n`.

use std::hint::black_box;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use stripe_edge::config::Config;
use stripe_edge::event as stripe_event;
use stripe_edge::pipeline::{decide, plan, route, Decision, Routing};
use stripe_edge::signature::{verify, SigningSecret};
use worker::js_sys::{global, Array, Function, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{event, Context, Env, Request, Response, Result};

/// The secret and clock `bench/native` uses, so the two measure the same work.
const SECRET: &str = "whsec_bench_native_secret";
const NOW: i64 = 1_800_000_000;

#[event(fetch)]
async fn fetch(mut req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    if req.method() == worker::Method::Get {
        // The harness waits for a 200 on GET /health.
        return Response::ok("ready");
    }
    let url = req.url()?;
    let mut step = String::new();
    let mut n = 0usize;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "step" => step = value.into_owned(),
            "n" => n = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    let body = req.bytes().await?;
    let config = Config::from_lookup(|name| match name {
        "STRIPE_WEBHOOK_SECRET" => Some(SECRET.to_owned()),
        "ORIGIN_URL" => Some("http://127.0.0.1:9/sink".to_owned()),
        "ROUTES" => Some(r#"[{"name":"all","events":["*"],"to":["origin"]}]"#.to_owned()),
        _ => None,
    })
    .map_err(|problems| worker::Error::RustError(problems.join("; ")))?;
    let secrets = [SigningSecret::new(SECRET)];
    let header = secrets[0].sign_header(NOW, &body);
    let t = NOW.to_string();

    // The timings mean something only if the core accepts and delivers the event.
    if !matches!(
        decide(&config, Some(&header), &body, NOW),
        Ok(Decision::Deliver { .. })
    ) {
        return Response::error("the pipeline did not deliver this event", 422);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&body);
    let tags: [[u8; 32]; 1] = [mac.finalize().into_bytes().into()];

    match step.as_str() {
        "hmac" => {
            for _ in 0..n {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
                mac.update(t.as_bytes());
                mac.update(b".");
                mac.update(black_box(&body));
                black_box(mac.finalize().into_bytes());
            }
        }
        "verify" => {
            for _ in 0..n {
                let verified = verify(Some(&header), black_box(&body), &secrets, 300, NOW);
                black_box(verified.is_ok());
            }
        }
        "parse" => {
            for _ in 0..n {
                if let Ok(verified) = verify(Some(&header), black_box(&body), &secrets, 300, NOW) {
                    black_box(stripe_event::parse(&verified).is_ok());
                }
            }
        }
        "decide" => {
            for _ in 0..n {
                black_box(decide(&config, Some(&header), black_box(&body), NOW).is_ok());
            }
        }
        "decide_tags" => {
            for _ in 0..n {
                let routed = route(&config, Some(&header), black_box(&body), NOW, Some(&tags));
                if let Ok(Routing::Deliver(routed)) = routed {
                    black_box(plan(&config, *routed, false, NOW));
                }
            }
        }
        "webcrypto" => web_crypto_hmac(&t, &body, n).await?,
        _ => {
            return Response::error(
                "step must be hmac, webcrypto, verify, parse, decide or decide_tags",
                400,
            )
        }
    }
    Response::ok(n.to_string())
}

/// `n` HMAC-SHA256 signatures of `t.body` by `crypto.subtle`, one after another.
async fn web_crypto_hmac(t: &str, body: &[u8], n: usize) -> Result<()> {
    let js = |e: JsValue| worker::Error::from(e);
    let subtle = Reflect::get(
        &Reflect::get(&global(), &"crypto".into()).map_err(js)?,
        &"subtle".into(),
    )
    .map_err(js)?;
    let method = |name: &str| -> Result<Function> {
        Reflect::get(&subtle, &name.into())
            .map_err(js)?
            .dyn_into::<Function>()
            .map_err(js)
    };
    let algorithm = Object::new();
    Reflect::set(&algorithm, &"name".into(), &"HMAC".into()).map_err(js)?;
    Reflect::set(&algorithm, &"hash".into(), &"SHA-256".into()).map_err(js)?;
    let import_args = Array::of5(
        &"raw".into(),
        &Uint8Array::from(SECRET.as_bytes()).into(),
        &algorithm,
        &false.into(),
        &Array::of1(&"sign".into()),
    );
    let imported = method("importKey")?
        .apply(&subtle, &import_args)
        .map_err(js)?;
    let key = JsFuture::from(imported.dyn_into::<Promise>().map_err(js)?)
        .await
        .map_err(js)?;
    let mut message = Vec::with_capacity(t.len() + 1 + body.len());
    message.extend_from_slice(t.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let message = Uint8Array::from(message.as_slice());
    let sign = method("sign")?;
    for _ in 0..n {
        let signed = sign
            .call3(&subtle, &"HMAC".into(), &key, &message)
            .map_err(js)?;
        let signature = JsFuture::from(signed.dyn_into::<Promise>().map_err(js)?)
            .await
            .map_err(js)?;
        black_box(Uint8Array::new(&signature).to_vec());
    }
    Ok(())
}
