//! Fuzzing the header parser and the whole verify-then-parse path with generated input.
//! The default budget is 120,000 cases; set STRIPE_EDGE_FUZZ_CASES for a longer run (see
//! docs/verification.md). Every case must finish without a panic, and the core's answer
//! must equal the oracle's restatement of the policy.

mod support;

use std::collections::HashMap;

use stripe_edge::config::Config;
use stripe_edge::offline::fixtures::{find, fresh_event};
use stripe_edge::outcome::Rejection;
use stripe_edge::pipeline::decide;
use stripe_edge::signature::parse_header;
use support::fuzz::{generate, oracle, Rng};

const DEFAULT_CASES: u64 = 120_000;
const NOW: i64 = 1_796_042_096;
const SECRETS: [&str; 2] = ["whsec_fuzz_current", "whsec_fuzz_previous"];

fn budget() -> u64 {
    std::env::var("STRIPE_EDGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

#[test]
fn generated_deliveries_agree_with_the_oracle_and_never_panic() {
    let vars = HashMap::from([("STRIPE_WEBHOOK_SECRET", SECRETS.join(","))]);
    let config = Config::from_lookup(|n| vars.get(n).cloned()).expect("valid");
    let body = fresh_event(find("charge.succeeded").expect("fixture"), "evt_fuzz", NOW);
    let mut rng = Rng::new(0x5EED_0F57_819E);
    let mut accepted = 0u64;
    let mut codes: HashMap<&str, u64> = HashMap::new();
    let cases = budget();
    for _ in 0..cases {
        let generated = generate(&mut rng, NOW, &body, &SECRETS);
        let header = generated.header.as_deref();
        let expected = oracle(header, &generated.body, &SECRETS, 300, NOW);
        let answer = decide(&config, header, &generated.body, NOW);
        match (&expected, &answer) {
            (Ok(()), Ok(_)) => accepted += 1,
            // Verified, but the body was mutated into something that is not an event.
            (Ok(()), Err(Rejection::NotAnEvent)) => {}
            (Err(code), Err(rejection)) if *code == rejection.code() => {}
            _ => panic!(
                "oracle {expected:?} but core {:?} for header {header:?} and body {:?}",
                answer.map(|_| "accepted"),
                String::from_utf8_lossy(&generated.body)
            ),
        }
        let code = answer.err().map_or("accepted", |r| r.code());
        *codes.entry(code).or_default() += 1;
    }
    // The generator must reach every outcome, or it is not exploring the space.
    for code in [
        "accepted",
        "signature_header_missing",
        "signature_header_malformed",
        "signature_mismatch",
        "timestamp_too_old",
        "timestamp_in_future",
        "not_a_stripe_event",
    ] {
        assert!(
            codes.get(code).copied().unwrap_or(0) > 0,
            "{code} never reached: {codes:?}"
        );
    }
    assert!(accepted > cases / 50, "too few accepted cases: {codes:?}");
    println!("{cases} cases: {codes:?}");
}

#[test]
fn arbitrary_bytes_never_panic_the_header_parser() {
    let mut rng = Rng::new(42);
    for _ in 0..budget() {
        let len = rng.below(96);
        let alphabet = b"t=v1,0123456789abcdef -\t\xc3\xa9\xff";
        let raw: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let text = String::from_utf8_lossy(&raw);
        if let Ok(parsed) = parse_header(&text) {
            assert!(parsed.timestamp >= 0);
            assert!(parsed.v1.len() <= parsed.v1_seen);
        }
    }
}
