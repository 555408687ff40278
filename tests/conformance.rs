//! Conformance with Stripe's own signers, against the real worker in workerd.
//!
//! Headers made by the official `stripe` npm package (`generateTestHeaderString`) and the
//! official `stripe` PyPI package (`generate_signature_header`) for many payloads must equal
//! stripe-edge's own signing, must be accepted by the worker, and every single-byte change
//! to body, timestamp or signature must be refused. The policy cases and a sample of fuzz
//! cases then go through the worker too, which must answer exactly as the native core.

mod support;

use std::collections::HashMap;
use std::fs;
use std::process::Command;

use serde_json::{json, Value};
use stripe_edge::config::Config;
use stripe_edge::offline::fixtures::{find, fresh_event, new_event_id};
use stripe_edge::offline::trigger::now_seconds;
use stripe_edge::pipeline::decide;
use stripe_edge::signature::{verify, SigningSecret};
use support::fuzz::{generate, Rng};
use support::policy::{cases, OTHER_SECRET, SECRET};
use support::{repo_root, Worker};

/// Payloads (all valid events, so the worker accepts them) in the shapes that trip up
/// integrations that re-encode bodies before hashing.
fn payloads(now: i64) -> Vec<(&'static str, String)> {
    let event = |extra: Value| {
        let mut event: Value = serde_json::from_slice(&fresh_event(
            find("payment_intent.succeeded").expect("fixture"),
            &new_event_id(),
            now,
        ))
        .expect("fixture JSON");
        event["data"]["object"]["metadata"] = extra;
        event
    };
    let compact = |value: &Value| serde_json::to_string(value).expect("json");
    let pretty = |value: &Value| serde_json::to_string_pretty(value).expect("json");

    let plain = event(json!({"order": "1234"}));
    let non_ascii = event(json!({"note": "Zoë Ångström — Straße 7, Malmö; 東京; Ünïcödé"}));
    let emoji = event(json!({"mood": "🎉💳🚀 👩🏽‍💻 🇸🇪"}));
    let escaped = escape_non_ascii(&compact(&non_ascii))
        .replacen("\"order\"", "\"ord\\u0065r\"", 1)
        .replace('/', "\\/");
    let tricky =
        event(json!({"html": "<script>alert('x')</script> & \"quotes\" \\ back\\slash\ttab"}));

    // Exactly 1 MiB: a metadata value padded with mixed one-, two- and four-byte characters.
    let mut big = event(json!({"padding": ""}));
    let base_len = compact(&big).len();
    let unit = "aé€😀";
    let mut padding = unit.repeat((1024 * 1024 - base_len) / unit.len());
    padding.push_str(&"x".repeat(1024 * 1024 - base_len - padding.len()));
    big["data"]["object"]["metadata"]["padding"] = Value::from(padding);
    let one_mib = compact(&big);
    assert_eq!(one_mib.len(), 1024 * 1024);

    vec![
        ("compact", compact(&plain)),
        ("pretty", pretty(&plain)),
        ("non_ascii_text", pretty(&non_ascii)),
        ("emoji", pretty(&emoji)),
        ("escaped_unicode", escaped),
        ("crlf_line_ends", pretty(&plain).replace('\n', "\r\n")),
        ("trailing_newline", format!("{}\n", pretty(&plain))),
        ("tabs_and_escapes", pretty(&tricky).replace("  ", "\t")),
        ("one_mib", one_mib),
    ]
}

