//! Native CPU cost per event of stripe-edge's core, step by step, for each benchmark payload:
//! raw HMAC-SHA256 over the signed bytes (the floor), `signature::verify`, verify + parse, and
//! `pipeline::decide` (verify, parse, route, normalize, serialize, origin headers).
//!
//! Usage: `stripe-edge-bench PAYLOAD_DIR` where the directory holds the `manifest.json`
//! written by `bench/payloads.mjs`. Prints one JSON document on stdout.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use stripe_edge::config::Config;
use stripe_edge::event;
use stripe_edge::pipeline::{decide, Decision};
use stripe_edge::signature::{verify, SigningSecret};

const SECRET: &str = "whsec_bench_native_secret";
/// Each measurement runs at least this long (and at least `MIN_ITERATIONS` times), so that
/// the 1 MiB case gets enough samples and the 1 KiB case does not take forever.
const MEASURE_FOR: Duration = Duration::from_millis(600);
const MIN_ITERATIONS: usize = 20;
const MAX_ITERATIONS: usize = 200_000;

fn main() {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: stripe-edge-bench PAYLOAD_DIR");
        std::process::exit(2);
    };
    let manifest = read_manifest(&dir);

    // The same settings the load benchmark gives the worker: every event to the origin only.
    let config = Config::from_lookup(|name| match name {
        "STRIPE_WEBHOOK_SECRET" => Some(SECRET.to_owned()),
        "ORIGIN_URL" => Some("http://127.0.0.1:9/sink".to_owned()),
        "ROUTES" => Some(r#"[{"name":"all","events":["*"],"to":["origin"]}]"#.to_owned()),
        _ => None,
    })
    .unwrap_or_else(|problems| panic!("bench config is invalid: {problems:?}"));
    let secrets = [SigningSecret::new(SECRET)];

    let mut sizes = Vec::new();
    for entry in manifest {
        let label = entry["label"].as_str().unwrap_or("?").to_owned();
        let file = entry["file"].as_str().unwrap_or_default();
        let body = fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let now: i64 = 1_800_000_000;
        let header = secrets[0].sign_header(now, &body);
        let t = now.to_string();

        // Sanity: the pipeline must accept and deliver the payload, or the timings are of
        // an early rejection.
        match decide(&config, Some(&header), &body, now) {
            Ok(Decision::Deliver { .. }) => {}
            other => panic!("{label}: the pipeline did not deliver: {other:?}"),
        }

        let hmac_floor = measure(|| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
            mac.update(t.as_bytes());
            mac.update(b".");
            mac.update(black_box(&body));
            black_box(mac.finalize().into_bytes());
        });
        let verify_only = measure(|| {
            let verified = verify(Some(&header), black_box(&body), &secrets, 300, now);
            black_box(verified.is_ok());
        });
        let verify_parse = measure(|| {
            let verified = verify(Some(&header), black_box(&body), &secrets, 300, now)
                .expect("verifies");
            black_box(event::parse(&verified).is_ok());
        });
        let whole = measure(|| {
            black_box(decide(&config, Some(&header), black_box(&body), now).is_ok());
        });

        sizes.push(json!({
            "label": label,
            "bytes": body.len(),
            "hmac_sha256_us": hmac_floor,
            "verify_us": verify_only,
            "verify_parse_us": verify_parse,
            "decide_us": whole,
        }));
    }

    let doc = json!({
        "profile": "release (opt-level \"s\", lto, codegen-units 1), as the root crate",
        "target": std::env::consts::ARCH,
        "sizes": sizes,
    });
    println!("{doc:#}");
}

/// Runs `f` repeatedly and returns `{mean, p50, p99, iterations}` in microseconds.
fn measure(mut f: impl FnMut()) -> Value {
    for _ in 0..3 {
        f();
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < MAX_ITERATIONS
        && (samples.len() < MIN_ITERATIONS || started.elapsed() < MEASURE_FOR)
    {
        let one = Instant::now();
        f();
        samples.push(one.elapsed().as_secs_f64() * 1e6);
    }
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    json!({
        "mean": round3(mean),
        "p50": round3(at(0.5)),
        "p99": round3(at(0.99)),
        "iterations": samples.len(),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn read_manifest(dir: &Path) -> Vec<Value> {
    let path = dir.join("manifest.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text).expect("manifest is JSON");
    value["payloads"].as_array().cloned().unwrap_or_default()
}