/// Writes every non-ASCII character as a JSON `\u` escape (surrogate pairs beyond the BMP).
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Runs one official signer over `(payload, secret, timestamp)` triples.
fn official_headers(signer: &str, inputs: &[(String, &str, i64)]) -> Vec<String> {
    let root = repo_root();
    let dir =
        std::env::temp_dir().join(format!("stripe-edge-sign-{}-{signer}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let (input, output) = (dir.join("in.json"), dir.join("out.json"));
    let list: Vec<Value> = inputs
        .iter()
        .map(|(payload, secret, t)| json!({"payload": payload, "secret": secret, "timestamp": t}))
        .collect();
    fs::write(&input, serde_json::to_vec(&list).expect("json")).expect("write");
    let mut command = match signer {
        "node" => {
            let mut c = Command::new("node");
            c.arg(root.join("tests/conformance/sign-node.mjs"));
            c
        }
        _ => {
            let mut c = Command::new("python3");
            c.arg(root.join("tests/conformance/sign_python.py"));
            c.env("PYTHONPATH", root.join(".tools/python"));
            c
        }
    };
    let result = command
        .arg(&input)
        .arg(&output)
        .current_dir(&root)
        .output()
        .expect("signer runs");
    assert!(
        result.status.success(),
        "{signer} signer failed (run scripts/setup.sh): {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let headers = serde_json::from_slice(&fs::read(&output).expect("signer output")).expect("json");
    fs::remove_dir_all(&dir).ok();
    headers
}

/// The header with one character of its `t` or `v1` value replaced by another digit.
fn header_variants(header: &str) -> Vec<String> {
    let (t_part, v1_part) = header.split_once(",v1=").expect("t=...,v1=...");
    let t = t_part.trim_start_matches("t=");
    let mut variants = Vec::new();
    for at in 0..t.len() {
        let mut changed = t.as_bytes().to_vec();
        changed[at] = if changed[at] == b'9' {
            b'0'
        } else {
            changed[at] + 1
        };
        variants.push(format!(
            "t={},v1={v1_part}",
            String::from_utf8(changed).expect("ascii")
        ));
    }
    for at in 0..v1_part.len() {
        let mut changed = v1_part.as_bytes().to_vec();
        changed[at] = if changed[at] == b'a' { b'b' } else { b'a' };
        variants.push(format!(
            "t={t},v1={}",
            String::from_utf8(changed).expect("ascii")
        ));
    }
    variants
}

/// Body positions to change: every byte of small bodies; a spread of positions, always
/// including both ends, in large ones.
fn positions(len: usize, every_up_to: usize) -> Vec<usize> {
    if len <= every_up_to {
        return (0..len).collect();
    }
    let step = len / 64;
    (0..64)
        .map(|i| i * step)
        .chain([len / 2, len - 1])
        .collect()
}

#[test]
fn official_signers_agree_and_the_worker_accepts_exactly_what_they_sign() {
    let now = now_seconds();
    let payloads = payloads(now);
    let inputs: Vec<(String, &str, i64)> = payloads
        .iter()
        .map(|(_, p)| (p.clone(), SECRET, now))
        .collect();
    let node = official_headers("node", &inputs);
    let python = official_headers("python", &inputs);

    let ours = SigningSecret::new(SECRET);
    let secrets = [SigningSecret::new(SECRET)];
    for (((name, payload), node), python) in payloads.iter().zip(&node).zip(&python) {
        let own = ours.sign_header(now, payload.as_bytes());
        assert_eq!(node, &own, "{name}: stripe-node differs from stripe-edge");
        assert_eq!(
            python, &own,
            "{name}: stripe-python differs from stripe-edge"
        );

        // Natively: every single-byte change to the body is refused (a spread of
        // positions for the 1 MiB payload), and so is every change to t or v1.
        let body = payload.as_bytes();
        assert!(
            verify(Some(node), body, &secrets, 300, now).is_ok(),
            "{name}"
        );
        for at in positions(body.len(), 64 * 1024) {
            let mut changed = body.to_vec();
            changed[at] ^= 0x01;
            assert!(
                verify(Some(node), &changed, &secrets, 300, now).is_err(),
                "{name} byte {at}"
            );
        }
        for variant in header_variants(node) {
            assert!(
                verify(Some(&variant), body, &secrets, 300, now).is_err(),
                "{name} {variant}"
            );
        }
    }

    // In the worker: the same headers are accepted, and changes are refused.
    // A wide tolerance: this test is about bytes, not clocks, and must not depend on how
    // fast a loaded machine gets through it.
    let worker = Worker::start(&[
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_TOLERANCE_SECONDS", "86400"),
    ]);
    for ((name, payload), header) in payloads.iter().zip(&node) {
        let body = payload.as_bytes();
        let accepted = worker.post("/webhook", &[("Stripe-Signature", header)], body);
        assert_eq!(accepted.status, 200, "{name}: {}", accepted.body_text());

        let mut refused = Vec::new();
        for at in positions(body.len(), 0).into_iter().step_by(8) {
            let mut changed = body.to_vec();
            changed[at] ^= 0x01;
            refused.push((format!("body byte {at}"), header.clone(), changed));
        }
        refused.push((
            "one byte longer".into(),
            header.clone(),
            [body, b" "].concat(),
        ));
        refused.push((
            "one byte shorter".into(),
            header.clone(),
            body[..body.len() - 1].to_vec(),
        ));
        for variant in header_variants(header) {
            refused.push((variant.clone(), variant, body.to_vec()));
        }
        for (what, header, body) in refused {
            let response = worker.post("/webhook", &[("Stripe-Signature", &header)], &body);
            assert_eq!(
                (response.status, response.body_text()),
                (400, r#"{"error":"signature_mismatch"}"#.to_owned()),
                "{name}: {what}"
            );
        }
    }
    for ((name, payload), header) in payloads.iter().zip(&python) {
        let response = worker.post(
            "/webhook",
            &[("Stripe-Signature", header)],
            payload.as_bytes(),
        );
        assert_eq!(response.status, 200, "{name} signed by stripe-python");
    }
}

/// The policy table and generated cases give the same answers in workerd as natively: the
/// HMAC, hex and header code compiled to wasm32 behaves exactly like the native build.
#[test]
fn the_worker_answers_every_policy_and_fuzz_case_like_the_native_core() {
    let worker = Worker::start(&[(
        "STRIPE_WEBHOOK_SECRET",
        &format!("{OTHER_SECRET}x,{SECRET}"),
    )]);
    let vars = HashMap::from([("STRIPE_WEBHOOK_SECRET", format!("{OTHER_SECRET}x,{SECRET}"))]);
    let config = Config::from_lookup(|n| vars.get(n).cloned()).expect("valid");

    let names: Vec<&str> = cases(now_seconds()).iter().map(|c| c.name).collect();
    let mut checked = 0;
    for name in names {
        // Signed afresh for each request, so the clock moves as little as possible.
        let case = cases(now_seconds())
            .into_iter()
            .find(|c| c.name == name)
            .expect("case");
        if case.tolerance_seconds.is_some() {
            continue;
        }
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(header) = &case.header {
            headers.push(("Stripe-Signature", header));
        }
        let response = worker.post("/webhook", &headers, &case.body);
        let answer = match response.status {
            200 => None,
            _ => {
                let body: Value = serde_json::from_slice(&response.body).expect("JSON error");
                Some(body["error"].as_str().expect("code").to_owned())
            }
        };
        assert_eq!(answer.as_deref(), case.expected, "{}", case.name);
        checked += 1;
    }
    assert!(checked >= 45);

    // A sample of generated deliveries, signed with the configured secrets (or not).
    let now = now_seconds();
    let body = fresh_event(find("invoice.paid").expect("fixture"), &new_event_id(), now);
    let mut rng = Rng::new(now as u64);
    let secrets = [SECRET, "whsec_unused"];
    for _ in 0..400 {
        let generated = generate(&mut rng, now, &body, &secrets);
        let header = generated.header.as_deref();
        // HTTP cannot carry control characters in a header value.
        if header.is_some_and(|h| h.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)) {
            continue;
        }
        // Skip the few cases at the edge of the tolerance window, whose answer depends on
        // which second the worker reads its clock in.
        let sent_at = now_seconds();
        let native = decide(&config, header, &generated.body, sent_at)
            .err()
            .map(|r| r.code());
        let later = decide(&config, header, &generated.body, sent_at + 3)
            .err()
            .map(|r| r.code());
        if native != later {
            continue;
        }
        let mut headers = Vec::new();
        if let Some(header) = header {
            headers.push(("Stripe-Signature", header));
        }
        let response = worker.post("/webhook", &headers, &generated.body);
        let in_worker: Value = serde_json::from_slice(&response.body).expect("JSON answer");
        assert_eq!(
            in_worker["error"].as_str(),
            native,
            "header {header:?}, status {}",
            response.status
        );
    }
}
